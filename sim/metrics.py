"""Headline metrics of one run, computed from its tables (used by reports and sweeps)."""

from __future__ import annotations

import numpy as np
import polars as pl

from sim.cascades import cascade_summary_frame

METRICS = (
    "max_drawdown",
    "liquidated_notional",
    "n_liquidations",
    "n_accounts_liquidated",
    "largest_cascade_accounts",
    "largest_cascade_depth",
    "insurance_fund_low",
    "bad_debt",
    "adl_count",
    "fund_draws",
    "backstop_pnl",
    "adl_notional",
    "socialized",
    "system_loss",
)


#: Metrics read from the ledger table's last row.
WATERFALL_METRICS = ("fund_draws", "backstop_pnl", "adl_notional", "socialized", "system_loss")


def run_metrics(tables: dict[str, pl.DataFrame], cascades: pl.DataFrame | None = None) -> dict[str, float]:
    """The headline metrics.

    - max_drawdown: largest peak-to-trough fall of any instrument's mark (fraction).
    - liquidated_notional: USD closed by liquidation (all kinds).
    - n_liquidations: liquidation record rows; n_accounts_liquidated: distinct accounts.
    - largest_cascade_accounts / _depth: the cascade with most accounts, and the
      deepest trigger chain of any cascade (see `sim.cascades`).
    - insurance_fund_low: the fund's lowest balance (USD); bad_debt: at the end (USD).
    - adl_count: ADL transfers.
    - fund_draws, backstop_pnl, adl_notional, socialized, system_loss: the loss
      waterfall's accounts at the end (`sim.losses`); bad_debt is the traders'
      negative equity, to the cent.

    ``cascades`` is the run's `cascade_summary_frame`, when the caller has it already.
    """
    market, liq, ledger = tables["market"], tables["liquidations"], tables["ledger"]
    drawdown = (
        market.sort("step")
        .with_columns((1 - pl.col("mark_price") / pl.col("mark_price").cum_max().over("instrument")).alias("dd"))
        .get_column("dd")
        .max()
    )
    if cascades is None:
        cascades = cascade_summary_frame(liq)
    return {
        "max_drawdown": float(drawdown or 0.0),
        "liquidated_notional": float(liq.get_column("notional").sum()),
        "n_liquidations": liq.height,
        "n_accounts_liquidated": liq.get_column("account").n_unique(),
        "largest_cascade_accounts": int(cascades.get_column("accounts").max() or 0),
        "largest_cascade_depth": int(cascades.get_column("depth").max() or 0),
        "insurance_fund_low": float(ledger.get_column("insurance_fund").min()),
        "bad_debt": float(ledger.get_column("bad_debt").tail(1).item()),
        "adl_count": liq.filter(pl.col("kind") == "adl").height,
        **{column: float(ledger.get_column(column).tail(1).item()) for column in WATERFALL_METRICS},
    }


def ci95_half_width(std: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Half-width of the two-sided 95 % Student-t confidence interval of a mean over
    ``n`` runs with sample standard deviation ``std`` (arrays of one shape); NaN where
    ``n < 2``."""
    from scipy.stats import t

    n = np.asarray(n, dtype=float)
    std = np.asarray(std, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = t.ppf(0.975, np.maximum(n - 1, 1)) * std / np.sqrt(np.maximum(n, 1))
    return np.where(n >= 2, half, np.nan)

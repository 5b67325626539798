"""The loss waterfall end to end, on small configs with ``[[accounts]]`` (issue 9's
repros), checked from the output tables alone."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from sim.config import load_config
from sim.ledger import BACKSTOP, INSURANCE_FUND, N_SYSTEM
from sim.metrics import run_metrics
from sim.model import MarketModel

ONE_HOLDER = """
seed = 1
steps = 40
step_seconds = 1.0
record_every = 1

[instruments.ETH]
tick = 0.01
lot = 0.01
initial_price = 3000.0
tiers = [{ floor = 0, mmr = 0.01, max_leverage = 20 }]
[instruments.ETH.price]
volatility = 0.0

[[shocks]]
step = 5
instrument = "ETH"
size = -0.12
duration = 20

[[populations]]
type = "market_maker"
count = 1
collateral = { USD = 2000000.0 }

[[accounts]]
name = "holder"
collateral = { USD = 3000.0 }
positions = { ETH = { qty = 10.0, entry = 3000.0 } }
"""


def run(tmp_path: Path, text: str, overrides: list[str]) -> dict[str, pl.DataFrame]:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    model = MarketModel(load_config(path, overrides))
    model.run()
    return model.recorder.tables()


def assert_conserved(tables: dict[str, pl.DataFrame]) -> None:
    """Sum of every account's equity (system accounts included) in accounts.parquet equals
    the deposits in ledger.parquet at every recorded step (USD-only collateral)."""
    totals = tables["accounts"].group_by("step").agg(pl.col("equity").sum()).join(tables["ledger"], on="step")
    assert (totals["equity"] - totals["deposits"]).abs().max() < 1e-6


def test_isolated_holder_is_liquidated_to_the_end_without_debt(tmp_path):
    """Case 1 end to end: isolated, USD 3,000, long 10 ETH at 3,000, one market maker,
    -12 % over 20 steps. The top-up borrowed after the first partial sale; the account's
    equity went negative with n_liquidatable 0."""
    tables = run(tmp_path, ONE_HOLDER, ["margin.mode=isolated"])
    accounts = tables["accounts"].filter(pl.col("account") >= N_SYSTEM)
    assert accounts["equity"].min() >= 0.0
    assert tables["liquidations"].height > 0
    assert tables["ledger"]["bad_debt"].max() == 0.0
    assert_conserved(tables)
    # the liquidation price venues show: 3,000 of margin on 10 ETH at 3,000, mmr 1 %
    holder = accounts.filter(pl.col("agent_type") == "account:holder")
    assert holder["liq_price_ETH"][0] == pytest.approx((30_000.0 - 3_000.0) / (10 * 0.99))
    assert holder.filter(pl.col("pos_ETH") == 0)["liq_price_ETH"].is_null().all()


def test_a_backstop_without_capital_cannot_hide_a_loss(tmp_path):
    """Case 2 end to end: a -99 % shock with fallback ["backstop"] and no backstop
    capital left the backstop at -516,007 with bad_debt 0. Now it takes nothing at a loss
    and the loss is visible where it is: the trader's negative equity."""
    tables = run(
        tmp_path,
        ONE_HOLDER,
        [
            "shocks.0.size=-0.99",
            "shocks.0.duration=1",
            "liquidation.fallback=['backstop']",
            "liquidation.insurance_fund=0",
            "steps=8",
        ],
    )
    accounts = tables["accounts"]
    backstop = accounts.filter(pl.col("account") == BACKSTOP)
    assert backstop["equity"].min() >= 0.0
    ledger = tables["ledger"]
    assert ledger["bad_debt"][-1] > 0 and ledger["system_loss"][-1] >= ledger["bad_debt"][-1]
    assert tables["unresolved"].height > 0  # and the record says why
    assert_conserved(tables)


def test_the_default_chain_takes_a_gap_without_adl(tmp_path):
    """A gap through the bankruptcy price into a thin book, with a funded insurance fund:
    the fund pays for the fills below the bankruptcy price, takes over what the book
    cannot absorb and sells it; nobody is deleveraged; every loss is in the ledger's and
    the run's accounts."""
    thin = "populations.0.params.order_notional=2000"  # 6,000 USD a side: less than the 21,000 to sell
    tables = run(tmp_path, ONE_HOLDER, ["shocks.0.size=-0.3", "shocks.0.duration=1", "steps=12", thin])
    liq = tables["liquidations"]
    assert "insurance_fund" in liq["kind"].to_list() and "adl" not in liq["kind"].to_list()
    fund = tables["accounts"].filter(pl.col("account") == INSURANCE_FUND)
    assert fund["equity"].min() >= 0.0
    ledger = tables["ledger"]
    assert ledger["takeover_notional"][-1] > 0 and ledger["adl_notional"][-1] == 0.0
    assert ledger["insurance_fund_pnl"][-1] < 0  # it took the gap's loss, visibly
    metrics = run_metrics(tables)
    assert metrics["system_loss"] == pytest.approx(-ledger["insurance_fund_pnl"][-1], abs=0.01)
    assert metrics["bad_debt"] == 0.0 and metrics["adl_notional"] == 0.0
    assert_conserved(tables)


def system_rows(tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    return tables["accounts"].filter(pl.col("account").is_in([INSURANCE_FUND, BACKSTOP]))


@pytest.mark.parametrize("chain", [["insurance_fund", "backstop", "adl"], ["insurance_fund"]])
def test_a_fund_that_loses_selling_its_takeover_is_never_below_zero_unseen(tmp_path, chain):
    """The fund takes the holder over early in a slide, sells it slowly, and the price
    keeps falling: its inventory loses more than it holds. Before, it simply went below
    zero. Now, at every recorded step, no system account's equity is below zero unless
    the chain ends there and ``unresolved`` says so."""
    overrides = [
        "populations.0.params.order_notional=2000",  # a thin book: the fund takes over
        "liquidation.insurance_fund=3000",
        "liquidation.backstop_capital=2000",
        "liquidation.unwind_half_life_seconds=600",
        f"liquidation.fallback={chain}",
        "shocks.0.size=-0.4",
    ]
    tables = run(tmp_path, ONE_HOLDER, overrides)
    liq, unresolved = tables["liquidations"], tables["unresolved"]
    assert "insurance_fund" in liq["kind"].to_list()
    below = system_rows(tables).filter(pl.col("equity") < -1e-6)
    deficits = unresolved.filter(pl.col("reason") == "system_deficit")
    if len(chain) > 1:
        assert below.height == 0 and deficits.height == 0
        assert liq.filter(pl.col("account") == INSURANCE_FUND).height > 0  # it passed its loss on
    else:
        assert below.height > 0 and set(below["account"]) == {INSURANCE_FUND}
        assert deficits["account"].to_list() == [INSURANCE_FUND]  # once, when it went under
        assert deficits["step"][0] <= below["step"].min()
    assert_conserved(tables)

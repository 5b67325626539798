"""Where the losses of liquidations landed: the loss waterfall's accounts per step.

Columns of the ``ledger`` table (USD; "cumulative" means since step 0):

- ``fund_draws``: cumulative USD the insurance fund paid: fills worse than the
  bankruptcy price and flat accounts' deficits (its takeovers' losses are in its PnL).
- ``fund_fees``: cumulative USD the fund received from liquidation fills.
- ``insurance_fund_equity``: its balance plus the unrealized PnL of what it holds.
- ``insurance_fund_pnl``: that equity minus what was deposited into it.
- ``backstop_equity`` / ``backstop_pnl``: the same for the backstop vault (its capital
  is its deposit).
- ``takeover_notional``: cumulative notional (size x price) the fund and backstop took over.
- ``adl_notional``: cumulative notional closed against traders by ADL.
- ``socialized``: cumulative USD of deficits charged to other traders' positions.
- ``system_loss``: the losses that landed beyond the liquidated traders at the step's
  end: bad debt (unpaid) + socialized + the fund's and the backstop's losses
  (``max(0, -pnl)`` each; the fund's PnL is net of the fees it earned).

Every one of them but the equities can be recomputed from the ``liquidations`` table
(``insurance_fund_delta``, ``kind``, ``qty``, ``price``, ``covered``, ``socialized``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from sim.ledger import BACKSTOP, INSURANCE_FUND, N_SYSTEM, USD, Ledger
from sim.margin import Health

LOSS_COLUMNS = (
    "fund_draws",
    "fund_fees",
    "insurance_fund_equity",
    "insurance_fund_pnl",
    "backstop_equity",
    "backstop_pnl",
    "takeover_notional",
    "adl_notional",
    "socialized",
    "system_loss",
)

#: Row kinds that are takeovers by a system account.
TAKEOVER_KINDS = ("insurance_fund", "backstop")


def cents(amount: float) -> float:
    """USD rounded to the cent (a 1e-9 residue of float arithmetic reads as 0)."""
    return round(amount, 2) + 0.0


class LossAccount:
    """Running totals of the liquidation rows, turned into `LOSS_COLUMNS` each step."""

    def __init__(self) -> None:
        self.fund_draws = 0.0
        self.fund_fees = 0.0
        self.takeover_notional = 0.0
        self.adl_notional = 0.0
        self.socialized = 0.0

    def add_rows(self, rows: Iterable) -> None:
        """Count new `sim.liquidation.LiquidationRow` s."""
        for row in rows:
            if row.fund_delta < 0:
                self.fund_draws -= row.fund_delta
            else:
                self.fund_fees += row.fund_delta
            if row.kind in TAKEOVER_KINDS:
                self.takeover_notional += row.qty * row.price
            elif row.kind == "adl":
                self.adl_notional += row.qty * row.price
            self.socialized += row.socialized

    def columns(self, health: Health, ledger: Ledger) -> tuple[float, ...]:
        """The `LOSS_COLUMNS` values now, from the end-of-step ``health`` of every account."""
        fund_equity = float(health.equity[INSURANCE_FUND])
        backstop_equity = float(health.equity[BACKSTOP])
        fund_pnl = fund_equity - float(ledger.deposited[INSURANCE_FUND, USD])
        backstop_pnl = backstop_equity - float(ledger.deposited[BACKSTOP, USD])
        bad_debt = float(np.maximum(-health.equity[N_SYSTEM:], 0.0).sum())
        system_loss = bad_debt + self.socialized + max(0.0, -fund_pnl) + max(0.0, -backstop_pnl)
        return (
            self.fund_draws,
            self.fund_fees,
            fund_equity,
            fund_pnl,
            backstop_equity,
            backstop_pnl,
            self.takeover_notional,
            self.adl_notional,
            self.socialized,
            cents(system_loss),
        )

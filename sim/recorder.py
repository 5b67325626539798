"""Columnar recording of a run into polars tables (written to parquet by `sim.run`).

Tables (columns, units: prices USD, sizes base units, money USD):

- ``market``: one row per step and instrument: step, instrument, time_seconds,
  exogenous_price (the reference path X), index_price (X moved by the venue's impact),
  impact_bps (log impact of the venue's flow on the index, basis points), mark_price,
  last_price, best_bid, best_ask, volume, open_interest, funding_rate (the current
  interval's rate estimate; at payment steps the rate actually paid), depth_bid_1pct,
  depth_ask_1pct (size resting within 1 % of mid), traders_flow, liquidation_flow,
  unwind_flow (the step's signed aggressive USD flow of each kind: traders' taker
  orders, liquidation fills, the backstop's selling; buys > 0).
- ``trades``: step, instrument, price, qty, buyer, seller, aggressor (buy/sell),
  liquidation.
- ``liquidations``: the liquidation engine's rows (see `sim.liquidation`).
- ``ledger``: one row per step: total_equity (traders), insurance_fund (its USD
  balance), fees_collected, deposits (USD), bad_debt (traders' negative equity, to the
  cent), n_liquidatable (after the liquidation phase), n_liquidated (this step), and
  the loss waterfall's accounts of `sim.losses` (cumulative or at the step's end).
- ``accounts``: every ``record_every`` steps, one row per account: equity,
  maint_margin, init_margin, margin_ratio, ``pos_<INSTRUMENT>`` positions and
  ``liq_price_<INSTRUMENT>``, the mark at which the account (isolated: the position)
  would reach its maintenance margin, all else fixed (null where flat or never;
  `sim.margin.liquidation_prices`). Kept in preallocated (snapshots, A) float64 buffers
  (`AccountSnapshots`): a snapshot is a few array copies, and the table costs about
  ``8 * (4 + 2 I)`` bytes per row plus step, account and agent type, ``steps //
  record_every + 1`` snapshots of every account (100,000 accounts x 3 instruments x 21
  snapshots: ~0.3 GB).
- ``unresolved``: accounts left liquidatable at the end of a step and why: step,
  account, agent_type, reason (``step_cap``, ``book_exhausted``, ``rounds_exhausted``).

Step 0 is the state before the first step. Rows are sorted by their key columns.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from sim.exchange import Exchange
from sim.funding import Funding
from sim.impact import FLOW_KINDS, VenueIndex
from sim.ledger import FEE_POOL, INSURANCE_FUND, N_SYSTEM, USD
from sim.liquidation import LiquidationEngine
from sim.losses import LOSS_COLUMNS, LossAccount, cents
from sim.margin import Health, liquidation_prices

MARKET_SCHEMA = {
    "step": pl.Int64,
    "instrument": pl.String,
    "time_seconds": pl.Float64,
    "exogenous_price": pl.Float64,
    "index_price": pl.Float64,
    "impact_bps": pl.Float64,
    "mark_price": pl.Float64,
    "last_price": pl.Float64,
    "best_bid": pl.Float64,
    "best_ask": pl.Float64,
    "volume": pl.Float64,
    "open_interest": pl.Float64,
    "funding_rate": pl.Float64,
    "depth_bid_1pct": pl.Float64,
    "depth_ask_1pct": pl.Float64,
    **{f"{kind}_flow": pl.Float64 for kind in FLOW_KINDS},
}
TRADES_SCHEMA = {
    "step": pl.Int64,
    "instrument": pl.String,
    "price": pl.Float64,
    "qty": pl.Float64,
    "buyer": pl.Int64,
    "seller": pl.Int64,
    "aggressor": pl.String,
    "liquidation": pl.Boolean,
}
#: The numpy types of `Recorder._drain_trades`' chunks, per column of `TRADES_SCHEMA`.
_TRADE_CHUNK_DTYPES = {
    "step": np.int64,
    "instrument": np.int64,
    "price": np.float64,
    "qty": np.float64,
    "buyer": np.int64,
    "seller": np.int64,
    "aggressor": np.bool_,
    "liquidation": np.bool_,
}
LEDGER_SCHEMA = {
    "step": pl.Int64,
    "total_equity": pl.Float64,
    "insurance_fund": pl.Float64,
    "fees_collected": pl.Float64,
    "deposits": pl.Float64,
    "bad_debt": pl.Float64,
    "n_liquidatable": pl.Int64,
    "n_liquidated": pl.Int64,
    **{column: pl.Float64 for column in LOSS_COLUMNS},
}


class Recorder:
    """Buffers one run's tables in memory, column by column."""

    def __init__(
        self,
        exchange: Exchange,
        engine: LiquidationEngine,
        funding: Funding,
        index: VenueIndex,
        agent_types: list[str],
        every: int,
        steps: int,
    ):
        self.exchange = exchange
        self.index = index
        self.engine = engine
        self.funding = funding
        self.agent_types = agent_types
        self.every = every
        self.names = [inst.name for inst in exchange.instruments]
        self._market: list[tuple] = []
        #: Per column of `TRADES_SCHEMA`, one (n,) array per step (instrument as its
        #: index, aggressor as "is a buy") until `tables` builds the frame.
        self._trades: dict[str, list[np.ndarray]] = {
            column: [np.empty(0, dtype)] for column, dtype in _TRADE_CHUNK_DTYPES.items()
        }
        self._ledger: list[tuple] = []
        self.accounts = AccountSnapshots(self.names, agent_types, steps // every + 1)
        self._rows_seen = 0
        self.losses = LossAccount()

    def record(self, step: int, health: Health) -> None:
        """Append this step's rows (``health`` is the end-of-step margin state)."""
        volume = self._drain_trades(step)
        ex = self.exchange
        rate = self.funding.rate_at(step) if self.funding.rules.interval else np.zeros(len(self.names))
        open_interest = np.abs(ex.ledger.positions).sum(axis=0) * ex.ledger.lot_sizes / 2
        exogenous = self.index.exogenous
        impact_bps = self.index.propagator.log_impact() * 1e4
        flows = [self.index.flows[kind] for kind in FLOW_KINDS]
        for m, (name, inst, book) in enumerate(zip(self.names, ex.instruments, ex.books, strict=True)):
            bid_lots, ask_lots = book.lots_within(pct=0.01)
            bid, ask = book.best_bid(), book.best_ask()
            self._market.append(
                (
                    step,
                    name,
                    ex.time,
                    float(exogenous[m]),
                    float(ex.index[m]),
                    float(impact_bps[m]),
                    float(ex.marks[m]),
                    float(ex.last_price[m]),
                    None if bid is None else inst.price(bid),
                    None if ask is None else inst.price(ask),
                    float(volume[m]),
                    float(open_interest[m]),
                    float(rate[m]),
                    inst.qty(bid_lots),
                    inst.qty(ask_lots),
                    *(float(flow[m]) for flow in flows),
                )
            )
        new_rows = self.engine.rows[self._rows_seen :]
        self._rows_seen = len(self.engine.rows)
        self.losses.add_rows(new_rows)
        traders = slice(N_SYSTEM, None)
        equity = health.equity[traders]
        self._ledger.append(
            (
                step,
                float(equity.sum()),
                float(ex.ledger.balances[INSURANCE_FUND, USD]),
                float(ex.ledger.balances[FEE_POOL, USD]),
                float(ex.ledger.deposits[USD]),
                cents(float(np.maximum(-equity, 0.0).sum())),
                int(health.account_liquidatable[traders].sum()),
                len({r.account for r in new_rows}),
                *self.losses.columns(health, ex.ledger),
            )
        )
        if step % self.every == 0:
            self.accounts.add(step, health, ex.ledger)

    def _drain_trades(self, step: int) -> np.ndarray:
        """Move the exchange's fills into the trades columns; return (I,) volume, base
        units (summed fill by fill, in order)."""
        ex = self.exchange
        fills = ex.fill_columns()
        ex.trades.clear()
        m = fills.instrument
        volume = np.zeros(len(self.names))
        np.add.at(volume, m, fills.qty)
        buy = fills.taker_side > 0
        chunk = {
            "step": np.full(m.size, step),
            "instrument": np.ascontiguousarray(m),  # not a view that keeps the step's whole fill table
            "price": fills.price,
            "qty": fills.qty,
            "buyer": np.where(buy, fills.taker_account, fills.maker_account),
            "seller": np.where(buy, fills.maker_account, fills.taker_account),
            "aggressor": buy,
            "liquidation": fills.liquidation,
        }
        for column, values in chunk.items():
            self._trades[column].append(values)
        return volume

    def _trades_frame(self) -> pl.DataFrame:
        """The trades table from the drained chunks, in execution order."""
        column = {name: np.concatenate(chunks) for name, chunks in self._trades.items()}
        column["instrument"] = np.array(self.names, dtype=object)[column["instrument"]]
        column["aggressor"] = np.where(column["aggressor"], "buy", "sell").astype(object)
        return pl.DataFrame(
            {name: pl.Series(name, values, dtype=TRADES_SCHEMA[name]) for name, values in column.items()}
        )

    # ------------------------------------------------------------------ tables
    def tables(self) -> dict[str, pl.DataFrame]:
        """All tables, sorted by their keys."""
        market = pl.DataFrame(self._market, schema=MARKET_SCHEMA, orient="row").with_columns(
            pl.col("last_price").fill_nan(None)
        )
        trades = self._trades_frame()
        ledger = pl.DataFrame(self._ledger, schema=LEDGER_SCHEMA, orient="row")
        return {
            "market": market.sort("step", "instrument", maintain_order=True),
            "trades": trades,  # already in execution order, which is the key
            "liquidations": liquidation_frame(self.engine, self.names, self.agent_types),
            "ledger": ledger.sort("step"),
            "accounts": self.accounts.frame(),  # recorded in (step, account) order
            "unresolved": pl.DataFrame(
                [
                    (step, account, self.agent_types[account], reason)
                    for step, account, reason in self.engine.unresolved
                ],
                schema={"step": pl.Int64, "account": pl.Int64, "agent_type": pl.String, "reason": pl.String},
                orient="row",
            ),
        }


class AccountSnapshots:
    """The ``accounts`` table as preallocated columns: one (snapshots, A) float64 buffer
    per value column, filled row by row (a snapshot copies A values per column).

    Args:
        names: The I instrument names (``pos_<NAME>``, ``liq_price_<NAME>`` columns).
        agent_types: (A,) every account's agent type.
        capacity: Snapshots to hold (a run records ``steps // record_every + 1``).
    """

    def __init__(self, names: list[str], agent_types: list[str], capacity: int):
        self.names = names
        self.agent_types = agent_types
        self.columns = [
            "equity",
            "maint_margin",
            "init_margin",
            "margin_ratio",
            *(f"pos_{name}" for name in names),
            *(f"liq_price_{name}" for name in names),
        ]
        self._values = np.empty((len(self.columns), capacity, len(agent_types)))
        self._steps = np.empty(capacity, dtype=np.int64)
        self._count = 0

    def add(self, step: int, health: Health, ledger) -> None:
        """Snapshot every account at ``step`` from its margin state ``health``."""
        k, n_inst = self._count, len(self.names)
        if k == self._steps.size:
            raise ValueError(f"accounts: more than {k} snapshots recorded (capacity of the buffers)")
        row = self._values[:, k]
        row[0], row[1], row[2], row[3] = health.equity, health.maint, health.init, health.margin_ratio
        np.multiply(ledger.positions, ledger.lot_sizes, out=row[4 : 4 + n_inst].T)
        row[4 + n_inst :] = liquidation_prices(health).T
        self._steps[k] = step
        self._count += 1

    def frame(self) -> pl.DataFrame:
        """The snapshots so far as the ``accounts`` table, sorted by (step, account)."""
        k, n = self._count, len(self.agent_types)
        accounts = np.tile(np.arange(n, dtype=np.int64), k)
        return pl.DataFrame(
            {
                "step": np.repeat(self._steps[:k], n),
                "account": accounts,
                "agent_type": pl.Series(self.agent_types, dtype=pl.String).gather(accounts),
                **{column: self._values[c, :k].ravel() for c, column in enumerate(self.columns)},
            }
        ).with_columns(pl.selectors.starts_with("liq_price_").fill_nan(None))


LIQUIDATION_SCHEMA = {
    "row_id": pl.Int64,
    "step": pl.Int64,
    "round": pl.Int64,
    "account": pl.Int64,
    "agent_type": pl.String,
    "instrument": pl.String,
    "side": pl.String,
    "qty": pl.Float64,
    "price": pl.Float64,
    "mark_price": pl.Float64,
    "bankruptcy_price": pl.Float64,
    "notional": pl.Float64,
    "kind": pl.String,
    "insurance_fund_delta": pl.Float64,
    "counterparty": pl.Int64,
    "cascade_id": pl.Int64,
    "trigger": pl.Int64,
    "covered": pl.Float64,
    "socialized": pl.Float64,
}


def liquidation_frame(engine: LiquidationEngine, names: list[str], agent_types: list[str]) -> pl.DataFrame:
    """The engine's rows as the ``liquidations`` table."""
    rows = [
        (
            r.row_id,
            r.step,
            r.round,
            r.account,
            agent_types[r.account],
            None if r.instrument is None else names[r.instrument],
            "buy" if r.side > 0 else "sell",
            r.qty,
            r.price,
            r.mark_price,
            r.bankruptcy_price,
            r.qty * r.price,
            r.kind,
            r.fund_delta,
            r.counterparty,
            r.cascade_id,
            r.trigger,
            r.covered,
            r.socialized,
        )
        for r in engine.rows
    ]
    return pl.DataFrame(rows, schema=LIQUIDATION_SCHEMA, orient="row")

"""The exchange: order admission, routing to the books, settlement of fills, fees.

The books match; the ledger holds balances; this module is where the two meet. It is,
with the liquidation engine, the only code that mutates the ledger (after dYdX v4,
where the matching engine asks the subaccounts module to write balances).

Conventions (documented choices where MARGIN-SPEC is silent):

- Sizes are base units and prices USD at this boundary; they are converted to integer
  lots and ticks, and an order off the grid, non-positive or NaN is rejected.
- Pre-trade check: the order is counted as an open order at its worst case (its full
  size) *and* as filled at its worst price (the limit, or for a market order the
  deepest level it would reach) with the taker fee paid; it is accepted only if
  ``init_health >= 0`` then. Counting both is conservative: it covers the account
  while the order rests and after it fills.
- Reduce-only orders skip the margin check. They must be MARKET or IOC (a resting
  reduce-only order could become position-increasing later, so it is rejected with
  ``REDUCE_ONLY_MUST_NOT_REST``). One that would increase or open a position is rejected;
  one larger than the position is *clipped* to the position's size (``SubmitResult.clipped``).
- Self-trade prevention cancels the resting order (see `sim.book`).
- Fees: taker and maker rates on the fill notional, paid from the position's pocket
  to the fee pool; a negative maker rate is a rebate paid by the fee pool. A
  liquidation order pays no taker fee: the insurance-fund fee replaces it
  (MARGIN-SPEC E1b charges only that); its makers get no rebate, which would otherwise
  be paid out of a pool the fill put nothing into.
- Isolated mode: after each fill, a position whose equity is below its initial margin
  is topped up from the account's USD balance as far as that balance is positive; a
  closed position's margin is returned.
- Price band (Binance's PERCENT_PRICE filter: BTCUSDT orders within 0.95-1.05 of the
  mark): with ``price_band = b`` an order that could trade beyond the band (a buy priced
  above ``mark * (1 + b)``, a sell below ``mark * (1 - b)``) is rejected
  (``OUTSIDE_PRICE_BAND``; a deep passive order may rest, it can only trade at its own
  price, inside the band of a later mark), a market order becomes an IOC
  limited at the band's edge, and a liquidation order's limit is clipped to the edge
  (what does not fill there goes to the fallback chain). A book that empties therefore
  cannot print trades far from the mark.
- Order ids encode the instrument: ``order_id % n_instruments``.
- Batches: `Exchange.submit_batch` (sizes and prices) and `Exchange.submit_batch_lots`
  (lots and ticks) take arrays of orders and cancels of many accounts and give the
  results of one `submit` / `cancel` per row in that order, or of one `submit_many` for
  a group of rows (see its docstring for how each order's margin check sees the batch's
  earlier orders). Admission runs over the rows in compiled passes (`sim.batch_rows`,
  the same rules as `_admit`, which single orders keep). All instruments' books live in
  one compiled `sim.book.BookSet`, so a batch crosses instruments in arrival order in
  one call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sim.batch_rows import BAD_KIND, BAD_SIDE, SPLIT_GROUP, read_rows, screen_rows
from sim.book import BOOK_REJECTS, KIND_CANCEL, KIND_CODES, BatchState, BatchWatch, BookSet
from sim.book_kernels import (
    OUT_ACCOUNT,
    OUT_FILL,
    OUT_ID,
    OUT_KIND,
    OUT_LOTS,
    OUT_PRICE,
    OUT_SIDE,
    OUT_STP,
    OUT_TAKER,
    fill_table,
)
from sim.instruments import CollateralAsset, Instrument, on_grid_many
from sim.ledger import USD, Ledger
from sim.margin import HEALTH_BY_MODE, Health, MarginRules, MarketPrices, TierTable, mixed_health
from sim.margin_check import pre_trade_init_health
from sim.marks import IndexMark, MarkRule
from sim.types import (
    CancelledOrder,
    Fill,
    FillColumns,
    FillLog,
    OrderRequest,
    OrderType,
    RejectReason,
    Side,
    SubmitResult,
)

#: Slack on ``init_health >= 0`` for float rounding, USD.
MARGIN_TOLERANCE = 1e-9
#: How far short of an order's check health its budget for maker-fill costs stops
#: (`Exchange._maker_fill_costs`), USD: more than float rounding of the check's sums and
#: of the settlement of its fills (~1e-16 of magnitudes up to ~1e12 USD), so an order
#: that is not re-checked would have passed one.
_BUDGET_ROUNDING = 1e-3

#: Reject codes of `BatchResult.reject`: index 0 is "accepted", then every `RejectReason`.
EXCHANGE_REJECTS: tuple[RejectReason | None, ...] = (None, *RejectReason)
_REJECT_CODE = {reason: code for code, reason in enumerate(EXCHANGE_REJECTS)}
#: The checks without state, in `sim.batch_rows.read_rows`'s order.
_GRID_REASONS = (
    RejectReason.UNKNOWN_ACCOUNT,
    RejectReason.UNKNOWN_INSTRUMENT,
    RejectReason.BAD_QUANTITY,
    RejectReason.OFF_LOT,
    RejectReason.BAD_PRICE,
    RejectReason.OFF_TICK,
)
#: Per reject code: True for rejects that do not depend on account state (an order
#: refused for one of them stays refused).
_STATELESS = np.array(
    [
        reason in {*_GRID_REASONS, RejectReason.REDUCE_ONLY_MUST_NOT_REST, RejectReason.OUTSIDE_PRICE_BAND}
        for reason in EXCHANGE_REJECTS
    ]
)
_LIMIT, _MARKET, _IOC, _POST_ONLY = (KIND_CODES[kind] for kind in OrderType)


def _codes(*reasons: RejectReason) -> np.ndarray:
    """The `EXCHANGE_REJECTS` codes of ``reasons``, in order (for the compiled passes)."""
    return np.array([_REJECT_CODE[reason] for reason in reasons], np.int64)


_GRID_CODES = _codes(*_GRID_REASONS)
_NO_ROWS, _NO_FLAGS = np.zeros(0, np.int64), np.zeros(0, bool)
#: `sim.batch_rows.screen_rows`'s kind codes and reject codes.
_SCREEN_KINDS = np.array([_LIMIT, _POST_ONLY, _MARKET, _IOC], np.int64)
_SCREEN_CODES = _codes(
    RejectReason.REDUCE_ONLY_MUST_NOT_REST, RejectReason.REDUCE_ONLY_WOULD_INCREASE, RejectReason.OUTSIDE_PRICE_BAND
)


@dataclass(frozen=True)
class FeeSchedule:
    """Trading fees as fractions of fill notional; a negative maker fee is a rebate."""

    taker: float = 0.0005
    maker: float = 0.0002

    def __post_init__(self) -> None:
        if self.taker < 0 or self.taker + self.maker < 0:
            raise ValueError(f"fees: taker must be >= 0 and cover the maker rebate, got {self}")


class Exchange:
    """Books, ledger and margin rules for one simulated venue.

    Args:
        instruments: The I perpetuals traded.
        collateral: The S collateral assets; the first must be USD.
        n_traders: Trader accounts, created after the system rows.
        fees: Trading fees.
        mode: Every account's margin mode at the start, a key of
            `sim.margin.HEALTH_BY_MODE` (`set_margin_mode` changes one account's).
        initial_prices: (I,) starting index and mark prices, USD.
        mark_rule: How marks follow index and book, see `sim.marks`.
        price_band: Orders must be priced within this fraction of the mark (0 = no
            band; see the module docstring).
    """

    def __init__(
        self,
        instruments: Sequence[Instrument],
        collateral: Sequence[CollateralAsset],
        n_traders: int,
        initial_prices: Sequence[float],
        fees: FeeSchedule | None = None,
        mode: str = "cross",
        mark_rule: MarkRule | None = None,
        price_band: float = 0.0,
    ):
        if mode not in HEALTH_BY_MODE:
            raise ValueError(f"margin mode must be one of {sorted(HEALTH_BY_MODE)}, got {mode!r}")
        self.instruments = tuple(instruments)
        self.collateral = tuple(collateral)
        self.fees = fees or FeeSchedule()
        self.price_band = price_band
        self.mode = mode
        self.mark_rule = mark_rule if mark_rule is not None else IndexMark(len(instruments))
        assets = [c.name for c in self.collateral]
        self.ledger = Ledger(n_traders, self.instruments, assets, isolated=mode == "isolated")
        #: The books of all instruments share one compiled `BookSet`; ``books[m]`` is instrument m's.
        self.book_set = BookSet(len(self.instruments))
        self.books = [self.book_set.book(m) for m in range(len(self.instruments))]
        self._tick_sizes = np.array([inst.tick_size for inst in self.instruments])
        self._lot_sizes = np.array([inst.lot_size for inst in self.instruments])
        self.rules = MarginRules(
            tiers=TierTable.from_tiers([inst.tiers for inst in self.instruments]),
            weights=np.array([c.weight for c in self.collateral]),
            liability_weights=np.array([c.liability_weight for c in self.collateral]),
            liability_mmr=np.array([c.liability_mmr for c in self.collateral]),
        )
        #: (S,) the instrument whose index prices each collateral asset; -1 for USD.
        self.asset_instrument = self._asset_price_sources(assets)
        n_inst = len(self.instruments)
        self.cum_funding = np.zeros(n_inst)
        self.last_price = np.full(n_inst, np.nan)
        #: Simulated time (seconds) and (I,) time of each instrument's last trade.
        self.time = 0.0
        self.last_trade_time = np.full(n_inst, -np.inf)
        self.index = np.zeros(n_inst)
        self.marks = np.zeros(n_inst)
        self.asset_prices = np.ones(len(assets))
        self.set_prices(initial_prices, initial_prices)
        self.trades = FillLog()
        self._next_order = 0
        #: Orders sent to the books and resting orders cancelled, for throughput figures.
        self.n_cancels = 0

    @property
    def n_orders(self) -> int:
        """Orders admitted and sent to the books so far."""
        return self._next_order

    def _asset_price_sources(self, assets: list[str]) -> np.ndarray:
        """(S,) instrument whose index prices each asset; -1 for USD."""
        by_asset = {inst.asset: m for m, inst in enumerate(self.instruments)}
        sources = []
        for name in assets:
            if name == "USD":
                sources.append(-1)
            elif name in by_asset:
                sources.append(by_asset[name])
            else:
                raise ValueError(
                    f"collateral {name}: no instrument prices it (an instrument's base_asset must be {name})"
                )
        return np.array(sources)

    # ----------------------------------------------------------------- prices
    def set_prices(self, index: Sequence[float], marks: Sequence[float]) -> None:
        """Set (I,) index and mark prices; collateral is valued at the index."""
        self.index[:] = index
        self.marks[:] = marks
        self.asset_prices[:] = self.asset_prices_at(self.index)

    def asset_prices_at(self, index: np.ndarray) -> np.ndarray:
        """(S,) collateral prices implied by (I,) index prices (USD = 1)."""
        prices = np.ones(len(self.asset_instrument))
        priced = self.asset_instrument >= 0
        prices[priced] = index[self.asset_instrument[priced]]
        return prices

    def set_index(self, index: Sequence[float]) -> None:
        """Move the (I,) index prices and recompute the marks from the mark rule."""
        self.set_prices(index, self.marks)
        self.update_marks()

    def update_marks(self) -> None:
        """Recompute the marks from the current index and last trades."""
        self.marks[:] = self.marks_at(self.index)

    def marks_at(self, index: np.ndarray) -> np.ndarray:
        """(I,) marks the mark rule gives at (I,) index prices, with the current book and
        last trades (for counterfactual indices too)."""
        return self.mark_rule(index, self.last_price, self.time - self.last_trade_time)

    def accrue_funding(self, per_unit: np.ndarray) -> None:
        """A funding payment: (I,) USD per unit of position that longs pay shorts. It moves
        the cumulative index; the ledger settles each position when it is next touched."""
        self.cum_funding += per_unit

    def prices(self) -> MarketPrices:
        return MarketPrices(self.marks, self.asset_prices, self.cum_funding)

    def prices_key(self) -> bytes:
        """A key that changes whenever the prices a margin state depends on do (marks,
        cumulative funding, collateral prices), for caches of what they price."""
        return self.marks.tobytes() + self.cum_funding.tobytes() + self.asset_prices.tobytes()

    def state_of(self, rows) -> tuple:
        """A key that changes whenever the margin state of ledger ``rows`` (an int or an
        index array) can: their `sim.ledger.Ledger.row_version` and `prices_key`, for
        caches of margin states."""
        versions = self.ledger.row_version[rows]
        return (int(versions) if np.ndim(versions) == 0 else versions.tobytes(), self.prices_key())

    def fill_columns(self) -> FillColumns:
        """The fills logged since `trades` was last cleared, as columns in USD and base
        units."""
        return self.trades.columns(self._tick_sizes, self._lot_sizes)

    # ----------------------------------------------------------------- health
    def health(self) -> Health:
        """Margin state of every account, (A,) and (A, I) arrays."""
        return mixed_health(self.ledger.portfolio(), self.prices(), self.rules, self.ledger.isolated)

    def health_at(self, marks: np.ndarray, asset_prices: np.ndarray, rows: np.ndarray) -> Health:
        """Margin state of some accounts at hypothetical prices (for counterfactuals)."""
        prices = MarketPrices(marks, asset_prices, self.cum_funding)
        return mixed_health(self.ledger.portfolio(rows), prices, self.rules, self.ledger.isolated[rows])

    def account_health(self, account: int) -> Health:
        """Margin state of one account, as one-row arrays."""
        rows = slice(account, account + 1)
        return mixed_health(self.ledger.portfolio(rows), self.prices(), self.rules, self.ledger.isolated[rows])

    # ---------------------------------------------------------------- deposits
    def deposit(self, account: int, amount: float) -> None:
        """A trader adds USD from outside the venue (a top-up from its own wallet)."""
        if not (math.isfinite(amount) and amount > 0):
            raise ValueError(f"deposit must be a positive amount of USD, got {amount}")
        self.ledger.deposit(account, USD, amount)

    # ------------------------------------------------------------- margin mode
    def set_margin_mode(self, account: int, mode: str) -> RejectReason | None:
        """Put an account in ``cross`` or ``isolated`` margin mode. As on venues, only
        while it holds no position and no open order (``MODE_CHANGE_NOT_FLAT``)."""
        if mode not in HEALTH_BY_MODE:
            raise ValueError(f"margin mode must be one of {sorted(HEALTH_BY_MODE)}, got {mode!r}")
        ledger = self.ledger
        if not 0 <= account < ledger.n_accounts:
            return RejectReason.UNKNOWN_ACCOUNT
        if ledger.positions[account].any() or ledger.open_bids[account].any() or ledger.open_asks[account].any():
            return RejectReason.MODE_CHANGE_NOT_FLAT
        ledger.set_isolated(account, mode == "isolated")
        return None

    def add_margin(self, account: int, instrument: int, amount: float) -> RejectReason | None:
        """Move ``amount`` USD from an isolated account's balance into one position's
        margin (venues' "add margin"), which lowers its liquidation price. Rejected (a
        value) for a cross account or a flat position (``NOT_ISOLATED``), a bad amount
        (``BAD_QUANTITY``) or more than the USD balance (``INSUFFICIENT_BALANCE``)."""
        ledger = self.ledger
        if not 0 <= account < ledger.n_accounts:
            return RejectReason.UNKNOWN_ACCOUNT
        if not 0 <= instrument < len(self.instruments):
            return RejectReason.UNKNOWN_INSTRUMENT
        if not ledger.isolated[account] or not ledger.positions[account, instrument]:
            return RejectReason.NOT_ISOLATED
        if not (isinstance(amount, int | float) and math.isfinite(amount) and amount > 0):
            return RejectReason.BAD_QUANTITY
        if amount > ledger.balances[account, USD]:
            return RejectReason.INSUFFICIENT_BALANCE
        ledger.allocate_isolated(account, instrument, amount)
        return None

    # ----------------------------------------------------------------- orders
    def submit(
        self,
        account: int,
        instrument: int,
        side: Side,
        qty: float,
        price: float | None = None,
        kind: OrderType = OrderType.LIMIT,
        reduce_only: bool = False,
        liquidation: bool = False,
    ) -> SubmitResult:
        """Admit, match and settle one order.

        Args:
            account: Ledger row of the sender.
            instrument: Index of the instrument.
            side: BUY or SELL.
            qty: Size in base units (a multiple of the lot size).
            price: Limit price in USD (a multiple of the tick); ignored for MARKET.
            kind: LIMIT, MARKET, IOC or POST_ONLY.
            reduce_only: Only shrink the position (see the module docstring).
            liquidation: Marks the fills as liquidation trades (set by the liquidation
                engine, which also skips the margin check this way).

        Returns:
            The result; a refused order has ``reject`` set and changed nothing.
        """
        request = OrderRequest(instrument, side, qty, price, kind, reduce_only)
        return self._submit(account, [request], liquidation)[0]

    def submit_many(self, account: int, requests: Sequence[OrderRequest]) -> list[SubmitResult]:
        """Admit several orders of one account with *one* margin check, then route them.

        The check counts all of them as open and filled at once (as `submit` does for
        one); if it fails, every order that needed it is rejected. A market maker's
        quotes go in this way: one check instead of one per quote.
        """
        return self._submit(account, requests, False)

    def _submit(self, account: int, requests: Sequence[OrderRequest], liquidation: bool) -> list[SubmitResult]:
        results, admitted = [], []
        for request in requests:
            result = SubmitResult(-1)
            result.reject, lots, ticks, kind, result.clipped = self._admit(account, request, liquidation)
            results.append(result)
            if result.reject is None:
                admitted.append((result, request, lots, ticks, kind))
        checked = [a for a in admitted if not (a[1].reduce_only or liquidation)]
        if checked:
            columns = [(r.instrument, r.side, lots, -1 if ticks is None else ticks) for _, r, lots, ticks, _ in checked]
            instruments, sides, lots, ticks = (np.array(c, np.int64) for c in zip(*columns, strict=True))
            market = np.array([kind is OrderType.MARKET for *_, kind in checked])
            together = np.zeros(len(checked), np.int64)
            health = self._pre_trade_health(np.full(1, account), instruments, sides, lots, ticks, market, together)
            if health[0] < -MARGIN_TOLERANCE:
                for result, *_ in checked:
                    result.reject = RejectReason.INSUFFICIENT_MARGIN
        for result, request, lots, ticks, kind in admitted:
            if result.reject is None:
                self._route(account, request.instrument, request.side, lots, ticks, kind, liquidation, result)
        return results

    def _admit(
        self, account: int, request: OrderRequest, liquidation: bool
    ) -> tuple[RejectReason | None, int, int | None, OrderType, int]:
        """``(reject, lots, ticks, kind, clipped_lots)`` of an order before its margin check:
        ids and grid, reduce-only clipping, price band (module docstring)."""
        reject, lots, ticks = self._validate(account, request.instrument, request.qty, request.price, request.kind)
        kind, clipped = request.kind, 0
        if reject is None and request.reduce_only:
            reject, lots, clipped = self._clip_reduce_only(account, request.instrument, request.side, lots, kind)
        if reject is None and self.price_band:
            reject, ticks, kind = self._within_band(request.instrument, request.side, ticks, kind, liquidation)
        return reject, lots, ticks, kind, clipped

    def submit_batch(
        self,
        accounts: Sequence[int] | np.ndarray,
        instruments: Sequence[int] | np.ndarray,
        sides: Sequence[int] | np.ndarray,
        qtys: Sequence[float] | np.ndarray,
        prices: Sequence[float] | np.ndarray,
        kinds: Sequence[int] | np.ndarray,
        reduce_only: Sequence[bool] | np.ndarray | None = None,
        cancel_ids: Sequence[int] | np.ndarray | None = None,
        groups: Sequence[int] | np.ndarray | None = None,
        liquidation: bool = False,
    ) -> BatchResult:
        """Admit, match and settle n orders and cancels in arrival order, with the results
        of n calls of `submit` (and `cancel`) in that order.

        Args:
            accounts: (n,) ledger rows of the senders.
            instruments: (n,) instrument indices.
            sides: (n,) +1 buy, -1 sell.
            qtys: (n,) sizes in base units (multiples of the lot size).
            prices: (n,) limit prices in USD (multiples of the tick; NaN: none); ignored
                for market orders.
            kinds: (n,) `sim.book.KIND_CODES` of each `OrderType`, or `sim.book.KIND_CANCEL`
                for a cancel of the resting order ``cancel_ids[i]`` (as `cancel`; the
                row's other fields are ignored).
            reduce_only: (n,) bool (default all False); see the module docstring.
            cancel_ids: (n,) order ids, read where ``kinds`` is KIND_CANCEL.
            groups: (n,) int64, default all -1. Consecutive orders (not cancels) of one
                account with the same value >= 0 go in as one `submit_many` call: all
                admitted against the state before the first of them, under one margin
                check. -1: the order is alone.
            liquidation: Every order of the batch is a liquidation order (as in `submit`).

        Sizes and prices are converted to lots and ticks as `submit` converts them (an
        order off the grid, non-positive or NaN is rejected); `submit_batch_lots` takes
        lots and ticks as they are.

        Margin checks and reduce-only clipping are *sequential-equivalent*: each order is
        checked against the state the batch's earlier orders left, as in a loop of
        `submit` calls. All orders are first checked against the state at the start; the
        compiled books then execute them in order and stop before an order that has gone
        stale since its check: its account was touched by an earlier order of the batch
        (as taker, resting order, maker or self-trade; a cancel of one of its orders
        counts only for an order its check refused, as open orders count at their worst
        case and a cancel can only raise the margin), or, for a checked market order (its
        check walks the book), its sweep of the book now ends at another price. A fill
        as maker of a cross account is not a touch of an order its check accepted but a
        cost: the order is stale only once such fills may have cost more than the health
        its check left (`_maker_fill_costs` gives the bound). The
        fills so far are settled, that order alone is re-checked against the state now,
        and execution resumes. A group's orders are checked at the start too, together;
        only its first order is watched, and the whole group is re-admitted at its turn
        when that order is stale, or in any case when the group's check walked the book
        (a market order) or refused it while its first order is active (a cancel could
        reverse that). Order ids are assigned in execution order, as `submit`
        assigns them. Results are those of the loop (a property test compares them to
        the bit), up to float rounding of the margin sums exactly at the limit.
        Cost: admission (grid, reduce-only, band, margin) is a few compiled passes over
        the batch (`sim.batch_rows`, `sim.margin_check`), plus a stop of the
        books and one margin check per stale order or group: a cancel-and-replace, or a
        maker's quotes after its old ones filled within its margin, cost no re-check,
        but an account that rests two orders in one batch pays a loop's check for the
        second.

        Settlement: the fills of each stretch are settled in one compiled pass
        (`sim.ledger.Ledger.settle_fills`), in execution order; with an isolated-mode
        party in a stretch, order by order, so each isolated top-up sees the open orders
        a loop would.

        Returns:
            The outcome per order and the fills, as arrays (`BatchResult`).
        """
        batch = _Batch.from_floats(
            self, accounts, instruments, sides, qtys, prices, kinds, reduce_only, cancel_ids, groups
        )
        return self._execute(batch, liquidation)

    def submit_batch_lots(
        self,
        accounts: Sequence[int] | np.ndarray,
        instruments: Sequence[int] | np.ndarray,
        sides: Sequence[int] | np.ndarray,
        lots: Sequence[int] | np.ndarray,
        ticks: Sequence[int] | np.ndarray,
        kinds: Sequence[int] | np.ndarray,
        reduce_only: Sequence[bool] | np.ndarray | None = None,
        cancel_ids: Sequence[int] | np.ndarray | None = None,
        groups: Sequence[int] | np.ndarray | None = None,
        liquidation: bool = False,
    ) -> BatchResult:
        """`submit_batch` with sizes and prices already on the grid: (n,) int64 ``lots``
        (size / lot size; <= 0 is rejected ``BAD_QUANTITY``) and ``ticks`` (limit price /
        tick size; <= 0 is rejected ``BAD_PRICE``, ignored for market orders). The other
        arguments and the results are `submit_batch`'s; no float passes through."""
        batch = _Batch.from_lots(
            self, accounts, instruments, sides, lots, ticks, kinds, reduce_only, cancel_ids, groups
        )
        return self._execute(batch, liquidation)

    def _execute(self, batch: _Batch, liquidation: bool) -> BatchResult:
        """Admit and run a batch (`submit_batch`)."""
        batch.admit(self, np.arange(batch.n), liquidation, as_of=0)
        state, start, n_events = None, 0, 0
        numbering = np.array([self._next_order, len(self.instruments)], np.int64)
        while True:
            state = self.book_set.execute(
                batch.books,
                batch.ids,
                batch.book_accounts,
                batch.sides,
                batch.lots,
                batch.ticks,
                batch.kinds,
                batch.active,
                batch.watch,
                start,
                state,
                numbering,
            )
            stop = state.stopped
            self._next_order = int(numbering[0])
            self._settle_stretch(batch, state, start, stop, n_events, liquidation)
            n_events = state.n_out
            if stop == batch.n:
                break
            batch.admit(self, np.arange(stop, batch.end[stop]), liquidation, as_of=stop)
            start = stop
        self._log_batch(batch, state.events(), liquidation)
        return batch.result(state)

    def _admit_many(
        self,
        accounts: np.ndarray,
        instruments: np.ndarray,
        sides: np.ndarray,
        lots: np.ndarray,
        ticks: np.ndarray,
        kinds: np.ndarray,
        reduce_only: np.ndarray,
        reject: np.ndarray,
        liquidation: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """`_admit` of K orders at once, after their ids and grid were checked:
        reduce-only clipping and the price band against the state now.

        Args:
            accounts, instruments: (K,) int64, valid indices on every row.
            sides: (K,) +1 / -1.
            lots, ticks: (K,) int64 sizes and limits on the grid (ticks -1: none).
            kinds: (K,) `sim.book.KIND_CODES`.
            reduce_only: (K,) bool.
            reject: (K,) reject codes (`EXCHANGE_REJECTS`) of the id and grid checks.

        Returns:
            ``(reject, lots, ticks, kinds, clipped)``, (K,) each, as `_admit` gives them
            order by order (codes for reasons, -1 for no ticks).
        """
        return screen_rows(
            accounts, instruments, sides, lots, ticks, kinds, reduce_only, reject, self.ledger.positions,
            self.marks, self._tick_sizes, float(self.price_band or 0.0), liquidation, _SCREEN_KINDS, _SCREEN_CODES,
        )  # fmt: skip

    def _settle_stretch(
        self, batch: _Batch, state: BatchState, start: int, stop: int, first_event: int, liquidation: bool
    ) -> None:
        """Write what orders ``start..stop-1`` of a batch did into the ledger."""
        events = state.out[first_event : state.n_out]
        takers = events[:, OUT_TAKER]
        rested = np.flatnonzero(state.rested[start:stop]) + start
        isolated = self.ledger.isolated
        parties = (events[:, OUT_ACCOUNT], batch.book_accounts[takers], batch.book_accounts[rested])
        if not (isolated.any() and isolated[np.concatenate(parties)].any()):
            self._apply_events(batch, events, rested, state.rested, liquidation)
            return
        for k in range(start, stop):  # order by order: isolated top-ups see the open orders of a loop
            mine = takers == k
            if mine.any() or state.rested[k]:
                self._apply_events(batch, events[mine], rested[rested == k], state.rested, liquidation)

    def _apply_events(
        self, batch: _Batch, events: np.ndarray, rested: np.ndarray, rested_lots: np.ndarray, liquidation: bool
    ) -> None:
        """Settle batch events (rows of `sim.book_kernels` ``OUT_*``) and reserve the lots
        that orders ``rested`` left on the book, as `_route` does for one order: resting
        orders taken off first, then fills, then the rests. The trade log is written once
        the batch is done (`_log_batch`)."""
        ledger = self.ledger
        takers = events[:, OUT_TAKER]
        gone = events[:, OUT_KIND] != OUT_FILL
        books = batch.books[takers]
        taken_off = np.where(gone, -events[:, OUT_LOTS], 0)
        ledger.count_open_many(events[:, OUT_ACCOUNT], books, events[:, OUT_SIDE], taken_off)
        if not gone.all():
            fill, filled = events[~gone], takers[~gone]
            self._settle_columns(
                books[~gone], batch.book_accounts[filled], fill[:, OUT_ACCOUNT], batch.sides[filled],
                fill[:, OUT_PRICE], fill[:, OUT_LOTS], np.full(len(filled), int(liquidation)),
            )  # fmt: skip
        ledger.count_open_many(
            batch.book_accounts[rested], batch.books[rested], batch.sides[rested], rested_lots[rested]
        )

    def _log_batch(self, batch: _Batch, events: np.ndarray, liquidation: bool) -> None:
        """Write a finished batch's fills (its ``events``, `sim.book_kernels` ``OUT_*``
        rows in execution order) into the trade log and the batch's own, and count its
        cancels."""
        fills, n_cancels = fill_table(
            events, batch.books, batch.ids, batch.book_accounts, batch.sides, int(liquidation)
        )
        self.n_cancels += n_cancels
        self.trades.add_table(fills)
        batch.fills.add_table(fills)

    def _within_band(
        self, instrument: int, side: Side, ticks: int | None, kind: OrderType, liquidation: bool
    ) -> tuple[RejectReason | None, int | None, OrderType]:
        """``(reject, ticks, kind)`` after the price band (module docstring)."""
        inst = self.instruments[instrument]
        mark = float(self.marks[instrument])
        if side > 0:
            edge = math.floor(mark * (1.0 + self.price_band) / inst.tick_size + 1e-9)
            beyond = ticks is not None and ticks > edge
        else:
            edge = max(1, math.ceil(mark * (1.0 - self.price_band) / inst.tick_size - 1e-9))
            beyond = ticks is not None and ticks < edge
        if kind is OrderType.MARKET:
            return None, edge, OrderType.IOC
        if beyond:
            return (None, edge, kind) if liquidation else (RejectReason.OUTSIDE_PRICE_BAND, ticks, kind)
        return None, ticks, kind

    def _route(
        self,
        account: int,
        instrument: int,
        side: Side,
        lots: int,
        ticks: int | None,
        kind: OrderType,
        liquidation: bool,
        result: SubmitResult,
    ) -> None:
        """Send an admitted order to its book and settle what it did."""
        order_id = result.order_id = self._next_order * len(self.instruments) + instrument
        self._next_order += 1
        fills, rested, cancelled, stp, reject = self.books[instrument].submit(
            order_id, account, int(side), lots, ticks, kind
        )
        if reject is not None:
            result.reject = reject
            return
        for maker_id, maker_account, stp_side, stp_price, stp_lots in stp:
            self._release_open(maker_account, instrument, stp_side, stp_lots)
            result.self_trade_cancels.append(
                CancelledOrder(instrument, maker_id, maker_account, Side(stp_side), stp_price, stp_lots)
            )
        result.fills = [
            Fill(instrument, order_id, maker_id, account, maker_account, side, fill_ticks, fill_lots, liquidation)
            for maker_id, maker_account, fill_ticks, fill_lots in fills
        ]
        if result.fills:
            self._settle(result.fills)
        if rested:
            self._reserve_open(account, instrument, int(side), rested)
        result.rested, result.cancelled = rested, cancelled

    def cancel(self, order_id: int) -> CancelledOrder | None:
        """Cancel a resting order; None if it is not resting."""
        instrument = order_id % len(self.instruments)
        gone = self.books[instrument].cancel(order_id)
        if gone is None:
            return None
        _, account, side, price, lots = gone
        self.n_cancels += 1
        self._release_open(account, instrument, side, lots)
        return CancelledOrder(instrument, order_id, account, Side(side), price, lots)

    def cancel_all(self, account: int, instrument: int | None = None) -> list[CancelledOrder]:
        """Cancel the account's resting orders (on one instrument, or on all).

        Only books where the ledger shows the account with open orders are scanned.
        """
        targets = range(len(self.instruments)) if instrument is None else (instrument,)
        ledger = self.ledger
        gone = []
        for m in targets:
            if ledger.open_bids[account, m] or ledger.open_asks[account, m]:
                gone += [self.cancel(order_id) for order_id in self.books[m].open_orders(account)]
        return gone

    # -------------------------------------------------------------- admission
    def _validate(
        self, account: int, instrument: int, qty: float, price: float | None, kind: OrderType
    ) -> tuple[RejectReason | None, int, int | None]:
        """Check ids and convert to ``(reject, lots, ticks)``."""
        if not 0 <= account < self.ledger.n_accounts:
            return RejectReason.UNKNOWN_ACCOUNT, 0, None
        if not 0 <= instrument < len(self.instruments):
            return RejectReason.UNKNOWN_INSTRUMENT, 0, None
        inst = self.instruments[instrument]
        lots = inst.to_lots(qty)
        if lots is None:
            bad = not (isinstance(qty, int | float) and math.isfinite(qty) and qty > 0)
            return (RejectReason.BAD_QUANTITY if bad else RejectReason.OFF_LOT), 0, None
        if kind is OrderType.MARKET:
            return None, lots, None
        ticks = None if price is None else inst.to_ticks(price)
        if ticks is None:
            bad = not (isinstance(price, int | float) and math.isfinite(price) and price > 0)
            return (RejectReason.BAD_PRICE if bad else RejectReason.OFF_TICK), 0, None
        return None, lots, ticks

    def _clip_reduce_only(
        self, account: int, instrument: int, side: Side, lots: int, kind: OrderType
    ) -> tuple[RejectReason | None, int, int]:
        """``(reject, lots_after_clip, clipped_lots)`` for a reduce-only order."""
        if kind is OrderType.LIMIT or kind is OrderType.POST_ONLY:
            return RejectReason.REDUCE_ONLY_MUST_NOT_REST, 0, 0
        position = int(self.ledger.positions[account, instrument])
        if position == 0 or (position > 0) == (side > 0):
            return RejectReason.REDUCE_ONLY_WOULD_INCREASE, 0, 0
        allowed = min(lots, abs(position))
        return None, allowed, lots - allowed

    def _maker_fill_costs(self) -> tuple[np.ndarray, np.ndarray]:
        """``(soft (A,), fill_cost (B, 3))`` for a batch's `sim.book.BatchWatch`: which
        accounts' fills as maker need no re-check of their later orders while the batch
        lasts, only a cost against the budget their check left.

        A fill as maker at P changes a cross account's equity by ``s size (M - P)`` less
        the maker fee: realized PnL and settled funding move between the USD balance and
        unrealized PnL, at equal weight when USD's weights (collateral and liability) are
        1, and no other asset moves. It moves lots from an open order into the position,
        which never raises the worst-case lots ``max(q + bids, asks - q)``, and initial
        margin never falls as notional rises (`sim.instruments.MarginTiers` refuses a
        leverage that rises with the tier). So ``init_health`` falls by at most
        ``max(0, s size (P - M) + fee size P)``, which `sim.book_kernels.execute_many`
        adds up per account. The budget covers the margin check only: an order whose
        group holds a reduce-only order (its clip reads the position) gets none
        (`_Batch.admit`), nor does an order its check refused. Isolated accounts
        (top-ups, per-position pockets), and every account when USD is weighted other
        than 1, keep the plain rule: every fill touches."""
        ledger, rules = self.ledger, self.rules
        weighted_one = rules.weights[USD] == 1.0 and rules.liability_weights[USD] == 1.0
        soft = ~ledger.isolated if weighted_one else np.zeros(ledger.n_accounts, bool)
        fill_cost = np.empty((len(self.instruments), 3))
        fill_cost[:, 0] = self.marks / self._tick_sizes
        fill_cost[:, 1] = self._lot_sizes * self._tick_sizes
        fill_cost[:, 2] = max(self.fees.maker, 0.0)  # a rebate only helps
        return soft, fill_cost

    def _pre_trade_health(
        self,
        accounts: np.ndarray,
        instruments: np.ndarray,
        sides: np.ndarray,
        lots: np.ndarray,
        ticks: np.ndarray,
        market: np.ndarray,
        groups: np.ndarray | None = None,
    ) -> np.ndarray:
        """The margin check (module docstring) of K orders in G groups at once: (G,) the
        ``init_health`` (USD) each group's account would have with all the group's orders
        counted as open and filled together (each order alone by default); the check
        refuses a group below ``-MARGIN_TOLERANCE``.

        Args:
            accounts: (G,) ledger row of each group.
            instruments, sides, lots: (K,) int64 of each order.
            ticks: (K,) int64 limit of each order (-1: none); the worst price each market
                order's check uses (its sweep of the book now, -1: empty) is written here.
            market: (K,) bool, market orders.
            groups: (K,) group index (0..G-1) of each order; None: order k is group k.
        """
        for k in np.flatnonzero(market):
            _, worst = self.books[instruments[k]].sweep(int(sides[k]), int(lots[k]))
            ticks[k] = -1 if worst is None else worst
        ledger, rules = self.ledger, self.rules
        weights = self.asset_prices * rules.weights
        return pre_trade_init_health(
            accounts,
            np.arange(accounts.size) if groups is None else groups,
            instruments,
            sides,
            lots,
            ticks,
            ledger.balances,
            ledger.positions,
            ledger.entry,
            ledger.funding_index,
            ledger.isolated_margin,
            ledger.open_bids,
            ledger.open_asks,
            ledger.isolated,
            self._lot_sizes,
            self._tick_sizes,
            self.marks,
            self.cum_funding,
            weights,
            self.asset_prices * (rules.liability_weights - rules.weights),
            rules.tiers.floors,
            rules.tiers.imr,
            self.fees.taker,
        )

    # ------------------------------------------------------------- settlement
    def _settle(self, fills: Sequence[Fill]) -> None:
        """Write fills into the ledger in order (`_settle_columns`) and the trade log."""
        if not fills:
            return
        columns = [
            (f.instrument, f.taker_account, f.maker_account, f.taker_side, f.price, f.qty, f.liquidation) for f in fills
        ]
        self._settle_columns(*(np.array(c, np.int64) for c in zip(*columns, strict=True)))
        self.trades.extend(fills)

    def _settle_columns(
        self,
        instruments: np.ndarray,
        takers: np.ndarray,
        makers: np.ndarray,
        sides: np.ndarray,
        ticks: np.ndarray,
        lots: np.ndarray,
        liquidation: np.ndarray,
    ) -> None:
        """Write F fills into the ledger in order: both sides' positions, the maker's open
        orders, fees (one compiled pass, `sim.ledger.Ledger.settle_fills`), isolated
        top-ups, last prices. Columns are (F,) int64: instrument, taker and maker
        accounts, taker side (+1 / -1), price (ticks), lots, liquidation (0 / 1)."""
        prices = ticks * self._tick_sizes[instruments]
        sizes = lots * self._lot_sizes[instruments]
        # a liquidation pays the insurance fund's fee instead of the taker fee, so its
        # makers get no rebate either: the fee pool pays rebates only out of taker fees
        liquidation = liquidation.astype(bool)
        taker_rate = np.where(liquidation, 0.0, self.fees.taker)
        maker_rate = np.where(liquidation, max(self.fees.maker, 0.0), self.fees.maker)
        ledger = self.ledger
        cum = self.cum_funding[instruments]
        done = 0
        while done < len(instruments):
            done = ledger.settle_fills(
                takers, makers, instruments, sides * lots, prices, cum, taker_rate * sizes * prices,
                maker_rate * sizes * prices, done,
            )  # fmt: skip
            for account in (int(takers[done - 1]), int(makers[done - 1])):
                if ledger.isolated[account]:
                    self._top_up_isolated(account, int(instruments[done - 1]))
        last = np.full(len(self.instruments), -1)
        np.maximum.at(last, instruments, np.arange(len(instruments)))  # each instrument's last fill
        traded = last >= 0
        self.last_price[traded] = prices[last[traded]]
        self.last_trade_time[traded] = self.time

    def _top_up_isolated(self, account: int, instrument: int) -> None:
        """Move free USD into a position's isolated margin until it covers its initial
        margin (`sim.margin`, open orders at their worst case), as far as the USD balance
        goes: a top-up never borrows."""
        ledger = self.ledger
        if not ledger.positions[account, instrument]:
            return
        health = self.account_health(account)
        missing = float(health.risk.init[0, instrument] - health.position_equity[0, instrument])
        amount = min(missing, float(ledger.balances[account, USD]))
        if amount > 0:
            ledger.allocate_isolated(account, instrument, amount)

    def _reserve_open(self, account: int, instrument: int, side: int, lots: int) -> None:
        self.ledger.count_open(account, instrument, side, lots)

    def _release_open(self, account: int, instrument: int, side: int, lots: int) -> None:
        self.ledger.count_open(account, instrument, side, -lots)


@dataclass
class BatchResult:
    """What `Exchange.submit_batch` did. Arrays of shape (n,) follow the batch's rows.

    Attributes:
        order_id: (n,) id given to each order (-1: rejected before reaching a book); for
            a cancel, the id it named.
        reject: (n,) reject code, an index into `EXCHANGE_REJECTS` (0: accepted; a
            cancel is never rejected).
        rested: (n,) lots left resting on the book.
        cancelled: (n,) lots cancelled: an IOC or market remainder, or for a cancel the
            lots it took off the book (0: the order was not resting).
        clipped: (n,) lots removed from a reduce-only order before it reached the book.
        filled: (n,) lots each order traded as the taker.
        fills: The fills in execution order (also appended to `Exchange.trades`).
        fill_order: (F,) batch row of each fill's taker.
        fill_ticks: (F,) price of each fill, ticks.
        self_trade_cancels: Resting orders that self-trade prevention removed, in order.
        stp_order: (S,) batch row of the order that removed each.
    """

    order_id: np.ndarray
    reject: np.ndarray
    rested: np.ndarray
    cancelled: np.ndarray
    clipped: np.ndarray
    filled: np.ndarray
    fills: FillLog
    fill_order: np.ndarray
    fill_ticks: np.ndarray
    self_trade_cancels: list[CancelledOrder]
    stp_order: np.ndarray

    def reasons(self) -> list[RejectReason | None]:
        """(n,) reject reasons (None: accepted)."""
        return [EXCHANGE_REJECTS[code] for code in self.reject.tolist()]


@dataclass
class _Batch:
    """One `Exchange.submit_batch` call's rows while it runs (arrays of shape (n,)).

    ``want_*`` are the orders as sent (on the grid; ``grid_reject`` the codes of the id
    and grid checks, which never change); ``lots``, ``ticks`` (-1: no price) and
    ``kinds`` (the book's codes) are the orders as last admitted, after reduce-only
    clipping and the price band, and ``screened`` their reject codes then (before the
    margin check, whose outcome ``reject`` adds). ``books`` and ``book_accounts`` are
    valid indices on every row (rows rejected for an unknown instrument or account never
    reach a book).
    Row k belongs to the group of rows ``lead[k]..end[k]-1`` (``lead[k] == k`` and
    ``end[k] == k + 1`` for an order alone or a cancel).
    """

    accounts: np.ndarray
    book_accounts: np.ndarray
    books: np.ndarray
    sides: np.ndarray
    is_cancel: np.ndarray
    ids: np.ndarray
    want_lots: np.ndarray
    want_ticks: np.ndarray
    want_kinds: np.ndarray
    reduce_only: np.ndarray
    grid_reject: np.ndarray
    lead: np.ndarray
    end: np.ndarray
    lots: np.ndarray
    ticks: np.ndarray
    kinds: np.ndarray
    clipped: np.ndarray
    screened: np.ndarray
    reject: np.ndarray
    active: np.ndarray
    watch: BatchWatch
    fills: FillLog = field(default_factory=FillLog)

    @property
    def n(self) -> int:
        return self.accounts.shape[0]

    @classmethod
    def from_floats(
        cls, ex: Exchange, accounts, instruments, sides, qtys, prices, kinds, reduce_only, cancel_ids, groups
    ) -> _Batch:
        """The rows of `Exchange.submit_batch`: sizes and prices put on the grid as
        `Instrument.to_lots` and `to_ticks` put them."""
        instruments = np.asarray(instruments, np.int64)
        qtys, prices = np.asarray(qtys, np.float64), np.asarray(prices, np.float64)
        m = np.where((instruments >= 0) & (instruments < len(ex.instruments)), instruments, 0)
        lots, ticks = on_grid_many(qtys, ex._lot_sizes[m]), on_grid_many(prices, ex._tick_sizes[m])
        with np.errstate(invalid="ignore"):
            bad = ~(np.isfinite(qtys) & (qtys > 0)), ~(np.isfinite(prices) & (prices > 0))
        return cls.from_lots(ex, accounts, instruments, sides, lots, ticks, kinds, reduce_only, cancel_ids, groups, bad)

    @classmethod
    def from_lots(
        cls, ex: Exchange, accounts, instruments, sides, lots, ticks, kinds, reduce_only, cancel_ids, groups, bad=None
    ) -> _Batch:
        """The rows of `Exchange.submit_batch_lots`. ``bad``: ``(bad_qty, bad_price)``,
        (n,) bool each, where a size or price that is not on the grid (0 lots or ticks)
        is a bad value rather than one off the grid; None: wherever it is not on it."""
        accounts = np.asarray(accounts, np.int64)
        n = accounts.shape[0]
        sides, kinds = np.asarray(sides, np.int64), np.asarray(kinds, np.int64)
        reduce_only = np.zeros(n, bool) if reduce_only is None else np.asarray(reduce_only, bool)
        bad_qty, bad_price = (_NO_FLAGS, _NO_FLAGS) if bad is None else bad
        instruments, lots, ticks = (np.asarray(c, np.int64) for c in (instruments, lots, ticks))
        if cancel_ids is None:
            if (kinds == KIND_CANCEL).any():
                raise ValueError("submit_batch: cancels need cancel_ids")
            cancel_ids = np.full(n, -1, np.int64)
        cancel_ids = np.asarray(cancel_ids, np.int64)
        groups = _NO_ROWS if groups is None else np.asarray(groups, np.int64)
        columns = (instruments, sides, lots, ticks, kinds, reduce_only, cancel_ids)
        if any(c.shape != (n,) for c in columns) or groups.shape not in ((0,), (n,)):
            raise ValueError(f"submit_batch: every column must have one entry per row ({n}), got "
                             f"{[c.shape for c in (*columns, groups)]}")  # fmt: skip
        problem, rows = read_rows(
            accounts,
            instruments,
            sides,
            lots,
            ticks,
            kinds,
            cancel_ids,
            groups,
            bad_qty,
            bad_price,
            ex.ledger.n_accounts,
            len(ex.instruments),
            KIND_CANCEL,
            _MARKET,
            _GRID_CODES,
        )
        if problem:
            raise ValueError(_batch_problem(problem, kinds, sides))
        is_cancel, ids, books, book_accounts, grid_reject, want_lots, want_ticks, lead, end = rows
        watch = BatchWatch.over(n, *ex._maker_fill_costs())
        zeros = np.zeros(n, np.int64)
        return cls(
            accounts=accounts,
            book_accounts=book_accounts,
            books=books,
            sides=sides,
            is_cancel=is_cancel,
            ids=ids,
            want_lots=want_lots,
            want_ticks=want_ticks,
            want_kinds=kinds,
            reduce_only=reduce_only,
            grid_reject=grid_reject,
            lead=lead,
            end=end,
            lots=zeros.copy(),
            ticks=zeros - 1,
            kinds=kinds.copy(),
            clipped=zeros.copy(),
            screened=zeros.copy(),
            reject=zeros.copy(),
            active=is_cancel.copy(),
            watch=watch,
        )

    def admit(self, ex: Exchange, rows: np.ndarray, liquidation: bool, as_of: int) -> None:
        """(Re-)admit orders ``rows`` (whole groups) against the exchange's current state,
        which is the state after the batch's orders before ``as_of``: `Exchange._admit_many`,
        then the margin checks of the orders that need one (one per group), all at once.

        A re-admission (``as_of > 0``: one group, whose account the batch touched) redoes
        `Exchange._admit_many` only for its reduce-only orders: the other rules (ids, grid,
        price band) depend on the marks, which a batch does not move, so their outcome
        from the first admission stands; the margin check is redone in full."""
        rows = rows[~self.is_cancel[rows]]
        screen = rows if as_of == 0 else rows[self.reduce_only[rows]]
        if screen.size:
            self.screened[screen], self.lots[screen], self.ticks[screen], self.kinds[screen], self.clipped[screen] = (
                ex._admit_many(
                    self.book_accounts[screen],
                    self.books[screen],
                    self.sides[screen],
                    self.want_lots[screen],
                    self.want_ticks[screen],
                    self.want_kinds[screen],
                    self.reduce_only[screen],
                    self.grid_reject[screen],
                    liquidation,
                )
            )
        reject, lots, ticks, kinds = self.screened[rows], self.lots[rows], self.ticks[rows], self.kinds[rows]
        reduce_only = self.reduce_only[rows]
        market = kinds == _MARKET
        needs_check = (reject == 0) & ~(reduce_only | liquidation)
        checked = np.flatnonzero(needs_check)
        if len(checked):
            if as_of:  # one group
                leads, together = self.lead[rows[:1]], np.zeros(len(checked), np.int64)
            else:  # rows ascend, so do their leads: each group's checked orders are one run
                lead = self.lead[rows[checked]]
                starts = np.empty(lead.size, bool)
                starts[0], starts[1:] = True, lead[1:] != lead[:-1]
                leads, together = lead[starts], np.cumsum(starts) - 1
            worst = ticks[checked]  # a copy: market orders get the sweep's worst price in here
            health = ex._pre_trade_health(
                self.accounts[leads],
                self.books[rows[checked]],
                self.sides[rows[checked]],
                lots[checked],
                worst,
                market[checked],
                together,
            )
            refused = health < -MARGIN_TOLERANCE
            reject[checked[refused[together]]] = _REJECT_CODE[RejectReason.INSUFFICIENT_MARGIN]
            self.watch.check_ticks[rows[checked]] = worst
            # what maker fills may cost the account before its turn without a re-check
            self.watch.budget[leads] = np.where(refused, -np.inf, health + (MARGIN_TOLERANCE - _BUDGET_ROUNDING))
            # a reduce-only order's clip reads the position, which any fill moves: no budget
            self.watch.budget[self.lead[rows[reduce_only]]] = -np.inf
        alone = self.end[rows] - self.lead[rows] == 1
        self.watch.account[rows] = alone & ~_STATELESS[reject] & (reduce_only | (not liquidation))
        self.watch.book[rows] = alone & needs_check & market
        self.watch.checked_after[rows] = as_of
        self.watch.spent_at_check[rows] = self.watch.spent[self.book_accounts[rows]]
        self.reject[rows] = reject
        self.active[rows] = reject == 0
        if not alone.all():
            self._watch_groups(rows[~alone], (needs_check & market)[~alone], as_of)

    def _watch_groups(self, rows: np.ndarray, walks: np.ndarray, as_of: int) -> None:
        """Watch the groups of orders ``rows`` (whole groups, just admitted; ``walks``:
        the checked market orders among them). A group is admitted against the state
        before its first order, so only that order is watched: when its account was
        touched since the check, the whole group is re-admitted at its turn. A group
        admitted before its turn is re-admitted at its turn in any case when its check
        walked the book (market orders: the books change under it) or when a cancel of
        the account's orders could reverse it (refused while its first order, which the
        books test for cancels only when inactive, is active)."""
        leads = self.lead[rows]
        first = rows[leads == rows]
        self.watch.account[first] = True
        early = first[first > as_of]
        if len(early):
            refused = self.reject[rows] == _REJECT_CODE[RejectReason.INSUFFICIENT_MARGIN]
            walking, refusing = np.zeros(self.n, bool), np.zeros(self.n, bool)
            np.logical_or.at(walking, leads, walks)
            np.logical_or.at(refusing, leads, refused)
            self.watch.checked_after[early[walking[early] | (refusing[early] & self.active[early])]] = -1

    def result(self, state: BatchState) -> BatchResult:
        reject = self.reject.copy()
        by_book = np.flatnonzero(state.reject)
        reject[by_book] = [_REJECT_CODE[BOOK_REJECTS[code]] for code in state.reject[by_book].tolist()]
        events = state.events()
        fill_rows = events[events[:, OUT_KIND] == OUT_FILL]
        filled = np.zeros(self.n, np.int64)
        np.add.at(filled, fill_rows[:, OUT_TAKER], fill_rows[:, OUT_LOTS])
        stp_rows = events[events[:, OUT_KIND] == OUT_STP]
        stp = [
            CancelledOrder(int(self.books[taker]), order_id, account, Side(side), price, lots)
            for taker, order_id, account, side, price, lots in stp_rows[
                :, [OUT_TAKER, OUT_ID, OUT_ACCOUNT, OUT_SIDE, OUT_PRICE, OUT_LOTS]
            ].tolist()
        ]
        return BatchResult(
            order_id=np.where(self.active, self.ids, -1),
            reject=reject,
            rested=state.rested.copy(),
            cancelled=state.cancelled.copy(),
            clipped=self.clipped,
            filled=filled,
            fills=self.fills,
            fill_order=fill_rows[:, OUT_TAKER],
            fill_ticks=fill_rows[:, OUT_PRICE],
            self_trade_cancels=stp,
            stp_order=stp_rows[:, OUT_TAKER],
        )


def _batch_problem(problem: int, kinds: np.ndarray, sides: np.ndarray) -> str:
    """The message of a `sim.batch_rows.read_rows` problem code."""
    if problem == BAD_KIND:
        return f"submit_batch: kinds must be sim.book.KIND_CODES or KIND_CANCEL, got {np.unique(kinds)}"
    if problem == BAD_SIDE:
        return f"submit_batch: sides must be +1 or -1, got {np.unique(sides[kinds != KIND_CANCEL])}"
    if problem == SPLIT_GROUP:
        return "submit_batch: the rows of a group must be consecutive"
    return "submit_batch: a group holds orders of one account, no cancels"

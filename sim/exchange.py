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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sim.book import OrderBook
from sim.instruments import CollateralAsset, Instrument
from sim.ledger import FEE_POOL, USD, Ledger
from sim.margin import HEALTH_BY_MODE, Health, MarginRules, MarketPrices, Portfolio, TierTable, mixed_health
from sim.marks import IndexMark, MarkRule
from sim.types import CancelledOrder, Fill, OrderRequest, OrderType, RejectReason, Side, SubmitResult

#: Slack on ``init_health >= 0`` for float rounding, USD.
MARGIN_TOLERANCE = 1e-9


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
        self.books = [OrderBook() for _ in self.instruments]
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
        self.trades: list[Fill] = []
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
            reject, lots, ticks = self._validate(account, request.instrument, request.qty, request.price, request.kind)
            kind = request.kind
            if reject is None and request.reduce_only:
                reject, lots, result.clipped = self._clip_reduce_only(
                    account, request.instrument, request.side, lots, request.kind
                )
            if reject is None and self.price_band:
                reject, ticks, kind = self._within_band(request.instrument, request.side, ticks, kind, liquidation)
            result.reject = reject
            results.append(result)
            if reject is None:
                admitted.append((result, request, lots, ticks, kind))
        checked = [a for a in admitted if not (a[1].reduce_only or liquidation)]
        if checked and self._margin_check(
            account, [(r.instrument, r.side, lots, ticks, kind) for _, r, lots, ticks, kind in checked]
        ):
            for result, *_ in checked:
                result.reject = RejectReason.INSUFFICIENT_MARGIN
        for result, request, lots, ticks, kind in admitted:
            if result.reject is None:
                self._route(account, request.instrument, request.side, lots, ticks, kind, liquidation, result)
        return results

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
        for maker_id, maker_account, fill_ticks, fill_lots in fills:
            fill = Fill(
                instrument, order_id, maker_id, account, maker_account, side, fill_ticks, fill_lots, liquidation
            )
            self._settle(fill)
            result.fills.append(fill)
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

    def _margin_check(
        self, account: int, orders: Sequence[tuple[int, Side, int, int | None, OrderType]]
    ) -> RejectReason | None:
        """Reject when the account's ``init_health`` would go negative (module docstring).

        Args:
            orders: ``(instrument, side, lots, limit_ticks, kind)`` of each order.
        """
        row = self.ledger.portfolio(slice(account, account + 1))
        bids, asks = row.open_bids.copy(), row.open_asks.copy()
        balances, iso = row.balances.copy(), row.isolated_margin.copy()
        for instrument, side, lots, ticks, kind in orders:
            inst = self.instruments[instrument]
            mark = float(self.marks[instrument])
            if kind is OrderType.MARKET:
                _, ticks = self.books[instrument].sweep(side, lots)
            fill_price = mark if ticks is None else inst.price(ticks)
            size = inst.qty(lots)
            cost = side * size * (fill_price - mark) + self.fees.taker * size * fill_price
            (bids if side > 0 else asks)[0, instrument] += lots
            if self.ledger.isolated[account]:
                iso[0, instrument] -= cost
            else:
                balances[0, USD] -= cost
        hypothetical = Portfolio(balances, row.positions, row.entry, row.funding_index, iso, bids, asks, row.lot_sizes)
        health = mixed_health(hypothetical, self.prices(), self.rules, self.ledger.isolated[account : account + 1])
        if health.init_health[0] < -MARGIN_TOLERANCE:
            return RejectReason.INSUFFICIENT_MARGIN
        return None

    # ------------------------------------------------------------- settlement
    def _settle(self, fill: Fill) -> None:
        """Write one fill into the ledger: both sides' positions, fees, last price."""
        m = fill.instrument
        inst = self.instruments[m]
        price = inst.price(fill.price)
        size = inst.qty(fill.qty)
        signed = int(fill.taker_side) * fill.qty
        ledger = self.ledger
        cum = float(self.cum_funding[m])
        ledger.settle_trade(fill.taker_account, m, signed, price, cum)
        ledger.settle_trade(fill.maker_account, m, -signed, price, cum)
        self._release_open(fill.maker_account, m, -int(fill.taker_side), fill.qty)
        # a liquidation pays the insurance fund's fee instead of the taker fee, so its
        # makers get no rebate either: the fee pool pays rebates only out of taker fees
        taker_rate = 0.0 if fill.liquidation else self.fees.taker
        maker_rate = max(self.fees.maker, 0.0) if fill.liquidation else self.fees.maker
        for account, rate in ((fill.taker_account, taker_rate), (fill.maker_account, maker_rate)):
            fee = rate * size * price
            if fee:
                ledger.pay(account, m, FEE_POOL, fee)
        for account in (fill.taker_account, fill.maker_account):
            if ledger.isolated[account]:
                self._top_up_isolated(account, m)
        self.last_price[m] = price
        self.last_trade_time[m] = self.time
        self.trades.append(fill)

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

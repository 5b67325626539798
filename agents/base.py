"""The trader agent base class and the market view agents read.

Agents hold an account id, never a ledger: positions and margin are read from the
exchange's arrays through `Trader` properties. They see only public data (index, mark,
last trade, the books, price history) through `MarketView`, and their own account.

Time: every window, lifetime, interval and refill time in agent parameters is in
simulated *seconds*; `MarketView.steps_for` and `MarketView.chance` convert them with
the config's ``step_seconds``, so a strategy behaves the same at 1 s and at 5 s steps
(up to the rounding of a window to whole steps).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, ClassVar

import mesa
import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict

from sim.distributions import Choice, Distribution, Exponential, LogNormal, Uniform
from sim.types import OrderRequest, OrderType, Side, SubmitResult

if TYPE_CHECKING:
    from sim.exchange import Exchange


class StrictParams(BaseModel):
    """Base of every agent's parameter model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# ------------------------------------------------------------ drawn parameters
def support(dist: Distribution) -> tuple[float, float]:
    """The smallest and largest value ``dist`` can draw (bounds of its support)."""
    if isinstance(dist, Uniform):
        return dist.uniform
    if isinstance(dist, LogNormal | Exponential):
        return (0.0, math.inf)
    if isinstance(dist, Choice):
        return (min(dist.choice), max(dist.choice))
    return (float(dist), float(dist))


def within(low: float, high: float, strict_low: bool = False):
    """A validator: every value the distribution can draw lies in [low, high]
    (``(low, high]`` with ``strict_low``; a log-normal counts as > 0)."""

    def check(dist: Distribution) -> Distribution:
        lo, hi = support(dist)
        positive = isinstance(dist, LogNormal) or lo > low
        if lo < low or hi > high or (strict_low and not positive):
            bound = "(" if strict_low else "["
            raise ValueError(f"draws must lie in {bound}{low}, {high}], got a distribution over [{lo}, {hi}]")
        return dist

    return AfterValidator(check)


#: Drawn parameters with a range (validated on the distribution's support).
PositiveDist = Annotated[Distribution, within(0.0, math.inf, strict_low=True)]
NonNegativeDist = Annotated[Distribution, within(0.0, math.inf)]
FractionDist = Annotated[Distribution, within(0.0, 1.0)]


# ---------------------------------------------------------------- market view
class MarketView:
    """Public market data for agents, updated by the model once per step.

    The model calls `advance` at the start of each step (after the index moved) and
    `close` at its end. Statistics over the history (`venue_vol`) use closed steps
    only, so they do not depend on which agents acted first within the step, and are
    cached per step.

    Attributes:
        exchange: The venue (agents use it for books and order entry only).
        step: The current step.
        step_seconds: Simulated seconds per step.
        index_history: (N + 1, I) index at the start of each step.
        mark_history: (N + 1, I) mark at the end of each step (at its start until the
            step closes).
        last_history: (N + 1, I) last trade price at the end of each step (NaN before
            the first trade).
        venue_history: (N + 1, I) the venue's own price (`venue_price`) at the end of
            each step (at its start until the step closes).
    """

    def __init__(self, exchange: Exchange, steps: int, step_seconds: float = 1.0):
        self.exchange = exchange
        #: Simulated seconds per step.
        self.step_seconds = step_seconds
        n = len(exchange.instruments)
        self.step = 0
        self.index_history = np.full((steps + 1, n), np.nan)
        self.mark_history = np.full((steps + 1, n), np.nan)
        self.last_history = np.full((steps + 1, n), np.nan)
        self.venue_history = np.full((steps + 1, n), np.nan)
        self._vol_cache: dict[tuple[int, int], np.ndarray] = {}

    # ------------------------------------------------------------------ time
    def steps_for(self, seconds: float) -> int:
        """A duration in seconds as a whole number of steps (at least 1)."""
        return max(1, round(seconds / self.step_seconds))

    def chance(self, interval_seconds: float) -> float:
        """Probability per step of acting, for an agent that acts at most once a step and
        on average once every ``interval_seconds``: ``step_seconds / interval`` (the
        mean of the geometric waiting time is then the interval), at most 1."""
        return min(1.0, self.step_seconds / interval_seconds)

    def advance(self, step: int) -> None:
        """Start a new step: record the index (and provisional mark and venue price)."""
        self.step = step
        ex = self.exchange
        self.index_history[step] = ex.index
        self.mark_history[step] = ex.marks
        self.venue_history[step] = self.venue_prices()

    def close(self, step: int) -> None:
        """End of step: record the last trade, mark and venue prices."""
        ex = self.exchange
        self.last_history[step] = ex.last_price
        self.mark_history[step] = ex.marks
        self.venue_history[step] = self.venue_prices()

    # ---------------------------------------------------------------- prices
    @property
    def index(self) -> np.ndarray:
        return self.exchange.index

    @property
    def mark(self) -> np.ndarray:
        return self.exchange.marks

    @property
    def last(self) -> np.ndarray:
        return self.exchange.last_price

    def mid(self, m: int) -> float | None:
        """Mid price of instrument m in USD, None unless both sides are quoted."""
        mid = self.exchange.books[m].mid()
        return None if mid is None else mid * self.exchange.instruments[m].tick_size

    def best_bid(self, m: int) -> float | None:
        """Best bid of instrument m in USD, None when the side is empty."""
        ticks = self.exchange.books[m].best_bid()
        return None if ticks is None else ticks * self.exchange.instruments[m].tick_size

    def best_ask(self, m: int) -> float | None:
        """Best ask of instrument m in USD, None when the side is empty."""
        ticks = self.exchange.books[m].best_ask()
        return None if ticks is None else ticks * self.exchange.instruments[m].tick_size

    def microprice(self, m: int) -> float | None:
        """Size-weighted mid of the top levels (Stoikov 2018's simplest microprice):
        ``(bid * ask_lots + ask * bid_lots) / (bid_lots + ask_lots)``; None unless
        both sides are quoted."""
        book = self.exchange.books[m]
        bid, ask = next(book.levels(Side.BUY), None), next(book.levels(Side.SELL), None)
        if bid is None or ask is None:
            return None
        (bid_ticks, bid_lots), (ask_ticks, ask_lots) = bid, ask
        ticks = (bid_ticks * ask_lots + ask_ticks * bid_lots) / (bid_lots + ask_lots)
        return ticks * self.exchange.instruments[m].tick_size

    def venue_price(self, m: int) -> float:
        """The venue's own price of instrument m: last trade, else mid, else index."""
        last = self.exchange.last_price[m]
        if last == last:  # not NaN
            return float(last)
        mid = self.mid(m)
        return float(self.exchange.index[m]) if mid is None else mid

    def venue_mid(self, m: int) -> float:
        """The venue's quoting reference: mid, else last trade, else index."""
        mid = self.mid(m)
        if mid is not None:
            return mid
        last = self.exchange.last_price[m]
        return float(last) if last == last else float(self.exchange.index[m])

    def venue_prices(self) -> np.ndarray:
        """(I,) `venue_price` of every instrument."""
        return np.array([self.venue_price(m) for m in range(len(self.exchange.instruments))])

    # ------------------------------------------------------------- statistics
    def venue_return(self, m: int, seconds: float) -> float:
        """Log return of the venue price over the last ``seconds`` (from the end of the
        step that many seconds ago to now; shorter at the start of the run)."""
        k = min(self.steps_for(seconds), self.step)
        if k <= 0:
            return 0.0
        return math.log(self.venue_price(m) / self.venue_history[self.step - k, m])

    def venue_drift(self, m: int, seconds: float) -> float:
        """Mean log return per second of the venue price over the last ``seconds``."""
        k = min(self.steps_for(seconds), self.step)
        return self.venue_return(m, seconds) / (k * self.step_seconds) if k > 0 else 0.0

    def venue_vol(self, m: int, seconds: float) -> float:
        """Short-run volatility of the venue price per sqrt(second): the standard
        deviation of its per-step log returns over the closed steps of the last
        ``seconds``, divided by sqrt(step_seconds). 0 with fewer than two returns."""
        return float(self.venue_vols(seconds)[m])

    def venue_vols(self, seconds: float) -> np.ndarray:
        """(I,) `venue_vol` of every instrument (cached per step and window)."""
        k = self.steps_for(seconds)
        key = (self.step, k)
        vol = self._vol_cache.get(key)
        if vol is None:
            end = self.step  # rows before the current step are closed
            prices = self.venue_history[max(0, end - 1 - k) : end]
            if len(prices) > 2:
                vol = np.diff(np.log(prices), axis=0).std(axis=0) / math.sqrt(self.step_seconds)
            else:
                vol = np.zeros(prices.shape[1])
            if len(self._vol_cache) > 64:
                self._vol_cache.clear()
            self._vol_cache[key] = vol
        return vol


# --------------------------------------------------------------------- traders
class Trader(mesa.Agent):
    """A trader: one ledger account, a strategy in `step`.

    Args:
        model: The market model (provides ``exchange``, ``market`` and ``health``).
        account: Ledger row of this trader.
        instruments: Indices of the instruments it trades.
        leverage: Its leverage (notional / collateral value) target or limit.
        params: Its strategy parameters (an instance of the class's ``Params``).
        rng: Its own random stream (``self.draws``; Mesa reserves ``rng`` for the model's).
            Subclasses draw their per-agent parameters from it in ``__init__``.
    """

    Params: ClassVar[type[StrictParams]] = StrictParams
    kind: ClassVar[str] = "trader"
    #: False for agents whose `step` does nothing: the model does not schedule them.
    #: An instance may set it to False when its own parameters switch everything off.
    acts: ClassVar[bool] = True

    # The margin ratios of the Health object seen last (one array for all traders).
    _ratios_of: ClassVar[object] = None
    _ratios: ClassVar[np.ndarray] = np.zeros(0)

    def __init__(self, model, account: int, instruments: list[int], leverage: float, params, rng: np.random.Generator):
        super().__init__(model)
        self.account = account
        #: Ids of orders this trader left resting (some may have filled since).
        self.resting: list[int] = []
        self.instruments = instruments
        self.leverage = leverage
        self.params = params
        self.draws = rng

    def opening_positions(self) -> list[tuple[int, int, float]]:
        """Positions the trader holds when the run starts: ``(instrument, signed lots,
        price USD)`` each, given to it by the model as trades against the genesis
        account. None by default."""
        return []

    # ---------------------------------------------------------------- views
    @property
    def exchange(self) -> Exchange:
        return self.model.exchange

    @property
    def market(self) -> MarketView:
        return self.model.market

    def position(self, m: int) -> float:
        """Signed position in instrument m, base units."""
        return int(self.exchange.ledger.positions[self.account, m]) * self.exchange.instruments[m].lot_size

    def equity(self) -> float:
        """Account equity (USD) as of the start of this step's trading."""
        return float(self.model.health.equity[self.account])

    def margin_ratio(self) -> float:
        """Own maintenance margin over equity as of the start of the step (>= 1 means
        liquidatable). The model's ``health`` computes the ratio of every account on
        access; it is computed once per Health object and shared, and a trader reads
        only its own row."""
        health = self.model.health
        if health is not Trader._ratios_of:
            Trader._ratios = health.margin_ratio
            Trader._ratios_of = health
        return Trader._ratios[self.account]

    # --------------------------------------------------------------- orders
    def order(
        self, m: int, side: Side, qty: float, price: float | None = None, kind: OrderType = OrderType.LIMIT
    ) -> OrderRequest | None:
        """An order with its size floored to lots and its price rounded away from the
        touch (bids down, asks up) to the tick; None if it rounds to nothing."""
        inst = self.exchange.instruments[m]
        lots = inst.lots_down(qty)
        if lots <= 0:
            return None
        if price is not None:
            ticks = inst.ticks_toward(price, side)
            if ticks <= 0:
                return None
            price = inst.price(ticks)
        return OrderRequest(m, side, inst.qty(lots), price, kind)

    def send(self, request: OrderRequest | None) -> SubmitResult | None:
        """Send one order without tracking it in ``resting`` (for traders that track
        their own orders); None for no order."""
        if request is None:
            return None
        return self.exchange.submit(
            self.account, request.instrument, request.side, request.qty, request.price, request.kind
        )

    def submit(
        self, m: int, side: Side, qty: float, price: float | None = None, kind: OrderType = OrderType.LIMIT
    ) -> SubmitResult | None:
        """Send one order (see `order`); None if it rounds to nothing."""
        result = self.send(self.order(m, side, qty, price, kind))
        if result is not None and result.rested:
            self.resting.append(result.order_id)
        return result

    def submit_many(self, requests: list[OrderRequest | None]) -> list[SubmitResult]:
        """Send several orders under one margin check (`Exchange.submit_many`)."""
        results = self.exchange.submit_many(self.account, [r for r in requests if r is not None])
        self.resting += [r.order_id for r in results if r.rested]
        return results

    def reduce(self, m: int, qty: float, limit: float) -> SubmitResult | None:
        """Shrink the position in m by up to ``qty`` base units (floored to lots) with a
        reduce-only IOC order limited at ``limit`` USD; None when flat or nothing to send."""
        lots = int(self.exchange.ledger.positions[self.account, m])
        inst = self.exchange.instruments[m]
        size_lots = min(abs(lots), inst.lots_down(qty))
        if size_lots <= 0:
            return None
        side = Side.SELL if lots > 0 else Side.BUY
        size = inst.qty(size_lots)
        ticks = inst.ticks_toward(limit, side)
        if ticks <= 0:
            ticks = 1
        return self.exchange.submit(self.account, m, side, size, inst.price(ticks), OrderType.IOC, reduce_only=True)

    def cancel_all(self) -> None:
        """Cancel the orders this trader left resting (by id: O(own orders))."""
        cancel = self.exchange.cancel
        for order_id in self.resting:
            cancel(order_id)
        self.resting.clear()

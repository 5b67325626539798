"""The population base class and the market view its members read.

A population is one Mesa agent standing for all its members (traders): member j owns
ledger row ``first_account + j`` and never a ledger. Members see only public data
(index, mark, last trade, the books, price history) through `MarketView`, and their
own account rows as of the start of the step (`Population.equity`, `margin_ratio`,
`lots`). A population decides for all its members at once (`decide`: its draws are
numpy arrays over the members concerned, its per-member arithmetic one numba kernel
doing the operations of the numpy expressions it replaced, in their order) and hands
back one `agents.orders.OrderSheet` (arrays of orders and cancels grouped by
member); the model sends its members to the exchange in one shuffled arrival order with
every other population's, and gives back what became of the orders as arrays
(`agents.orders.Outcome`, to `receive`).

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
from numba import njit
from pydantic import AfterValidator, BaseModel, ConfigDict

from agents.compiled import log_return_std
from agents.orders import OrderSheet, Outbox, Outcome
from sim.distributions import Choice, Distribution, Exponential, LogNormal, Uniform
from sim.types import Side

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

    def steps_for_many(self, seconds: np.ndarray) -> np.ndarray:
        """(k,) `steps_for` of (k,) durations in seconds (the same half-to-even rounding)."""
        return np.maximum(1, np.round(np.asarray(seconds) / self.step_seconds)).astype(np.int64)

    def chance(self, interval_seconds: float | np.ndarray) -> float | np.ndarray:
        """Probability per step of acting, for a member that acts at most once a step and
        on average once every ``interval_seconds``: ``step_seconds / interval`` (the
        mean of the geometric waiting time is then the interval), at most 1. Elementwise
        on an array of intervals."""
        return np.minimum(1.0, self.step_seconds / interval_seconds)

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

    def venue_mids(self) -> np.ndarray:
        """(I,) `venue_mid` of every instrument."""
        return np.array([self.venue_mid(m) for m in range(len(self.exchange.instruments))])

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

    def venue_drifts(self, m: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """(k,) `venue_drift` of instruments (k,) ``m`` over windows (k,) ``seconds``."""
        k = np.minimum(self.steps_for_many(seconds), self.step)
        if self.step <= 0:
            return np.zeros(len(k))
        now = self.venue_prices()[m]
        return np.log(now / self.venue_history[self.step - k, m]) / (k * self.step_seconds)

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
                vol = log_return_std(prices) / math.sqrt(self.step_seconds)
            else:
                vol = np.zeros(prices.shape[1])
            if len(self._vol_cache) > 64:
                self._vol_cache.clear()
            self._vol_cache[key] = vol
        return vol


# ----------------------------------------------------------------- populations
class Population(mesa.Agent):
    """All members of one configured population: their parameters and state as (n,)
    arrays (member j at ledger row ``first_account + j``), their strategy in `decide`.

    Args:
        model: The market model (provides ``exchange``, ``market`` and ``health``).
        first_account: Ledger row of member 0; the members' rows are consecutive.
        instruments: Indices of the Ip instruments its members trade (column j of the
            per-instrument arrays is instrument ``instruments[j]``).
        leverage: (n,) each member's leverage (notional / collateral value) target or limit.
        params: Its strategy parameters (an instance of the class's ``Params``).
        setup: The population's setup stream; subclasses draw their (n,) per-member
            parameters from it in ``__init__``, one array per parameter.
        rng: The population's step stream (``self.draws``; Mesa reserves ``rng`` for
            the model's): every draw of a step is one array over the members concerned.
    """

    Params: ClassVar[type[StrictParams]] = StrictParams
    kind: ClassVar[str] = "population"

    def __init__(
        self,
        model,
        first_account: int,
        instruments: list[int],
        leverage: np.ndarray,
        params,
        setup: np.random.Generator,
        rng: np.random.Generator,
    ):
        super().__init__(model)
        n = len(leverage)
        #: (n,) ledger rows of the members.
        self.accounts = np.arange(first_account, first_account + n)
        self.rows = slice(first_account, first_account + n)
        self.instruments = list(instruments)
        self.cols = np.array(self.instruments, dtype=np.int64)
        venue = model.exchange.instruments
        #: (I,) lot and tick sizes of every instrument of the venue (`Outbox` rounds to them).
        self.venue_lot_sizes = np.array([inst.lot_size for inst in venue])
        self.venue_tick_sizes = np.array([inst.tick_size for inst in venue])
        #: (Ip,) lot sizes of its instruments (base units per lot).
        self.lot_sizes = self.venue_lot_sizes[self.cols]
        self.leverage = np.asarray(leverage, dtype=float)
        self.params = params
        self.draws = rng
        #: (r,) member and id of each order the members left resting (some may have
        #: filled since), oldest first.
        self.resting_member = np.zeros(0, np.int64)
        self.resting_id = np.zeros(0, np.int64)
        #: False when no member's strategy does anything: the model does not schedule it.
        self.acts = n > 0

    @property
    def n(self) -> int:
        """Number of members."""
        return len(self.accounts)

    def opening_positions(self) -> np.ndarray | None:
        """(n, Ip) signed lots each member holds when the run starts, given to it by the
        model as trades against the genesis account at the index; None for none."""
        return None

    # ---------------------------------------------------------------- views
    @property
    def exchange(self) -> Exchange:
        return self.model.exchange

    @property
    def market(self) -> MarketView:
        return self.model.market

    def lots(self) -> np.ndarray:
        """(n, Ip) signed positions of the members in lots, now."""
        return self.exchange.ledger.positions[self.rows][:, self.cols]

    def positions(self) -> np.ndarray:
        """(n, Ip) signed positions of the members in base units, now."""
        return self.lots() * self.lot_sizes

    def position(self, member: int, m: int) -> float:
        """Signed position of one member in instrument m, base units."""
        ex = self.exchange
        return int(ex.ledger.positions[self.accounts[member], m]) * ex.instruments[m].lot_size

    def equity(self) -> np.ndarray:
        """(n,) the members' equity (USD) as of the start of this step's trading."""
        return self.model.health.equity[self.rows]

    def margin_ratio(self) -> np.ndarray:
        """(n,) the members' maintenance margin over equity as of the start of the step
        (>= 1 means liquidatable)."""
        return self.model.health.margin_ratio[self.rows]

    # --------------------------------------------------------------- orders
    def decide(self) -> OrderSheet:
        """The orders (and cancels) of every member that acts this step, from the public
        state and the members' start-of-step rows."""
        return Outbox(self).sheet()

    def cancels(self, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The orders (k,) ``members`` left resting, forgotten here (to cancel them):
        ``(member, order_id)``, (c,) each, grouped by member in the order of ``members``,
        each member's oldest first."""
        member, order_id, self.resting_member, self.resting_id = _withdraw(
            self.n, np.asarray(members, np.int64), self.resting_member, self.resting_id
        )
        return member, order_id

    def receive(self, sheet: OrderSheet, outcome: Outcome) -> None:
        """What the exchange did with the members' orders of the step (`Outcome`, over
        ``sheet``'s orders): remembers the ids of those that rest. Never draws."""
        rested = outcome.rested > 0
        self.resting_member = np.concatenate([self.resting_member, sheet.member[rested]])
        self.resting_id = np.concatenate([self.resting_id, outcome.order_id[rested]])


@njit(cache=True, error_model="numpy")
def _withdraw(n, members, resting_member, resting_id):
    """`Population.cancels` in one pass: ``(member, order_id, kept_member, kept_id)``, the
    (c,) resting orders of (k,) distinct ``members`` (of n) grouped by member in the order
    of ``members`` (each member's in resting order), and the (r - c,) others, in order."""
    rank = np.full(n, -1, np.int64)
    for i in range(members.shape[0]):
        if not 0 <= members[i] < n:
            raise IndexError("a member out of the population")
        rank[members[i]] = i
    counts = np.zeros(members.shape[0] + 1, np.int64)
    for m in resting_member:
        if rank[m] >= 0:
            counts[rank[m] + 1] += 1
    starts = np.cumsum(counts)  # starts[i]: first slot of the member ranked i
    c = starts[-1]
    member, order_id = np.empty(c, np.int64), np.empty(c, np.int64)
    kept_member = np.empty(resting_member.shape[0] - c, np.int64)
    kept_id = np.empty(resting_member.shape[0] - c, np.int64)
    k = 0
    for j in range(resting_member.shape[0]):
        r = rank[resting_member[j]]
        if r >= 0:
            member[starts[r]], order_id[starts[r]] = resting_member[j], resting_id[j]
            starts[r] += 1
        else:
            kept_member[k], kept_id[k] = resting_member[j], resting_id[j]
            k += 1
    return member, order_id, kept_member, kept_id

"""Market maker: Avellaneda-Stoikov quotes around its own fair value, with risk limits
that shrink its quotes (partly, not all at once) when volatility or its losses grow.

Fair value: ``m = (1 - w) * venue + w * index``, where ``venue`` is the book's mid (or
microprice; the last trade, then the index, when a side is empty) and ``w`` its
``index_weight``. Avellaneda & Stoikov (2008), in log-price units:

    reservation  r = m * exp(-q * gamma * sigma^2 * tau)      (~ m (1 - q gamma sigma^2 tau))
    half-spread  d = gamma * sigma^2 * tau / 2 + ln(1 + gamma / kappa) / gamma

Bound (a deviation from AS): the reservation's shift ``q * gamma * sigma^2 * tau`` is
capped at the half-spread, so the maker never offers below (or bids above) its own fair
value. Without it a large inventory in a volatility spike puts r near zero and the maker
gives its inventory away at a fraction of the price.

Normalization: prices enter as logs, so sigma is the venue's volatility per
sqrt(second) (`MarketView.venue_vol`), tau the horizon in seconds, kappa the decay of
the fill intensity per unit of log price (``A exp(-kappa * delta)``, delta a log
distance), and the inventory q is counted in *quote sizes*: ``q = position * m /
order_notional`` (AS quote one share and count q in shares). gamma is then
dimensionless: AS's example (gamma = 0.1 per share at s = 100) is gamma = 10 here.

Levels: ``levels`` per side at ``r * exp(-+(d + j * level_step))``, j = 0, 1, ...,
post-only, each of ``capacity * order_notional`` USD. A quote that would cross is
rejected by the venue (a value, not an error). It cancels and requotes every step
(its quotes of a step go in under one margin check, `Exchange.submit_many`): simple,
and its quotes always reflect the state at the start of the step.

Risk limits (liquidity that withdraws in stress: Kirilenko, Kyle, Samadi & Tuzun 2017
on the 2010 Flash Crash; book depth fell by over 90 % on major venues on 2025-10-10):
the quoted size is multiplied by a capacity in [0, 1] per instrument. Its target is
``f_vol * f_loss``: ``f_vol`` is 1 while short-run volatility is at most
``vol_tolerance`` times long-run volatility and falls linearly to 0 at twice that;
``f_loss`` falls linearly from 1 to 0 as the maker's loss since its equity peak grows
to ``loss_limit`` of that peak. The capacity drops to a lower target at once and
recovers toward a higher one exponentially with time constant ``refill_seconds``
(never instantly).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from numba import njit
from pydantic import Field

from agents.base import FractionDist, Population, PositiveDist, StrictParams
from agents.compiled import clip, maximum
from agents.orders import OrderSheet, Outbox
from sim.distributions import Uniform, sample
from sim.types import OrderType

#: Widest half-spread a maker quotes, log units (a factor e either side of its
#: reservation price); the A-S spread passes it only in a volatility spike far beyond
#: any seen in crypto (sigma ~ 0.1 per sqrt(second) at the defaults), when it stays out.
MAX_HALF_SPREAD = 1.0


class MarketMakerParams(StrictParams):
    """Attributes (``*`` = drawn once per maker; units in brackets):

    order_notional: Quote size per level at full capacity [USD]. 20,000 (no published
        value: the depth the researcher gives the venue; swept in
        ``configs/sweeps/leverage_vs_depth.toml``).
    levels: Quote levels per side. 3 (no published value).
    level_step_bps: Distance between levels [bps]. 5 (no published value).
    risk_aversion*: gamma [1, see the module docstring]. 10: Avellaneda & Stoikov
        (2008)'s gamma = 0.1 at s = 100, in log units.
    arrival_decay*: kappa [per unit of log price]. 2,000, so the base half-spread
        ``ln(1 + gamma/kappa)/gamma`` is ~5 bps. Not from a publication: AS's own
        example (k = 1.5 at s = 100, i.e. 150) gives ~65 bps, far wider than crypto
        perpetual books; calibrate it to the studied venue's spread.
    horizon_seconds*: tau [s]. 60: high-frequency market makers carry inventory for
        seconds to minutes (Kirilenko et al. 2017 on the E-mini's HFTs).
    index_weight*: w [fraction]. Uniform [0, 0.5]: 0 is AS's maker quoting around the
        venue's mid; a positive weight stands for makers that hedge on spot and lean
        on the index. No published value.
    reference: ``mid`` (AS) or ``microprice`` (Stoikov 2018).
    vol_seconds: Window of the short-run volatility sigma [s]. 30 (no published value).
    long_vol_seconds: Window of the long-run volatility [s]. 900 (no published value).
    vol_tolerance*: Short/long volatility ratio where its quotes start to shrink [1].
        Uniform [2, 4] around this codebase's earlier all-or-nothing withdrawal at 3x;
        no published value.
    loss_limit*: Loss since its equity peak at which its quotes are gone [fraction of
        the peak]. Uniform [0.02, 0.1] (no published value; desks' drawdown limits).
    refill_seconds*: Time constant of the capacity's recovery [s]. Uniform [30, 300]:
        in the 2010 Flash Crash liquidity came back within minutes of the 5-second CME
        pause (Kirilenko et al. 2017; CFTC-SEC 2010 report).
    """

    order_notional: PositiveDist = 20_000.0
    levels: Annotated[int, Field(ge=1)] = 3
    level_step_bps: Annotated[float, Field(ge=0)] = 5.0
    risk_aversion: PositiveDist = 10.0
    arrival_decay: PositiveDist = 2_000.0
    horizon_seconds: PositiveDist = 60.0
    index_weight: FractionDist = Uniform(uniform=(0.0, 0.5))
    reference: Literal["mid", "microprice"] = "mid"
    vol_seconds: Annotated[float, Field(gt=0)] = 30.0
    long_vol_seconds: Annotated[float, Field(gt=0)] = 900.0
    vol_tolerance: PositiveDist = Uniform(uniform=(2.0, 4.0))
    loss_limit: PositiveDist = Uniform(uniform=(0.02, 0.1))
    refill_seconds: PositiveDist = Uniform(uniform=(30.0, 300.0))


class MarketMaker(Population):
    """See the module docstring. Arrays are (n,) per member or (n, Ip) per member and
    instrument; ``capacity[i, j]`` is member i's current capacity in its j-th
    instrument. Every member cancels and requotes every step; no draws per step."""

    Params = MarketMakerParams
    kind = "market_maker"

    def __init__(self, model, first_account, instruments, leverage, params: MarketMakerParams, setup, rng):
        super().__init__(model, first_account, instruments, leverage, params, setup, rng)
        n = self.n
        self.notional = sample(params.order_notional, setup, n)
        self.gamma = sample(params.risk_aversion, setup, n)
        self.kappa = sample(params.arrival_decay, setup, n)
        self.horizon = sample(params.horizon_seconds, setup, n)
        self.index_weight = sample(params.index_weight, setup, n)
        self.vol_tolerance = sample(params.vol_tolerance, setup, n)
        self.loss_limit = sample(params.loss_limit, setup, n)
        self.refill = sample(params.refill_seconds, setup, n)
        self.capacity = np.ones((n, len(instruments)))
        self.peak_equity = np.zeros(n)
        self._updated = None  # step of the last capacity update

    # -------------------------------------------------------------- risk limits
    def capacity_targets(self, equity: np.ndarray) -> np.ndarray:
        """(n, Ip) target capacity from volatility and drawdown (module docstring), for
        (n,) equities."""
        p: MarketMakerParams = self.params
        short = self.market.venue_vols(p.vol_seconds)[self.cols]
        long = self.market.venue_vols(p.long_vol_seconds)[self.cols]
        self.peak_equity, target = _capacity_targets(
            np.asarray(equity, np.float64), self.peak_equity, self.loss_limit, short, long, self.vol_tolerance
        )
        return target

    def update_capacity(self, equity: np.ndarray) -> None:
        """Move each capacity to its target: down at once, up with time constant
        ``refill`` over the seconds since the last update."""
        t = self.market.step
        elapsed = 0.0 if self._updated is None else (t - self._updated) * self.market.step_seconds
        self._updated = t
        self.capacity = _move_capacity(self.capacity_targets(equity), self.capacity, self.refill, elapsed)

    # ------------------------------------------------------------------ quoting
    def fair_values(self) -> np.ndarray:
        """(n, Ip) ``(1 - w) * venue reference + w * index``, USD."""
        market = self.market
        venue = np.empty(len(self.instruments))
        for j, m in enumerate(self.instruments):
            ref = market.microprice(m) if self.params.reference == "microprice" else market.mid(m)
            venue[j] = market.venue_mid(m) if ref is None else ref  # one side empty: last trade, then index
        w = self.index_weight[:, None]
        return (1.0 - w) * venue[None, :] + w * market.index[self.cols][None, :]

    def reservations(self, fair: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(r, d)``, (n, Ip) each: reservation price (USD) and half-spread (log units;
        inf where a volatility spike leaves no sensible quote), around the fair values
        (computed unless given)."""
        fair = self.fair_values() if fair is None else fair
        sigma = self.market.venue_vols(self.params.vol_seconds)[self.cols]
        return _reservations(fair, sigma, self.gamma, self.kappa, self.horizon, self.positions(), self.notional)

    def decide(self) -> OrderSheet:
        out = Outbox(self)
        out.cancel(*self.cancels(np.arange(self.n)))
        equity = self.equity()
        self.update_capacity(equity)
        self.quote(out, equity)
        return out.sheet()

    def quote(self, out: Outbox, equity: np.ndarray) -> None:
        """Every solvent member's quotes: per instrument with capacity, ``levels`` bids
        and asks (bids while its inventory is under ``leverage x equity``, asks while it
        is over minus that), each of ``capacity x order_notional`` USD."""
        p: MarketMakerParams = self.params
        fair = self.fair_values()
        r, half = self.reservations(fair)
        member, col, side, qty, price = _quote_rows(
            fair, r, half, self.positions(), self.capacity, self.notional, self.leverage, equity, p.levels,
            p.level_step_bps / 1e4,
        )  # fmt: skip
        out.add(self.cols[col], member, side, qty, price, OrderType.POST_ONLY)


@njit(cache=True, error_model="numpy")
def _quote_rows(fair, r, half, positions, capacity, notional, leverage, equity, levels, step):
    """`MarketMaker.quote`'s orders, in one pass: ``(member, col, side, qty, price)``,
    (k,) each (sizes in base units, limits in USD, before rounding), instrument column
    outermost, then level, then bid before ask, then member.

    Args:
        fair, r, half: (n, Ip) fair value, reservation price (USD) and half-spread (log).
        positions, capacity: (n, Ip) position (base units) and capacity.
        notional, leverage, equity: (n,) quote size at full capacity (USD), leverage
            limit and equity (USD).
        levels, step: Levels per side and the distance between them (log units).
    """
    n, n_cols = fair.shape
    size = n * n_cols * levels * 2
    member, col, side = np.empty(size, np.int64), np.empty(size, np.int64), np.empty(size, np.int64)
    qty, price = np.empty(size), np.empty(size)
    k = 0
    for j in range(n_cols):
        for level in range(levels):
            for s in (1, -1):
                for i in range(n):
                    if not (equity[i] > 0 and capacity[i, j] > 0 and np.isfinite(half[i, j])):
                        continue
                    limit, inventory = leverage[i] * equity[i], positions[i, j] * fair[i, j]
                    if not (inventory < limit if s > 0 else inventory > -limit):
                        continue  # bids while under its limit, asks while over minus it
                    offset = half[i, j] + level * step
                    member[k], col[k], side[k] = i, j, s
                    qty[k] = capacity[i, j] * notional[i] / fair[i, j]
                    price[k] = r[i, j] * np.exp(-offset if s > 0 else offset)
                    k += 1
    return member[:k], col[:k], side[:k], qty[:k], price[:k]


@njit(cache=True, error_model="numpy")
def _capacity_targets(equity, peak, loss_limit, short, long, vol_tolerance):
    """`MarketMaker.capacity_targets` in one pass: ``(peak, target)``, the (n,) new equity
    peaks and (n, Ip) targets, from (n,) equities, peaks, loss limits and volatility
    tolerances and (Ip,) short- and long-run volatilities."""
    n, n_cols = equity.shape[0], short.shape[0]
    new_peak, target = np.empty(n), np.empty((n, n_cols))
    for i in range(n):
        e, top = equity[i], peak[i]
        top = maximum(top, e)
        new_peak[i] = top
        loss = 1.0 - e / top if top > 0 else 1.0
        f_loss = clip(1.0 - loss / loss_limit[i], 0.0, 1.0)
        for j in range(n_cols):
            ratio = short[j] / long[j] if long[j] > 0 else 0.0
            target[i, j] = clip(2.0 - ratio / vol_tolerance[i], 0.0, 1.0) * f_loss
    return new_peak, target


@njit(cache=True, error_model="numpy")
def _move_capacity(target, capacity, refill, elapsed):
    """(n, Ip) capacities moved to their targets: down at once, up by ``1 - exp(-elapsed /
    refill)`` of the gap ((n,) time constants, seconds)."""
    out = np.empty_like(target)
    for i in range(target.shape[0]):
        keep = np.exp(-elapsed / refill[i])
        for j in range(target.shape[1]):
            t, c = target[i, j], capacity[i, j]
            out[i, j] = t if t <= c else t - (t - c) * keep
    return out


@njit(cache=True, error_model="numpy")
def _reservations(fair, sigma, gamma, kappa, horizon, positions, notional):
    """`MarketMaker.reservations` in one pass, from (n, Ip) fair values and positions
    (base units), (Ip,) volatilities and (n,) gamma, kappa, horizons and quote sizes."""
    n, n_cols = fair.shape
    reservation, half_spread = np.empty((n, n_cols)), np.empty((n, n_cols))
    for i in range(n):
        base = np.log1p(gamma[i] / kappa[i]) / gamma[i]
        for j in range(n_cols):
            risk = gamma[i] * sigma[j] * sigma[j] * horizon[i]
            half = 0.5 * risk + base
            if not half <= MAX_HALF_SPREAD:  # NaN or beyond any sensible quote: it stays out
                reservation[i, j], half_spread[i, j] = fair[i, j], np.inf
                continue
            q = positions[i, j] * fair[i, j] / notional[i]
            shift = clip(q * risk, -half, half)  # never through its fair value
            reservation[i, j], half_spread[i, j] = fair[i, j] * np.exp(-shift), half
    return reservation, half_spread

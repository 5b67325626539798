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
(one margin check per batch through `Trader.submit_many`): simple, and its quotes
always reflect the current state.

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

import math
from typing import Annotated, Literal

from pydantic import Field

from agents.base import FractionDist, PositiveDist, StrictParams, Trader
from sim.distributions import Uniform, draw
from sim.types import OrderRequest, OrderType, Side

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


class MarketMaker(Trader):
    """See the module docstring. ``capacity[j]`` is its current capacity in the j-th
    of its instruments."""

    Params = MarketMakerParams
    kind = "market_maker"

    def __init__(self, model, account, instruments, leverage, params: MarketMakerParams, rng):
        super().__init__(model, account, instruments, leverage, params, rng)
        self.notional = draw(params.order_notional, rng)
        self.gamma = draw(params.risk_aversion, rng)
        self.kappa = draw(params.arrival_decay, rng)
        self.horizon = draw(params.horizon_seconds, rng)
        self.index_weight = draw(params.index_weight, rng)
        self.vol_tolerance = draw(params.vol_tolerance, rng)
        self.loss_limit = draw(params.loss_limit, rng)
        self.refill = draw(params.refill_seconds, rng)
        self.capacity = [1.0] * len(instruments)
        self.peak_equity = 0.0
        self._updated = None  # step of the last capacity update

    # -------------------------------------------------------------- risk limits
    def capacity_targets(self, equity: float) -> list[float]:
        """Target capacity per instrument from volatility and drawdown (docstring)."""
        p: MarketMakerParams = self.params
        self.peak_equity = max(self.peak_equity, equity)
        loss = 1.0 - equity / self.peak_equity if self.peak_equity > 0 else 1.0
        f_loss = min(1.0, max(0.0, 1.0 - loss / self.loss_limit))
        short = self.market.venue_vols(p.vol_seconds)
        long = self.market.venue_vols(p.long_vol_seconds)
        targets = []
        for m in self.instruments:
            ratio = short[m] / long[m] if long[m] > 0 else 0.0
            f_vol = min(1.0, max(0.0, 2.0 - ratio / self.vol_tolerance))
            targets.append(f_vol * f_loss)
        return targets

    def update_capacity(self, equity: float) -> None:
        """Move each capacity to its target: down at once, up with time constant
        ``refill`` over the seconds since the last update."""
        t = self.market.step
        elapsed = 0.0 if self._updated is None else (t - self._updated) * self.market.step_seconds
        self._updated = t
        keep = math.exp(-elapsed / self.refill)
        for j, target in enumerate(self.capacity_targets(equity)):
            cap = self.capacity[j]
            self.capacity[j] = target if target <= cap else target - (target - cap) * keep

    # ------------------------------------------------------------------ quoting
    def fair_value(self, m: int) -> float:
        """``(1 - w) * venue reference + w * index``, USD."""
        market = self.market
        venue = market.microprice(m) if self.params.reference == "microprice" else market.mid(m)
        if venue is None:
            venue = market.venue_mid(m)  # one side empty: last trade, then index
        return (1.0 - self.index_weight) * venue + self.index_weight * float(market.index[m])

    def reservation(self, m: int, fair: float | None = None) -> tuple[float, float]:
        """``(r, d)``: reservation price (USD) and half-spread (log units), around its fair
        value (computed unless given)."""
        fair = self.fair_value(m) if fair is None else fair
        sigma = self.market.venue_vol(m, self.params.vol_seconds)
        risk = self.gamma * sigma * sigma * self.horizon
        q = self.position(m) * fair / self.notional
        half = 0.5 * risk + math.log1p(self.gamma / self.kappa) / self.gamma
        if not half <= MAX_HALF_SPREAD:  # NaN or beyond any sensible quote: it stays out
            return fair, math.inf
        shift = max(-half, min(half, q * risk))  # never quote through its own fair value
        return fair * math.exp(-shift), half

    def step(self) -> None:
        self.cancel_all()
        equity = self.equity()
        self.update_capacity(equity)
        if equity <= 0:
            return
        quotes: list[OrderRequest | None] = []
        for j, m in enumerate(self.instruments):
            if self.capacity[j] > 0:
                quotes += self._quotes(m, self.capacity[j], equity)
        if quotes:
            self.submit_many(quotes)

    def _quotes(self, m: int, capacity: float, equity: float) -> list[OrderRequest | None]:
        p: MarketMakerParams = self.params
        fair = self.fair_value(m)
        r, half = self.reservation(m, fair)
        if not math.isfinite(half):
            return []  # a volatility spike this large leaves no sensible quote: it stays out
        limit = self.leverage * equity
        inventory = self.position(m) * fair
        size = capacity * self.notional / fair
        step = p.level_step_bps / 1e4
        quotes = []
        for level in range(p.levels):
            offset = half + level * step
            if inventory < limit:
                quotes.append(self.order(m, Side.BUY, size, r * math.exp(-offset), OrderType.POST_ONLY))
            if inventory > -limit:
                quotes.append(self.order(m, Side.SELL, size, r * math.exp(offset), OrderType.POST_ONLY))
        return quotes

"""Fundamentalist-chartist-noise trader: forms the venue's price with limit orders.

The rule of Chiarella, Iori & Perelló (2009) as PAMS implements it (``FCNAgent``,
Hirano & Izumi's PAMS; Rao 2025 uses it for perpetuals). Each agent i holds weights
``g1`` (fundamental), ``g2`` (chartist) and ``n`` (noise), a chartist window ``L_i``, a
mean-reversion time ``tau_F``, an order margin ``k`` and an order lifetime, all drawn
once from its own generator. When it acts it expects the per-second log return

    r = (g1 * ln(I / p) / tau_F + g2 * C + n * eps) / (g1 + g2 + n)

where p is the venue's own price (`MarketView.venue_price`: last trade, else mid, else
index), I the index, C the venue's mean log return per second over its window and
``eps ~ N(0, noise_scale)``. Its expected price over its horizon (its window, as in
PAMS) is ``p_hat = p * exp(r * L_i)``; it posts ONE limit order: a buy at
``p_hat * (1 - k)`` if ``p_hat > p``, a sell at ``p_hat * (1 + k)`` if ``p_hat < p``
(PAMS's "fixed" margin). The order may cross the book (it then takes liquidity) and its
remainder rests until its lifetime ends, when the agent cancels it.

Only the fundamental term looks at the index; the chartist and noise terms look at the
venue alone, so the book's shape comes from these orders.

Scaling (a documented choice): PAMS's steps are abstract. One PAMS step is read as one
second for windows and times, and PAMS's noise scale (0.001 per step) and margin range
([0, 0.1]) are divided by 100 to bring the noise term's spread over a horizon to the
size of BTC's moves over it (about 1e-4 per sqrt(second), i.e. ~60 % a year).
"""

from __future__ import annotations

import math
from collections import deque

from agents.base import FractionDist, NonNegativeDist, PositiveDist, StrictParams, Trader
from sim.distributions import Exponential, Uniform, draw
from sim.types import OrderType, Side


class FCNParams(StrictParams):
    """Attributes (drawn once per agent; units in brackets):

    fundamental_weight: g1 [1]. Exponential, mean 1 (PAMS samples: ``fundamentalWeight
        = {expon: [1.0]}``).
    chart_weight: g2 [1]. Exponential, mean 1. PAMS's draw; its CI2002 sample sets the
        mean to 0 (no chartists), Chiarella, Iori & Perelló (2009) find the chartists
        produce the fat tails and clustering, so they are on by default here.
    noise_weight: n [1]. Exponential, mean 1 (PAMS samples: ``noiseWeight``).
    noise_scale: Standard deviation of eps [log return per second]. 1e-5: PAMS's 0.001
        per step scaled by 1/100 (module docstring).
    window_seconds: Chartist window and horizon L_i [s]. Uniform [100, 200] (PAMS
        ``timeWindowSize = [100, 200]``, one step read as one second).
    mean_reversion_seconds: tau_F [s]. Uniform [50, 100] (PAMS CI2002
        ``meanReversionTime = {uniform: [50, 100]}``).
    lifetime_seconds: How long its order rests [s]; None = its window (PAMS: an
        order's ``ttl`` is the agent's ``timeWindowSize``).
    order_margin: k [fraction of p_hat]. Uniform [0, 0.001]: PAMS's ``orderMargin =
        [0.0, 0.1]`` scaled by 1/100 (module docstring).
    interval_seconds: Mean time between its actions [s] (it acts with probability
        ``step_seconds / interval`` per step). 100: PAMS submits one normal
        order per step from a population of 100 FCN agents (CI2002 sample), so each
        acts every ~100 steps.
    order_notional: Size of each order [USD]. 2,000 (no published value; PAMS orders one
        unit; scale it with the population's collateral).
    """

    fundamental_weight: NonNegativeDist = Exponential(exponential=1.0)
    chart_weight: NonNegativeDist = Exponential(exponential=1.0)
    noise_weight: NonNegativeDist = Exponential(exponential=1.0)
    noise_scale: NonNegativeDist = 1e-5
    window_seconds: PositiveDist = Uniform(uniform=(100.0, 200.0))
    mean_reversion_seconds: PositiveDist = Uniform(uniform=(50.0, 100.0))
    lifetime_seconds: PositiveDist | None = None
    order_margin: FractionDist = Uniform(uniform=(0.0, 0.001))
    interval_seconds: PositiveDist = 100.0
    order_notional: PositiveDist = 2_000.0


class FCNTrader(Trader):
    """See the module docstring. Attributes drawn per agent: ``g1, g2, n, noise,
    window, tau_f, lifetime, margin, interval, notional`` (seconds and USD)."""

    Params = FCNParams
    kind = "fcn"

    def __init__(self, model, account, instruments, leverage, params: FCNParams, rng):
        super().__init__(model, account, instruments, leverage, params, rng)
        self.g1 = draw(params.fundamental_weight, rng)
        self.g2 = draw(params.chart_weight, rng)
        self.n = draw(params.noise_weight, rng)
        self.noise = draw(params.noise_scale, rng)
        self.window = draw(params.window_seconds, rng)
        self.tau_f = draw(params.mean_reversion_seconds, rng)
        self.lifetime = self.window if params.lifetime_seconds is None else draw(params.lifetime_seconds, rng)
        self.margin = draw(params.order_margin, rng)
        self.interval = draw(params.interval_seconds, rng)
        self.notional = draw(params.order_notional, rng)
        market = model.market
        self._chance = market.chance(self.interval)
        self._lifetime_steps = market.steps_for(self.lifetime)
        #: (expiry step, order id) of its resting orders, oldest first.
        self.expiring: deque[tuple[int, int]] = deque()

    def expected_price(self, m: int, eps: float) -> tuple[float, float]:
        """``(p, p_hat)``: the venue price now and the price it expects over its horizon,
        given the noise draw ``eps`` (already scaled)."""
        market = self.market
        p = market.venue_price(m)
        total = self.g1 + self.g2 + self.n
        if total <= 0:
            return p, p
        fundamental = math.log(float(market.index[m]) / p) / self.tau_f
        chart = market.venue_drift(m, self.window)
        r = (self.g1 * fundamental + self.g2 * chart + self.n * eps) / total
        return p, p * math.exp(r * self.window)

    def step(self) -> None:
        t = self.market.step
        expiring = self.expiring
        while expiring and expiring[0][0] <= t:
            self.exchange.cancel(expiring.popleft()[1])
        rng = self.draws
        if rng.random() >= self._chance:
            return
        instruments = self.instruments
        m = instruments[0] if len(instruments) == 1 else instruments[rng.integers(len(instruments))]
        p, p_hat = self.expected_price(m, self.noise * float(rng.standard_normal()))
        if p_hat > p:
            side, price = Side.BUY, p_hat * (1 - self.margin)
        elif p_hat < p:
            side, price = Side.SELL, p_hat * (1 + self.margin)
        else:
            return
        equity = self.equity()
        room = self.leverage * equity / p - side * self.position(m)
        qty = min(self.notional / p, room)
        if qty <= 0:
            return
        result = self.send(self.order(m, side, qty, price, OrderType.LIMIT))
        if result is not None and result.rested:
            expiring.append((t + self._lifetime_steps, result.order_id))

"""Fundamentalist-chartist-noise trader: forms the venue's price with limit orders.

The rule of Chiarella, Iori & Perelló (2009) as PAMS implements it (``FCNAgent``,
Hirano & Izumi's PAMS; Rao 2025 uses it for perpetuals). Each agent i holds weights
``g1`` (fundamental), ``g2`` (chartist) and ``n`` (noise), a chartist window ``L_i``, a
mean-reversion time ``tau_F``, an order margin ``k`` and an order lifetime, all drawn
once per agent (elements of its population's arrays). When it acts it expects the
per-second log return

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

import numpy as np
from numba import njit

from agents.base import FractionDist, NonNegativeDist, Population, PositiveDist, StrictParams
from agents.compiled import minimum
from agents.orders import OrderSheet, Outbox, Outcome, orders_by_key
from sim.distributions import Exponential, Uniform, sample
from sim.types import OrderType


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


class FCNTrader(Population):
    """See the module docstring. (n,) arrays drawn per member: ``g1, g2, noise_weight,
    noise, window, tau_f, lifetime, margin, interval, notional`` (seconds and USD).
    Draws per step: one uniform per member (does it act?), then for the k acting
    members an instrument (with several) and a standard normal (k each)."""

    Params = FCNParams
    kind = "fcn"

    def __init__(self, model, first_account, instruments, leverage, params: FCNParams, setup, rng):
        super().__init__(model, first_account, instruments, leverage, params, setup, rng)
        n = self.n
        self.g1 = sample(params.fundamental_weight, setup, n)
        self.g2 = sample(params.chart_weight, setup, n)
        self.noise_weight = sample(params.noise_weight, setup, n)
        self.noise = sample(params.noise_scale, setup, n)
        self.window = sample(params.window_seconds, setup, n)
        self.tau_f = sample(params.mean_reversion_seconds, setup, n)
        lifetime = params.lifetime_seconds
        self.lifetime = self.window.copy() if lifetime is None else sample(lifetime, setup, n)
        self.margin = sample(params.order_margin, setup, n)
        self.interval = sample(params.interval_seconds, setup, n)
        self.notional = sample(params.order_notional, setup, n)
        market = model.market
        self.chance = market.chance(self.interval)
        self.lifetime_steps = market.steps_for_many(self.lifetime)
        #: (n,) each member's chart window in whole steps (`MarketView.steps_for_many`).
        self.window_steps = market.steps_for_many(self.window)
        #: (r,) expiry step, order id and member of each of the members' resting orders.
        self.expiry = np.zeros(0, np.int64)
        self.expiring_id = np.zeros(0, np.int64)
        self.expiring_member = np.zeros(0, np.int64)

    def expected_prices(self, members: np.ndarray, cols: np.ndarray, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(p, p_hat)``, (k,) each: the venue price now of each member's instrument
        (column ``cols``) and the price it expects over its horizon, given its noise draw
        ``eps`` (already scaled)."""
        market = self.market
        return _expected_prices(
            members, self.cols[cols], market.venue_prices(), market.index, self.g1, self.g2, self.noise_weight,
            self.window, self.window_steps, self.tau_f, market.venue_history, market.step, market.step_seconds, eps,
        )  # fmt: skip

    def decide(self) -> OrderSheet:
        t = self.market.step
        out = Outbox(self)
        due = self.expiry <= t
        if due.any():  # cancelled in order of expiry, then of id
            order = np.lexsort((self.expiring_id[due], self.expiry[due]))
            out.cancel(self.expiring_member[due][order], self.expiring_id[due][order])
            self.expiry, self.expiring_id = self.expiry[~due], self.expiring_id[~due]
            self.expiring_member = self.expiring_member[~due]
        rng = self.draws
        acting = np.flatnonzero(rng.random(self.n) < self.chance)
        k = len(acting)
        if k == 0:
            return out.sheet()
        n_inst = len(self.instruments)
        col = rng.integers(n_inst, size=k) if n_inst > 1 else np.zeros(k, dtype=np.int64)
        p, p_hat = self.expected_prices(acting, col, self.noise[acting] * rng.standard_normal(k))
        member, col, side, lots, ticks = _fcn_rows(
            acting, col, p, p_hat, self.margin, self.leverage, self.equity(), self.notional, self.lots(),
            self.lot_sizes, self.venue_tick_sizes[self.cols],
        )  # fmt: skip
        out.add_rows(member, self.cols[col], side, lots, ticks, OrderType.LIMIT, np.zeros(len(member), bool), lots > 0)
        return out.sheet()

    def receive(self, sheet: OrderSheet, outcome: Outcome) -> None:
        """A resting order is cancelled when its member's lifetime ends."""
        rested = outcome.rested > 0
        members = sheet.member[rested]
        self.expiry = np.concatenate([self.expiry, self.market.step + self.lifetime_steps[members]])
        self.expiring_id = np.concatenate([self.expiring_id, outcome.order_id[rested]])
        self.expiring_member = np.concatenate([self.expiring_member, members])


@njit(cache=True, error_model="numpy")
def _fcn_rows(acting, col, p, p_hat, margin, leverage, equity, notional, held, lot_sizes, tick_sizes):
    """The acting members' limit orders on the grid, in one pass: ``(member, col, side,
    lots, ticks)``, (s,) each, for those that expect a move and have room (lots 0: none
    after rounding), grouped by instrument column, members in acting order.

    Args:
        acting, col: (k,) the acting members and their instrument columns.
        p, p_hat: (k,) venue price now and the price each expects (USD).
        margin, leverage, equity, notional: (n,) limit margin (fraction), position
            limit, equity and order size (USD).
        held: (n, Ip) positions (lots). lot_sizes, tick_sizes: (Ip,) grid.
    """
    k, n_cols = acting.shape[0], lot_sizes.shape[0]
    side, qty, price = np.zeros(k, np.int64), np.empty(k), np.empty(k)
    for r in range(k):
        i, j = acting[r], col[r]
        gap = p_hat[r] - p[r]
        side[r] = 1 if gap > 0 else -1 if gap < 0 else 0
        price[r] = p_hat[r] * (1 - margin[i]) if side[r] > 0 else p_hat[r] * (1 + margin[i])
        room = leverage[i] * equity[i] / p[r] - side[r] * (held[i, j] * lot_sizes[j])
        qty[r] = minimum(notional[i] / p[r], room)
    key = np.where(side != 0, col, -1)  # by instrument column; no expected move, no order
    picked, lots, ticks = orders_by_key(key, n_cols, side, col, qty, price, lot_sizes, tick_sizes)
    return acting[picked], col[picked], side[picked], lots, ticks


@njit(cache=True, error_model="numpy")
def _expected_prices(
    members, m, venue, index, g1, g2, noise_weight, window, window_steps, tau_f, venue_history, step, step_seconds,
    eps,
):  # fmt: skip
    """`FCNTrader.expected_prices` in one pass, for (k,) members trading (k,) instruments
    ``m``: the (I,) venue prices and index now, the members' (n,) weights, windows
    (seconds and whole steps) and mean-reversion times, the (N + 1, I) venue history
    (`MarketView.venue_drifts` reads it at ``step``) and (k,) noise draws."""
    k = members.shape[0]
    p, p_hat = np.empty(k), np.empty(k)
    for r in range(k):
        i, j = members[r], m[r]
        p[r] = venue[j]
        total = g1[i] + g2[i] + noise_weight[i]
        if not total > 0:
            p_hat[r] = p[r]
            continue
        fundamental = np.log(index[j] / p[r]) / tau_f[i]
        if step <= 0:
            chart = 0.0
        else:
            back = min(window_steps[i], step)
            chart = np.log(p[r] / venue_history[step - back, j]) / (back * step_seconds)
        drift = (g1[i] * fundamental + g2[i] * chart + noise_weight[i] * eps[r]) / total
        p_hat[r] = p[r] * np.exp(drift * window[i])
    return p, p_hat

"""The index: the rest of the market's price, moved by this venue's aggressive flow.

A propagator (Bouchaud, Gefen, Potters & Wyart 2004; MARKET-MODEL section 1):

    log I_t = log X_t + sum_k G(t - u_k) f(q_k)

- ``X_t``: the exogenous reference path (`sim.prices`), "everything else".
- ``q_k``: one *flow term*: signed aggressive notional (USD, buys > 0) executed at time
  ``u_k`` (seconds). Each step, traders' taker flow on an instrument is one term; each
  liquidation's fills are a term of their own, and so is every slice that the backstop
  vault sells of a position it took over (tagged with the liquidation it came from).
- ``f(q) = Y sigma_D sign(q) sqrt(|q| / V_D)``: the square-root law (Tóth et al. 2011;
  it holds for Bitcoin over four decades: Donier & Bonart 2015), each term treated as a
  metaorder. ``sigma_D`` is the daily volatility, ``V_D`` the whole market's daily volume:
  the venue's own traded notional per day (averaged since the start of the run) divided
  by its share of global volume, so the venue's flow moves the index in proportion to
  its weight in the market.
- ``G(l) = (1 + l / l0)^(-beta)``: impact decays (transient impact), ``beta = 1/2``.

Cost: the power law is evaluated as a sum of exponentials, ``G(l) ~ sum_j w_j
exp(-r_j l)`` (`exponential_sum`), so each instrument's impact is J running sums that
decay by a factor per step: advancing the clock and adding a term cost O(I J), whatever
the number of past terms (the exact sum cost O(terms) a step, O(steps^2) a run). The
nodes are the trapezoidal rule on ``G(l) = 1/Gamma(beta) int exp(beta t - e^t (1 + l /
l0)) dt`` (the construction of Beylkin & Monzón 2010, "Approximation by exponential sums
revisited", Appl. Comput. Harmon. Anal. 28, section 3), its tail below the slowest node
lumped into one node: within a relative `KERNEL_TOLERANCE` of the power law for every
lag up to `MAX_LAG_SECONDS` (one year), about 120 nodes for ``beta = 1/2``.

Resting or cancelled quotes move nothing: only executed aggressive flow is a term.

Because the index is a sum over known terms, the index *without* some liquidations is
exact for their terms, at the realised liquidity: drop their terms
(`VenueIndex.without_sources`; V_D, which the liquidations' own volume entered, and the
book stay as they were). The liquidation engine uses it to attribute accounts to the
liquidations whose impact pushed them under.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import gammainc

from sim.types import FillColumns

#: Source id of traders' ordinary flow (liquidation terms carry the liquidation's id >= 0).
TRADERS = -1
SECONDS_PER_DAY = 86_400.0
#: Kinds of flow terms, as recorded per step in the market table.
FLOW_KINDS = ("traders", "liquidation", "unwind")
#: Lags (seconds) up to which the exponential sum is within `KERNEL_TOLERANCE` of G.
MAX_LAG_SECONDS = 365 * SECONDS_PER_DAY
#: Bound on |sum_j w_j exp(-r_j l) / G(l) - 1| for 0 <= l <= `MAX_LAG_SECONDS`.
KERNEL_TOLERANCE = 1e-7


@dataclass(frozen=True)
class ImpactParams:
    """Impact parameters of one instrument.

    Attributes:
        daily_volatility: sigma_D, fraction per day.
        venue_share: The venue's share of the instrument's global volume (0, 1].
        y: Y of the square-root law (order 1: Tóth et al. 2011).
        beta: Decay exponent of the propagator.
        decay_seconds: l0, the time over which impact starts to decay, seconds.
    """

    daily_volatility: float
    venue_share: float
    y: float = 1.0
    beta: float = 0.5
    decay_seconds: float = 5.0


def exponential_sum(beta: float, decay_seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Rates and weights of ``G(l) = (1 + l / l0)^-beta ~ sum_j w_j exp(-r_j l)``.

    The trapezoidal rule with step h on ``G(l) = 1/Gamma(beta) int exp(beta t - e^t (1 + l
    / l0)) dt`` gives node ``t_j`` the rate ``e^(t_j) / l0`` and the weight ``h
    exp(beta t_j - e^(t_j)) / Gamma(beta)``; its aliasing error falls like ``|Gamma(beta +
    2 pi i / h)|``, so h shrinks for large beta (Beylkin & Monzón 2010). Nodes start
    where ``e^t (1 + L / l0)`` (L = `MAX_LAG_SECONDS`) is ``tiny = 1e-6^(1 / beta)`` (at
    most 1e-7): the mass below is ``P(beta, e^t)`` (the regularized incomplete gamma
    function) and becomes one node at that mass's mean rate, ``beta / (beta + 1) e^t /
    l0``. Weights are normalized so that G(0) = 1 exactly. `tests/test_impact.py` checks
    the `KERNEL_TOLERANCE` bound over beta in [0.01, 30] and l0 in [0.5, 300] s.

    Returns:
        ``(rates (J,) per second, weights (J,))``.
    """
    h = min(0.4, 1.2 / beta)
    tiny = max(1e-300, min(1e-7, 1e-6 ** (1.0 / beta)))
    t = np.arange(math.log(tiny / (1.0 + MAX_LAG_SECONDS / decay_seconds)), math.log(40.0 + 2.0 * beta) + h, h)
    weights = h * np.exp(beta * t - np.exp(t) - math.lgamma(beta))
    below = t[0] - h / 2
    rates = np.concatenate([[beta / (beta + 1.0) * math.exp(below)], np.exp(t)]) / decay_seconds
    weights = np.concatenate([[gammainc(beta, math.exp(below))], weights])
    kept = weights > 0.0  # for large beta the slowest nodes underflow to nothing
    return rates[kept], weights[kept] / weights[kept].sum()


class Propagator:
    """Flow terms of all instruments and their decayed sum.

    Each instrument's impact is kept as J running sums (one per node of its
    `exponential_sum`), decayed when the clock advances: ``S[m, j] = sum_k exp(-r_j (now
    - u_k)) f(q_k)`` over instrument m's terms, and ``log impact = sum_j w_j S[m, j]``. So
    advancing, adding a term and reading the impact cost O(I J), not O(terms). Terms of
    liquidation sources (id >= 0) are also kept as parallel arrays (time seconds,
    instrument, impact in log price, source id) for `by_source`; traders' terms are not
    stored.

    Args:
        params: One `ImpactParams` per instrument (I of them).
    """

    def __init__(self, params: list[ImpactParams]):
        self.n = len(params)
        self._coef = np.array([p.y * p.daily_volatility for p in params])
        self._share = np.array([p.venue_share for p in params])
        kernels = [exponential_sum(p.beta, p.decay_seconds) for p in params]
        width = max(rates.size for rates, _ in kernels)
        #: (I, J) node rates (per second) and weights; instruments with fewer nodes are
        #: padded with zero weights.
        self._rates = np.zeros((self.n, width))
        self._weights = np.zeros((self.n, width))
        for m, (rates, weights) in enumerate(kernels):
            self._rates[m, : rates.size], self._weights[m, : weights.size] = rates, weights
        self._sums = np.zeros((self.n, width))
        self._time = np.zeros(64)
        self._inst = np.zeros(64, dtype=np.int64)
        self._impact = np.zeros(64)
        self._source = np.zeros(64, dtype=np.int64)
        self._count = 0
        self._now = 0.0
        #: (I,) USD traded on the venue since the start (both sides counted once).
        self.venue_volume = np.zeros(self.n)

    # -------------------------------------------------------------- time, volume
    def advance(self, now: float) -> None:
        """Move the clock to ``now`` seconds (not earlier than before) and decay all
        earlier terms to it."""
        if now < self._now:
            raise ValueError(f"the propagator's clock cannot go back from {self._now} s to {now} s")
        self._sums *= np.exp(-self._rates * (now - self._now))
        self._now = now

    def add_volume(self, m: int, usd: float) -> None:
        """Count ``usd`` of venue trades on instrument m in the liquidity estimate."""
        self.venue_volume[m] += usd

    def add_volumes(self, instruments: np.ndarray, usd: np.ndarray) -> None:
        """`add_volume` of each of (n,) ``usd`` on (n,) ``instruments``, one after another."""
        np.add.at(self.venue_volume, instruments, usd)

    def daily_volume(self) -> np.ndarray:
        """(I,) V_D: the whole market's USD volume per day implied by the venue's so far."""
        elapsed = max(self._now, 1e-9)
        return self.venue_volume * (SECONDS_PER_DAY / elapsed) / self._share

    # --------------------------------------------------------------------- terms
    def instant_impact(self, m: int, notional: float) -> float:
        """f(q) of a signed USD notional on instrument m, in log price."""
        volume = float(self.daily_volume()[m])
        if notional == 0.0 or volume <= 0.0:
            return 0.0
        return float(np.sign(notional) * self._coef[m] * np.sqrt(abs(notional) / volume))

    def add(self, m: int, notional: float, source: int | Sequence[tuple[float, int]] = TRADERS) -> float:
        """Add a flow term now; return its instantaneous impact (log price).

        ``source`` is one source id, or ``[(share, id), ...]`` for a trade that sells what
        several sources handed over: f(q) is computed once for the whole trade (so the
        bookkeeping does not change the impact) and split between them by share.
        """
        impact = self.instant_impact(m, notional)
        if impact == 0.0:
            return 0.0
        for share, owner in [(1.0, source)] if isinstance(source, int) else source:
            if owner >= 0:
                self._append(m, impact * share, owner)
        self._sums[m] += impact
        return impact

    def _append(self, m: int, impact: float, source: int) -> None:
        if self._count == self._time.size:
            for name in ("_time", "_inst", "_impact", "_source"):
                old = getattr(self, name)
                setattr(self, name, np.concatenate([old, np.zeros_like(old)]))
        k = self._count
        self._time[k], self._inst[k], self._impact[k], self._source[k] = self._now, m, impact, source
        self._count += 1

    def log_impact(self) -> np.ndarray:
        """(I,) sum_k G(now - u_k) f(q_k), log price."""
        return np.einsum("ij,ij->i", self._sums, self._weights)

    def by_source(self) -> tuple[np.ndarray, np.ndarray]:
        """Current impact of every liquidation source, with the same kernel as
        `log_impact` (so subtracting it is exact).

        Returns:
            ``(sources (K,), impact (K, I))``: the distinct liquidation ids with terms, in
            increasing order, and each one's decayed log impact per instrument now.
        """
        rows = slice(0, self._count)
        if self._count == 0:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.n))
        # the kernel once per distinct (time, instrument): terms share the steps they happened in
        keys, which_key = np.unique(np.stack([self._time[rows], self._inst[rows]]), axis=1, return_inverse=True)
        inst = keys[1].astype(np.int64)
        lag = self._now - keys[0]
        kernel = np.einsum("kj,kj->k", np.exp(-self._rates[inst] * lag[:, None]), self._weights[inst])
        sources, which = np.unique(self._source[rows], return_inverse=True)
        out = np.zeros((sources.size, self.n))
        np.add.at(out, (which, self._inst[rows]), kernel[which_key.ravel()] * self._impact[rows])
        return sources, out


class VenueIndex:
    """Publishes ``I_t = X_t exp(impact)`` to the exchange and records flow into it.

    The model advances it each step; the model (traders' flow), the liquidation engine
    (each liquidation's fills) and the backstop's unwinding report flow through `trade`,
    which moves the exchange's index (and so its marks) at once.

    Args:
        exchange: The venue whose index this is (``set_index`` is called on it).
        paths: (N + 1, I) exogenous paths X, USD.
        propagator: The impact state.
        step_seconds: Seconds per step.
    """

    def __init__(self, exchange, paths: np.ndarray, propagator: Propagator, step_seconds: float):
        self.exchange = exchange
        self.paths = paths
        self.propagator = propagator
        self.step_seconds = step_seconds
        self.step = 0
        #: This step's signed USD flow per kind of flow term, (I,) each.
        self.flows = {kind: np.zeros(propagator.n) for kind in FLOW_KINDS}

    @property
    def exogenous(self) -> np.ndarray:
        """(I,) this step's exogenous prices X_t, USD."""
        return self.paths[self.step]

    def advance(self, step: int) -> None:
        """Start step ``step``: decay the impact to its time and publish the index."""
        self.step = step
        self.propagator.advance(step * self.step_seconds)
        for flow in self.flows.values():
            flow[:] = 0.0
        self.publish()

    def publish(self) -> None:
        self.exchange.set_index(self.exogenous * np.exp(self.propagator.log_impact()))

    def record_fills(self, fills: FillColumns) -> None:
        """Traders' executed fills (`sim.exchange.Exchange.fill_columns`) of this step: their USD volume
        counts in the liquidity estimate, their taker flow per instrument is one term
        each, and the index moves. Resting or cancelled orders are not fills: they move
        nothing. (Sums fill by fill, in order: ``np.add.at`` adds one element at a time.)"""
        m = fills.instrument
        notional = fills.qty * fills.price
        self.propagator.add_volumes(m, notional)
        flow = np.zeros(self.propagator.n)
        np.add.at(flow, m, fills.taker_side * notional)
        self.trade(flow)

    def trade(
        self,
        flows: np.ndarray | dict[int, float],
        source: int | Sequence[tuple[float, int]] = TRADERS,
        kind: str = "traders",
    ) -> None:
        """Record signed USD flow per instrument (an (I,) array or {m: notional}) as terms
        of one source (or shares of several, see `Propagator.add`) and one of
        `FLOW_KINDS`, and move the index."""
        items = flows.items() if isinstance(flows, dict) else enumerate(flows)
        moved = False
        for m, notional in items:
            self.flows[kind][m] += notional
            moved |= self.propagator.add(int(m), float(notional), source) != 0.0
        if moved:
            self.publish()

    def without_sources(self, contributions: np.ndarray) -> np.ndarray:
        """(I,) the index had (K, I) log-impact contributions not happened."""
        log_impact = self.propagator.log_impact() - contributions.sum(axis=0)
        return self.exogenous * np.exp(log_impact)

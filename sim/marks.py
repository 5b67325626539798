"""Mark-price rules (MARGIN-SPEC section 1, MARKET-MODEL section 2): what every margin
number is computed at.

A rule is an object with two methods:

- ``__call__(index, last, last_age)``: (I,) marks from (I,) index prices, (I,) last trade
  prices (NaN before any trade) and (I,) seconds since each instrument's last trade. The
  exchange calls it whenever the index moves or a liquidation trades, so within a step
  forced selling moves the marks through the index impact and the last trade.
- ``observe(index, mid, funding_basis)``: the model's once-per-step hook (at the end of
  the step) with (I,) index, (I,) mid (NaN where a side of the book is empty) and (I,)
  ``F * tau / T`` (the funding rate estimate times the fraction of the interval left).

Rules, by config name (``mark.method``):

- ``median`` (default): Binance's ``median(I (1 + F tau / T), I + MA(mid - I), last)``.
  The moving average of the book's basis samples once per step over ``basis_window_seconds``
  (Binance COIN-M: 30 samples, one every 5 s, 2.5 minutes). Staleness (cascadelab's rule,
  as venues do not publish one): a step with an empty side samples a basis of 0 (the
  index), and a last trade older than ``stale_seconds`` is replaced by the index. A thin
  book alone cannot move this mark; a persistent dislocation of the book can.
- ``index``: mark = index (the book cannot move it, only the index impact can).
- ``last``: mark = last trade (index until the first trade). Explicitly *unsafe*: a thin
  book lets one order move every account's margin; it exists to study that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class MarkSettings:
    """The ``[mark]`` settings a rule may use: seconds per step, the basis window and the
    staleness limit (seconds)."""

    step_seconds: float = 1.0
    basis_window_seconds: float = 150.0
    stale_seconds: float = 60.0


class MarkRule(Protocol):
    def __call__(self, index: np.ndarray, last: np.ndarray, last_age: np.ndarray) -> np.ndarray: ...

    def observe(self, index: np.ndarray, mid: np.ndarray, funding_basis: np.ndarray) -> None: ...


class IndexMark:
    """mark = index."""

    def __init__(self, n_instruments: int, settings: MarkSettings = MarkSettings()):
        """Same signature as `MedianMark`; this rule uses none of the settings."""

    def __call__(self, index: np.ndarray, last: np.ndarray, last_age: np.ndarray) -> np.ndarray:
        return index.copy()

    def observe(self, index: np.ndarray, mid: np.ndarray, funding_basis: np.ndarray) -> None:
        return None


class LastMark(IndexMark):
    """mark = last trade (the index before the first trade)."""

    def __call__(self, index: np.ndarray, last: np.ndarray, last_age: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(last), index, last)


class MedianMark:
    """Binance's median of three with staleness fallbacks (see the module docstring).

    Args:
        n_instruments: I.
        settings: Seconds per step (one basis sample per step), the length of the basis
            moving average and the staleness limit of the last trade (seconds).
    """

    def __init__(self, n_instruments: int, settings: MarkSettings = MarkSettings()):
        self.window = max(1, round(settings.basis_window_seconds / settings.step_seconds))
        self.stale_seconds = settings.stale_seconds
        self._samples = np.zeros((self.window, n_instruments))
        self._count = 0
        self.funding_basis = np.zeros(n_instruments)
        #: (I,) moving average of the book's basis, USD (it changes only with `observe`).
        self.basis_average = np.zeros(n_instruments)

    def observe(self, index: np.ndarray, mid: np.ndarray, funding_basis: np.ndarray) -> None:
        """Record one basis sample ``mid - I`` (0 where a side is empty) and ``F tau / T``."""
        self._samples[self._count % self.window] = np.where(np.isnan(mid), 0.0, mid - index)
        self._count += 1
        self.funding_basis = np.asarray(funding_basis, dtype=float).copy()
        self.basis_average = self._samples[: min(self._count, self.window)].mean(axis=0)

    def __call__(self, index: np.ndarray, last: np.ndarray, last_age: np.ndarray) -> np.ndarray:
        fresh = ~np.isnan(last) & (last_age <= self.stale_seconds)
        a, b = index * (1.0 + self.funding_basis), index + self.basis_average
        c = np.where(fresh, last, index)
        # the median of three, as np.median picks it, without its generic machinery
        # (the engine recomputes the marks after every liquidation)
        return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))


#: ``mark.method`` in configs -> rule class (constructed with I and `MarkSettings`).
MARK_RULES: dict[str, type] = {"median": MedianMark, "index": IndexMark, "last": LastMark}

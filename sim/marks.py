"""Mark-price rules (MARGIN-SPEC section 1): what every margin number is computed at.

A rule maps the exchange's public prices to (I,) marks. The exchange calls it when the
index moves and the liquidation engine calls it after every liquidation's fills, so a
rule that follows the book lets forced selling move the marks within a step.

- ``index``: mark = index (the default and the safe choice: the book cannot move it).
- ``last``: mark = last trade (index until the first trade). Explicitly *unsafe*: a thin
  book lets one order move every account's margin; it exists to study that.
- ``median``: Binance's median of three (`MedianMark`): a thin book alone cannot move
  it, a persistent basis can.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class MarkRule(Protocol):
    def __call__(self, index: np.ndarray, last: np.ndarray) -> np.ndarray:
        """(I,) marks from (I,) index and (I,) last prices (NaN before any trade)."""
        ...


def index_mark(index: np.ndarray, last: np.ndarray) -> np.ndarray:
    return index.copy()


def last_trade_mark(index: np.ndarray, last: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(last), index, last)


#: Stateless mark methods (as named in configs); ``median`` is `MedianMark`.
MARK_RULES: dict[str, MarkRule] = {"index": index_mark, "last": last_trade_mark}


class MedianMark:
    """Binance's mark: ``median(I (1 + F tau / T), I + MA(mid - I), last)``.

    The model feeds it each step: `observe` adds a basis sample ``mid - I`` (window
    of ``window`` steps) and ``funding_basis`` holds ``F * tau / T`` per instrument.
    Before any trade, ``last`` is replaced by the index.
    """

    def __init__(self, n_instruments: int, window: int):
        self.window = window
        self._samples = np.zeros((window, n_instruments))
        self._count = 0
        self.funding_basis = np.zeros(n_instruments)

    def observe(self, index: np.ndarray, mid: np.ndarray) -> None:
        """Record one step's basis; instruments without a mid contribute 0."""
        basis = np.where(np.isnan(mid), 0.0, mid - index)
        self._samples[self._count % self.window] = basis
        self._count += 1

    def basis_average(self) -> np.ndarray:
        n = min(self._count, self.window)
        return self._samples[:n].mean(axis=0) if n else np.zeros(self._samples.shape[1])

    def __call__(self, index: np.ndarray, last: np.ndarray) -> np.ndarray:
        candidates = np.stack(
            [index * (1.0 + self.funding_basis), index + self.basis_average(), np.where(np.isnan(last), index, last)]
        )
        return np.median(candidates, axis=0)

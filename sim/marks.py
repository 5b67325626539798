"""Mark-price rules (MARGIN-SPEC section 1): what every margin number is computed at.

A rule maps the exchange's public prices to (I,) marks. The exchange calls it when the
index moves and the liquidation engine calls it after every liquidation's fills, so a
rule that follows the book lets forced selling move the marks within a step.

- ``index``: mark = index (the default and the safe choice: the book cannot move it).
- ``last``: mark = last trade (index until the first trade). Explicitly *unsafe*: a thin
  book lets one order move every account's margin; it exists to study that.
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


#: Mark method name (as in configs) -> rule.
MARK_RULES: dict[str, MarkRule] = {"index": index_mark, "last": last_trade_mark}

"""ADL's ranking of the positions opposite a bankrupt one, without a margin pass.

ADL closes a position the book and the system accounts could not take against the
opposite trader positions, highest BitMEX score first (`sim.margin.adl_score`), which
needs each candidate's equity at the marks of the moment (`sim.waterfall.adl`). A
venue-sized crash runs ADL thousands of times over tens of thousands of candidates, and
a margin pass over their rows costs milliseconds each time. Between two ADLs only the
prices and a few ledger rows change, and equity is affine in the prices::

    E_r = a_r + sum_m Q_rm (M_m - Phi_m) + sum_s V_rs P_s

with ``Q_rm = q_rm * lot_m`` (base units), ``a_r = sum_m (isolated_rm + Q_rm (phi_rm -
e_rm))`` and ``V_rs = b_rs w_s + min(b_rs, 0) (w'_s - w_s)`` (``w``, ``w'``: collateral and
liability weights): the terms of `sim.margin.cross_health` and `isolated_health`
regrouped. `AdlRanking` keeps ``a``, ``Q`` and ``V`` per account, recomputes them only for
rows whose ledger row changed (`sim.ledger.Ledger.row_version`), and scores the
candidates in one compiled pass. The sums run in another order than a margin pass's,
so equity agrees with it to rounding (a test checks), not to the bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sim.exchange import Exchange
from sim.ledger import N_SYSTEM
from sim.margin import adl_score


class AdlRanking:
    """Scores the trader positions on one side of an instrument for ADL.

    Args:
        exchange: The venue; its ledger changes only through `sim.ledger.Ledger`'s
            methods (which stamp `Ledger.row_version`).
    """

    def __init__(self, exchange: Exchange):
        self.exchange = exchange
        n, n_instruments = exchange.ledger.positions.shape
        #: (A,) each account's equity at zero prices, USD.
        self._constant = np.zeros(n)
        #: (A, I) base units held: USD of equity per USD of ``M - Phi``.
        self._size = np.zeros((n, n_instruments))
        #: (A, S) weighted balances: USD of equity per USD of each collateral price.
        self._value = np.zeros((n, len(exchange.ledger.assets)))
        self._version = -1

    def candidates(self, m: int, side: int, exclude: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The trader positions ADL may close a side-``side`` position in m against: those
        on the other side, other than account ``exclude`` 's. Returns ``(ids, scores,
        held)``, (n,) each, in id order: the accounts, their BitMEX scores at the current
        prices and their positions in m, lots."""
        ex = self.exchange
        ledger = ex.ledger
        changed = np.flatnonzero(ledger.row_version > self._version)
        if changed.size:
            self._update(changed)
        self._version = ledger.clock
        return _score(
            ledger.positions[:, m],
            ledger.entry[:, m],
            self._constant,
            self._size,
            self._value,
            ex.marks - ex.cum_funding,
            ex.asset_prices,
            float(side),
            float(ex.marks[m]),
            float(ex.instruments[m].lot_size),
            exclude,
            N_SYSTEM,
        )

    def _update(self, rows: np.ndarray) -> None:
        """Recompute the terms of ``rows`` from their ledger rows."""
        ledger, rules = self.exchange.ledger, self.exchange.rules
        size = ledger.positions[rows] * ledger.lot_sizes  # (R, I)
        balances = ledger.balances[rows]  # (R, S)
        carried = ledger.isolated_margin[rows] + size * (ledger.funding_index[rows] - ledger.entry[rows])
        self._constant[rows] = carried.sum(axis=1)
        self._size[rows] = size
        self._value[rows] = balances * rules.weights + np.minimum(balances, 0.0) * (
            rules.liability_weights - rules.weights
        )


@njit(cache=True)
def _score(positions, entry, constant, size, value, marks_less_funding, asset_prices, side, mark, lot, exclude, first):
    """`AdlRanking.candidates` over rows ``first..A-1``: (A,) ``positions`` and ``entry``
    of the instrument, the (A,), (A, I), (A, S) equity terms and the prices."""
    n = positions.shape[0]
    ids = np.empty(n, np.int64)
    scores = np.empty(n)
    held = np.empty(n)
    k = 0
    for r in range(first, n):
        q = positions[r]
        if not q * side < 0.0 or r == exclude:
            continue
        equity = constant[r]
        for j in range(size.shape[1]):
            equity += size[r, j] * marks_less_funding[j]
        for s in range(value.shape[1]):
            equity += value[r, s] * asset_prices[s]
        ids[k] = r
        held[k] = abs(q)
        scores[k] = adl_score(-side, entry[r], mark, held[k] * lot * mark, equity)
        k += 1
    return ids[:k], scores[:k], held[:k]

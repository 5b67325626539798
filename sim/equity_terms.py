"""Every account's equity, at any prices, without a margin pass: for ADL's ranking.

ADL ranks all the positions opposite a bankrupt one by their BitMEX score, which needs
each candidate's equity at the marks of the moment (`sim.waterfall.adl_counterparties`).
A venue-sized crash runs ADL thousands of times over tens of thousands of candidates, and
a margin pass over their rows costs milliseconds each time. Between two ADLs only the
prices and a few ledger rows change, and equity is affine in the prices::

    E_r = a_r + sum_m Q_rm (M_m - Phi_m) + sum_s V_rs P_s

with ``Q_rm = q_rm * lot_m`` (base units), ``a_r = sum_m (isolated_rm + Q_rm (phi_rm -
e_rm))`` and ``V_rs = b_rs w_s + min(b_rs, 0) (w'_s - w_s)`` (``w``, ``w'``: collateral and
liability weights), the terms of `sim.margin.cross_health` and `isolated_health`
regrouped. `EquityTerms` keeps ``a``, ``Q`` and ``V`` per account and recomputes them only
for rows whose ledger row changed (`sim.ledger.Ledger.row_version`); an answer is two
matrix-vector products. The sums run in another order than a margin pass's, so they
agree with it to rounding (a test checks), not to the bit.
"""

from __future__ import annotations

import numpy as np

from sim.exchange import Exchange


class EquityTerms:
    """Each account's equity as an affine function of the marks, funding and collateral
    prices, kept up to date row by row.

    Args:
        exchange: The venue; its ledger changes only through `sim.ledger.Ledger`'s
            methods (which stamp `Ledger.row_version`).
    """

    def __init__(self, exchange: Exchange):
        self.exchange = exchange
        n, n_instruments = exchange.ledger.positions.shape
        #: (A,) the equity at zero prices, USD.
        self._constant = np.zeros(n)
        #: (A, I) base units held: USD of equity per USD of ``M - Phi``.
        self._size = np.zeros((n, n_instruments), order="F")
        #: (A, S) weighted balances: USD of equity per USD of each collateral price.
        self._value = np.zeros((n, len(exchange.ledger.assets)), order="F")
        self._version = -1

    def equity(self) -> np.ndarray:
        """(A,) every account's equity at the exchange's current prices, USD."""
        ledger = self.exchange.ledger
        changed = np.flatnonzero(ledger.row_version > self._version)
        if changed.size:
            self._update(changed)
        self._version = ledger.clock
        ex = self.exchange
        return self._constant + self._size @ (ex.marks - ex.cum_funding) + self._value @ ex.asset_prices

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

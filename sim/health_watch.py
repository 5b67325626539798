"""Which trader accounts are liquidatable now, without a full margin pass per question.

The liquidation engine asks after every liquidation which accounts its impact pushed
under (`sim.attribution`), and again at every round's scan and every step's first one.
A full pass (`Exchange.health`) costs O(accounts x instruments): about 4 ms at 100,000
accounts x 3 instruments, and a venue-sized crash liquidates tens of thousands of
accounts. Between two questions only the marks (and the collateral prices, and funding)
move, and a few ledger rows change: the liquidated account, the makers it traded with,
the counterparties of its transfers, who paid its deficit, the step's traders.

`LiquidatableWatch` keeps, for every account, bounds of its *slack*: how far its
equity stands above the line it is liquidated at (cross: ``equity - MM``; isolated: the
smallest of its positions' ``equity - MM`` and of ``collateral - debt MM``), at the
prices of the last question; the account is liquidatable iff its slack is below zero.
Maintenance margin is ``N * mmr_k - cum_k`` with ``N = |q| M``, continuous and piecewise
linear in the mark with slopes ``mmr_k`` (`sim.margin.TierTable`), so a move of the marks
by ``dM``, of ``M - Phi`` (funding) by ``dF`` and of collateral prices by ``dP`` moves
the slack by at most::

    sum_m |q_m| (|dF_m| + mmr_max,m |dM_m|) + sum_s |b_s| |dP_s| (max(w_s, w'_s) + l_s)

(``w``: collateral weight, ``w'``: liability weight, ``l``: liability MMR). At each
question the bounds widen by that much. An account whose bounds stay on one side of zero
keeps its flag (healthy ones far from their line, and the ones deep under it that wait
for their turn in a crash); every other account, and every account whose ledger row
changed since the last question (`sim.ledger.Ledger.row_version`), is recomputed
exactly, and its bounds close on its exact slack. The answer is therefore the full
pass's, bit for bit (a property test compares them); a question costs a few (A,) vector
operations (two per price that moved) plus the rows near their line. Bounds loosen as
prices wander, so when the rows to recompute pass a share of the accounts a full pass
resets them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sim.exchange import Exchange
from sim.margin import Health

#: A new full pass once the rows to recompute exceed this fraction of all accounts: the
#: margin state of rows picked by an index costs about 3x a full pass's per row (copies
#: of the rows; measured at 100,000 x 3: 3,000 rows 0.9 ms, 30,000 rows about a full pass).
REFRESH_SHARE = 0.15
#: Relative and absolute (USD) slack on the bound: float rounding in the margin sums.
_RELATIVE_SLACK = 1e-9
_ABSOLUTE_SLACK = 1e-6


class LiquidatableWatch:
    """Answers "which trader accounts are liquidatable now", exactly, cheaply.

    Args:
        exchange: The venue. Its ledger must change only through `sim.ledger.Ledger`'s
            methods (which stamp `Ledger.row_version`), as the exchange and the engine
            change it; a test that writes the arrays directly calls `refresh`.
        is_trader: (A,) True for the rows that may be liquidated.
        refresh_share: A full pass once the rows to recompute exceed this fraction of
            all accounts.
    """

    def __init__(self, exchange: Exchange, is_trader: np.ndarray, refresh_share: float = REFRESH_SHARE):
        self.exchange = exchange
        self.is_trader = is_trader
        self.refresh_share = refresh_share
        tiers = exchange.rules.tiers
        #: (I,) highest maintenance rate of each instrument's tiers (padding tiers have 0).
        self._mmr_max = tiers.mmr.max(axis=1)
        rules = exchange.rules
        liability_mmr = 0.0 if rules.liability_mmr is None else rules.liability_mmr
        #: (S,) USD of slack one unit of balance can lose per USD of its asset's price move.
        self._balance_rate = np.maximum(rules.weights, rules.liability_weights) + liability_mmr
        self._version = -1
        #: (A,) lower and upper bounds of each account's slack at `_prices`, USD.
        self._low = np.empty(0)
        self._high = np.empty(0)
        #: (A, 2I + S) slack lost (or gained) per unit move of each entry of `_price_vector`.
        self._exposure = np.empty((0, 0), order="F")
        self._prices = np.empty(0)
        #: The last answer, valid while nothing changes.
        self._flags = np.empty(0, dtype=bool)
        #: (R,) the rows the last question computed exactly (every row after a full pass).
        self.recomputed = np.empty(0, dtype=np.int64)

    def refresh(self) -> np.ndarray:
        """A full pass now: exact slacks at the current prices. Returns the (A,) flags."""
        health = self.exchange.health()
        self._low = _slack(health)
        self._high = self._low.copy()
        self._exposure = self._exposure_of(slice(None))
        self._rebase(self._price_vector())
        self._flags = health.account_liquidatable & self.is_trader
        self.recomputed = np.arange(self.is_trader.size)
        return self._flags

    def liquidatable(self) -> np.ndarray:
        """(A,) the trader accounts liquidatable now, exactly as a full pass flags them."""
        ex = self.exchange
        ledger = ex.ledger
        if self._version < 0:
            return self.refresh()
        prices = self._price_vector()
        move = np.abs(prices - self._prices)
        if ledger.clock == self._version and not move.any():
            return self._flags  # nothing changed since the last question
        low, high = self._low, self._high
        moved = np.flatnonzero(move)
        rows, changed = _widen(
            low, high, self._exposure, moved, move[moved], ledger.row_version, self._version, self.is_trader
        )
        if rows.size > self.refresh_share * low.size:
            return self.refresh()
        self.recomputed = rows
        slack = _slack(ex.health_at(ex.marks, ex.asset_prices, rows))
        low[rows] = slack
        high[rows] = slack
        self._exposure[changed] = self._exposure_of(changed)
        self._rebase(prices)
        # only recomputed rows can change flag: a row left alone kept its bounds' side of 0
        self._flags = self._flags.copy()  # callers keep the previous answer
        self._flags[rows] = slack < 0.0  # liquidatable iff slack < 0 (IEEE: a - b < 0 iff a < b)
        return self._flags

    def _rebase(self, prices: np.ndarray) -> None:
        """The bounds now stand at ``prices`` (`_price_vector` now) and the current ledger."""
        self._prices = prices
        self._version = self.exchange.ledger.clock

    def _exposure_of(self, rows) -> np.ndarray:
        """(R, 2I + S) the slack ``rows`` lose per unit move of each price, USD. Collateral
        prices move an isolated account's slack only through its debt (its positions
        stand on their own margins), so an isolated account without debt has none."""
        ledger = self.exchange.ledger
        size = np.abs(ledger.positions[rows]) * ledger.lot_sizes  # (R, I) base units
        balances = ledger.balances[rows]
        exposed = ~ledger.isolated[rows] | (balances < 0).any(axis=1)
        return np.asfortranarray(
            np.hstack([size, size * self._mmr_max, np.abs(balances) * self._balance_rate * exposed[:, None]])
        )

    def _price_vector(self) -> np.ndarray:
        """(2I + S,) what the slack depends on: ``M - Phi`` per instrument, the marks, the
        collateral prices."""
        ex = self.exchange
        return np.concatenate([ex.marks - ex.cum_funding, ex.marks, ex.asset_prices])


def _slack(health: Health) -> np.ndarray:
    """(A,) USD each account's equity stands above its liquidation line (inf: nothing
    can liquidate it without a change of its ledger row)."""
    risk = health.risk
    cross = np.where(health.maint > 0, health.equity - health.maint, np.inf)
    if health.position_equity is None:
        return cross
    positions = np.where(risk.maint > 0, health.position_equity - risk.maint, np.inf).min(axis=1)
    debt = np.where(risk.liability_maint > 0, risk.collateral - risk.liability_maint, np.inf)
    isolated = np.minimum(positions, debt)
    return isolated if health.isolated is None else np.where(health.isolated, isolated, cross)


@njit(cache=True)
def _widen(low, high, exposure, moved, move, row_version, version, is_trader):
    """Widen every row's slack bounds (A,) ``low`` / ``high`` in place by its bound for
    the price moves ``move`` (USD, >= 0) of the columns ``moved`` of (A, 2I + S)
    ``exposure``, with the float slack of the module. Returns ``(unsure, changed)``:
    the trader rows whose slack may have changed sign or whose ledger row changed since
    ``version``, and all rows whose ledger row changed, ascending."""
    n = low.shape[0]
    bound = np.full(n, _ABSOLUTE_SLACK)
    for j in range(moved.shape[0]):  # column by column: each is contiguous
        column, step = exposure[:, moved[j]], move[j] * (1.0 + _RELATIVE_SLACK)
        for i in range(n):
            bound[i] += column[i] * step
    unsure = np.empty(n, np.int64)
    changed = np.empty(n, np.int64)
    n_unsure = 0
    n_changed = 0
    for i in range(n):
        low[i] -= bound[i]
        high[i] += bound[i]
        touched = row_version[i] > version
        if touched:
            changed[n_changed] = i
            n_changed += 1
        if is_trader[i] and (touched or (low[i] < 0.0 and high[i] >= 0.0)):
            unsure[n_unsure] = i
            n_unsure += 1
    return unsure[:n_unsure], changed[:n_changed]

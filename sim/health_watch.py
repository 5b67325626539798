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

(``w``: collateral weight, ``w'``: liability weight, ``l``: liability MMR): the row's
(P,) *exposure* ``e_i`` (P = 2I + S prices) dotted with the moves. Summed along the
path, the slack has moved by at most ``e_i . (T - T_i)``, where ``T`` is each price's
total variation (its *travel*) since the last full pass and ``T_i`` the travel when the
row was last computed exactly. An account is recomputed when that bound reaches its
distance to zero (``threshold``), and whenever its ledger row changed since the last
question (`sim.ledger.Ledger.row_version`); every other account keeps its flag (healthy
ones far from their line, and the ones deep under it that wait for their turn in a
crash). The answer is therefore the full pass's, bit for bit (a property test compares
them).

A question costs one compiled pass that reads each row's ledger version and its *key*:
the value of a scalar clock ``tau`` (the travel of the price that moved most, relative
to its level; summed per question) at which ``e_i . (T - T_i)`` could first reach the
row's distance (from ``e_i . scale``). The pass reads only the blocks of rows
(`sim.ledger.Ledger.block_version`) with a changed row or a lower bound of their keys
at most ``tau``. The exact dot product is taken only for rows past their key, and the
margin state only for rows past their threshold or whose ledger row changed. Bounds
loosen as prices wander, so when the rows to recompute pass a share of the accounts a
full pass resets them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sim.exchange import Exchange
from sim.ledger import VERSION_BLOCK_BITS
from sim.margin import Health

#: A new full pass once the rows to recompute exceed this fraction of all accounts: the
#: margin state of rows picked by an index costs more per row than a full pass's (their
#: copies; measured at 100,000 x 3 when the copies were fancy indexing: 3,000 rows 0.9 ms,
#: 30,000 rows about a full pass; the gather along columns made them cheaper since).
REFRESH_SHARE = 0.15
#: Absolute (USD) and relative (per USD of `LiquidatableWatch._anchor`'s weight, about
#: the gross value of the row) room for float rounding in the margin sums.
_ABSOLUTE_SLACK = 1e-6
_RELATIVE_SLACK = 1e-9
#: Relative room in the first, scalar test (`_unsure`), for the rounding of its sum.
_KEY_SLACK = 1e-6
#: A full pass once prices have travelled this many times their levels since the last
#: one, so the rounding of the travel sums stays far below `_RELATIVE_SLACK`.
_TAU_LIMIT = 1e3


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
        #: (P,) the price vector (`_price_vector`) at the last question.
        self._prices = np.empty(0)
        #: (P,) each price's total variation since the last full pass, USD.
        self._travel = np.empty(0)
        #: Total variation in units of `_scale` (the largest of the prices' per question).
        self._tau = 0.0
        #: (P,) the price levels of the last full pass (any positive scale is correct).
        self._scale = np.empty(0)
        #: (A, P) slack lost (or gained) per unit move of each price, USD per USD.
        self._exposure = np.empty((0, 0))
        #: (A,) a row may have crossed its line once ``exposure_i . travel`` reaches it.
        self._threshold = np.empty(0)
        #: (A,) ... and not before `_tau` reaches this (a cheap first test).
        self._key = np.empty(0)
        #: (A,) the most slack a row can lose per unit of `_tau`, USD.
        self._weight = np.empty(0)
        #: (blocks,) at most the lowest `_key` of the trader rows of each block of the
        #: ledger's `sim.ledger.Ledger.block_version`: a block with no changed row and
        #: this above `_tau` holds no row to recompute, and a question skips it.
        self._block_key = np.empty(0)
        #: The last answer, valid while nothing changes.
        self._flags = np.empty(0, dtype=bool)
        #: (R,) the rows the last question computed exactly (every row after a full pass).
        self.recomputed = np.empty(0, dtype=np.int64)

    def refresh(self) -> np.ndarray:
        """A full pass now: exact slacks at the current prices. Returns the (A,) flags."""
        health = self.exchange.health()
        prices = self._price_vector()
        self._prices = prices
        self._scale = np.where(prices != 0.0, np.abs(prices), 1.0)
        self._travel = np.zeros_like(prices)
        self._tau = 0.0
        n = self.is_trader.size
        self._exposure = np.zeros((n, prices.size))
        self._threshold = np.empty(n)
        self._key = np.empty(n)
        self._weight = np.empty(n)
        self._block_key = np.full(self.exchange.ledger.block_version.size, np.inf)
        every = np.arange(n)
        self._anchor(every, _slack(health))
        self._version = self.exchange.ledger.clock
        self._flags = health.account_liquidatable & self.is_trader
        self.recomputed = every
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
        self._travel += move
        self._tau += float((move / self._scale).max())
        self._prices = prices
        rows = _unsure(
            self._key,
            self._tau,
            self._threshold,
            self._weight,
            self._exposure,
            self._travel,
            ledger.row_version,
            ledger.block_version,
            VERSION_BLOCK_BITS,
            self._version,
            self.is_trader,
            self._block_key,
        )
        if rows.size > self.refresh_share * self.is_trader.size or self._tau > _TAU_LIMIT:
            return self.refresh()
        self._version = ledger.clock
        self.recomputed = rows
        slack = _slack(ex.health_at(ex.marks, ex.asset_prices, rows))
        self._anchor(rows, slack)
        # only recomputed rows can change flag: the others are still on their side of 0
        self._flags = self._flags.copy()  # callers keep the previous answer
        self._flags[rows] = slack < 0.0  # liquidatable iff slack < 0 (IEEE: a - b < 0 iff a < b)
        return self._flags

    def _anchor(self, rows: np.ndarray, slack: np.ndarray) -> None:
        """``rows`` have exact (R,) ``slack`` now: their exposures from their ledger rows,
        and the travel that may bring them to their line starts from here."""
        ledger = self.exchange.ledger
        _anchor_rows(
            rows,
            slack,
            ledger.positions,
            ledger.balances,
            ledger.isolated,
            ledger.lot_sizes,
            self._mmr_max,
            self._balance_rate,
            self._scale,
            self._travel,
            self._tau,
            self._exposure,
            self._weight,
            self._threshold,
            self._key,
            self._block_key,
            VERSION_BLOCK_BITS,
        )

    def _price_vector(self) -> np.ndarray:
        """(P,) = (2I + S,) what the slack depends on: ``M - Phi`` per instrument, the
        marks, the collateral prices."""
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
def _unsure(
    key, tau, threshold, weight, exposure, travel, row_version, block_version, block_bits, version, is_trader, block_key
):
    """The trader rows to compute exactly now, ascending: those whose slack may have
    reached 0 (first test: (A,) ``key <= tau``; then the bound ``exposure_i . travel >=
    threshold_i`` over the (A, P) exposures and the (P,) travel) or whose ledger row
    changed since ``version``. A row past its key and short of its threshold gets the
    key at which the rest of its reach could be spent (``weight``: the most slack it
    loses per unit of ``tau``), so its bound is taken again only when that much has
    moved. Reads only the blocks (of ``2**block_bits`` rows: an argument, as numba's
    cache would keep another module's constant) with a changed row (``block_version``)
    or a ``block_key`` at most ``tau``, and sets the block key of each block it reads to the
    lowest key of the rows it keeps (the recomputed ones get theirs from `_anchor_rows`)."""
    n, n_prices = exposure.shape
    size = 1 << block_bits
    unsure = np.empty(n, np.int64)
    n_unsure = 0
    for b in range(block_key.size):
        if block_version[b] <= version and block_key[b] > tau:
            continue
        lowest = np.inf
        for i in range(b * size, min((b + 1) * size, n)):
            if not is_trader[i]:
                continue
            touched = row_version[i] > version
            if not touched and key[i] <= tau:
                bound = 0.0
                for j in range(n_prices):
                    bound += exposure[i, j] * travel[j]
                touched = bound >= threshold[i]
                if not touched:
                    key[i] = tau + (threshold[i] - bound) / weight[i] * (1.0 - _KEY_SLACK)
            if touched:
                unsure[n_unsure] = i
                n_unsure += 1
            else:
                lowest = min(lowest, key[i])
        block_key[b] = lowest
    return unsure[:n_unsure]


@njit(cache=True)
def _anchor_rows(
    rows, slack, positions, balances, isolated, lot_sizes, mmr_max, balance_rate, scale, travel, tau, exposure,
    weight, threshold, key, block_key, block_bits,
):  # fmt: skip
    """Set, for each of ``rows`` with exact (R,) ``slack`` (USD), its (P,) exposure row
    from the ledger's (A, I) ``positions`` (lots), (A, S) ``balances`` and (A,)
    ``isolated``: ``|q| lot`` per ``M - Phi``, ``|q| lot mmr_max`` per mark, ``|b| rate``
    per collateral price (an isolated account without debt has none: its positions
    stand on their own margins); its ``weight`` (exposure . scale), its ``threshold``
    (distance to 0 less the rounding room, plus exposure . travel), its ``key``, and
    its block's ``block_key`` at most that."""
    n_instruments, n_assets = positions.shape[1], balances.shape[1]
    for c in range(rows.shape[0]):
        r = rows[c]
        exposed = not isolated[r]
        for s in range(n_assets):
            exposed |= balances[r, s] < 0.0
        for m in range(n_instruments):
            size = abs(positions[r, m]) * lot_sizes[m]
            exposure[r, m] = size
            exposure[r, n_instruments + m] = size * mmr_max[m]
        for s in range(n_assets):
            exposure[r, 2 * n_instruments + s] = abs(balances[r, s]) * balance_rate[s] if exposed else 0.0
        w = 0.0
        travelled = 0.0
        for j in range(exposure.shape[1]):
            w += exposure[r, j] * scale[j]
            travelled += exposure[r, j] * travel[j]
        weight[r] = w
        reach = abs(slack[c]) - (_ABSOLUTE_SLACK + _RELATIVE_SLACK * w)
        threshold[r] = reach + travelled
        if w > 0.0:
            key[r] = tau + reach / w * (1.0 - _KEY_SLACK)
        else:
            key[r] = np.inf if reach > 0.0 else -np.inf
        block = r >> block_bits
        block_key[block] = min(block_key[block], key[r])

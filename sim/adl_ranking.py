"""ADL's ranking of the positions opposite a bankrupt one, without a margin pass.

ADL closes a position the book and the system accounts could not take against the
opposite trader positions, highest BitMEX score first (`sim.margin.adl_score`; ties:
lower id), which needs each candidate's equity at the marks of the moment
(`sim.waterfall.adl`). A venue-sized crash runs ADL tens of thousands of times in one
step over tens of thousands of candidates. Two things keep that cheap:

- **Equity terms.** Equity is affine in the prices::

      E_r = a_r + sum_m Q_rm (M_m - Phi_m) + sum_s V_rs P_s

  with ``Q_rm = q_rm * lot_m`` (base units), ``a_r = sum_m (isolated_rm + Q_rm (phi_rm -
  e_rm))`` and ``V_rs = b_rs w_s + min(b_rs, 0) (w'_s - w_s)`` (``w``, ``w'``: collateral
  and liability weights): the terms of `sim.margin.cross_health` and `isolated_health`
  regrouped. `AdlRanking` keeps ``a``, ``Q`` and ``V`` per account and recomputes them
  only for rows whose ledger row changed (`sim.ledger.Ledger.row_version`). The sums run
  in another order than a margin pass's, so equity agrees with it to rounding (a test
  checks), not to the bit.
- **A standing order per side.** Between two ADLs the prices mostly stay as they were
  (the marks move only when a liquidation's book flow moves the index) and only a few
  rows change: the bankrupt account and the counterparties ADL just closed. So each
  (instrument, side) keeps its candidates sorted at the prices it was built at, and the
  rows changed since are re-scored into a small heap; `AdlRanking.first` merges the two
  from the top and stops as soon as the positions hold the lots asked for. Any change of
  a mark, a funding index or a collateral price rebuilds the side's order. A row's score
  depends only on its ledger row and the prices, and one compiled function scores it
  whether it is sorted or re-scored, so the order is the one a full sort would give, to
  the bit (a property test checks it through trades, deposits and price moves).

A score that is NaN (a losing position with an entry price of 0 in an account with no
equity would give one) ranks after every other, -inf included; NaNs among themselves by id.
"""

from __future__ import annotations

import heapq

import numpy as np
from numba import njit

from sim.exchange import Exchange
from sim.ledger import N_SYSTEM
from sim.margin import adl_score

#: Candidates sorted at first after a price change: ADL rarely needs more than its first
#: few counterparties (the crash of configs/scale_crash.toml: ~2.5 per ADL on average).
FIRST_CHUNK = 256


class AdlRanking:
    """Scores the trader positions on one side of an instrument for ADL.

    Args:
        exchange: The venue; its ledger changes only through `sim.ledger.Ledger`'s
            methods (which stamp `Ledger.row_version`).
        first_chunk: How many candidates a side's order sorts first after a price change
            (`_StandingOrder`; more are sorted as a walk needs them).
    """

    def __init__(self, exchange: Exchange, first_chunk: int = FIRST_CHUNK):
        self.exchange = exchange
        self.first_chunk = first_chunk
        n, n_instruments = exchange.ledger.positions.shape
        #: (A,) each account's equity at zero prices, USD.
        self._constant = np.zeros(n)
        #: (A, I) base units held: USD of equity per USD of ``M - Phi``.
        self._size = np.zeros((n, n_instruments))
        #: (A, S) weighted balances: USD of equity per USD of each collateral price.
        self._value = np.zeros((n, len(exchange.ledger.assets)))
        self._version = -1
        self._sides: dict[tuple[int, int], _StandingOrder] = {}

    def candidates(self, m: int, side: int, exclude: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The trader positions ADL may close a side-``side`` position in m against: those
        on the other side, other than account ``exclude`` 's. Returns ``(ids, scores,
        held)``, (n,) each, in id order: the accounts, their BitMEX scores at the current
        prices and their positions in m, lots."""
        self._changed_since(self._version)
        positions = self.exchange.ledger.positions[N_SYSTEM:, m]
        ids = np.flatnonzero(positions * side < 0) + N_SYSTEM
        ids = ids[ids != exclude]
        scores, held = self._score(ids, m, side)
        return ids, scores, held

    def first(self, m: int, side: int, exclude: int, lots: int) -> tuple[list[int], int]:
        """The best of `candidates` (highest score first, ties: lower id), as many as it
        takes for their positions to hold ``lots`` (all of them if they never do).
        Returns their ids in that order and the lots they hold."""
        key = (m, side)
        prices = self.exchange.prices_key()
        standing = self._sides.get(key)
        if standing is None or standing.prices != prices:
            ids, scores, held = self.candidates(m, side, -1)
            standing = _StandingOrder(prices, self._version, ids, _sort_keys(scores), held, self.first_chunk)
            self._sides[key] = standing
        else:
            changed = self._changed_since(standing.version)
            if changed.size:
                changed = changed[changed >= N_SYSTEM]
                candidates = changed[self.exchange.ledger.positions[changed, m] * side < 0]
                scores, held = self._score(candidates, m, side)
                standing.update(self._version, changed, candidates, _sort_keys(scores), held)
        return standing.first(exclude, lots)

    def _changed_since(self, version: int) -> np.ndarray:
        """The rows changed after ledger clock ``version`` (at most the terms' own
        version), with the terms of every changed row brought up to date."""
        ledger = self.exchange.ledger
        changed = ledger.rows_changed_since(version)
        stale = changed[ledger.row_version[changed] > self._version]
        if stale.size:
            self._update(stale)
        self._version = ledger.clock
        return changed

    def _score(self, rows: np.ndarray, m: int, side: int) -> tuple[np.ndarray, np.ndarray]:
        """(n,) BitMEX scores and held lots of the side-``-side`` positions in m of
        ``rows`` at the current prices, from up-to-date terms."""
        ex, ledger = self.exchange, self.exchange.ledger
        return _score_rows(
            rows,
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
        )

    def _update(self, rows: np.ndarray) -> None:
        """Recompute the terms of ``rows`` from their ledger rows."""
        ledger, rules = self.exchange.ledger, self.exchange.rules
        carried = _update_terms(
            rows,
            ledger.positions,
            ledger.entry,
            ledger.funding_index,
            ledger.isolated_margin,
            ledger.balances,
            ledger.lot_sizes,
            rules.weights,
            rules.liability_weights,
            self._size,
            self._value,
        )
        # numpy's row sum (pairwise from 8 instruments on), as the terms always had it
        self._constant[rows] = carried.sum(axis=1)


class _StandingOrder:
    """One (instrument, side)'s candidates at one set of prices, best first, plus a heap
    of the rows re-scored since (an entry counts only while it is its row's latest).

    The order is sorted lazily: a sorted prefix, and the rest unsorted (every entry of it
    after every entry of the prefix), of which the next ``first_chunk``, then twice as
    many each time, are sorted when a walk reaches the prefix's end. ADL rarely needs more
    than its first few counterparties, and a sort of all of them per price change was
    most of its cost.

    Args:
        prices: `sim.exchange.Exchange.prices_key` at build.
        version: The ledger clock the scores are up to date with.
        ids, keys, held: (n,) the candidates in id order, their sort keys (`_sort_keys`)
            and their positions, lots.
        first_chunk: How many of them to sort first.
    """

    def __init__(
        self, prices: bytes, version: int, ids: np.ndarray, keys: np.ndarray, held: np.ndarray, first_chunk: int
    ):
        self.prices = prices
        self.version = version
        self._ids: list[int] = []  # the sorted prefix
        self._keys: list[tuple[bool, float]] = []  # `_key_tuples`
        self._held: list[float] = []
        self._rest = (ids, keys, held)
        self._chunk = first_chunk
        self._next = 0  # the sorted entries before it are all stale
        self._stale: set[int] = set()  # rows changed since build
        self._heap: list[tuple[tuple[bool, float], int, int, float]] = []  # (key, id, version, held)
        self._latest: dict[int, int] = {}  # row -> version of its valid heap entry

    def update(self, version: int, changed: np.ndarray, ids: np.ndarray, keys: np.ndarray, held: np.ndarray) -> None:
        """Rows ``changed`` since the last update; ``ids`` of them are candidates now,
        with their ``keys`` and ``held`` lots."""
        self.version = version
        self._stale.update(changed.tolist())
        for row in changed.tolist():
            self._latest.pop(row, None)
        for row, key, lots in zip(ids.tolist(), _key_tuples(keys), held.tolist(), strict=True):
            self._latest[row] = version
            heapq.heappush(self._heap, (key, row, version, lots))

    def first(self, exclude: int, lots: int) -> tuple[list[int], int]:
        """`AdlRanking.first` from the standing order, without account ``exclude``."""
        ids, keys, held, stale, heap, latest = self._ids, self._keys, self._held, self._stale, self._heap, self._latest
        while self._sorted_to(self._next) and ids[self._next] in stale:
            self._next += 1
        chosen: list[int] = []
        total = 0
        i = self._next
        set_aside = []  # valid heap entries taken, pushed back at the end
        while total < lots:
            while self._sorted_to(i) and (ids[i] in stale or ids[i] == exclude):
                i += 1
            while heap and (latest.get(heap[0][1]) != heap[0][2] or heap[0][1] == exclude):
                entry = heapq.heappop(heap)
                if latest.get(entry[1]) == entry[2]:
                    set_aside.append(entry)
            sorted_left = self._sorted_to(i)
            if heap and (not sorted_left or heap[0][:2] < (keys[i], ids[i])):
                _, row, _, row_lots = heap[0]
                set_aside.append(heapq.heappop(heap))
            elif sorted_left:
                row, row_lots = ids[i], held[i]
                i += 1
            else:
                break
            chosen.append(row)
            total += int(row_lots)
        for entry in set_aside:
            heapq.heappush(heap, entry)
        return chosen, total

    def _sorted_to(self, i: int) -> bool:
        """Whether the order has an entry ``i``, sorting more of the rest as needed."""
        while i >= len(self._ids):
            ids, keys, held = self._rest
            if not ids.size:
                return False
            if self._chunk < ids.size:
                cut = np.partition(keys, self._chunk - 1)[self._chunk - 1]  # NaN sorts last
                take = keys <= cut if not np.isnan(cut) else np.ones(ids.size, dtype=bool)  # with every tie
            else:
                take = np.ones(ids.size, dtype=bool)
            chosen = keys[take]
            order = np.lexsort(
                (ids[take], np.nan_to_num(chosen, nan=0.0, posinf=np.inf, neginf=-np.inf), np.isnan(chosen))
            )
            self._ids.extend(ids[take][order].tolist())
            self._keys.extend(_key_tuples(chosen[order]))
            self._held.extend(held[take][order].tolist())
            self._rest = (ids[~take], keys[~take], held[~take])
            self._chunk *= 2
        return True


def _sort_keys(scores: np.ndarray) -> np.ndarray:
    """Ascending sort keys of (n,) scores: ``-score``, NaN kept (`_key_tuples` and the
    sorts put it after every number, -inf included)."""
    return -scores


def _key_tuples(keys: np.ndarray) -> list[tuple[bool, float]]:
    """(n,) sort keys as Python values that order like the sorts: ``(is NaN, key or 0)``."""
    return [(k != k, 0.0 if k != k else k) for k in keys.tolist()]


@njit(cache=True)
def _score_rows(rows, positions, entry, constant, size, value, marks_less_funding, asset_prices, side, mark, lot):
    """`AdlRanking._score`: (n,) scores and held lots of (n,) ``rows``, from the (A,)
    ``positions`` and ``entry`` of the instrument, the (A,), (A, I), (A, S) equity terms
    and the prices."""
    scores = np.empty(rows.size)
    held = np.empty(rows.size)
    for k in range(rows.size):
        r = rows[k]
        equity = constant[r]
        for j in range(size.shape[1]):
            equity += size[r, j] * marks_less_funding[j]
        for s in range(value.shape[1]):
            equity += value[r, s] * asset_prices[s]
        held[k] = abs(positions[r])
        scores[k] = adl_score(-side, entry[r], mark, held[k] * lot * mark, equity)
    return scores, held


@njit(cache=True)
def _update_terms(
    rows, positions, entry, funding_index, isolated_margin, balances, lot_sizes, weights, liability_weights,
    size, value,
):  # fmt: skip
    """`AdlRanking._update`: for each of (R,) ``rows``, from its (A, I) and (A, S) ledger
    rows, the (A, I) ``size`` and (A, S) ``value`` terms; returns the (R, I) carried
    amounts (isolated margin and settled-entry PnL per position, USD) whose row sums are
    the ``constant`` terms."""
    carried = np.empty((rows.size, positions.shape[1]))
    for k in range(rows.size):
        r = rows[k]
        for m in range(positions.shape[1]):
            q = positions[r, m] * lot_sizes[m]
            size[r, m] = q
            carried[k, m] = isolated_margin[r, m] + q * (funding_index[r, m] - entry[r, m])
        for s in range(balances.shape[1]):
            b = balances[r, s]
            value[r, s] = b * weights[s] + min(b, 0.0) * (liability_weights[s] - weights[s])
    return carried

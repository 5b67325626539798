"""ADL's standing order (`sim.adl_ranking`) against a full sort of every candidate."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.adl_ranking import AdlRanking, _sort_keys, _StandingOrder
from sim.exchange import Exchange
from sim.instruments import CollateralAsset
from sim.ledger import GENESIS, N_SYSTEM, USD
from tests.conftest import btc, eth

N_TRADERS = 24

# One step of a crash, as the ranking sees it: ("trade", account, instrument, lots,
# price) against genesis, ("deposit", account, USD), ("move", instrument, factor) of a
# mark, or ("ask", instrument, side, excluded account, lots, close): ADL's order, whose
# accounts then give up those lots if ``close``.
account = st.integers(N_SYSTEM, N_SYSTEM + N_TRADERS - 1)
action = st.one_of(
    st.tuples(
        st.just("trade"),
        account,
        st.integers(0, 1),
        st.integers(-30, 30).filter(bool),
        st.sampled_from([0.9, 1.0, 1.1]),
    ),
    st.tuples(st.just("deposit"), account, st.sampled_from([-5_000.0, -50.0, 50.0, 5_000.0])),
    st.tuples(st.just("move"), st.integers(0, 1), st.sampled_from([0.95, 1.0, 1.05])),
    st.tuples(st.just("ask"), st.integers(0, 1), st.sampled_from([1, -1]), account, st.integers(1, 120), st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(actions=st.lists(action, max_size=60), seed=st.integers(0, 1_000), first_chunk=st.sampled_from([1, 3, 256]))
def test_first_is_the_full_ranking_s_prefix_through_trades_deposits_and_moves(actions, seed, first_chunk):
    """Whatever changed since the last ADL, `AdlRanking.first` answers what a full sort
    of `AdlRanking.candidates` (score descending, ties by lower id) gives, cut where the
    positions first hold the lots asked for. The accounts come in a few identical
    groups (so scores tie), some of them under water (scores of +inf and 0); the order
    is sorted a chunk at a time, from chunks of one."""
    rng = np.random.default_rng(seed)
    initial = np.array([50_000.0, 3_000.0])
    ex = Exchange([btc(), eth()], [CollateralAsset("USD")], N_TRADERS, initial)
    groups = rng.integers(0, 4, N_TRADERS)
    for r in range(N_TRADERS):
        g = int(groups[r])
        ex.ledger.deposit(N_SYSTEM + r, USD, [1_000.0, 5_000.0, -200.0, 20_000.0][g])
        for m in range(2):
            lots = [40, -40, 300, -25][(g + m) % 4] * (1 if m == 0 else 10)
            ex.ledger.trade_between(N_SYSTEM + r, GENESIS, m, lots, initial[m] * [1.0, 0.98, 1.02, 1.0][g], 0.0)
    moved = initial * rng.choice([0.97, 1.03], 2)  # every position in profit or loss
    ex.set_prices(moved, moved)
    ranking = AdlRanking(ex, first_chunk)
    for act in actions:
        if act[0] == "trade":
            _, holder, m, lots, factor = act
            ex.ledger.trade_between(holder, GENESIS, m, lots, float(ex.marks[m]) * factor, 0.0)
        elif act[0] == "deposit":
            ex.ledger.deposit(act[1], USD, act[2])
        elif act[0] == "move":
            marks = ex.marks.copy()
            marks[act[1]] *= act[2]
            ex.set_prices(marks, marks)
        else:
            _, m, side, excluded, lots, close = act
            ids, held = ranking.first(m, side, excluded, lots)
            assert (ids, held) == full_ranking_prefix(ranking, m, side, excluded, lots)
            assert ranking.first(m, side, excluded, lots) == (ids, held)  # asking changes nothing
            for holder in ids if close else []:  # ADL closes them (against genesis here) at the mark
                take = min(lots, abs(int(ex.ledger.positions[holder, m])))
                ex.ledger.trade_between(holder, GENESIS, m, side * take, float(ex.marks[m]), 0.0)
                lots -= take


def full_ranking_prefix(ranking: AdlRanking, m: int, side: int, excluded: int, lots: int) -> tuple[list[int], int]:
    """The reference: every candidate scored and sorted (NaN after every number)."""
    ids, scores, held = ranking.candidates(m, side, excluded)
    keys = _sort_keys(scores)
    order = np.lexsort((ids, np.nan_to_num(keys, nan=0.0, posinf=np.inf, neginf=-np.inf), np.isnan(keys)))
    reach = np.cumsum(held[order]) >= lots
    if reach.any():
        order = order[: int(np.argmax(reach)) + 1]
    return ids[order].tolist(), int(held[order].sum())


@settings(max_examples=300, deadline=None)
@given(
    scores=st.lists(st.sampled_from([np.inf, 2.0, 0.0, -0.0, -1.0, -np.inf, np.nan]), min_size=1, max_size=40),
    rescored=st.lists(st.tuples(st.integers(0, 39), st.sampled_from([np.inf, 0.0, -np.inf, np.nan])), max_size=8),
    first_chunk=st.sampled_from([1, 2, 256]),
    lots=st.integers(1, 200),
)
def test_the_standing_order_ranks_nan_after_minus_inf_and_ties_by_id(scores, rescored, first_chunk, lots):
    """The degenerate scores a position with an entry price of 0 gives (+inf, -inf, NaN)
    and signed zeros: NaN after -inf, each group by lower id, in the sorted part and in
    the heap of re-scored rows alike."""
    n = len(scores)
    ids = np.arange(n, dtype=np.int64) * 3 + N_SYSTEM
    now = np.array(scores, dtype=float)
    held = np.arange(1, n + 1, dtype=float) % 7 + 1
    order = _StandingOrder(b"", 0, ids, _sort_keys(now.copy()), held, first_chunk)
    changed = sorted({k % n for k, _ in rescored})
    for k, score in rescored:
        now[k % n] = score
    if changed:
        rows = ids[changed]
        order.update(1, rows, rows, _sort_keys(now[changed]), held[changed])
    keys = _sort_keys(now)
    full = np.lexsort((ids, np.nan_to_num(keys, nan=0.0, posinf=np.inf, neginf=-np.inf), np.isnan(keys)))
    reach = np.cumsum(held[full]) >= lots
    expected = full[: int(np.argmax(reach)) + 1] if reach.any() else full
    assert order.first(-1, lots) == (ids[expected].tolist(), int(held[expected].sum()))

"""Compiled matching kernels (numba) over the order-book arrays of `sim.book.BookSet`.

Everything here is plain int64 array code: no Python objects, no allocation on the hot
path. `sim.book` owns the arrays, grows them, and turns the kernels' integer results
back into the book's Python API; nothing else should call these functions.

Array layout (all int64):

- ``pool`` (C, N_POOL): one row per order slot: ``P_*`` columns. Free slots form a
  list through ``P_NEXT`` starting at ``head[-1, G_FREE]``.
- ``table`` (H, 2): open-addressing hash of order id -> slot (linear probing, H a power
  of two, at most half full counting tombstones).
- ``levels`` (B, 2, W, 3): per book, per side (0 bids, 1 asks), per price level
  ``price - head[b, H_BASE]``: the FIFO's first and last slot and the level's open lots.
- ``head`` (B + 1, N_HEAD): per book ``H_*`` (base tick, best level index or -1 per
  side, open lots per side, resting orders); the last row holds ``G_*`` globals.
- ``out`` (E, N_OUT): what a batch did, in execution order: a fill (``OUT_FILL``), a
  resting order cancelled by self-trade prevention (``OUT_STP``) or by a cancel event
  (``OUT_CANCEL``), with the index of the order or cancel within its batch.

Codes: kinds ``K_*`` (`sim.types.OrderType` in this order), rejects ``R_*`` (0 = none),
and the negative statuses ``NEED_WINDOW`` / ``NEED_ROOM`` / ``STALE`` that ask the
caller to grow an array or re-check an order, with nothing of that order done yet.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# pool columns
P_ID, P_ACCOUNT, P_SIDE, P_PRICE, P_QTY, P_PREV, P_NEXT, P_SEQ, P_BOOK = range(9)
N_POOL = 9
# level fields
L_HEAD, L_TAIL, L_QTY = range(3)
# per-book header fields, and the globals in the last row
H_BASE, H_BEST_BID, H_BEST_ASK, H_LOTS_BID, H_LOTS_ASK, H_COUNT = range(6)
G_FREE, G_SEQ, G_FILLED, G_LIVE = range(4)
N_HEAD = 6
# out columns and row kinds
OUT_KIND, OUT_ID, OUT_ACCOUNT, OUT_SIDE, OUT_PRICE, OUT_LOTS, OUT_TAKER = range(7)
N_OUT = 7
OUT_FILL, OUT_STP, OUT_CANCEL = 0, 1, 2
# order kinds (K_CANCEL: a batch event cancelling the resting order ``order_id``) and reject codes
K_LIMIT, K_MARKET, K_IOC, K_POST_ONLY, K_CANCEL = range(5)
R_NONE, R_BAD_QUANTITY, R_BAD_PRICE, R_WOULD_CROSS = range(4)
# statuses asking the caller to act before the order is retried
NEED_WINDOW, NEED_ROOM, STALE = -1, -2, -3
# hash table keys that are not order ids
EMPTY = np.iinfo(np.int64).min
TOMBSTONE = EMPTY + 1


@njit(cache=True)
def _hash(key: int, mask: int) -> int:
    """Table index of an order id: its low bits, folded with its high ones. Callers
    number orders sequentially, so consecutive ids land in consecutive rows (cache
    friendly); ids a power of two apart still spread."""
    return (key ^ (key >> 17) ^ (key >> 37)) & mask


@njit(cache=True)
def find_slot(table: np.ndarray, key: int) -> int:
    """Slot of order ``key``, or -1."""
    mask = table.shape[0] - 1
    i = _hash(key, mask)
    while True:
        k = table[i, 0]
        if k == key:
            return table[i, 1]
        if k == EMPTY:
            return -1
        i = (i + 1) & mask


@njit(cache=True)
def _table_insert(table: np.ndarray, head: np.ndarray, key: int, slot: int) -> None:
    mask = table.shape[0] - 1
    i = _hash(key, mask)
    while table[i, 0] != EMPTY and table[i, 0] != TOMBSTONE:
        i = (i + 1) & mask
    if table[i, 0] == EMPTY:
        head[-1, G_FILLED] += 1
    table[i, 0] = key
    table[i, 1] = slot
    head[-1, G_LIVE] += 1


@njit(cache=True)
def _table_delete(table: np.ndarray, head: np.ndarray, key: int) -> None:
    mask = table.shape[0] - 1
    i = _hash(key, mask)
    while table[i, 0] != key:
        i = (i + 1) & mask
    table[i, 0] = TOMBSTONE
    head[-1, G_LIVE] -= 1


@njit(cache=True)
def rehash(table: np.ndarray, new_table: np.ndarray, head: np.ndarray) -> None:
    """Copy the live entries of ``table`` into the empty ``new_table`` (tombstones drop)."""
    head[-1, G_FILLED] = 0
    head[-1, G_LIVE] = 0
    for i in range(table.shape[0]):
        if table[i, 0] != EMPTY and table[i, 0] != TOMBSTONE:
            _table_insert(new_table, head, table[i, 0], table[i, 1])


@njit(cache=True)
def _next_best(levels: np.ndarray, head: np.ndarray, b: int, s: int, idx: int) -> None:
    """Move side ``s``'s best level away from the emptied level ``idx``."""
    if head[b, H_LOTS_BID + s] == 0:
        head[b, H_BEST_BID + s] = -1
        return
    step = -1 if s == 0 else 1
    i = idx + step
    while levels[b, s, i, L_QTY] == 0:
        i += step
    head[b, H_BEST_BID + s] = i


@njit(cache=True)
def _unlink(pool: np.ndarray, table: np.ndarray, levels: np.ndarray, head: np.ndarray, slot: int) -> None:
    """Take slot's order out of its level FIFO, the id table and the pool (lots handled by caller)."""
    b = pool[slot, P_BOOK]
    s = 0 if pool[slot, P_SIDE] > 0 else 1
    idx = pool[slot, P_PRICE] - head[b, H_BASE]
    prev, nxt = pool[slot, P_PREV], pool[slot, P_NEXT]
    if prev == -1:
        levels[b, s, idx, L_HEAD] = nxt
    else:
        pool[prev, P_NEXT] = nxt
    if nxt == -1:
        levels[b, s, idx, L_TAIL] = prev
    else:
        pool[nxt, P_PREV] = prev
    _table_delete(table, head, pool[slot, P_ID])
    pool[slot, P_QTY] = 0
    pool[slot, P_NEXT] = head[-1, G_FREE]
    head[-1, G_FREE] = slot
    head[b, H_COUNT] -= 1


@njit(cache=True)
def _record(out, n_out, kind, order_id, account, side, price, lots, taker) -> int:
    out[n_out, OUT_KIND] = kind
    out[n_out, OUT_ID] = order_id
    out[n_out, OUT_ACCOUNT] = account
    out[n_out, OUT_SIDE] = side
    out[n_out, OUT_PRICE] = price
    out[n_out, OUT_LOTS] = lots
    out[n_out, OUT_TAKER] = taker
    return n_out + 1


@njit(cache=True)
def execute(pool, table, levels, head, out, n_out, taker, b, order_id, account, side, qty, price, kind):
    """Match one order in book ``b``, then rest or cancel its remainder.

    Args:
        out, n_out: Where the order's fills and self-trade cancels are written, and how
            many rows are already used.
        taker: The order's index in its batch (copied into ``out``).
        order_id, account, side (+1/-1), qty (lots), price (ticks; ignored for
        K_MARKET), kind (K_*).

    Returns:
        ``(status, n_out, rested_lots, cancelled_lots)``; status is R_* (the book is
        unchanged unless R_NONE) or NEED_WINDOW / NEED_ROOM (nothing done).
    """
    if qty <= 0:
        return R_BAD_QUANTITY, n_out, 0, 0
    if kind != K_MARKET and price <= 0:
        return R_BAD_PRICE, n_out, 0, 0
    s = 0 if side > 0 else 1
    o = 1 - s
    resting_kind = kind in (K_LIMIT, K_POST_ONLY)
    if resting_kind:
        idx = price - head[b, H_BASE]
        if idx < 0 or idx >= levels.shape[2]:
            return NEED_WINDOW, n_out, 0, 0
        if head[-1, G_FREE] == -1 or 2 * (head[-1, G_FILLED] + 1) > table.shape[0]:
            return NEED_ROOM, n_out, 0, 0
    base = head[b, H_BASE]
    best = head[b, H_BEST_BID + o]
    if kind == K_POST_ONLY:
        if best >= 0 and (base + best - price) * side <= 0:
            return R_WOULD_CROSS, n_out, 0, 0
        best = -1  # a post-only order never matches
    remaining = qty
    while remaining > 0 and best >= 0:
        level_price = base + best
        if kind != K_MARKET and (price - level_price) * side < 0:
            break
        lqty = levels[b, o, best, L_QTY]
        slot = levels[b, o, best, L_HEAD]
        while remaining > 0 and slot != -1:
            nxt = pool[slot, P_NEXT]
            mqty = pool[slot, P_QTY]
            maker_account = pool[slot, P_ACCOUNT]
            if maker_account == account:
                n_out = _record(out, n_out, OUT_STP, pool[slot, P_ID], account, -side, level_price, mqty, taker)
                take = mqty
            else:
                take = remaining if remaining < mqty else mqty
                n_out = _record(out, n_out, OUT_FILL, pool[slot, P_ID], maker_account, -side, level_price, take, taker)
                remaining -= take
            lqty -= take
            head[b, H_LOTS_BID + o] -= take
            if take == mqty:
                _unlink(pool, table, levels, head, slot)
            else:
                pool[slot, P_QTY] = mqty - take
            slot = nxt
        levels[b, o, best, L_QTY] = lqty
        if lqty:
            break
        _next_best(levels, head, b, o, best)
        best = head[b, H_BEST_BID + o]
    if remaining == 0:
        return R_NONE, n_out, 0, 0
    if not resting_kind:
        return R_NONE, n_out, 0, remaining
    # rest the remainder at the tail of its level
    slot = head[-1, G_FREE]
    head[-1, G_FREE] = pool[slot, P_NEXT]
    idx = price - base
    tail = levels[b, s, idx, L_TAIL]
    pool[slot, P_ID] = order_id
    pool[slot, P_ACCOUNT] = account
    pool[slot, P_SIDE] = side
    pool[slot, P_PRICE] = price
    pool[slot, P_QTY] = remaining
    pool[slot, P_PREV] = tail
    pool[slot, P_NEXT] = -1
    pool[slot, P_SEQ] = head[-1, G_SEQ]
    pool[slot, P_BOOK] = b
    head[-1, G_SEQ] += 1
    if tail == -1:
        levels[b, s, idx, L_HEAD] = slot
    else:
        pool[tail, P_NEXT] = slot
    levels[b, s, idx, L_TAIL] = slot
    levels[b, s, idx, L_QTY] += remaining
    own_best = head[b, H_BEST_BID + s]
    if own_best == -1 or (idx - own_best) * side > 0:
        head[b, H_BEST_BID + s] = idx
    head[b, H_LOTS_BID + s] += remaining
    head[b, H_COUNT] += 1
    _table_insert(table, head, order_id, slot)
    return R_NONE, n_out, remaining, 0


@njit(cache=True)
def cancel(pool, table, levels, head, order_id):
    """Take a resting order off its book: ``(account, side, price, lots)``; lots 0 if absent."""
    slot = find_slot(table, order_id)
    if slot == -1:
        return 0, 0, 0, 0
    b = pool[slot, P_BOOK]
    account, side, price, lots = pool[slot, P_ACCOUNT], pool[slot, P_SIDE], pool[slot, P_PRICE], pool[slot, P_QTY]
    s = 0 if side > 0 else 1
    idx = price - head[b, H_BASE]
    _unlink(pool, table, levels, head, slot)
    levels[b, s, idx, L_QTY] -= lots
    head[b, H_LOTS_BID + s] -= lots
    if levels[b, s, idx, L_QTY] == 0 and head[b, H_BEST_BID + s] == idx:
        _next_best(levels, head, b, s, idx)
    return account, side, price, lots


@njit(cache=True)
def execute_many(
    pool,
    table,
    levels,
    head,
    out,
    n_out,
    start,
    books,
    order_ids,
    accounts,
    sides,
    lots,
    prices,
    kinds,
    active,
    rested,
    cancelled,
    reject,
    watch_account,
    watch_book,
    checked_after,
    check_ticks,
    touched,
    relaxed,
    soft,
    spent,
    soft_touched,
    budget,
    spent_at_check,
    fill_cost,
    numbering,
):
    """`execute` orders ``start..n-1`` of a batch in order (arrays of shape (n,)).

    A ``K_CANCEL`` event cancels ``order_ids[k]`` (its ``cancelled[k]`` is the lots taken
    off, 0 if it was not resting; the other fields are ignored). Inactive orders are
    skipped (after the stale test: a re-check may admit them).

    Ids: with ``numbering`` = ``[next, stride]`` each executed order (not a cancel) gets
    ``order_ids[k] = next * stride + books[k]`` and ``next`` advances (the exchange's
    ids); with an empty ``numbering`` the given ids are used.

    Staleness: ``touched`` (A,) holds, per account, the last batch index that touched it
    in a way that can lower its margin (as taker, resting order, maker (unless
    ``soft``, below) or self-trade; -1: none), ``relaxed`` (A,) the last cancel event
    of one of its orders (which can only raise its margin: open orders count at their
    worst case, and initial margin never falls as notional rises); order k was checked
    against the state after orders ``< checked_after[k]``. It is *stale* when
    ``watch_account[k]`` and its account was touched since (``touched >=
    checked_after[k]``; for an order that its check refused, relaxed counts too), or
    ``watch_book[k]`` (a market order) and its sweep of the book now ends at another
    price than ``check_ticks[k]``: the caller must re-check it first. An empty
    ``touched`` watches nothing.

    Budgets: a fill as maker of an account with ``soft[account]`` is not a touch but a
    cost: at most ``max(0, (s (P - M) + f P) lots v)`` for a maker on side s at price P
    (ticks), with ``fill_cost[b] = (M, v, f)`` (the mark in ticks, the value of one lot
    over one tick, a fee rate) is added to ``spent[account]`` and ``soft_touched[account]``
    set. Order k is stale on such fills only when their cost since its check,
    ``spent[account] - spent_at_check[k]``, exceeds ``budget[k]`` (-inf: any such fill).

    Returns:
        ``(k, n_out, status)``: k == n when done (status R_NONE); otherwise order k needs
        NEED_WINDOW, NEED_ROOM or STALE handled and nothing of it was done.
    """
    watching = touched.shape[0] > 0
    n = order_ids.shape[0]
    for k in range(start, n):
        account = accounts[k]
        b = books[k]
        if watching:
            since = checked_after[k]
            if watch_account[k] and (
                touched[account] >= since
                or (soft_touched[account] >= since and spent[account] - spent_at_check[k] > budget[k])
                or (not active[k] and relaxed[account] >= since)
            ):
                return k, n_out, STALE
            if watch_book[k] and sweep(levels, head, b, sides[k], lots[k], 0)[1] != check_ticks[k]:
                return k, n_out, STALE
        if not active[k]:
            continue
        first = n_out
        if kinds[k] == K_CANCEL:
            owner, side, price, gone = cancel(pool, table, levels, head, order_ids[k])
            cancelled[k] = gone
            if gone:
                n_out = _record(out, n_out, OUT_CANCEL, order_ids[k], owner, side, price, gone, k)
                if watching:
                    relaxed[owner] = k
            continue
        if numbering.shape[0]:
            order_ids[k] = numbering[0] * numbering[1] + b
        status, n_out, rest, gone = execute(
            pool, table, levels, head, out, n_out, k, b, order_ids[k], account, sides[k], lots[k], prices[k], kinds[k]
        )
        if status < 0:
            return k, n_out, status
        if numbering.shape[0]:
            numbering[0] += 1
        reject[k] = status
        rested[k] = rest
        cancelled[k] = gone
        if watching and (n_out > first or rest > 0):
            touched[account] = k
            for e in range(first, n_out):
                owner = out[e, OUT_ACCOUNT]
                if out[e, OUT_KIND] == OUT_FILL and soft[owner]:
                    mark, value, fee = fill_cost[b, 0], fill_cost[b, 1], fill_cost[b, 2]
                    price = out[e, OUT_PRICE]
                    cost = (out[e, OUT_SIDE] * (price - mark) + fee * price) * out[e, OUT_LOTS] * value
                    spent[owner] += max(cost, 0.0)
                    soft_touched[owner] = k
                else:
                    touched[owner] = k
    return n, n_out, R_NONE


@njit(cache=True)
def best_levels(levels, head, b, s, start, n, out):
    """Up to ``n`` non-empty levels of side ``s`` (0 bids, 1 asks) of book ``b``, best first,
    from level index ``start`` on (-2: from the best); ``out`` (n, 2) gets
    ``(price, lots)``. Returns ``(count, next_start)``; next_start -1 when the side ends."""
    i = head[b, H_BEST_BID + s] if start == -2 else start
    if i < 0:
        return 0, -1
    step = -1 if s == 0 else 1
    width = levels.shape[2]
    count = 0
    while 0 <= i < width and count < n:
        q = levels[b, s, i, L_QTY]
        if q:
            out[count, 0] = head[b, H_BASE] + i
            out[count, 1] = q
            count += 1
        i += step
    return count, (i if 0 <= i < width else -1)


@njit(cache=True)
def fill_table(events, books, ids, accounts, sides, liquidation):
    """``(fills, n_cancels)``: the (F, 9) `sim.types.Fill` rows (instrument, taker order,
    maker order, taker account, maker account, taker side, price ticks, lots,
    liquidation) of a batch's ``OUT_*`` events in order, and how many were cancels.
    ``books``, ``ids``, ``accounts``, ``sides``: (n,) per batch row (the taker's)."""
    n_fills = n_cancels = 0
    for e in range(events.shape[0]):
        if events[e, OUT_KIND] == OUT_FILL:
            n_fills += 1
        elif events[e, OUT_KIND] == OUT_CANCEL:
            n_cancels += 1
    fills = np.empty((n_fills, 9), np.int64)
    f = 0
    for e in range(events.shape[0]):
        if events[e, OUT_KIND] != OUT_FILL:
            continue
        taker = events[e, OUT_TAKER]
        fills[f, 0], fills[f, 1], fills[f, 2] = books[taker], ids[taker], events[e, OUT_ID]
        fills[f, 3], fills[f, 4], fills[f, 5] = accounts[taker], events[e, OUT_ACCOUNT], sides[taker]
        fills[f, 6], fills[f, 7], fills[f, 8] = events[e, OUT_PRICE], events[e, OUT_LOTS], liquidation
        f += 1
    return fills, n_cancels


@njit(cache=True)
def average_price(levels, head, b, s, notional, tick_size, lot_size):
    """Average price (USD) of taking ``notional`` USD from side ``s`` of book ``b``, best
    level first (the last level taken in part); NaN when the side holds less. Float
    arithmetic as ``sim.funding.Funding``'s impact price has it: per level, ``take =
    min(lots * lot_size, (notional - cost) / price)``, done once the cost reaches the
    notional up to 1e-12 of it."""
    i = head[b, H_BEST_BID + s]
    if i < 0:
        return np.nan
    step = -1 if s == 0 else 1
    base = head[b, H_BASE]
    width = levels.shape[2]
    cost = size = 0.0
    while 0 <= i < width:
        q = levels[b, s, i, L_QTY]
        if q:
            price = (base + i) * tick_size
            take = min(q * lot_size, (notional - cost) / price)
            cost += take * price
            size += take
            if cost >= notional * (1 - 1e-12):
                return cost / size
        i += step
    return np.nan


@njit(cache=True)
def lots_within(levels, head, b, s, bound):
    """Lots on side ``s`` priced at least as well as ``bound`` (float ticks): bids at or
    above it, asks at or below it."""
    i = head[b, H_BEST_BID + s]
    total = 0
    if i < 0:
        return 0
    step = -1 if s == 0 else 1
    base = head[b, H_BASE]
    width = levels.shape[2]
    while 0 <= i < width:
        if s == 0 and base + i < bound:
            break
        if s == 1 and base + i > bound:
            break
        total += levels[b, s, i, L_QTY]
        i += step
    return total


@njit(cache=True)
def sweep(levels, head, b, side, qty, limit):
    """``(fillable_lots, worst_price)`` of a side-``side`` order of ``qty`` lots limited at
    ``limit`` ticks (<= 0: no limit), without trading; worst_price -1 when nothing."""
    o = 1 if side > 0 else 0
    i = head[b, H_BEST_BID + o]
    taken, worst = 0, -1
    if i < 0:
        return 0, -1
    step = -1 if o == 0 else 1
    base = head[b, H_BASE]
    width = levels.shape[2]
    while 0 <= i < width and taken < qty:
        q = levels[b, o, i, L_QTY]
        if q:
            if limit > 0 and (limit - (base + i)) * side < 0:
                break
            taken += min(qty - taken, q)
            worst = base + i
        i += step
    return taken, worst


@njit(cache=True)
def orders_of(pool, head, b, account):
    """Slots of book ``b``'s resting orders of ``account`` (all accounts if < 0), oldest first."""
    n = pool.shape[0]
    picked = np.empty(n, np.int64)
    count = 0
    for slot in range(n):
        if pool[slot, P_QTY] > 0 and pool[slot, P_BOOK] == b and (account < 0 or pool[slot, P_ACCOUNT] == account):
            picked[count] = slot
            count += 1
    picked = picked[:count]
    seq = np.empty(count, np.int64)
    for i in range(count):
        seq[i] = pool[picked[i], P_SEQ]
    return picked[np.argsort(seq, kind="mergesort")]


@njit(cache=True)
def shift_levels(levels, new_levels, head, b, shift):
    """Copy book ``b``'s levels into ``new_levels`` moved by ``shift`` indices (the base
    moves by ``-shift``); every non-empty level must fit."""
    for s in range(2):
        for i in range(levels.shape[2]):
            if levels[b, s, i, L_HEAD] != -1:
                j = i + shift
                new_levels[b, s, j, 0] = levels[b, s, i, 0]
                new_levels[b, s, j, 1] = levels[b, s, i, 1]
                new_levels[b, s, j, 2] = levels[b, s, i, 2]
        if head[b, H_BEST_BID + s] >= 0:
            head[b, H_BEST_BID + s] += shift
    head[b, H_BASE] -= shift

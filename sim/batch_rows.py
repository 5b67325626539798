"""The rows of an order batch, in compiled passes.

`read_rows` (once per batch, `sim.exchange._Batch.from_lots`): what each row is (a
cancel or an order), which book and account it reaches, the reject code of the checks
that need no state (known ids, sizes and limits on the grid) and the bounds of its group.
`screen_rows` (at admission, `sim.exchange.Exchange._admit_many`): the rules that read
positions and marks but no margin (reduce-only clipping, the price band). The margin
check comes last (`sim.margin_check`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: `read_rows`'s problem codes (0: none): a kind code out of range, a side other than
#: +-1, a group split in several runs, a group with a cancel or several accounts.
BAD_KIND, BAD_SIDE, SPLIT_GROUP, MIXED_GROUP = 1, 2, 3, 4


@njit(cache=True)
def read_rows(
    accounts, instruments, sides, lots, ticks, kinds, cancel_ids, groups, bad_qty, bad_price,
    n_accounts, n_books, kind_cancel, kind_market, codes,
):  # fmt: skip
    """The rows of a batch (`sim.exchange.Exchange.submit_batch_lots`), (n,) each.

    Args:
        accounts, instruments, sides, lots, ticks, kinds: (n,) int64 rows as given.
        cancel_ids: (n,) int64, the order a cancel row cancels (read on cancels only).
        groups: (n,) int64 group ids (< 0: alone), or (0,) for every row alone.
        bad_qty, bad_price: (n,) bool, where a size or limit that is not on the grid
            (<= 0 lots or ticks) is a bad value rather than one off the grid; (0,) for
            wherever it is not on it.
        n_accounts, n_books: Accounts in the ledger, books (instruments).
        kind_cancel, kind_market: The cancel and market kind codes (`sim.book`), the
            kinds being 0..kind_cancel.
        codes: (6,) reject codes of unknown account, unknown instrument, bad quantity,
            off lot, bad price, off tick (`sim.exchange.EXCHANGE_REJECTS`).

    Returns:
        ``(problem, (is_cancel, ids, books, book_accounts, grid_reject, want_lots,
        want_ticks, lead, end))``: ``problem`` a code above (0: the rows are well formed;
        the arrays are then meaningful); per row: a cancel, the order id it cancels (-1
        for an order), its book (a cancel's from its id), its account (0 when unknown),
        the reject code of the checks without state (0: passed), the lots and ticks it
        asks for (0 and -1 when rejected; -1 ticks for a market order), the first row
        of its group and the row after its last.
    """
    n = accounts.shape[0]
    is_cancel = np.empty(n, np.bool_)
    ids, books, book_accounts = np.full(n, -1, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    grid_reject, want_lots, want_ticks = np.zeros(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    lead, end = np.arange(n), np.arange(1, n + 1)
    rows = (is_cancel, ids, books, book_accounts, grid_reject, want_lots, want_ticks, lead, end)
    for i in range(n):
        if not 0 <= kinds[i] <= kind_cancel:
            return BAD_KIND, rows
    for i in range(n):
        if kinds[i] != kind_cancel and sides[i] != 1 and sides[i] != -1:
            return BAD_SIDE, rows
    for i in range(n):
        cancel = kinds[i] == kind_cancel
        is_cancel[i] = cancel
        known_account = 0 <= accounts[i] < n_accounts
        known_instrument = 0 <= instruments[i] < n_books
        market = kinds[i] == kind_market
        if cancel:
            ids[i] = cancel_ids[i]
            books[i] = ids[i] % n_books
        else:
            books[i] = instruments[i] if known_instrument else 0
            if not known_account:
                grid_reject[i] = codes[0]
            elif not known_instrument:
                grid_reject[i] = codes[1]
            elif lots[i] <= 0:
                grid_reject[i] = codes[2] if bad_qty.shape[0] == 0 or bad_qty[i] else codes[3]
            elif not market and ticks[i] <= 0:
                grid_reject[i] = codes[4] if bad_price.shape[0] == 0 or bad_price[i] else codes[5]
        book_accounts[i] = accounts[i] if known_account else 0
        want_lots[i] = lots[i] if grid_reject[i] == 0 else 0
        want_ticks[i] = ticks[i] if grid_reject[i] == 0 and not market else -1
    if groups.shape[0]:
        runs = 0
        for i in range(n):
            if groups[i] >= 0:
                if i > 0 and groups[i - 1] == groups[i]:
                    lead[i] = lead[i - 1]
                else:
                    runs += 1
        if runs != len(np.unique(groups[groups >= 0])):
            return SPLIT_GROUP, rows
        for i in range(n):
            if groups[i] >= 0 and (is_cancel[i] or accounts[i] != accounts[lead[i]]):
                return MIXED_GROUP, rows
        for i in range(n - 2, -1, -1):
            if lead[i + 1] == lead[i]:
                end[i] = end[i + 1]
    return 0, rows


@njit(cache=True)
def screen_rows(
    accounts, instruments, sides, lots, ticks, kinds, reduce_only, reject,
    positions, marks, tick_sizes, price_band, liquidation, kind_codes, codes,
):  # fmt: skip
    """The admission rules that need no margin, for K orders at once
    (`sim.exchange.Exchange._admit_many`): reduce-only clipping against the positions
    now, then the price band around the marks.

    Args:
        accounts, instruments: (K,) int64, valid indices on every row.
        sides: (K,) +1 / -1.
        lots, ticks, kinds: (K,) int64 sizes and limits on the grid (ticks -1: none)
            and `sim.book.KIND_CODES`.
        reduce_only: (K,) bool.
        reject: (K,) reject codes of the id and grid checks (0: passed).
        positions: (A, I) signed lots. marks: (I,) USD. tick_sizes: (I,) USD.
        price_band: Fraction of the mark an order's limit may lie beyond it (0: none).
        liquidation: Orders of the liquidation engine (clamped to the band, not refused).
        kind_codes: (4,) the limit, post-only, market and IOC kind codes.
        codes: (3,) reject codes of a resting reduce-only order, a reduce-only order that
            would increase the position, and a limit outside the price band.

    Returns:
        ``(reject, lots, ticks, kinds, clipped)``, (K,) each: new arrays.
    """
    limit, post_only, market, ioc = kind_codes[0], kind_codes[1], kind_codes[2], kind_codes[3]
    reject, lots, ticks, kinds = reject.copy(), lots.copy(), ticks.copy(), kinds.copy()
    clipped = np.zeros_like(lots)
    for i in range(reject.shape[0]):
        if reject[i] != 0:
            continue
        if reduce_only[i]:
            position = positions[accounts[i], instruments[i]]
            if kinds[i] == limit or kinds[i] == post_only:
                reject[i], lots[i] = codes[0], 0
                continue
            if position == 0 or (position > 0) == (sides[i] > 0):
                reject[i], lots[i] = codes[1], 0
                continue
            allowed = min(lots[i], abs(position))
            clipped[i], lots[i] = lots[i] - allowed, allowed
        if price_band:
            m = instruments[i]
            if sides[i] > 0:
                edge = int(np.floor(marks[m] * (1.0 + price_band) / tick_sizes[m] + 1e-9))
            else:
                edge = int(max(1.0, np.ceil(marks[m] * (1.0 - price_band) / tick_sizes[m] - 1e-9)))
            if kinds[i] == market:
                kinds[i], ticks[i] = ioc, edge
            elif ticks[i] > edge if sides[i] > 0 else ticks[i] < edge:
                if liquidation:
                    ticks[i] = edge
                else:
                    reject[i] = codes[2]
    return reject, lots, ticks, kinds, clipped

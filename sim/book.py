"""Limit order books: integer ticks and lots, price-time priority, compiled matching.

The matching runs in numba kernels (`sim.book_kernels`) over plain int64 arrays that a
`BookSet` owns for several books at once (one per instrument of an exchange), so that
one compiled call can execute a whole batch of orders across instruments in arrival
order. `OrderBook` is one book's view with the Python API the rest of the simulator
uses (and a standalone ``OrderBook()`` is a set of one).

Layout: orders live in a fixed-capacity pool of slots (doubled when full) found by id
through a hash table, so a cancel is O(1); each side of a book is an array of price
levels indexed by ``price - base`` ticks, each level a FIFO linked list of slots with its
open lots. The window of levels is re-centred, or widened for every book of the set, when
an order must rest outside it; best bid and ask are level indices, moved by a scan when
their level empties.

Semantics (unchanged from the pure-Python book it replaced, kept in
``bench/python_book.py`` as the benchmark's reference):

- Price-time priority: best price first, then arrival order within a price; a fill is
  at the maker's price.
- LIMIT rests its remainder; MARKET and IOC cancel it; POST_ONLY is rejected
  (``WOULD_CROSS``) if it would trade on arrival. A non-positive size (``BAD_QUANTITY``)
  or a missing or non-positive price (``BAD_PRICE``) is rejected too: a reject is a
  value and leaves the book unchanged.
- Self-trade prevention ("cancel resting"): when an order meets a resting order of its
  own account, the resting order is cancelled (reported with the result) and matching
  continues behind it.
- Order ids are unique among a set's resting orders (the exchange encodes the
  instrument in them); an id may be reused once its order has left the book.

The book never touches balances: it returns fills, the exchange settles them. Shapes
of the single-order API (plain tuples, cheap to build):

- ``BookFill = (maker_order_id, maker_account, price_ticks, lots)``;
- ``Cancelled = (order_id, account, side, price_ticks, lots)``;
- ``submit`` returns ``(fills, rested_lots, cancelled_lots, self_trade_cancels, reject)``.

The batch API (`OrderBook.submit_batch`, `BookSet.execute`) takes and returns arrays.

Compilation: the kernels are compiled on first use and cached on disk by numba
(``cache=True``, in ``__pycache__`` beside `sim/book_kernels.py`), so only a machine's
first run pays it (see the README's performance section). Single orders call the
compiled code through its entry point, past numba's dispatcher (whose type resolution
costs more than the matching); the arrays passed are always the set's own int64 ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numba
import numpy as np

from sim import book_kernels as k
from sim.types import OrderType, RejectReason, Side

BookFill = tuple[int, int, int, int]
Cancelled = tuple[int, int, int, int, int]
BookResult = tuple[Sequence[BookFill], int, int, Sequence[Cancelled], RejectReason | None]

#: Kernel code of each order type (`sim.book_kernels` ``K_*``); arrays of kinds use these.
KIND_CODES: dict[OrderType, int] = {
    OrderType.LIMIT: k.K_LIMIT,
    OrderType.MARKET: k.K_MARKET,
    OrderType.IOC: k.K_IOC,
    OrderType.POST_ONLY: k.K_POST_ONLY,
}
#: Kind code of a batch event that cancels a resting order (`OrderBook.submit_batch`).
KIND_CANCEL = k.K_CANCEL
#: The book's reject codes (index = code; 0 = accepted).
BOOK_REJECTS: tuple[RejectReason | None, ...] = (
    None,
    RejectReason.BAD_QUANTITY,
    RejectReason.BAD_PRICE,
    RejectReason.WOULD_CROSS,
)

_NONE: tuple = ()
_INITIAL_SLOTS = 1024
_INITIAL_WIDTH = 1024  # price levels per side and book
_UNSET_BASE = -(2**62)  # no price fits until the first order rests


def _empty_levels(n_books: int, width: int) -> np.ndarray:
    levels = np.zeros((n_books, 2, width, 3), np.int64)
    levels[..., k.L_HEAD] = -1
    levels[..., k.L_TAIL] = -1
    return levels


def _empty_table(size: int) -> np.ndarray:
    table = np.zeros((size, 2), np.int64)
    table[:, 0] = k.EMPTY
    return table


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _entry_point(dispatcher, *example):
    """The compiled function behind a numba dispatcher, called with ``example`` once."""
    dispatcher(*example)
    return dispatcher.overloads[tuple(numba.typeof(a) for a in example)].entry_point


class BookSet:
    """The arrays of ``n_books`` order books that share one order pool and id table.

    Args:
        n_books: Books (instruments) in the set.
    """

    _fast_execute = None
    _fast_cancel = None

    def __init__(self, n_books: int) -> None:
        self.n_books = n_books
        self.pool = np.zeros((0, k.N_POOL), np.int64)
        self.head = np.zeros((n_books + 1, k.N_HEAD), np.int64)
        self.head[:n_books, k.H_BASE] = _UNSET_BASE
        self.head[:n_books, k.H_BEST_BID] = -1
        self.head[:n_books, k.H_BEST_ASK] = -1
        self.head[-1, k.G_FREE] = -1
        self.table = _empty_table(2 * _INITIAL_SLOTS)
        self.levels = _empty_levels(n_books, _INITIAL_WIDTH)
        self._grow_pool(_INITIAL_SLOTS)
        if BookSet._fast_execute is None:
            self._compile()

    def _compile(self) -> None:
        """Load (or compile, on a cold cache) the kernels and keep their entry points."""
        arrays = [a.copy() for a in (self.pool, self.table, self.levels, self.head)]
        out = np.zeros((1, k.N_OUT), np.int64)
        BookSet._fast_execute = _entry_point(k.execute, *arrays, out, 0, 0, 0, 1, 1, 1, 1, 1, k.K_IOC)
        BookSet._fast_cancel = _entry_point(k.cancel, *arrays, 1)

    def book(self, b: int) -> OrderBook:
        """The view of book ``b``."""
        return OrderBook(self, b)

    # ---------------------------------------------------------------- growth
    def _grow_pool(self, extra: int) -> None:
        """Add ``extra`` free slots (chained onto the free list) and size the out buffer."""
        old = self.pool.shape[0]
        pool = np.zeros((old + extra, k.N_POOL), np.int64)
        pool[:old] = self.pool
        pool[old:, k.P_NEXT] = np.arange(old + 1, old + extra + 1)
        pool[-1, k.P_NEXT] = self.head[-1, k.G_FREE]
        self.head[-1, k.G_FREE] = old
        self.pool = pool
        self.out = np.zeros((old + extra + 1, k.N_OUT), np.int64)  # one order's events <= resting + 1

    def free_slots(self) -> int:
        return self.pool.shape[0] - int(self.head[: self.n_books, k.H_COUNT].sum())

    def ensure_room(self, orders: int) -> None:
        """Make room for ``orders`` more resting orders in the pool and the id table."""
        if self.free_slots() < orders:
            self._grow_pool(max(self.pool.shape[0], orders))
        head = self.head[-1]
        if 2 * (head[k.G_FILLED] + orders) > self.table.shape[0]:
            size = max(self.table.shape[0], _pow2_at_least(4 * (head[k.G_LIVE] + orders)))
            table = _empty_table(size)
            k.rehash(self.table, table, self.head)
            self.table = table

    def fit_price(self, b: int, price: int) -> None:
        """Move or widen book ``b``'s window of levels so that ``price`` (ticks) fits."""
        width = self.levels.shape[2]
        base = int(self.head[b, k.H_BASE])
        used = np.flatnonzero((self.levels[b, :, :, k.L_QTY] != 0).any(axis=0))
        lo, hi = (price, price) if used.size == 0 else (min(price, base + used[0]), max(price, base + used[-1]))
        span = hi - lo + 1
        new_width = width if 2 * span <= width else _pow2_at_least(2 * span)
        new_base = lo - (new_width - span) // 2
        levels = self.levels
        if new_width != width:
            levels = _empty_levels(self.n_books, new_width)
            levels[:, :, :width] = self.levels
        if used.size == 0:
            levels[b] = _empty_levels(1, new_width)[0]
            self.head[b, k.H_BASE] = new_base
        else:
            moved = levels.copy()
            moved[b] = _empty_levels(1, new_width)[0]
            k.shift_levels(levels, moved, self.head, b, base - new_base)
            levels = moved
        self.levels = levels

    def make_room(self, b: int, price: int, status: int) -> None:
        """Act on a kernel's NEED_WINDOW / NEED_ROOM status for an order of book ``b``."""
        if status == k.NEED_WINDOW:
            self.fit_price(b, price)
        elif status == k.NEED_ROOM:
            self.ensure_room(1)
        else:
            raise AssertionError(f"unexpected kernel status {status}")

    # ---------------------------------------------------------------- batches
    def execute(
        self,
        books: np.ndarray,
        order_ids: np.ndarray,
        accounts: np.ndarray,
        sides: np.ndarray,
        lots: np.ndarray,
        prices: np.ndarray,
        kinds: np.ndarray,
        active: np.ndarray | None = None,
        watch: BatchWatch | None = None,
        start: int = 0,
        state: BatchState | None = None,
        numbering: np.ndarray | None = None,
    ) -> BatchState:
        """Execute a batch's orders from ``start`` in order until done or an order is stale.

        Args:
            books, order_ids, accounts, sides (+1/-1), lots, prices (ticks; ignored for
                market orders), kinds (`KIND_CODES`): (n,) int64 arrays.
            active: (n,) bool, orders to execute (default all).
            watch: Which orders must be re-checked when state they depend on changed
                (see `BatchWatch`); None: none.
            start, state: Resume a batch that stopped at a stale order.
            numbering: ``[next, stride]`` (int64, updated): number the executed orders
                ``next * stride + book`` instead of using ``order_ids`` as given
                (which then receives the ids).

        Returns:
            The batch's state; ``state.stopped`` is the stale order's index, or n.
        """
        n = order_ids.shape[0]
        if state is None:
            state = BatchState.empty(n, self.pool.shape[0] - self.free_slots())
        if active is None:
            active = np.ones(n, bool)
        watch = watch or BatchWatch.none(n)
        numbering = np.zeros(0, np.int64) if numbering is None else numbering
        self.ensure_room(int(np.count_nonzero(active[start:])))
        while True:
            stop, state.n_out, status = k.execute_many(
                self.pool,
                self.table,
                self.levels,
                self.head,
                state.out,
                state.n_out,
                start,
                books,
                order_ids,
                accounts,
                sides,
                lots,
                prices,
                kinds,
                active,
                state.rested,
                state.cancelled,
                state.reject,
                watch.account,
                watch.book,
                watch.checked_after,
                watch.check_ticks,
                watch.touched,
                watch.relaxed,
                watch.soft,
                watch.spent,
                watch.soft_touched,
                watch.budget,
                watch.spent_at_check,
                watch.fill_cost,
                numbering,
            )
            if status == k.NEED_WINDOW:
                self.fit_price(int(books[stop]), int(prices[stop]))
                start = stop
                continue
            state.stopped = stop
            return state


@dataclass
class BatchState:
    """What a batch did so far.

    Attributes:
        out: (E, N_OUT) fills and self-trade cancels in execution order (rows
            ``:n_out``; columns ``sim.book_kernels.OUT_*``, ``OUT_TAKER`` = batch index).
        n_out: Rows of ``out`` used.
        rested, cancelled: (n,) lots of each order left resting / cancelled (IOC and
            market remainders).
        reject: (n,) the book's reject code of each order (`BOOK_REJECTS`).
        stopped: Index of the order the batch stopped before; n when done.
    """

    out: np.ndarray
    n_out: int
    rested: np.ndarray
    cancelled: np.ndarray
    reject: np.ndarray
    stopped: int = 0

    @classmethod
    def empty(cls, n: int, resting: int) -> BatchState:
        # each event either takes a maker off the book (<= resting + n) or ends a taker (<= n)
        out = np.empty((resting + 2 * n + 1, k.N_OUT), np.int64)  # rows are written before they are read
        zeros = np.zeros(n, np.int64)
        return cls(out, 0, zeros, zeros.copy(), zeros.copy())

    def events(self) -> np.ndarray:
        """(n_out, N_OUT) rows used so far."""
        return self.out[: self.n_out]


@dataclass
class BatchWatch:
    """Which batch orders depend on state that earlier orders of the batch may change
    (see `sim.book_kernels.execute_many`).

    Attributes:
        account: (n,) bool, re-check the order if its account was touched since its check.
        book: (n,) bool, re-check the (market) order if its sweep of the book changed.
        checked_after: (n,) int64, the order was checked against the state after the
            batch's orders before this index.
        check_ticks: (n,) int64, the sweep's worst price the check used (-1: none).
        touched: (A,) int64, last batch index that touched each account in a way that
            can lower its margin (-1: none; an empty array watches nothing).
        relaxed: (A,) int64, last batch index of a cancel of one of its orders.
        soft: (A,) bool, accounts whose fills as maker are costs against budgets rather
            than touches (all False: every fill touches).
        spent: (A,) float64, the bound on what such fills cost each account so far.
        soft_touched: (A,) int64, last batch index of such a fill (-1: none).
        budget: (n,) float64, how much of that cost order k's check allows, set on the
            watched row of an accepted checked order or group (-inf: none).
        spent_at_check: (n,) float64, ``spent`` of the order's account at its check.
        fill_cost: (B, 3) float64, per book: mark in ticks, value of one lot over one
            tick, fee rate (`sim.book_kernels.execute_many` gives the bound).
    """

    account: np.ndarray
    book: np.ndarray
    checked_after: np.ndarray
    check_ticks: np.ndarray
    touched: np.ndarray
    relaxed: np.ndarray
    soft: np.ndarray
    spent: np.ndarray
    soft_touched: np.ndarray
    budget: np.ndarray
    spent_at_check: np.ndarray
    fill_cost: np.ndarray

    @classmethod
    def none(cls, n: int) -> BatchWatch:
        return cls.over(n, np.zeros(0, bool), np.zeros((0, 3)))

    @classmethod
    def over(cls, n: int, soft: np.ndarray, fill_cost: np.ndarray) -> BatchWatch:
        """Nothing watched yet, for n orders of the (A,) accounts ``soft`` marks (see the
        attributes) on the (B, 3) books of ``fill_cost``."""
        n_accounts = soft.shape[0]
        return cls(
            np.zeros(n, bool),
            np.zeros(n, bool),
            np.zeros(n, np.int64),
            np.full(n, -1, np.int64),
            np.full(n_accounts, -1, np.int64),
            np.full(n_accounts, -1, np.int64),
            soft,
            np.zeros(n_accounts),
            np.full(n_accounts, -1, np.int64),
            np.full(n, -np.inf),
            np.zeros(n),
            fill_cost,
        )


@dataclass(slots=True, frozen=True)
class DepthSnapshot:
    """Cheap per-step view of the book.

    Attributes:
        bids: Best levels as ``(price_ticks, lots)``, best first.
        asks: Same for the ask side.
        bid_lots_within: Bid lots priced within ``pct`` below mid (0 without a mid).
        ask_lots_within: Ask lots priced within ``pct`` above mid (0 without a mid).
        pct: The band, as a fraction (0.01 = 1 %).
    """

    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]
    bid_lots_within: int
    ask_lots_within: int
    pct: float


@dataclass(frozen=True)
class BookBatchResult:
    """What `OrderBook.submit_batch` did, as arrays.

    Attributes:
        fill_taker: (F,) index in the batch of each fill's taker, in execution order.
        fill_maker: (F,) maker order id.
        fill_maker_account: (F,) maker account.
        fill_price: (F,) price, ticks (the maker's).
        fill_lots: (F,) size, lots.
        rested: (n,) lots of each order left resting.
        cancelled: (n,) lots of each order cancelled (IOC / market remainder; for a cancel
            event, the lots it took off the book, 0 if the order was not resting).
        reject: (n,) reject code (`BOOK_REJECTS`; 0 = accepted).
        stp: (S, 6) resting orders cancelled by self-trade prevention, as rows
            ``(taker_index, order_id, account, side, price_ticks, lots)``.
        cancels: (C, 6) resting orders taken off by cancel events, rows as for ``stp``.
    """

    fill_taker: np.ndarray
    fill_maker: np.ndarray
    fill_maker_account: np.ndarray
    fill_price: np.ndarray
    fill_lots: np.ndarray
    rested: np.ndarray
    cancelled: np.ndarray
    reject: np.ndarray
    stp: np.ndarray
    cancels: np.ndarray


def _cancel_rows(events: np.ndarray, kind: int) -> np.ndarray:
    """(S, 6) rows ``(batch_index, order_id, account, side, price_ticks, lots)`` of one event kind."""
    picked = events[events[:, k.OUT_KIND] == kind]
    return picked[:, [k.OUT_TAKER, k.OUT_ID, k.OUT_ACCOUNT, k.OUT_SIDE, k.OUT_PRICE, k.OUT_LOTS]]


def _as_int64(values) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.int64)


class OrderBook:
    """Price-time priority book for one instrument (see the module docstring).

    Args:
        books: The set this book belongs to (default: a new set of one).
        index: Its index in the set.
    """

    def __init__(self, books: BookSet | None = None, index: int = 0) -> None:
        self._set = books if books is not None else BookSet(1)
        self._b = index

    # ------------------------------------------------------------------ queries
    def best_bid(self) -> int | None:
        i = int(self._set.head[self._b, k.H_BEST_BID])
        return None if i < 0 else int(self._set.head[self._b, k.H_BASE]) + i

    def best_ask(self) -> int | None:
        i = int(self._set.head[self._b, k.H_BEST_ASK])
        return None if i < 0 else int(self._set.head[self._b, k.H_BASE]) + i

    def mid(self) -> float | None:
        """Mid price in ticks, or None unless both sides have orders."""
        bid, ask = self.best_bid(), self.best_ask()
        if bid is None or ask is None:
            return None
        return (bid + ask) / 2

    def _slot(self, order_id: int) -> int:
        slot = int(k.find_slot(self._set.table, order_id))
        return slot if slot >= 0 and self._set.pool[slot, k.P_BOOK] == self._b else -1

    def resting_qty(self, order_id: int) -> int:
        """Open lots of a resting order, 0 if it is not on the book."""
        slot = self._slot(order_id)
        return int(self._set.pool[slot, k.P_QTY]) if slot >= 0 else 0

    def order(self, order_id: int) -> Cancelled | None:
        """A resting order as ``(order_id, account, side, price_ticks, open_lots)``."""
        slot = self._slot(order_id)
        if slot < 0:
            return None
        row = self._set.pool[slot]
        return (order_id, int(row[k.P_ACCOUNT]), int(row[k.P_SIDE]), int(row[k.P_PRICE]), int(row[k.P_QTY]))

    def open_orders(self, account: int) -> list[int]:
        """Ids of the account's resting orders (-1: everyone's), oldest first (a scan of the order pool)."""
        slots = k.orders_of(self._set.pool, self._set.head, self._b, account)
        return self._set.pool[slots, k.P_ID].tolist()

    def __len__(self) -> int:
        """Number of resting orders."""
        return int(self._set.head[self._b, k.H_COUNT])

    def total_lots(self, side: Side) -> int:
        """All lots resting on one side."""
        return int(self._set.head[self._b, k.H_LOTS_BID if side > 0 else k.H_LOTS_ASK])

    def _top(self, s: int, n: int) -> list[tuple[int, int]]:
        out = np.zeros((max(n, 0), 2), np.int64)
        count, _ = k.best_levels(self._set.levels, self._set.head, self._b, s, -2, n, out)
        return [(p, q) for p, q in out[:count].tolist()]

    def depth(self, levels: int = 5, pct: float = 0.01) -> DepthSnapshot:
        """Top ``levels`` per side and the lots within ``pct`` of mid."""
        within_bid, within_ask = self.lots_within(pct)
        return DepthSnapshot(self._top(0, levels), self._top(1, levels), within_bid, within_ask, pct)

    def average_price(self, side: Side, notional: float, tick_size: float, lot_size: float) -> float | None:
        """Average price (USD) a ``side`` market order of ``notional`` USD would get,
        walking the opposite side best first (prices ``ticks * tick_size``, sizes ``lots
        * lot_size``); None when that side holds less."""
        s = self._set
        price = k.average_price(s.levels, s.head, self._b, 1 if side > 0 else 0, notional, tick_size, lot_size)
        return None if price != price else float(price)

    def lots_within(self, pct: float = 0.01) -> tuple[int, int]:
        """``(bid_lots, ask_lots)`` priced within ``pct`` of mid (below it for bids, above
        for asks); 0 each without a mid."""
        mid = self.mid()
        if mid is None:
            return 0, 0
        s = self._set
        return (
            int(k.lots_within(s.levels, s.head, self._b, 0, mid * (1 - pct))),
            int(k.lots_within(s.levels, s.head, self._b, 1, mid * (1 + pct))),
        )

    def levels(self, side: Side) -> Iterator[tuple[int, int]]:
        """Levels of one side as ``(price_ticks, lots)``, best first (fetched in growing chunks)."""
        s = 0 if side > 0 else 1
        start, chunk = -2, 8
        while start != -1:
            out = np.zeros((chunk, 2), np.int64)
            count, start = k.best_levels(self._set.levels, self._set.head, self._b, s, start, chunk, out)
            yield from ((p, q) for p, q in out[:count].tolist())
            chunk *= 4

    def sweep(self, side: Side, qty: int, limit: int | None = None) -> tuple[int, int | None]:
        """What an order would take without trading: ``(fillable_lots, worst_price)``.

        Walks the opposite side from the best level; ``limit`` (ticks) bounds the walk
        as for an IOC order. The account's own orders count too (self-trade prevention
        would cancel them instead), so this is an upper bound on what fills.
        """
        s = self._set
        taken, worst = k.sweep(s.levels, s.head, self._b, int(side), qty, 0 if limit is None else limit)
        return int(taken), (None if worst < 0 else int(worst))

    # ---------------------------------------------------------------- mutations
    def submit(
        self, order_id: int, account: int, side: int, qty: int, price: int | None, kind: OrderType
    ) -> BookResult:
        """Match an order, then rest or cancel its remainder according to ``kind``.

        Args:
            order_id: Unique id, assigned by the caller.
            account: Ledger row of the owner (used for self-trade prevention).
            side: +1 buy, -1 sell.
            qty: Size in lots.
            price: Limit in ticks; ignored for MARKET.
            kind: LIMIT, MARKET, IOC or POST_ONLY.

        Returns:
            ``(fills, rested_lots, cancelled_lots, self_trade_cancels, reject)``. A
            post-only order that would cross, a non-positive size or a missing price
            comes back with ``reject`` set and the book unchanged.
        """
        code = KIND_CODES[kind]
        ticks = 0 if price is None else price
        s = self._set
        while True:
            status, n_out, rested, cancelled = BookSet._fast_execute(
                s.pool, s.table, s.levels, s.head, s.out, 0, 0, self._b, order_id, account, side, qty, ticks, code
            )
            if status >= 0:
                break
            s.make_room(self._b, ticks, status)
        if not n_out:
            return _NONE, rested, cancelled, _NONE, BOOK_REJECTS[status]
        fills, stp = [], []
        for kind_, maker, maker_account, maker_side, at, lots, _ in s.out[:n_out].tolist():
            if kind_ == k.OUT_FILL:
                fills.append((maker, maker_account, at, lots))
            else:
                stp.append((maker, maker_account, maker_side, at, lots))
        return fills, rested, cancelled, stp, None

    def submit_batch(
        self,
        order_ids: Sequence[int] | np.ndarray,
        accounts: Sequence[int] | np.ndarray,
        sides: Sequence[int] | np.ndarray,
        lots: Sequence[int] | np.ndarray,
        prices: Sequence[int] | np.ndarray,
        kinds: Sequence[int] | np.ndarray,
    ) -> BookBatchResult:
        """Submit n orders and cancels in order, exactly as n calls of `submit` / `cancel` would.

        Args:
            order_ids, accounts, sides (+1/-1), lots, prices (ticks; any value for
                market orders), kinds (`KIND_CODES`, or `KIND_CANCEL` for a cancel of
                the resting order ``order_ids[i]``, whose other fields are ignored):
                (n,) integer arrays.

        Returns:
            The fills and per-order outcomes as arrays (`BookBatchResult`).
        """
        ids = _as_int64(order_ids)
        n = ids.shape[0]
        books = np.full(n, self._b, np.int64)
        state = self._set.execute(
            books, ids, _as_int64(accounts), _as_int64(sides), _as_int64(lots), _as_int64(prices), _as_int64(kinds)
        )
        events = state.events()
        fills = events[events[:, k.OUT_KIND] == k.OUT_FILL]
        return BookBatchResult(
            fill_taker=fills[:, k.OUT_TAKER],
            fill_maker=fills[:, k.OUT_ID],
            fill_maker_account=fills[:, k.OUT_ACCOUNT],
            fill_price=fills[:, k.OUT_PRICE],
            fill_lots=fills[:, k.OUT_LOTS],
            rested=state.rested,
            cancelled=state.cancelled,
            reject=state.reject,
            stp=_cancel_rows(events, k.OUT_STP),
            cancels=_cancel_rows(events, k.OUT_CANCEL),
        )

    def cancel(self, order_id: int) -> Cancelled | None:
        """Take a resting order off the book; None if it is not resting (ids are looked
        up in the whole `BookSet`, whose ids are unique)."""
        s = self._set
        account, side, price, lots = BookSet._fast_cancel(s.pool, s.table, s.levels, s.head, order_id)
        return (order_id, account, side, price, lots) if lots else None

    def cancel_batch(self, order_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Cancel orders in turn; (n, 5) rows ``(order_id, account, side, price_ticks, lots)``
        of the orders that were resting (ids are looked up in the whole `BookSet`)."""
        ids = _as_int64(order_ids)
        n = ids.shape[0]
        zeros = np.zeros(n, np.int64)
        result = self.submit_batch(ids, zeros, zeros, zeros, zeros, np.full(n, KIND_CANCEL))
        return result.cancels[:, 1:]

    def cancel_all(self, account: int) -> list[Cancelled]:
        """Cancel every resting order of ``account``, oldest first (a scan of the order pool)."""
        return [self.cancel(oid) for oid in self.open_orders(account)]

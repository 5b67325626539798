"""Order emission: what members send in a step, and the one function that sends it.

A population's `decide` fills an `Outbox` with (k,) arrays of orders for the k members
that act (sizes floored to lots, prices rounded away from the touch, as one member's
order form would: `add`, `reduce`, or `add_rows` for orders a kernel already put on the
grid with `sim.instruments.order_form`) and of cancels; `Outbox.sheet` hands them back
as one `OrderSheet`, arrays grouped by member, members in the order they first sent
something. The model
shuffles the members of every population's sheet into one arrival order and `send`s
them: each member's cancels, then its orders, as the rows of one
`Exchange.submit_batch_lots` call (one compiled pass over the books for the whole step,
integer lots and ticks throughout). A member with several orders (a market maker's
ladder, an arbitrageur's legs, a holder's entries in several instruments) sends them
as one group, admitted when its turn comes under one all-or-nothing margin check, as
`Exchange.submit_many` would; every other order gets the result one `Exchange.submit`
would give. `send` is the only code that talks to the exchange's order entry for
traders, and each population learns what became of its orders as arrays over its
sheet (`Outcome`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from sim.book import KIND_CANCEL, KIND_CODES
from sim.instruments import order_form, order_grid, reduce_grid
from sim.types import OrderType

if TYPE_CHECKING:
    from agents.base import Population
    from sim.exchange import Exchange

_NO_IDS = np.zeros(0, np.int64)
_NO_SENT = np.zeros(0, bool)


@dataclass(frozen=True)
class OrderSheet:
    """What a population's members send in one step, as arrays.

    Attributes:
        population: The sender.
        members: (k,) the members that send something, in the order they first did.
        accounts: (k,) their ledger rows.
        n_cancels, n_orders: (k,) how many cancels and orders each member sends.
        cancel_ids: (C,) ids of the resting orders cancelled, grouped by member in the
            order of ``members`` (each member's in the order it sent them).
        member: (R,) the member of each order, orders grouped as the cancels are.
        instrument: (R,) instrument index.
        side: (R,) +1 buy, -1 sell.
        lots: (R,) size in lots (> 0).
        ticks: (R,) limit price in ticks (> 0).
        kind: (R,) `sim.book.KIND_CODES` of the order type.
        reduce_only: (R,) bool.
    """

    population: Population
    members: np.ndarray
    accounts: np.ndarray
    n_cancels: np.ndarray
    n_orders: np.ndarray
    cancel_ids: np.ndarray
    member: np.ndarray
    instrument: np.ndarray
    side: np.ndarray
    lots: np.ndarray
    ticks: np.ndarray
    kind: np.ndarray
    reduce_only: np.ndarray


@dataclass(frozen=True)
class Outcome:
    """What became of an `OrderSheet`'s orders, (R,) arrays in the sheet's order.

    Attributes:
        order_id: The id each order got (-1: rejected before reaching a book).
        reject: Reject code, an index into `sim.exchange.EXCHANGE_REJECTS` (0: accepted).
        rested: Lots left resting on the book.
        filled: Lots traded.
        last_fill_ticks: Price of the order's last fill, ticks (-1: no fill).
    """

    order_id: np.ndarray
    reject: np.ndarray
    rested: np.ndarray
    filled: np.ndarray
    last_fill_ticks: np.ndarray


def send(exchange: Exchange, sheets: Sequence[OrderSheet], arrival: np.ndarray) -> list[Outcome]:
    """Send the members of ``sheets`` to the exchange in arrival order: each member's
    cancels, then its orders (several as one group, see the module docstring), all in
    one `Exchange.submit_batch_lots` call.

    Args:
        sheets: The step's sheets; their members, concatenated in this order, are the
            K arrival slots.
        arrival: (K,) the slots in the order they arrive (a permutation).

    Returns:
        One `Outcome` per sheet.
    """
    if not sheets:
        return []

    def column(name: str) -> np.ndarray:
        return np.concatenate([getattr(s, name) for s in sheets])

    columns, position = _arrival_rows(
        arrival, KIND_CANCEL, *(column(name) for name in ("n_cancels", "n_orders", "accounts", "cancel_ids")),
        *(column(name) for name in ("instrument", "side", "lots", "ticks", "kind", "reduce_only")),
    )  # fmt: skip
    if not columns[0].size:
        return [Outcome(*[_NO_IDS] * 5) for _ in sheets]
    result = exchange.submit_batch_lots(*columns)
    outcomes = _by_order(position, result.order_id, result.reject, result.rested, result.filled,
                         result.fill_order, result.fill_ticks)  # fmt: skip
    ends = np.cumsum([len(s.member) for s in sheets]).tolist()
    return [Outcome(*outcomes[:, a:b]) for a, b in zip([0, *ends[:-1]], ends, strict=True)]


@njit(cache=True, error_model="numpy")
def _arrival_rows(
    arrival, kind_cancel, n_cancels, n_orders, accounts, cancel_ids, instrument, side, lots, ticks, kind, reduce_only
):
    """The rows of `send`'s batch, in one pass.

    Args:
        arrival: (K,) the arrival slots (members of the concatenated sheets) in order.
        kind_cancel: `KIND_CANCEL` (an argument: numba's cache would not see it change).
        n_cancels, n_orders, accounts: (K,) per slot.
        cancel_ids: (C,) the sheets' cancels, concatenated.
        instrument, side, lots, ticks, kind, reduce_only: (R,) the sheets' orders,
            concatenated.

    Returns:
        ``(columns, position)``: the `Exchange.submit_batch_lots` arguments (accounts,
        instruments, sides, lots, ticks, kinds, reduce-only, cancel ids, groups: (C + R,)
        each; each slot's cancels then its orders, a slot's several orders one group
        named by the slot) and (R,) the batch row of each of the sheets' orders.
    """
    first_cancel, first_order = np.cumsum(n_cancels) - n_cancels, np.cumsum(n_orders) - n_orders
    n = cancel_ids.shape[0] + instrument.shape[0]
    out_account, out_instrument, out_side = np.empty(n, np.int64), np.zeros(n, np.int64), np.ones(n, np.int64)
    out_lots, out_ticks, out_kind = np.zeros(n, np.int64), np.zeros(n, np.int64), np.full(n, kind_cancel)
    out_reduce, out_cancel, out_group = np.zeros(n, np.bool_), np.full(n, -1, np.int64), np.full(n, -1, np.int64)
    position = np.empty(instrument.shape[0], np.int64)
    if arrival.shape[0] != n_cancels.shape[0]:
        raise ValueError("arrival must be a permutation of the sheets' members")
    seen = np.zeros(arrival.shape[0], np.bool_)
    row = 0
    for slot in arrival:
        if not 0 <= slot < seen.shape[0] or seen[slot]:
            raise ValueError("arrival must be a permutation of the sheets' members")
        seen[slot] = True
        for c in range(first_cancel[slot], first_cancel[slot] + n_cancels[slot]):
            out_account[row], out_cancel[row] = accounts[slot], cancel_ids[c]
            row += 1
        for o in range(first_order[slot], first_order[slot] + n_orders[slot]):
            out_account[row], out_instrument[row], out_side[row] = accounts[slot], instrument[o], side[o]
            out_lots[row], out_ticks[row], out_kind[row], out_reduce[row] = lots[o], ticks[o], kind[o], reduce_only[o]
            if n_orders[slot] > 1:  # a member's several orders: one group
                out_group[row] = slot
            position[o] = row
            row += 1
    columns = (out_account, out_instrument, out_side, out_lots, out_ticks, out_kind, out_reduce, out_cancel, out_group)
    return columns, position


@njit(cache=True, error_model="numpy")
def _by_order(position, order_id, reject, rested, filled, fill_order, fill_ticks):
    """(5, R) `Outcome`'s columns (order id, reject, rested, filled, last fill ticks) of
    the sheets' R orders, from a batch's (n,) results, the batch rows of its (F,) fills'
    takers and their prices (a taker's fills are consecutive, in price order)."""
    last_fill = np.full(order_id.shape[0], -1, np.int64)
    for f in range(fill_order.shape[0]):
        last_fill[fill_order[f]] = fill_ticks[f]
    out = np.empty((5, position.shape[0]), np.int64)
    for r in range(position.shape[0]):
        row = position[r]
        out[0, r], out[1, r], out[2, r], out[3, r], out[4, r] = (
            order_id[row], reject[row], rested[row], filled[row], last_fill[row]
        )  # fmt: skip
    return out


class Outbox:
    """A population's orders and cancels of one step, as its `decide` writes them:
    chunks of arrays in call order (each order rounded to the grid as it is added),
    grouped by member in one compiled pass by `sheet`."""

    def __init__(self, population: Population):
        self.population = population
        self._chunks: list[tuple[int, int]] = []  # per chunk: cancels (0 / 1), rows
        self._cancels: list[tuple[np.ndarray, np.ndarray]] = []  # (members, order ids)
        # (members, instrument, side, lots, ticks, kind, reduce_only, sent)
        self._orders: list[tuple[np.ndarray, ...]] = []

    def cancel(self, members: np.ndarray, order_ids: np.ndarray) -> None:
        """(c,) ``members`` cancel (c,) resting orders before they send any (a member
        may appear several times)."""
        if len(members):
            self._chunks.append((1, len(members)))
            self._cancels.append((np.asarray(members, np.int64), np.asarray(order_ids, np.int64)))

    def add(
        self,
        m: int | np.ndarray,
        members: np.ndarray,
        side: np.ndarray,
        qty: np.ndarray,
        price: np.ndarray,
        kind: OrderType | np.ndarray,
    ) -> np.ndarray:
        """One order for each of (k,) ``members``: in instrument m (or (k,) instruments),
        of type ``kind`` (or (k,) `sim.book.KIND_CODES`), (k,) sides (+1 / -1), sizes
        (base units, floored to lots) and limits (USD, rounded away from the touch).
        Returns the (k,) mask of those sent: nothing for a size or a price that rounds
        to nothing (or is not finite)."""
        k = len(members)
        if not k:
            return np.zeros(0, bool)
        pop = self.population
        instrument = np.full(k, m, np.int64) if np.ndim(m) == 0 else np.asarray(m, np.int64)
        side, qty, price = np.asarray(side, np.int64), np.asarray(qty, np.float64), np.asarray(price, np.float64)
        _same_length(k, instrument, side, qty, price)
        lots, ticks, sent = order_grid(qty, price, side, instrument, pop.venue_lot_sizes, pop.venue_tick_sizes)
        self.add_rows(members, instrument, side, lots, ticks, kind, np.zeros(k, bool), sent)
        return sent.copy()

    def reduce(self, m: int, members: np.ndarray, held: np.ndarray, qty: np.ndarray, limit: np.ndarray) -> np.ndarray:
        """Reduce-only IOC orders shrinking each member's position in m (``held``: (k,)
        signed lots) by up to ``qty`` base units (floored to lots), limited at ``limit``
        USD (at least one tick). Returns the (k,) mask of those sent."""
        pop, k = self.population, len(members)
        held, qty, limit = np.asarray(held, np.int64), np.asarray(qty, np.float64), np.asarray(limit, np.float64)
        _same_length(k, held, qty, limit)
        side, lots, ticks, sent = reduce_grid(held, qty, limit, pop.venue_lot_sizes[m], pop.venue_tick_sizes[m])
        self.add_rows(members, np.full(k, m, np.int64), side, lots, ticks, OrderType.IOC, np.ones(k, bool), sent)
        return sent.copy()

    def add_rows(
        self,
        members: np.ndarray,
        instrument: np.ndarray,
        side: np.ndarray,
        lots: np.ndarray,
        ticks: np.ndarray,
        kind: OrderType | np.ndarray,
        reduce_only: np.ndarray,
        sent: np.ndarray,
    ) -> None:
        """(k,) orders already on the grid (``sim.instruments.order_form`` /
        ``reduce_form``: int64 instruments, sides, lots, ticks, bool reduce-only flags),
        of type ``kind`` (or (k,) `sim.book.KIND_CODES`); only those with ``sent`` go
        out. The arrays are kept as given until `sheet`: the caller does not write to
        them afterwards."""
        k = len(members)
        kind = np.full(k, KIND_CODES[OrderType(kind)]) if isinstance(kind, str) else np.asarray(kind, np.int64)
        _same_length(k, instrument, side, lots, ticks, kind, reduce_only, sent)
        if len(members):
            self._chunks.append((0, len(members)))
            self._orders.append((np.asarray(members, np.int64), instrument, side, lots, ticks, kind, reduce_only, sent))

    def sheet(self) -> OrderSheet:
        """The step's orders and cancels, grouped by member (`OrderSheet`)."""
        pop = self.population
        if not self._chunks:
            return OrderSheet(pop, _NO_IDS, _NO_IDS, _NO_IDS, _NO_IDS, _NO_IDS, *[_NO_IDS] * 6, _NO_SENT)
        members, counts, cancel_ids, columns, reduce_only = _group(
            pop.n,
            np.array(self._chunks, np.int64),
            *_columns(self._cancels, (_NO_IDS, _NO_IDS)),
            *_columns(self._orders, (*[_NO_IDS] * 6, _NO_SENT, _NO_SENT)),
        )
        return OrderSheet(pop, members, pop.accounts[members], *counts, cancel_ids, *columns, reduce_only)


@njit(cache=True, error_model="numpy")
def _group(n, chunks, cancel_member, cancel_ids, member, instrument, side, lots, ticks, kind, reduce, sent):
    """An `Outbox`'s rows grouped by member, in one pass.

    Args:
        n: Members in the population (rows must name 0..n-1).
        chunks: (c, 2) per chunk in call order: a chunk of cancels (0 / 1), its number
            of rows.
        cancel_member, cancel_ids: (C,) the cancel chunks' rows, concatenated.
        member, instrument, side, lots, ticks, kind, reduce, sent: (R0,) the order
            chunks' rows, concatenated (only rows with ``sent`` count).

    Returns:
        ``(members, counts, cancel_ids, columns, reduce_only)``: the (k,) members that
        send something in the order they first did (in a cancel or a sent order), (2, k)
        how many cancels and orders each sends, and the cancels (C,) and orders grouped
        by member in that order (each member's in call order): (6, R) their member,
        instrument, side, lots, ticks and kind, (R,) reduce-only flags.
    """
    rank = np.full(n, -1, np.int64)
    first = np.empty(cancel_member.shape[0] + member.shape[0], np.int64)
    count = 0
    c_row, o_row = 0, 0
    for c in range(chunks.shape[0]):
        for _ in range(chunks[c, 1]):
            if chunks[c, 0]:
                who, keep = cancel_member[c_row], True
                c_row += 1
            else:
                who, keep = member[o_row], sent[o_row]
                o_row += 1
            if not keep:
                continue
            if not 0 <= who < n:
                raise IndexError("a sender is not a member of the population")
            if rank[who] < 0:
                rank[who] = count
                first[count] = who
                count += 1
    members = first[:count].copy()
    n_cancels, n_orders = np.zeros(count, np.int64), np.zeros(count, np.int64)
    for i in range(cancel_member.shape[0]):
        n_cancels[rank[cancel_member[i]]] += 1
    for i in range(member.shape[0]):
        if sent[i]:
            n_orders[rank[member[i]]] += 1
    next_cancel, next_order = np.cumsum(n_cancels) - n_cancels, np.cumsum(n_orders) - n_orders
    grouped_ids = np.empty(cancel_member.shape[0], np.int64)
    for i in range(cancel_member.shape[0]):
        r = rank[cancel_member[i]]
        grouped_ids[next_cancel[r]] = cancel_ids[i]
        next_cancel[r] += 1
    columns = np.empty((6, n_orders.sum()), np.int64)  # member, instrument, side, lots, ticks, kind
    reduce_only = np.empty(n_orders.sum(), np.bool_)
    o_row = 0
    for c in range(chunks.shape[0]):
        if chunks[c, 0]:
            continue
        for _ in range(chunks[c, 1]):
            if sent[o_row]:
                r = rank[member[o_row]]
                at = next_order[r]
                next_order[r] += 1
                columns[0, at], columns[1, at], columns[2, at] = member[o_row], instrument[o_row], side[o_row]
                columns[3, at], columns[4, at], columns[5, at] = lots[o_row], ticks[o_row], kind[o_row]
                reduce_only[at] = reduce[o_row]
            o_row += 1
    counts = np.empty((2, count), np.int64)
    counts[0], counts[1] = n_cancels, n_orders
    return members, counts, grouped_ids, columns, reduce_only


@njit(cache=True, error_model="numpy")
def orders_by_key(key, n_keys, side, col, qty, price, lot_sizes, tick_sizes):
    """A population kernel's (k,) candidate orders in sending order, on the grid:
    ``(picked, lots, ticks)``, (s,) each: the candidates with a key in ``0..n_keys - 1``
    (-1: none) and a size > 0, ordered by key, then by candidate; their lots and ticks
    (`sim.instruments.order_form`; 0 lots: nothing to send after rounding).

    Args:
        key: (k,) each candidate's group (say, its instrument column and kind).
        side, col, qty, price: (k,) sides (+1 / -1), instrument columns, sizes (base
            units) and limits (USD).
        lot_sizes, tick_sizes: (Ip,) the grid per column.
    """
    k = key.shape[0]
    picked, lots, ticks = np.empty(k, np.int64), np.empty(k, np.int64), np.empty(k, np.int64)
    s = 0
    for group in range(n_keys):
        for r in range(k):
            if key[r] != group or not qty[r] > 0:
                continue
            j = col[r]
            lots[s], ticks[s], _ = order_form(qty[r], price[r], side[r], lot_sizes[j], tick_sizes[j])
            picked[s] = r
            s += 1
    return picked[:s], lots[:s], ticks[:s]


def _same_length(k: int, *columns: np.ndarray) -> None:
    """Refuse columns of an order chunk that are not (k,) (the kernels do not check)."""
    if any(np.shape(column) != (k,) for column in columns):
        raise ValueError(f"an order chunk's columns must all be ({k},), got {[np.shape(c) for c in columns]}")


def _columns(chunks: list[tuple[np.ndarray, ...]], empty: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    """The columns of appended chunks of arrays, each concatenated (``empty`` when there
    are no chunks)."""
    if len(chunks) < 2:
        return list(chunks[0] if chunks else empty)
    return [np.concatenate([chunk[c] for chunk in chunks]) for c in range(len(empty))]

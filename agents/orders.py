"""Order emission: what members send in a step, and the one function that sends it.

A population's `decide` fills an `Outbox` with (k,) arrays of orders for the k members
that act (sizes floored to lots, prices rounded away from the touch, as one member's
order form would) and of cancels; `Outbox.sheet` hands them back as one `OrderSheet`,
arrays grouped by member, members in the order they first sent something. The model
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
from sim.instruments import order_grid, reduce_grid
from sim.types import OrderType

if TYPE_CHECKING:
    from agents.base import Population
    from sim.exchange import Exchange

_NO_IDS = np.zeros(0, np.int64)


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
    n_cancels = np.concatenate([s.n_cancels for s in sheets]) if sheets else _NO_IDS
    n_orders = np.concatenate([s.n_orders for s in sheets]) if sheets else _NO_IDS
    first_cancel, first_order = np.cumsum(n_cancels) - n_cancels, np.cumsum(n_orders) - n_orders
    n_rows = n_cancels[arrival] + n_orders[arrival]
    slot = np.repeat(arrival, n_rows)
    place = np.arange(slot.size) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)  # row within its slot
    is_cancel = place < n_cancels[slot]
    cancel_of, order_of = first_cancel[slot] + place, first_order[slot] + place - n_cancels[slot]
    order = order_of[~is_cancel]  # the sheets' orders (concatenated) in arrival order

    if not slot.size:
        return [Outcome(*[_NO_IDS] * 5) for _ in sheets]

    def rows(column: str, cancel_value: int) -> np.ndarray:
        """(n,) a column of the sheets' orders in arrival order, ``cancel_value`` on cancels."""
        values = np.full(slot.size, cancel_value, np.int64)
        values[~is_cancel] = np.concatenate([getattr(s, column) for s in sheets])[order]
        return values

    cancel_ids = np.full(slot.size, -1, np.int64)
    cancel_ids[is_cancel] = np.concatenate([s.cancel_ids for s in sheets])[cancel_of[is_cancel]]
    result = exchange.submit_batch_lots(
        np.concatenate([s.accounts for s in sheets])[slot],
        rows("instrument", 0),
        rows("side", 1),
        rows("lots", 0),
        rows("ticks", 0),
        rows("kind", KIND_CANCEL),
        rows("reduce_only", 0).astype(bool),
        cancel_ids,
        np.where(~is_cancel & (n_orders[slot] > 1), slot, -1),  # a member's several orders: one group
    )
    last_fill = np.full(slot.size, -1, np.int64)
    takers = result.fill_order
    last = np.flatnonzero(np.append(takers[1:] != takers[:-1], True)) if takers.size else _NO_IDS
    last_fill[takers[last]] = result.fill_ticks[last]  # a taker's fills are consecutive
    ends = np.cumsum([len(s.member) for s in sheets]).tolist()
    spans = list(zip([0, *ends[:-1]], ends, strict=True))
    by_order = []
    for column in (result.order_id, result.reject, result.rested, result.filled, last_fill):
        values = np.empty(len(order), np.int64)
        values[order] = column[~is_cancel]
        by_order.append([values[a:b] for a, b in spans])
    return [Outcome(*(values[i] for values in by_order)) for i in range(len(sheets))]


class Outbox:
    """A population's orders and cancels of one step, as its `decide` writes them:
    chunks of arrays in call order (each order rounded to the grid as it is added),
    grouped by member in one compiled pass by `sheet`."""

    def __init__(self, population: Population):
        self.population = population
        # per chunk, in call order: instrument, kind code (`KIND_CANCEL`: a chunk of
        # cancels), reduce-only flag and number of rows
        self._chunks: list[tuple[int, int, bool, int]] = []
        self._cancels: list[tuple[np.ndarray, np.ndarray]] = []  # (members, order ids)
        self._orders: list[tuple[np.ndarray, ...]] = []  # (members, side, lots, ticks, sent)

    def cancel(self, members: np.ndarray, order_ids: np.ndarray) -> None:
        """(c,) ``members`` cancel (c,) resting orders before they send any (a member
        may appear several times)."""
        if len(members):
            self._chunks.append((0, KIND_CANCEL, False, len(members)))
            self._cancels.append((np.asarray(members, np.int64), np.asarray(order_ids, np.int64)))

    def add(
        self,
        m: int,
        members: np.ndarray,
        side: np.ndarray,
        qty: np.ndarray,
        price: np.ndarray,
        kind: OrderType,
    ) -> np.ndarray:
        """One order in instrument m for each of (k,) ``members``: (k,) sides (+1 / -1),
        sizes (base units, floored to lots) and limits (USD, rounded away from the
        touch). Returns the (k,) mask of those sent: nothing for a size or a price that
        rounds to nothing (or is not finite)."""
        if not len(members):
            return np.zeros(0, dtype=bool)
        inst = self.population.exchange.instruments[m]
        side = np.asarray(side, np.int64)
        lots, ticks, sent = order_grid(
            np.asarray(qty, np.float64), np.asarray(price, np.float64), side, inst.lot_size, inst.tick_size
        )
        self._append(m, KIND_CODES[kind], False, members, side, lots, ticks, sent)
        return sent

    def reduce(self, m: int, members: np.ndarray, held: np.ndarray, qty: np.ndarray, limit: np.ndarray) -> np.ndarray:
        """Reduce-only IOC orders shrinking each member's position in m (``held``: (k,)
        signed lots) by up to ``qty`` base units (floored to lots), limited at ``limit``
        USD (at least one tick). Returns the (k,) mask of those sent."""
        inst = self.population.exchange.instruments[m]
        side, lots, ticks, sent = reduce_grid(
            np.asarray(held, np.int64), np.asarray(qty, np.float64), np.asarray(limit, np.float64),
            inst.lot_size, inst.tick_size,
        )  # fmt: skip
        self._append(m, KIND_CODES[OrderType.IOC], True, members, side, lots, ticks, sent)
        return sent

    def _append(self, m, kind, reduce_only, members, side, lots, ticks, sent) -> None:
        if len(members):
            self._chunks.append((m, kind, reduce_only, len(members)))
            self._orders.append((np.asarray(members, np.int64), side, lots, ticks, sent))

    def sheet(self) -> OrderSheet:
        """The step's orders and cancels, grouped by member (`OrderSheet`)."""
        chunks = np.array(self._chunks, np.int64).reshape(-1, 4)
        cancel_member, cancel_ids = _columns(self._cancels, 2)
        member, side, lots, ticks, sent = _columns(self._orders, 5)
        members, n_cancels, n_orders, cancel_ids, columns = _group(
            self.population.n, KIND_CANCEL, chunks, cancel_member, cancel_ids, member, side, lots, ticks,
            sent.astype(np.bool_),
        )  # fmt: skip
        member, instrument, side, lots, ticks, kind, reduce_only = columns
        return OrderSheet(
            population=self.population,
            members=members,
            accounts=self.population.accounts[members],
            n_cancels=n_cancels,
            n_orders=n_orders,
            cancel_ids=cancel_ids,
            member=member,
            instrument=instrument,
            side=side,
            lots=lots,
            ticks=ticks,
            kind=kind,
            reduce_only=reduce_only,
        )


@njit(cache=True)
def _group(n, kind_cancel, chunks, cancel_member, cancel_ids, member, side, lots, ticks, sent):
    """An `Outbox`'s rows grouped by member, in one pass.

    Args:
        n: Members in the population (rows must name 0..n-1).
        kind_cancel: `KIND_CANCEL` (an argument: numba's cache would not see it change).
        chunks: (c, 4) per chunk in call order: instrument, kind code (``kind_cancel``:
            cancels), reduce-only (0 / 1), number of rows.
        cancel_member, cancel_ids: (C,) the cancel chunks' rows, concatenated.
        member, side, lots, ticks, sent: (R0,) the order chunks' rows, concatenated
            (only rows with ``sent`` count).

    Returns:
        ``(members, n_cancels, n_orders, cancel_ids, (member, instrument, side, lots,
        ticks, kind, reduce_only))``: the members that send something in the order they
        first did (in a cancel or a sent order), how many cancels and orders each sends,
        and the cancels and orders grouped by member in that order (each member's in
        call order).
    """
    rank = np.full(n, -1, np.int64)
    first = np.empty(cancel_member.shape[0] + member.shape[0], np.int64)
    count = 0
    c_row, o_row = 0, 0
    for c in range(chunks.shape[0]):
        is_cancel = chunks[c, 1] == kind_cancel
        for _ in range(chunks[c, 3]):
            if is_cancel:
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
    rows = n_orders.sum()
    columns = (
        np.empty(rows, np.int64), np.empty(rows, np.int64), np.empty(rows, np.int64), np.empty(rows, np.int64),
        np.empty(rows, np.int64), np.empty(rows, np.int64), np.empty(rows, np.bool_),
    )  # fmt: skip
    out_member, out_instrument, out_side, out_lots, out_ticks, out_kind, out_reduce = columns
    o_row = 0
    for c in range(chunks.shape[0]):
        if chunks[c, 1] == kind_cancel:
            continue
        for _ in range(chunks[c, 3]):
            if sent[o_row]:
                r = rank[member[o_row]]
                at = next_order[r]
                next_order[r] += 1
                out_member[at], out_instrument[at], out_side[at] = member[o_row], chunks[c, 0], side[o_row]
                out_lots[at], out_ticks[at], out_kind[at] = lots[o_row], ticks[o_row], chunks[c, 1]
                out_reduce[at] = chunks[c, 2] != 0
            o_row += 1
    return members, n_cancels, n_orders, grouped_ids, columns


def _columns(chunks: list[tuple[np.ndarray, ...]], width: int) -> list[np.ndarray]:
    """The ``width`` columns of appended chunks of arrays, each concatenated (int64 when
    there are none)."""
    if not chunks:
        return [_NO_IDS] * width
    return [np.concatenate([chunk[c] for chunk in chunks]) for c in range(width)]

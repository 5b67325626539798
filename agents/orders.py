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
    arrays appended in call order, grouped by member in `sheet`."""

    def __init__(self, population: Population):
        self.population = population
        self._senders: list[np.ndarray] = []  # members in call order (for the first-send order)
        self._cancels: list[tuple[np.ndarray, np.ndarray]] = []
        self._orders: list[tuple[np.ndarray, ...]] = []

    def cancel(self, members: np.ndarray, order_ids: np.ndarray) -> None:
        """(c,) ``members`` cancel (c,) resting orders before they send any (a member
        may appear several times)."""
        if len(members):
            self._senders.append(members)
            self._cancels.append((members, order_ids))

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
        usable = np.isfinite(qty) & np.isfinite(price) & (qty > 0) & (price > 0)
        lots = inst.lots_down_many(np.where(usable, qty, 0.0))
        ticks = inst.ticks_toward_many(np.where(usable, price, 0.0), side)
        sent = usable & (lots > 0) & (ticks > 0)
        self._append(m, members, side, lots, ticks, kind, False, sent)
        return sent

    def reduce(self, m: int, members: np.ndarray, held: np.ndarray, qty: np.ndarray, limit: np.ndarray) -> np.ndarray:
        """Reduce-only IOC orders shrinking each member's position in m (``held``: (k,)
        signed lots) by up to ``qty`` base units (floored to lots), limited at ``limit``
        USD (at least one tick). Returns the (k,) mask of those sent."""
        inst = self.population.exchange.instruments[m]
        side = np.where(held > 0, -1, 1)
        lots = np.minimum(np.abs(held), inst.lots_down_many(qty))
        ticks = np.maximum(inst.ticks_toward_many(limit, side), 1)
        sent = lots > 0
        self._append(m, members, side, lots, ticks, OrderType.IOC, True, sent)
        return sent

    def _append(self, m, members, side, lots, ticks, kind, reduce_only, sent) -> None:
        members = np.asarray(members, np.int64)[sent]
        if len(members):
            k = len(members)
            self._senders.append(members)
            side = np.asarray(side, np.int64)  # the sheet's columns are int64 (`_columns`)
            self._orders.append(
                (members, np.full(k, m), side[sent], lots[sent], ticks[sent], np.full(k, KIND_CODES[kind]),
                 np.full(k, reduce_only))
            )  # fmt: skip

    def sheet(self) -> OrderSheet:
        """The step's orders and cancels, grouped by member (`OrderSheet`)."""
        members, rank = _first_seen(np.concatenate([_NO_IDS, *self._senders]), self.population.n)
        cancel_member, cancel_ids = _columns(self._cancels, 2)
        order_columns = _columns(self._orders, 7)
        cancel_rank, order_rank = rank[cancel_member], rank[order_columns[0]]
        grouped = np.argsort(order_rank, kind="stable")  # stable: each member's in the order it sent them
        member, instrument, side, lots, ticks, kind, reduce_only = (c[grouped] for c in order_columns)
        return OrderSheet(
            population=self.population,
            members=members,
            accounts=self.population.accounts[members],
            n_cancels=np.bincount(cancel_rank, minlength=len(members)),
            n_orders=np.bincount(order_rank, minlength=len(members)),
            cancel_ids=cancel_ids[np.argsort(cancel_rank, kind="stable")],
            member=member,
            instrument=instrument,
            side=side,
            lots=lots,
            ticks=ticks,
            kind=kind,
            reduce_only=reduce_only.astype(bool),
        )


@njit(cache=True)
def _first_seen(senders, n):
    """``(members, rank)``: the distinct values of (k,) ``senders`` (members, 0..n-1) in
    the order they first appear, and (n,) each one's place in that order (-1: absent)."""
    rank = np.full(n, -1, np.int64)
    members = np.empty(senders.shape[0], np.int64)
    count = 0
    for member in senders:
        if not 0 <= member < n:
            raise IndexError("a sender is not a member of the population")
        if rank[member] < 0:
            rank[member] = count
            members[count] = member
            count += 1
    return members[:count], rank


def _columns(chunks: list[tuple[np.ndarray, ...]], width: int) -> list[np.ndarray]:
    """The ``width`` columns of appended chunks of integer or bool arrays, each
    concatenated (int64: the leading empty int64 array sets the type)."""
    return [np.concatenate([_NO_IDS, *(chunk[c] for chunk in chunks)]) for c in range(width)]

"""Order emission: what members send in a step, and the one function that sends it.

A population's `decide` fills an `Outbox` with (k,) arrays of orders for the k members
that act (sizes floored to lots, prices rounded away from the touch, as one member's
order form would); the outbox groups them into one `MemberOrders` per member. The
model shuffles every population's `MemberOrders` into one arrival order and `send`s
them: each member's cancels, then its orders under one margin check
(`Exchange.submit_many`). `send` is the only code that talks to the exchange's order
entry for traders, so a batched exchange call replaces it alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from sim.types import OrderRequest, OrderType, Side, SubmitResult

if TYPE_CHECKING:
    from agents.base import Population
    from sim.exchange import Exchange


#: +1 / -1 -> Side (an Enum call costs ~20 us here; a dict lookup does not).
SIDES = {1: Side.BUY, -1: Side.SELL}


@dataclass(slots=True)
class MemberOrders:
    """What one member sends in a step, in this order: cancels of its resting orders
    by id, then its orders (admitted under one margin check)."""

    population: Population
    member: int
    account: int
    cancels: list[int] = field(default_factory=list)
    requests: list[OrderRequest] = field(default_factory=list)


def send(exchange: Exchange, arrivals: Sequence[MemberOrders]) -> list[list[SubmitResult]]:
    """Send every member's cancels and orders to the exchange in arrival order; one
    list of results (one per request) per member."""
    cancel, submit_many = exchange.cancel, exchange.submit_many
    results = []
    for orders in arrivals:
        for order_id in orders.cancels:
            cancel(order_id)
        results.append(submit_many(orders.account, orders.requests) if orders.requests else [])
    return results


class Outbox:
    """A population's orders of one step, grouped by member (members in the order they
    first send something)."""

    def __init__(self, population: Population):
        self.population = population
        self._by_member: dict[int, MemberOrders] = {}

    def of(self, member: int) -> MemberOrders:
        """The `MemberOrders` of one member (created empty on first use)."""
        orders = self._by_member.get(member)
        if orders is None:
            orders = MemberOrders(self.population, member, int(self.population.accounts[member]))
            self._by_member[member] = orders
        return orders

    def cancel(self, member: int, order_ids: list[int]) -> None:
        """``member`` cancels these orders before it sends any."""
        if order_ids:
            self.of(member).cancels.extend(order_ids)

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
        inst = self.population.exchange.instruments[m]
        for member, s, n_lots, n_ticks in zip(
            members[sent].tolist(), side[sent].tolist(), lots[sent].tolist(), ticks[sent].tolist(), strict=True
        ):
            request = OrderRequest(m, SIDES[s], inst.qty(n_lots), inst.price(n_ticks), kind, reduce_only)
            self.of(member).requests.append(request)

    def orders(self) -> list[MemberOrders]:
        """Every member's orders of the step."""
        return list(self._by_member.values())

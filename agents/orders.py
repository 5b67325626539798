"""Order emission: what members send in a step, and the one function that sends it.

A population's `decide` fills an `Outbox` with (k,) arrays of orders for the k members
that act (sizes floored to lots, prices rounded away from the touch, as one member's
order form would); the outbox groups them into one `MemberOrders` per member. The
model shuffles every population's `MemberOrders` into one arrival order and `send`s
them: each member's cancels, then its orders under one margin check. `send` is the
only code that talks to the exchange's order entry for traders. Members that send at
most one order (holders, noise and FCN traders, momentum traders in one instrument:
nearly every member) go to the books together through `Exchange.submit_batch`, one
compiled call for every run of them in the arrival order, with the results one
`Exchange.submit` per order would give; a member with several orders (a market
maker's ladder, an arbitrageur's legs) keeps its all-or-nothing check
(`Exchange.submit_many`) and ends the run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from sim.book import KIND_CANCEL, KIND_CODES
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
    results: list[list[SubmitResult]] = []
    run: list[MemberOrders] = []
    for orders in arrivals:
        if len(orders.requests) <= 1:
            run.append(orders)
            continue
        results += _send_run(exchange, run)
        run = []
        for order_id in orders.cancels:
            exchange.cancel(order_id)
        results.append(exchange.submit_many(orders.account, orders.requests))
    return results + _send_run(exchange, run)


def _send_run(exchange: Exchange, run: list[MemberOrders]) -> list[list[SubmitResult]]:
    """Members with at most one order each, in one `Exchange.submit_batch`: each
    member's cancels, then its order, as rows in arrival order."""
    rows: list[tuple[int, int, int, float, float, int, bool, int]] = []
    for orders in run:
        rows += [(orders.account, 0, 1, 0.0, 0.0, KIND_CANCEL, False, oid) for oid in orders.cancels]
        for r in orders.requests:
            price = math.nan if r.price is None else r.price
            rows.append(
                (orders.account, r.instrument, int(r.side), r.qty, price, KIND_CODES[r.kind], r.reduce_only, -1)
            )
    if not rows:
        return [[] for _ in run]
    account, instrument, side, qty, price, kind, reduce_only, cancel_id = zip(*rows, strict=True)
    batch = exchange.submit_batch(
        np.array(account),
        np.array(instrument),
        np.array(side),
        np.array(qty),
        np.array(price),
        np.array(kind),
        np.array(reduce_only),
        np.array(cancel_id),
    )
    fills: dict[int, list] = {}
    for row, fill in zip(batch.fill_order.tolist(), batch.fills, strict=True):
        fills.setdefault(row, []).append(fill)
    stp: dict[int, list] = {}
    for row, cancelled in zip(batch.stp_order.tolist(), batch.self_trade_cancels, strict=True):
        stp.setdefault(row, []).append(cancelled)
    reasons = batch.reasons()
    results, row = [], 0
    for orders in run:
        row += len(orders.cancels)
        if orders.requests:
            results.append(
                [
                    SubmitResult(
                        int(batch.order_id[row]),
                        fills.get(row, []),
                        int(batch.rested[row]),
                        int(batch.cancelled[row]),
                        reasons[row],
                        stp.get(row, []),
                        int(batch.clipped[row]),
                    )
                ]
            )
            row += 1
        else:
            results.append([])
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

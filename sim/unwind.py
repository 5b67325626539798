"""System accounts sell what they took over: forced flow reaches the market.

A venue's insurance fund (BitMEX's and Binance's takeover) and backstop vault
(Hyperliquid's liquidator vault) do not keep a liquidated position: they close it in the
market. A takeover that never trades would be a sink no real venue has, and would hide
the forced flow that drives a cascade. Each holder sells a slice right when it takes a
position over (so one forced sale can move the price within the step) and then every
step a slice of every position it holds, ``ceil(|position| (1 - 2^(-step_seconds / half_life)))`` lots
(all of it with a half-life of 0), to the rest of the market: the trade is booked against the *genesis* account (the
outside world) at the index after the slice's own impact, rounded to the tick, and the
slice is a flow term of the index propagator (`sim.impact`). Slices are tagged with the
takeovers they sell, first in first out, so accounts pushed under by them are attributed
to the liquidation that handed the holder its position.
"""

from __future__ import annotations

import math
from collections import deque

from sim.exchange import Exchange
from sim.impact import VenueIndex
from sim.ledger import GENESIS
from sim.waterfall import HOLDERS


class TakeoverUnwinder:
    """Sells the positions system accounts took over, over time.

    Args:
        exchange: The venue.
        index: The index the slices move.
        half_life_seconds: Half-life of a holder's inventory, seconds (0 = at once).
        step_seconds: Seconds per step.
        holders: The ledger rows whose takeovers are sold.
    """

    def __init__(
        self,
        exchange: Exchange,
        index: VenueIndex,
        half_life_seconds: float,
        step_seconds: float,
        holders: tuple[int, ...] = HOLDERS,
    ):
        self.exchange = exchange
        self.index = index
        self.fraction = 1.0 if half_life_seconds == 0 else 1.0 - 2.0 ** (-step_seconds / half_life_seconds)
        #: Per (holder, instrument): [signed lots held from one takeover, source row id], oldest first.
        self._queues: dict[tuple[int, int], deque[list[int]]] = {
            (holder, m): deque() for holder in holders for m in range(len(exchange.instruments))
        }

    def take_over(self, holder: int, m: int, lots: int, source: int) -> None:
        """``holder`` received ``lots`` (signed, its side) of instrument m from liquidation
        row ``source``."""
        queue = self._queues[holder, m]
        while lots and queue and (queue[0][0] > 0) != (lots > 0):  # an opposite takeover nets the oldest
            netted = min(abs(lots), abs(queue[0][0]))
            queue[0][0] -= int(math.copysign(netted, queue[0][0]))
            lots -= int(math.copysign(netted, lots))
            if not queue[0][0]:
                queue.popleft()
        if lots:
            queue.append([lots, source])
            self._sell(holder, m, math.ceil(abs(lots) * self.fraction - 1e-9), newest=True)

    def hand_on(self, holder: int, m: int, lots: int) -> None:
        """``holder`` passed ``lots`` (> 0) of its position in m down the loss waterfall
        (`sim.liquidation`): they leave its queue, oldest takeover first."""
        self._slices(self._queues[holder, m], lots)

    def oldest_source(self, holder: int, m: int) -> int | None:
        """The liquidation row of the oldest takeover ``holder`` still holds in m (None: none)."""
        queue = self._queues[holder, m]
        return queue[0][1] if queue and queue[0][1] >= 0 else None

    def step(self) -> None:
        """Sell this step's slice of every position (see the module docstring)."""
        positions = self.exchange.ledger.positions
        for holder, m in self._queues:
            self._sell(holder, m, math.ceil(abs(int(positions[holder, m])) * self.fraction - 1e-9))

    def _sell(self, holder: int, m: int, lots: int, newest: bool = False) -> None:
        """Close up to ``lots`` of ``holder``'s position in m against the rest of the
        market, as one trade: the oldest takeovers first, or the newest (a takeover's
        first slice)."""
        ex = self.exchange
        held = int(ex.ledger.positions[holder, m])
        queue = self._queues[holder, m]
        if not held:
            queue.clear()
            return
        inst = ex.instruments[m]
        side = -1 if held > 0 else 1
        lots = min(abs(held), lots)
        if lots <= 0:
            return
        if newest:
            queue.rotate(1)  # the newest takeover to the front for this slice
        parts = self._slices(queue, lots)
        if newest and queue and queue[0][1] == parts[0][1]:
            queue.rotate(-1)  # what is left of it goes back to the end
        shares = [(part / lots, source) for part, source in parts]
        self.index.trade({m: side * inst.qty(lots) * float(ex.index[m])}, shares, kind="unwind")
        price = inst.price(max(1, round(float(ex.index[m]) / inst.tick_size)))
        ex.ledger.trade_between(holder, GENESIS, m, side * lots, price, float(ex.cum_funding[m]))

    @staticmethod
    def _slices(queue: deque[list[int]], lots: int) -> list[tuple[int, int]]:
        """Take ``lots`` from the queue, oldest takeover first: ``[(lots, source), ...]``."""
        out = []
        while lots and queue:
            take = min(lots, abs(queue[0][0]))
            out.append((take, queue[0][1]))
            queue[0][0] -= int(math.copysign(take, queue[0][0]))
            lots -= take
            if not queue[0][0]:
                queue.popleft()
        if lots:  # held without a recorded takeover (cannot happen through the engine)
            out.append((lots, -1))
        return out

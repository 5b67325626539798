"""Leveraged position holder: starts the run with a position at its leverage and holds
it. The population whose leverage distribution researchers vary."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from agents.base import StrictParams, Trader


class HolderParams(StrictParams):
    """Attributes:
    side: ``long``, ``short`` or ``random`` (long with probability ``long_share``).
    """

    side: Literal["long", "short", "random"] = "long"
    long_share: Annotated[float, Field(ge=0, le=1)] = 0.5


class LeveragedHolder(Trader):
    """Opens nothing itself: the model gives it its position at the start (see
    `sim.model`), sized ``leverage x collateral value``, split equally over its
    instruments. Then it holds until liquidated."""

    Params = HolderParams
    kind = "leveraged_holder"
    acts = False  # half of a typical population: not shuffled and called every step

    def opening_positions(self) -> list[tuple[int, int, float]]:
        ex = self.exchange
        value = float(ex.ledger.balances[self.account] @ ex.asset_prices)
        side = self.params.side
        if side == "random":
            side = "long" if self.draws.random() < self.params.long_share else "short"
        sign = 1 if side == "long" else -1
        per_instrument = self.leverage * value / len(self.instruments)
        opened = []
        for m in self.instruments:
            price = float(ex.index[m])
            lots = int(per_instrument / price / ex.instruments[m].lot_size)
            opened.append((m, sign * lots, price))
        return opened

    def step(self) -> None:
        return None

"""Fundamentalist: trades the venue's price back toward the index."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from agents.base import StrictParams, Trader
from sim.types import OrderType, Side


class FundamentalistParams(StrictParams):
    """Attributes:
    threshold_bps: Deviation of the mid from the index it acts on.
    order_notional: USD per order.
    """

    threshold_bps: Annotated[float, Field(ge=0)] = 20.0
    order_notional: Annotated[float, Field(gt=0)] = 5_000.0


class Fundamentalist(Trader):
    Params = FundamentalistParams
    kind = "fundamentalist"

    def step(self) -> None:
        p: FundamentalistParams = self.params
        equity = self.equity()
        for m in self.instruments:
            mid = self.market.mid(m)
            index = float(self.market.index[m])
            if mid is None or equity <= 0 or abs(mid / index - 1) * 1e4 < p.threshold_bps:
                continue
            side = Side.BUY if mid < index else Side.SELL
            room = self.leverage * equity / index - side * self.position(m)
            qty = min(p.order_notional / index, room)
            if qty > 0:
                self.submit(m, side, qty, index, OrderType.IOC)

"""Momentum trader: leveraged, chases the venue's own price moves (and so sells into a
crash that liquidations deepen)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from agents.base import StrictParams, Trader
from sim.types import OrderRequest, OrderType, Side


class MomentumParams(StrictParams):
    """Attributes (units in brackets; none has a published value, they are this
    codebase's earlier defaults with the lookback read as seconds at 1-second steps):

    lookback_seconds: Window of the venue-price return it reacts to [s]. 20.
    threshold: |log return| over the lookback that sets a target position of
        ``leverage x equity`` in the direction of the move [fraction]. 0.005; below it,
        the position is held.
    band: It trades only when the position is off target by more than this fraction
        of the target [fraction]. 0.2.
    max_order_notional: USD traded at most per step and instrument [USD]. 10,000.
    max_slippage_bps: Limit of its IOC orders away from the mark [bps]. 50.
    """

    lookback_seconds: Annotated[float, Field(gt=0)] = 20.0
    threshold: Annotated[float, Field(ge=0)] = 0.005
    band: Annotated[float, Field(ge=0, le=1)] = 0.2
    max_order_notional: Annotated[float, Field(gt=0)] = 10_000.0
    max_slippage_bps: Annotated[float, Field(ge=0)] = 50.0


class Momentum(Trader):
    Params = MomentumParams
    kind = "momentum"

    def step(self) -> None:
        p: MomentumParams = self.params
        equity = self.equity()
        if equity <= 0:
            return
        orders: list[OrderRequest | None] = []
        for m in self.instruments:
            ret = self.market.venue_return(m, p.lookback_seconds)
            if abs(ret) < p.threshold:
                continue
            mark = float(self.market.mark[m])
            target = (1 if ret > 0 else -1) * self.leverage * equity / mark / len(self.instruments)
            gap = target - self.position(m)
            if abs(gap) <= p.band * abs(target):
                continue
            side = Side.BUY if gap > 0 else Side.SELL
            qty = min(abs(gap), p.max_order_notional / mark)
            orders.append(self.order(m, side, qty, mark * (1 + side * p.max_slippage_bps / 1e4), OrderType.IOC))
        if orders:
            self.submit_many(orders)

"""Noise trader: random market and limit orders."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from agents.base import StrictParams, Trader
from sim.types import OrderType, Side


class NoiseParams(StrictParams):
    """Attributes:
    activity: Probability of acting in a step.
    order_notional: Median USD size (log-normal, sigma 1).
    market_share: Fraction of its orders that are IOC at up to ``max_slippage_bps``;
        the rest are limit orders within ``limit_range_bps`` of the index, replaced
        whenever it acts.
    """

    activity: Annotated[float, Field(ge=0, le=1)] = 0.1
    order_notional: Annotated[float, Field(gt=0)] = 2_000.0
    market_share: Annotated[float, Field(ge=0, le=1)] = 0.5
    max_slippage_bps: Annotated[float, Field(ge=0)] = 30.0
    limit_range_bps: Annotated[float, Field(ge=0)] = 30.0


class Noise(Trader):
    Params = NoiseParams
    kind = "noise"

    def step(self) -> None:
        p: NoiseParams = self.params
        rng = self.draws
        if rng.random() >= p.activity:
            return
        self.cancel_all()
        m = self.instruments[rng.integers(len(self.instruments))]
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        index = float(self.market.index[m])
        qty = p.order_notional * float(rng.lognormal(0.0, 1.0)) / index
        room = self.leverage * max(self.equity(), 0.0) / index - side * self.position(m)
        qty = min(qty, room)
        if qty <= 0:
            return
        if rng.random() < p.market_share:
            self.submit(m, side, qty, index * (1 + side * p.max_slippage_bps / 1e4), OrderType.IOC)
        else:
            offset = float(rng.uniform(0.0, p.limit_range_bps)) / 1e4
            self.submit(m, side, qty, index * (1 - side * offset), OrderType.POST_ONLY)

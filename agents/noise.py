"""Noise trader: random market and limit orders around the venue's own price (its mid,
else the last trade, else the index), never the index itself. Zero-intelligence order
flow in the spirit of Gode & Sunder (1993) and Farmer, Patelli & Zovko (2005)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from agents.base import PositiveDist, StrictParams, Trader
from sim.distributions import draw
from sim.types import OrderType, Side


class NoiseParams(StrictParams):
    """Attributes (``*`` = drawn once per agent; units in brackets):

    interval_seconds*: Mean time between its actions [s]; it acts with probability
        ``step_seconds / interval`` per step. 10 (this codebase's earlier
        activity 0.1 per 1-second step; no published value).
    order_notional: Median size [USD] of its orders (log-normal, sigma 1). 2,000 (no
        published value).
    market_share: Fraction of its orders that are IOC at up to ``max_slippage_bps``
        [fraction]; the rest are post-only limit orders up to ``limit_range_bps`` from
        the venue price, replaced whenever it acts. 0.5 (no published value).
    max_slippage_bps: [bps] 30. limit_range_bps: [bps] 30 (no published values).
    """

    interval_seconds: PositiveDist = 10.0
    order_notional: Annotated[float, Field(gt=0)] = 2_000.0
    market_share: Annotated[float, Field(ge=0, le=1)] = 0.5
    max_slippage_bps: Annotated[float, Field(ge=0)] = 30.0
    limit_range_bps: Annotated[float, Field(ge=0)] = 30.0


class Noise(Trader):
    Params = NoiseParams
    kind = "noise"

    def __init__(self, model, account, instruments, leverage, params: NoiseParams, rng):
        super().__init__(model, account, instruments, leverage, params, rng)
        self.interval = draw(params.interval_seconds, rng)
        self._chance = model.market.chance(self.interval)

    def step(self) -> None:
        p: NoiseParams = self.params
        rng = self.draws
        if rng.random() >= self._chance:
            return
        self.cancel_all()
        m = self.instruments[rng.integers(len(self.instruments))]
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        price = self.market.venue_mid(m)
        qty = p.order_notional * float(rng.lognormal(0.0, 1.0)) / price
        room = self.leverage * max(self.equity(), 0.0) / price - side * self.position(m)
        qty = min(qty, room)
        if qty <= 0:
            return
        if rng.random() < p.market_share:
            self.submit(m, side, qty, price * (1 + side * p.max_slippage_bps / 1e4), OrderType.IOC)
        else:
            offset = float(rng.uniform(0.0, p.limit_range_bps)) / 1e4
            self.submit(m, side, qty, price * (1 - side * offset), OrderType.POST_ONLY)

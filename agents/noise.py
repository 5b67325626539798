"""Noise trader: random market and limit orders around the venue's own price (its mid,
else the last trade, else the index), never the index itself. Zero-intelligence order
flow in the spirit of Gode & Sunder (1993) and Farmer, Patelli & Zovko (2005)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from agents.base import Population, PositiveDist, StrictParams
from agents.orders import OrderSheet, Outbox
from sim.book import KIND_CODES
from sim.distributions import sample
from sim.types import OrderType


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


class Noise(Population):
    """Each step every member acts with probability ``step_seconds / interval``; an acting
    member cancels its resting orders and sends one order (module docstring) within its
    position limit ``leverage x equity``. Draws per step: one uniform per member, then
    for the k acting members an instrument (with several), a side, a size and a limit
    offset (k each)."""

    Params = NoiseParams
    kind = "noise"

    def __init__(self, model, first_account, instruments, leverage, params: NoiseParams, setup, rng):
        super().__init__(model, first_account, instruments, leverage, params, setup, rng)
        #: (n,) mean time between its actions [s] and the chance per step of acting.
        self.interval = sample(params.interval_seconds, setup, self.n)
        self.chance = model.market.chance(self.interval)

    def decide(self) -> OrderSheet:
        p: NoiseParams = self.params
        rng = self.draws
        acting = np.flatnonzero(rng.random(self.n) < self.chance)
        k = len(acting)
        out = Outbox(self)
        if k == 0:
            return out.sheet()
        out.cancel(*self.cancels(acting))
        n_inst = len(self.instruments)
        col = rng.integers(n_inst, size=k) if n_inst > 1 else np.zeros(k, dtype=np.int64)
        side = np.where(rng.random(k) < 0.5, 1, -1)
        size = p.order_notional * rng.lognormal(0.0, 1.0, k)
        market = rng.random(k) < p.market_share
        offset = rng.uniform(0.0, p.limit_range_bps, k) / 1e4
        mid = self.market.venue_mids()[self.cols][col]
        held = self.positions()[acting, col]
        room = self.leverage[acting] * np.maximum(self.equity()[acting], 0.0) / mid - side * held
        qty = np.minimum(size / mid, room)
        price = np.where(market, mid * (1 + side * p.max_slippage_bps / 1e4), mid * (1 - side * offset))
        sending = np.flatnonzero(qty > 0)
        by_book = sending[np.argsort(2 * col[sending] + ~market[sending], kind="stable")]  # instrument, then IOC first
        kinds = np.where(market[by_book], KIND_CODES[OrderType.IOC], KIND_CODES[OrderType.POST_ONLY])
        out.add(self.cols[col[by_book]], acting[by_book], side[by_book], qty[by_book], price[by_book], kinds)
        return out.sheet()

"""Noise trader: random market and limit orders around the venue's own price (its mid,
else the last trade, else the index), never the index itself. Zero-intelligence order
flow in the spirit of Gode & Sunder (1993) and Farmer, Patelli & Zovko (2005)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from numba import njit
from pydantic import Field

from agents.base import Population, PositiveDist, StrictParams
from agents.compiled import maximum, minimum
from agents.orders import OrderSheet, Outbox, orders_by_key
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
        member, col, side, lots, ticks, kinds = _noise_rows(
            acting, col, side, size, market, offset, self.market.venue_mids()[self.cols], self.lots(),
            self.lot_sizes, self.venue_tick_sizes[self.cols], self.leverage, self.equity(), p.max_slippage_bps,
            KIND_CODES[OrderType.IOC], KIND_CODES[OrderType.POST_ONLY],
        )  # fmt: skip
        out.add_rows(member, self.cols[col], side, lots, ticks, kinds, np.zeros(len(member), bool), lots > 0)
        return out.sheet()


@njit(cache=True, error_model="numpy")
def _noise_rows(
    acting, col, side, size, market, offset, mids, held, lot_sizes, tick_sizes, leverage, equity, slippage_bps,
    ioc, post_only,
):  # fmt: skip
    """The acting members' orders on the grid, in one pass: ``(member, col, side, lots,
    ticks, kind)``, (s,) each, for those that send one (lots 0: none after rounding),
    grouped by instrument column, market orders (IOC) before limits in each, members in
    acting order.

    Args:
        acting, col, side, size, market, offset: (k,) the acting members, their draws:
            instrument column, side, notional (USD), market or limit, limit offset
            (fraction).
        mids: (Ip,) venue mids (USD). held: (n, Ip) positions (lots).
        lot_sizes, tick_sizes: (Ip,) grid. leverage, equity: (n,) limit and equity.
        slippage_bps: How far beyond the mid a market order is limited.
        ioc, post_only: Their kind codes.
    """
    k, n_cols = acting.shape[0], mids.shape[0]
    qty, price = np.empty(k), np.empty(k)
    for r in range(k):
        i, j = acting[r], col[r]
        mid = mids[j]
        room = leverage[i] * maximum(equity[i], 0.0) / mid - side[r] * (held[i, j] * lot_sizes[j])
        qty[r] = minimum(size[r] / mid, room)
        price[r] = mid * (1 + side[r] * slippage_bps / 1e4) if market[r] else mid * (1 - side[r] * offset[r])
    key = 2 * col + np.logical_not(market)  # instrument column, then market orders first
    picked, lots, ticks = orders_by_key(key, 2 * n_cols, side, col, qty, price, lot_sizes, tick_sizes)
    kinds = np.where(market[picked], ioc, post_only)
    return acting[picked], col[picked], side[picked], lots, ticks, kinds

"""Momentum trader: leveraged, chases the venue's own price moves (and so sells into a
crash that liquidations deepen)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from agents.base import Population, StrictParams
from agents.orders import OrderSheet, Outbox
from sim.types import OrderType


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


class Momentum(Population):
    """Every member reads the same venue return; those with positive equity whose
    position is off their target by more than the band trade toward it (at most
    ``max_order_notional`` per instrument and step). No draws."""

    Params = MomentumParams
    kind = "momentum"

    def decide(self) -> OrderSheet:
        p: MomentumParams = self.params
        market = self.market
        returns = np.array([market.venue_return(m, p.lookback_seconds) for m in self.instruments])
        if not (np.abs(returns) >= p.threshold).any():
            return Outbox(self).sheet()  # no trend anywhere: every member holds
        equity = self.equity()
        solvent = equity > 0
        held = self.positions()
        out = Outbox(self)
        for j, m in enumerate(self.instruments):
            ret = returns[j]
            if abs(ret) < p.threshold:
                continue
            mark = float(market.mark[m])
            target = (1 if ret > 0 else -1) * self.leverage * equity / mark / len(self.instruments)
            gap = target - held[:, j]
            trading = np.flatnonzero(solvent & (np.abs(gap) > p.band * np.abs(target)))
            side = np.where(gap[trading] > 0, 1, -1)
            qty = np.minimum(np.abs(gap[trading]), p.max_order_notional / mark)
            out.add(m, trading, side, qty, mark * (1 + side * p.max_slippage_bps / 1e4), OrderType.IOC)
        return out.sheet()

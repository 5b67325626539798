"""Market maker: quotes both sides around the index with inventory skew, and withdraws
its liquidity when volatility spikes (liquidity that vanishes in a crash is part of
every real cascade)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from agents.base import StrictParams, Trader
from sim.types import OrderRequest, OrderType, Side


class MarketMakerParams(StrictParams):
    """Attributes:
    half_spread_bps: Distance of the best quotes from the (skewed) fair value.
    levels: Quote levels per side.
    level_step_bps: Distance between levels.
    order_notional: USD per quote level.
    inventory_skew_bps: Fair-value shift at full inventory (position = leverage x equity),
        against the inventory.
    vol_window: Steps of index returns for the short-run volatility.
    withdraw_multiple: Withdraw all quotes while short-run volatility exceeds this
        multiple of the long-run (10 x window) volatility.
    """

    half_spread_bps: Annotated[float, Field(gt=0)] = 5.0
    levels: Annotated[int, Field(ge=1)] = 3
    level_step_bps: Annotated[float, Field(ge=0)] = 5.0
    order_notional: Annotated[float, Field(gt=0)] = 20_000.0
    inventory_skew_bps: Annotated[float, Field(ge=0)] = 20.0
    vol_window: Annotated[int, Field(ge=2)] = 10
    withdraw_multiple: Annotated[float, Field(gt=0)] = 3.0


class MarketMaker(Trader):
    Params = MarketMakerParams
    kind = "market_maker"

    def step(self) -> None:
        p: MarketMakerParams = self.params
        self.cancel_all()
        short = self.market.realized_vol(p.vol_window)
        long = self.market.realized_vol(10 * p.vol_window)
        equity = self.equity()
        if equity <= 0:
            return
        quotes: list[OrderRequest | None] = []
        for m in self.instruments:
            if self.market.step > p.vol_window and short[m] > p.withdraw_multiple * max(long[m], 1e-12):
                continue  # withdrawn
            quotes += self._quotes(m, p, equity)
        self.submit_many(quotes)

    def _quotes(self, m: int, p: MarketMakerParams, equity: float) -> list[OrderRequest | None]:
        fair = float(self.market.index[m])
        limit = self.leverage * equity
        inventory = self.position(m) * fair
        skew = -p.inventory_skew_bps * max(-1.0, min(1.0, inventory / limit))
        center = fair * (1 + skew / 1e4)
        size = p.order_notional / fair
        quotes = []
        for level in range(p.levels):
            offset = (p.half_spread_bps + level * p.level_step_bps) / 1e4
            if inventory < limit:
                quotes.append(self.order(m, Side.BUY, size, center * (1 - offset), OrderType.POST_ONLY))
            if inventory > -limit:
                quotes.append(self.order(m, Side.SELL, size, center * (1 + offset), OrderType.POST_ONLY))
        return quotes

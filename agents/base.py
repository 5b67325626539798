"""The trader agent base class and the market view agents read.

Agents hold an account id, never a ledger: positions and margin are read from the
exchange's arrays through `Trader` properties. They see only public data (index, mark,
last trade, the books, price history) through `MarketView`, and their own account.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import mesa
import numpy as np
from pydantic import BaseModel, ConfigDict

from sim.types import OrderRequest, OrderType, Side, SubmitResult

if TYPE_CHECKING:
    from sim.exchange import Exchange


class StrictParams(BaseModel):
    """Base of every agent's parameter model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class MarketView:
    """Public market data for agents, updated by the model once per step.

    Attributes:
        exchange: The venue (agents use it for books and order entry only).
        step: The current step.
        step_seconds: Simulated seconds per step.
        index_history: (N + 1, I) index prices so far (rows after ``step`` unset).
        last_history: (N + 1, I) last trade price at the end of each step (NaN before
            the first trade).
    """

    def __init__(self, exchange: Exchange, steps: int, step_seconds: float = 1.0):
        self.exchange = exchange
        #: Simulated seconds per step.
        self.step_seconds = step_seconds
        n = len(exchange.instruments)
        self.step = 0
        self.index_history = np.full((steps + 1, n), np.nan)
        self.last_history = np.full((steps + 1, n), np.nan)
        self._vol_cache: dict[int, np.ndarray] = {}

    def steps_for(self, seconds: float) -> int:
        """A duration in seconds as a whole number of steps (at least 1)."""
        return max(1, round(seconds / self.step_seconds))

    def advance(self, step: int) -> None:
        """Start a new step: record the index, forget cached statistics."""
        self.step = step
        self.index_history[step] = self.exchange.index
        self._vol_cache.clear()

    def close(self, step: int) -> None:
        """End of step: record the last trade prices."""
        self.last_history[step] = self.exchange.last_price

    @property
    def index(self) -> np.ndarray:
        return self.exchange.index

    @property
    def mark(self) -> np.ndarray:
        return self.exchange.marks

    @property
    def last(self) -> np.ndarray:
        return self.exchange.last_price

    def mid(self, m: int) -> float | None:
        """Mid price of instrument m in USD, None unless both sides are quoted."""
        mid = self.exchange.books[m].mid()
        return None if mid is None else mid * self.exchange.instruments[m].tick_size

    def realized_vol(self, window: int) -> np.ndarray:
        """(I,) standard deviation of the index's log returns over the last ``window`` steps."""
        vol = self._vol_cache.get(window)
        if vol is None:
            start = max(0, self.step - window)
            prices = self.index_history[start : self.step + 1]
            vol = np.log(prices[1:] / prices[:-1]).std(axis=0) if len(prices) > 2 else np.zeros(prices.shape[1])
            self._vol_cache[window] = vol
        return vol

    def trade_return(self, m: int, lookback: int) -> float:
        """Log return of the last trade price (index where none) over ``lookback`` steps."""
        now = self.last[m] if not np.isnan(self.last[m]) else self.index[m]
        then_step = max(0, self.step - lookback)
        then = self.last_history[then_step, m]
        if np.isnan(then):
            then = self.index_history[then_step, m]
        return float(np.log(now / then))


class Trader(mesa.Agent):
    """A trader: one ledger account, a strategy in `step`.

    Args:
        model: The market model (provides ``exchange`` and ``market``).
        account: Ledger row of this trader.
        instruments: Indices of the instruments it trades.
        leverage: Its leverage (notional / collateral value) target or limit.
        params: Its strategy parameters (an instance of the class's ``Params``).
        rng: Its own random stream (``self.draws``; Mesa reserves ``rng`` for the model's).
    """

    Params: ClassVar[type[StrictParams]] = StrictParams
    kind: ClassVar[str] = "trader"
    #: False for agents whose `step` does nothing: the model does not schedule them.
    acts: ClassVar[bool] = True

    def __init__(self, model, account: int, instruments: list[int], leverage: float, params, rng: np.random.Generator):
        super().__init__(model)
        self.account = account
        #: Ids of orders this trader left resting (some may have filled since).
        self.resting: list[int] = []
        self.instruments = instruments
        self.leverage = leverage
        self.params = params
        self.draws = rng

    def opening_positions(self) -> list[tuple[int, int, float]]:
        """Positions the trader holds when the run starts: ``(instrument, signed lots,
        price USD)`` each, given to it by the model as trades against the genesis
        account. None by default."""
        return []

    # ---------------------------------------------------------------- views
    @property
    def exchange(self) -> Exchange:
        return self.model.exchange

    @property
    def market(self) -> MarketView:
        return self.model.market

    def position(self, m: int) -> float:
        """Signed position in instrument m, base units."""
        return int(self.exchange.ledger.positions[self.account, m]) * self.exchange.instruments[m].lot_size

    def equity(self) -> float:
        """Account equity (USD) as of the start of this step's trading."""
        return float(self.model.health.equity[self.account])

    # --------------------------------------------------------------- orders
    def order(
        self, m: int, side: Side, qty: float, price: float | None = None, kind: OrderType = OrderType.LIMIT
    ) -> OrderRequest | None:
        """An order with its size floored to lots and its price rounded away from the
        touch (bids down, asks up) to the tick; None if it rounds to nothing."""
        inst = self.exchange.instruments[m]
        lots = inst.lots_down(qty)
        if lots <= 0:
            return None
        if price is not None:
            ticks = inst.ticks_toward(price, side)
            if ticks <= 0:
                return None
            price = inst.price(ticks)
        return OrderRequest(m, side, inst.qty(lots), price, kind)

    def submit(
        self, m: int, side: Side, qty: float, price: float | None = None, kind: OrderType = OrderType.LIMIT
    ) -> SubmitResult | None:
        """Send one order (see `order`); None if it rounds to nothing."""
        request = self.order(m, side, qty, price, kind)
        if request is None:
            return None
        result = self.exchange.submit(self.account, m, side, request.qty, request.price, kind)
        if result.rested:
            self.resting.append(result.order_id)
        return result

    def submit_many(self, requests: list[OrderRequest | None]) -> list[SubmitResult]:
        """Send several orders under one margin check (`Exchange.submit_many`)."""
        results = self.exchange.submit_many(self.account, [r for r in requests if r is not None])
        self.resting += [r.order_id for r in results if r.rested]
        return results

    def cancel_all(self) -> None:
        """Cancel the orders this trader left resting (by id: O(own orders))."""
        cancel = self.exchange.cancel
        for order_id in self.resting:
            cancel(order_id)
        self.resting.clear()

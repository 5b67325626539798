"""Basis arbitrageur: trades the perpetual back toward the index, with finite capital
and a finite trading rate. This, not the market makers, pegs the perpetual (He, Manela,
Ross & von Wachter 2022, "Fundamentals of Perpetual Futures": deviations of the
perpetual from spot are bounded by the arbitrageurs' trading costs and widen when
their capital is scarce).

Each step, per instrument (in its order), with the basis ``b = venue / index - 1``
(``venue``: the book's mid; with one side empty, that side's best price):

- ``|b| > cost``, where ``cost = 2 * taker_fee + margin`` (the venue's taker fee on both
  legs, the off-venue leg assumed to pay the same): it buys the venue when b < 0 and
  sells it when b > 0 with IOC orders limited at the index, within its position limit
  ``|position| <= leverage * equity``;
- ``|b| <= exit`` with a position open: it unwinds it with reduce-only IOC orders
  limited at ``index * (1 -+ exit)`` (selling a long: at least
  ``index * (1 - exit)``).

All its orders together send at most ``capacity_notional_per_second * step_seconds``
USD per step. The hedge leg (spot or another venue) is not modelled: its exposure here
is the venue leg alone, and its equity is only its venue account. Expected funding is
not part of its cost.
"""

from __future__ import annotations

from agents.base import NonNegativeDist, PositiveDist, StrictParams, Trader
from sim.distributions import draw
from sim.types import OrderType, Side


class ArbitrageurParams(StrictParams):
    """Attributes (``*`` = drawn once per agent; units in brackets):

    margin_bps*: Required edge beyond the round-trip taker fees [bps]. 0: He, Manela,
        Ross & von Wachter (2022)'s no-arbitrage bound is the trading cost itself.
    exit_bps*: Basis inside which it unwinds [bps]; None = half of its entry cost
        (no published value).
    capacity_notional_per_second*: Most it sends per second [USD/s]. 10,000 (no
        published value: the arbitrage capital's speed; HMRW 2022 show the peg
        loosens when it is scarce).
    """

    margin_bps: NonNegativeDist = 0.0
    exit_bps: NonNegativeDist | None = None
    capacity_notional_per_second: PositiveDist = 10_000.0


class Arbitrageur(Trader):
    Params = ArbitrageurParams
    kind = "arbitrageur"

    def __init__(self, model, account, instruments, leverage, params: ArbitrageurParams, rng):
        super().__init__(model, account, instruments, leverage, params, rng)
        self.margin = draw(params.margin_bps, rng) / 1e4
        self.exit = None if params.exit_bps is None else draw(params.exit_bps, rng) / 1e4
        self.rate = draw(params.capacity_notional_per_second, rng)

    def entry_cost(self) -> float:
        """Basis (fraction) beyond which it trades: taker fees on both legs + margin."""
        return 2.0 * self.exchange.fees.taker + self.margin

    def basis(self, m: int) -> float | None:
        """``venue / index - 1`` (see the module docstring); None with an empty book."""
        market = self.market
        venue = market.mid(m)
        if venue is None:
            venue = market.best_bid(m) or market.best_ask(m)
            if venue is None:
                return None
        return venue / float(market.index[m]) - 1.0

    def step(self) -> None:
        equity = self.equity()
        budget = self.rate * self.market.step_seconds  # USD this step
        cost = self.entry_cost()
        exit_band = 0.5 * cost if self.exit is None else self.exit
        for m in self.instruments:
            if budget <= 0:
                return
            basis = self.basis(m)
            if basis is None:
                continue
            index = float(self.market.index[m])
            if abs(basis) > cost and equity > 0:
                side = Side.BUY if basis < 0 else Side.SELL
                room = self.leverage * equity / index - side * self.position(m)
                qty = min(budget / index, room)
                if qty > 0 and self.submit(m, side, qty, index, OrderType.IOC) is not None:
                    budget -= qty * index
            elif abs(basis) <= exit_band and self.position(m) != 0:
                side = Side.SELL if self.position(m) > 0 else Side.BUY
                qty = min(budget / index, abs(self.position(m)))
                if self.reduce(m, qty, index * (1 + side * exit_band)) is not None:
                    budget -= qty * index

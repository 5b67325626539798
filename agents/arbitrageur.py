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

import numpy as np

from agents.base import NonNegativeDist, Population, PositiveDist, StrictParams
from agents.orders import OrderSheet, Outbox
from sim.distributions import sample
from sim.types import OrderType


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


class Arbitrageur(Population):
    """Every member reads the same basis per instrument; its own margin, exit band,
    budget and position decide what it sends (module docstring). A member's orders of
    a step go in under one margin check."""

    Params = ArbitrageurParams
    kind = "arbitrageur"

    def __init__(self, model, first_account, instruments, leverage, params: ArbitrageurParams, setup, rng):
        super().__init__(model, first_account, instruments, leverage, params, setup, rng)
        #: (n,) required edge [fraction], exit band [fraction, NaN = half the entry
        #: cost] and rate [USD/s].
        self.margin = sample(params.margin_bps, setup, self.n) / 1e4
        self.exit = np.full(self.n, np.nan) if params.exit_bps is None else sample(params.exit_bps, setup, self.n) / 1e4
        self.rate = sample(params.capacity_notional_per_second, setup, self.n)

    def entry_cost(self) -> np.ndarray:
        """(n,) basis (fraction) beyond which each member trades: taker fees on both
        legs + its margin."""
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

    def decide(self) -> OrderSheet:
        market = self.market
        equity = self.equity()
        budget = self.rate * market.step_seconds  # (n,) USD this step
        cost = self.entry_cost()
        exit_band = np.where(np.isnan(self.exit), 0.5 * cost, self.exit)
        held = self.lots()
        out = Outbox(self)
        for j, m in enumerate(self.instruments):
            basis = self.basis(m)
            if basis is None:
                continue
            index = float(market.index[m])
            has_budget = budget > 0
            position = held[:, j] * self.lot_sizes[j]
            entering = (abs(basis) > cost) & (equity > 0)
            enter = np.flatnonzero(has_budget & entering)
            side = 1 if basis < 0 else -1
            room = self.leverage[enter] * equity[enter] / index - side * position[enter]
            qty = np.minimum(budget[enter] / index, room)
            sides = np.full(len(enter), side)
            sent = out.add(m, enter, sides, qty, np.full(len(enter), index), OrderType.IOC)
            budget[enter[sent]] -= qty[sent] * index
            leave = np.flatnonzero(has_budget & ~entering & (abs(basis) <= exit_band) & (held[:, j] != 0))
            qty = np.minimum(budget[leave] / index, np.abs(position[leave]))
            limit = index * (1 - np.sign(held[leave, j]) * exit_band[leave])
            sent = out.reduce(m, leave, held[leave, j], qty, limit)
            budget[leave[sent]] -= qty[sent] * index
        return out.sheet()

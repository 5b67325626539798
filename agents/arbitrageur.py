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
from numba import njit

from agents.base import NonNegativeDist, Population, PositiveDist, StrictParams
from agents.compiled import minimum
from agents.orders import OrderSheet, Outbox
from sim.distributions import sample
from sim.instruments import order_form, reduce_form
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
        basis = np.array([np.nan if (b := self.basis(m)) is None else b for m in self.instruments])
        cost = self.entry_cost()
        exit_band = np.where(np.isnan(self.exit), 0.5 * cost, self.exit)
        member, col, side, lots, ticks, reduce_only = _arbitrage_rows(
            basis, market.index[self.cols], self.rate * market.step_seconds, cost, exit_band, self.equity(),
            self.leverage, self.lots(), self.lot_sizes, self.venue_tick_sizes[self.cols],
        )  # fmt: skip
        out = Outbox(self)
        out.add_rows(
            member,
            self.cols[col],
            side,
            lots,
            ticks,
            OrderType.IOC,
            reduce_only,
            np.ones(len(member), bool),
        )
        return out.sheet()


@njit(cache=True, error_model="numpy")
def _arbitrage_rows(basis, index, budget, cost, exit_band, equity, leverage, held, lot_sizes, tick_sizes):
    """Every member's orders of the step (module docstring), in one pass: ``(member, col,
    side, lots, ticks, reduce_only)``, (k,) each, on the grid; per instrument column (in
    order) its entries, then its exits, members ascending in each.

    Args:
        basis, index: (Ip,) basis (NaN: an empty book, no trade) and index (USD).
        budget: (n,) USD each member may still send this step (spent as orders go out).
        cost, exit_band: (n,) entry cost and exit band (fractions).
        equity, leverage: (n,) equity (USD) and position limit (notional / equity).
        held: (n, Ip) positions (lots). lot_sizes, tick_sizes: (Ip,) grid.
    """
    n, n_cols = held.shape
    budget = budget.copy()
    size = 2 * n * n_cols
    member, col, side = np.empty(size, np.int64), np.empty(size, np.int64), np.empty(size, np.int64)
    lots, ticks = np.empty(size, np.int64), np.empty(size, np.int64)
    reduce_only = np.empty(size, np.bool_)
    k = 0
    for j in range(n_cols):
        b = basis[j]
        if np.isnan(b):
            continue
        px, lot, tick = index[j], lot_sizes[j], tick_sizes[j]
        direction = 1 if b < 0 else -1
        entering = np.empty(n, np.bool_)
        for i in range(n):
            entering[i] = abs(b) > cost[i] and equity[i] > 0
        for i in range(n):  # entries: IOC at the index, within the position limit
            if not (budget[i] > 0 and entering[i]):
                continue
            room = leverage[i] * equity[i] / px - direction * (held[i, j] * lot)
            qty = minimum(budget[i] / px, room)
            lots[k], ticks[k], sent = order_form(qty, px, direction, lot, tick)
            if sent:
                member[k], col[k], side[k], reduce_only[k] = i, j, direction, False
                budget[i] -= qty * px
                k += 1
        for i in range(n):  # exits: reduce-only IOC at the index less the exit band
            if not (budget[i] > 0 and not entering[i] and abs(b) <= exit_band[i] and held[i, j] != 0):
                continue
            qty = minimum(budget[i] / px, abs(held[i, j] * lot))
            limit = px * (1 - np.sign(held[i, j]) * exit_band[i])
            side[k], lots[k], ticks[k], sent = reduce_form(held[i, j], qty, limit, lot, tick)
            if sent:
                member[k], col[k], reduce_only[k] = i, j, True
                budget[i] -= qty * px
                k += 1
    return member[:k], col[:k], side[:k], lots[:k], ticks[:k], reduce_only[:k]

"""Funding (MARGIN-SPEC section 6): premium sampled every step, paid every interval.

Premium ``P = [max(0, impact_bid - I) - max(0, I - impact_ask)] / I`` where the impact
prices are the average fill prices of selling / buying ``impact_notional`` USD into the
book (a side too thin for it contributes nothing). At the end of each interval
``F = avg(P) + clamp(r - avg(P), -c, +c)``, capped to ``[-cap, +cap]`` (venues cap
the rate per interval), and every position pays ``q * M * F``
(longs pay when F > 0): the instrument's cumulative funding index moves by ``M * F``
and the ledger settles each account's share when its position is next touched (its
unrealized PnL counts it meanwhile). Funding is zero-sum because positions net to zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.exchange import Exchange
from sim.types import Side


@dataclass(frozen=True)
class FundingRules:
    """Attributes: interval (steps, 0 = no funding), interest r, clamp c and cap (0 = no
    cap) per interval, impact_notional in USD."""

    interval: int = 480
    interest: float = 0.0001
    clamp: float = 0.0005
    impact_notional: float = 10_000.0
    cap: float = 0.0


class Funding:
    """Premium accumulator and payer for all instruments of one exchange."""

    def __init__(self, exchange: Exchange, rules: FundingRules):
        self.exchange = exchange
        self.rules = rules
        n = len(exchange.instruments)
        self._premium_sum = np.zeros(n)
        self._samples = 0
        #: (I,) rate of the last payment, fraction per interval.
        self.rate = np.zeros(n)
        #: Step of the last payment (-1: none yet).
        self.paid_step = -1

    def estimate(self) -> np.ndarray:
        """(I,) the rate the current interval would pay now (capped)."""
        rules = self.rules
        avg = self._premium_sum / max(self._samples, 1)
        rate = avg + np.clip(rules.interest - avg, -rules.clamp, rules.clamp)
        return np.clip(rate, -rules.cap, rules.cap) if rules.cap else rate

    def rate_at(self, step: int) -> np.ndarray:
        """(I,) the rate to report at ``step``: the rate paid if funding was paid at that
        step, else the current interval's estimate."""
        return self.rate if step == self.paid_step else self.estimate()

    def step(self, step: int) -> bool:
        """Sample the premium; pay funding when an interval ends. True if it paid."""
        if not self.rules.interval:
            return False
        self._premium_sum += self.premium()
        self._samples += 1
        if step % self.rules.interval:
            return False
        self.rate = self.estimate()
        self.paid_step = step
        self.exchange.accrue_funding(self.exchange.marks * self.rate)
        self._premium_sum[:] = 0.0
        self._samples = 0
        return True

    def premium(self) -> np.ndarray:
        """(I,) premium index of every instrument at this moment."""
        ex = self.exchange
        out = np.zeros(len(ex.instruments))
        for m, index in enumerate(ex.index):
            bid = self._impact_price(m, Side.SELL)
            ask = self._impact_price(m, Side.BUY)
            up = max(0.0, bid - index) if bid is not None else 0.0
            down = max(0.0, index - ask) if ask is not None else 0.0
            out[m] = (up - down) / index
        return out

    def _impact_price(self, m: int, side: Side) -> float | None:
        """Average price of a ``side`` order for the impact notional; None if too thin."""
        inst = self.exchange.instruments[m]
        return self.exchange.books[m].average_price(side, self.rules.impact_notional, inst.tick_size, inst.lot_size)

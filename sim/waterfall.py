"""The loss waterfall: who takes what the order book could not (MARGIN-SPEC 5).

A liquidation first sells into the book (`sim.liquidation`). What the book does not
absorb goes down a configurable chain of named steps, each a function in `FALLBACKS`
taking the `Close` and the lots left and returning the lots it could not place:

- ``insurance_fund``: the fund takes the position over at the bankruptcy price while
  its equity at the marks covers the loss it takes on (``s (P_bk - M)`` per unit for a
  position of side s) and the maintenance margin of what it then holds, and sells it on
  over time (`sim.unwind`). BitMEX, Binance, Bybit.
- ``backstop``: the backstop vault does the same with its own finite capital
  (Hyperliquid's HLP liquidator vault); its PnL is recorded.
- ``adl``: opposite trader positions, highest BitMEX score first, are closed against it
  at the bankruptcy price.
- ``socialize``: the rest closes at the mark against the insurance fund (which loses
  nothing at the mark and sells it on); the deficit it leaves is shared (`settle_deficit`).
- ``none``: the rest stays with the trader, who stays liquidatable and says why.

Transfers happen on the tick grid: the bankruptcy price is rounded in the trader's
favour (the receiver gives up less than a tick per unit), the mark to the nearest tick.
A system account never goes below its maintenance margin at a takeover: what it cannot
take moves on down the chain. (Selling a takeover on later can still lose money if the
price keeps moving; that is its PnL in the ledger.)

An account left flat with negative equity (a deficit) is settled by `settle_deficit`
down the same chain: the fund, then the backstop, pay what their equity allows; with
``socialize`` in the chain the rest is charged to every trader with an open position
pro rata to notional (Drift, Mango); what is left is bad debt, recorded as such.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sim.exchange import Exchange
from sim.ledger import BACKSTOP, INSURANCE_FUND, N_SYSTEM
from sim.margin import adl_scores

#: Receives ``(counterparty, lots, price, kind)`` and moves ``lots`` of the position to
#: the counterparty at ``price``, recording it (implemented by the engine).
Transfer = Callable[[int, int, float, str], None]


@dataclass(slots=True, frozen=True)
class Close:
    """A position the book could not fully absorb.

    Attributes:
        exchange: The venue.
        account: The liquidated account.
        instrument: The position's instrument.
        side: +1 for a long position, -1 for a short.
        bankrupt: Its bankruptcy price, USD, on the tick grid in the trader's favour.
        transfer: Moves lots to a counterparty and records it.
    """

    exchange: Exchange
    account: int
    instrument: int
    side: int
    bankrupt: float
    transfer: Transfer

    def mark_on_grid(self) -> float:
        """The instrument's mark, rounded to the nearest tick (at least one tick)."""
        inst = self.exchange.instruments[self.instrument]
        return inst.price(max(1, round(float(self.exchange.marks[self.instrument]) / inst.tick_size)))


def system_health(ex: Exchange, account: int):
    """A system account's margin state (one-row `sim.margin.Health`) at the marks."""
    return ex.health_at(ex.marks, ex.asset_prices, np.array([account]))


def system_equity(ex: Exchange, account: int) -> float:
    """A system account's equity (balance plus unrealized PnL at the marks), USD."""
    return float(system_health(ex, account).equity[0])


def takeover_capacity(ex: Exchange, holder: int, m: int, side: int, price: float) -> float:
    """Lots of a side-``side`` position in m that ``holder`` can take over at ``price``
    and stay margined like a trader: its equity at the marks after the takeover covers
    the maintenance margin of everything it holds. A lot costs it the loss it takes on
    at the mark, ``s (price - M)``, plus its maintenance margin (at the highest rate of
    the instrument's tiers, so no tier boundary is crossed unseen); a whole number, or
    ``math.inf`` when the takeover gains it more than it requires."""
    mark = float(ex.marks[m])
    lot = ex.instruments[m].lot_size
    per_lot = side * (price - mark) * lot + float(ex.rules.tiers.mmr[m].max()) * mark * lot
    if per_lot <= 0:
        return math.inf
    health = system_health(ex, holder)
    free = float(health.equity[0] - health.maint[0])
    return max(0, math.floor(free / per_lot * (1 + 1e-12)))


def _take_over(close: Close, holder: int, lots: int, kind: str) -> int:
    ex = close.exchange
    take = min(lots, takeover_capacity(ex, holder, close.instrument, close.side, close.bankrupt))
    if take:
        close.transfer(holder, take, close.bankrupt, kind)
    return lots - take


def insurance_fund(close: Close, lots: int) -> int:
    """The insurance fund takes over what its equity covers, at the bankruptcy price."""
    return _take_over(close, INSURANCE_FUND, lots, "insurance_fund")


def backstop(close: Close, lots: int) -> int:
    """The backstop vault takes over what its capital covers, at the bankruptcy price."""
    return _take_over(close, BACKSTOP, lots, "backstop")


def adl(close: Close, lots: int) -> int:
    """Close against opposite trader positions, highest BitMEX score first (ties: lower
    id), at the bankruptcy price."""
    ex, m = close.exchange, close.instrument
    positions = ex.ledger.positions[:, m]
    candidates = np.flatnonzero(np.sign(positions) == -close.side)
    candidates = candidates[(candidates >= N_SYSTEM) & (candidates != close.account)]
    if candidates.size == 0:
        return lots
    equity = ex.health_at(ex.marks, ex.asset_prices, candidates).equity
    mark = float(ex.marks[m])
    notional = np.abs(positions[candidates]) * ex.instruments[m].lot_size * mark
    scores = adl_scores(np.full(candidates.size, -close.side), ex.ledger.entry[candidates, m], mark, notional, equity)
    for j in candidates[np.lexsort((candidates, -scores))]:
        take = min(lots, abs(int(positions[j])))
        close.transfer(int(j), take, close.bankrupt, "adl")
        lots -= take
        if not lots:
            break
    return lots


def socialize(close: Close, lots: int) -> int:
    """The rest closes at the mark against the insurance fund; the deficit is shared by
    the engine's `settle_deficit` once the account is flat."""
    close.transfer(INSURANCE_FUND, lots, close.mark_on_grid(), "socialized")
    return 0


def none(close: Close, lots: int) -> int:
    """Nothing takes the rest: it stays with the trader."""
    return lots


FallbackStep = Callable[[Close, int], int]

#: Name -> step of the loss waterfall (module docstring), the chain's vocabulary.
FALLBACKS: dict[str, FallbackStep] = {
    "insurance_fund": insurance_fund,
    "backstop": backstop,
    "adl": adl,
    "socialize": socialize,
    "none": none,
}

#: The default chain, as Binance and BitMEX run it (book, fund takeover, ADL), with a
#: backstop vault between them that only acts when it is given capital.
DEFAULT_CHAIN = ("insurance_fund", "backstop", "adl")


@dataclass(slots=True, frozen=True)
class DeficitShare:
    """Who paid part of an account's deficit: ``payer`` (a ledger row) and USD ``amount``;
    ``socialized`` marks a charge on other traders' positions rather than a system account."""

    payer: int
    amount: float
    socialized: bool = False


def settle_deficit(ex: Exchange, account: int, deficit: float, chain: tuple[str, ...]) -> list[DeficitShare]:
    """Pay a flat account's deficit (USD > 0) down the chain (module docstring).

    The fund and backstop pay from their USD balances as far as their equity above the
    maintenance margin of what they hold allows;
    ``socialize`` charges every other trader with an open position pro rata to its
    notional at the marks (the charge lands in the margin that backs its positions:
    in isolated mode, its largest position's). Returns the shares paid, in order;
    what they leave unpaid stays as the account's negative equity.
    """
    ledger = ex.ledger
    shares = []
    for name, payer in (("insurance_fund", INSURANCE_FUND), ("backstop", BACKSTOP)):
        if name in chain and deficit > 0:
            health = system_health(ex, payer)
            free = float(health.equity[0] - health.maint[0])
            amount = min(deficit, max(0.0, free), max(0.0, float(ledger.balances[payer, 0])))
            if amount > 0:
                ledger.transfer(payer, account, amount)
                shares.append(DeficitShare(payer, amount))
                deficit -= amount
    if "socialize" in chain and deficit > 0:
        notional = np.abs(ledger.positions * ledger.lot_sizes) * ex.marks  # (A, I)
        notional[:N_SYSTEM] = 0.0
        notional[account] = 0.0
        total = notional.sum()
        if total > 0:
            for j in np.flatnonzero(notional.sum(axis=1)):
                m = int(np.argmax(notional[j]))
                amount = deficit * float(notional[j].sum()) / total
                ledger.pay(int(j), m, account, amount)
                shares.append(DeficitShare(int(j), amount, socialized=True))
    return shares

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
- ``adl``: opposite positions are closed against it at the bankruptcy price: trader
  positions highest BitMEX score first, then *genesis*'s.
- ``socialize``: the rest closes at the mark against the insurance fund (which loses
  nothing at the mark and sells it on); the deficit it leaves is shared (`settle_deficit`).
- ``none``: the rest stays with the trader, who stays liquidatable and says why.

Why genesis is an ADL counterparty: genesis is the rest of the market, the traders of
this venue the simulation does not model, who hold the other side of the positions
populations and ``[[accounts]]`` open at the start (and buy what system accounts sell
on). On a venue every position has an opposite position on the same venue and ADL
(BitMEX, Binance, Bybit, Hyperliquid) ranks all of them, so it always finds enough
size; leaving genesis out made ADL run out of counterparties, so a bankrupt account was
deleveraged a trader at a time over many steps, each new short closed at the stale
bankruptcy price, and retried every step. Genesis comes last because the simulation
knows nothing of the scores of the traders it stands for; modelled traders are ranked
by their own. What genesis gives up at the bankruptcy price is the rest of the market's
ADL loss (``adl_notional`` counts it), not a loss of the venue.

Transfers happen on the tick grid: the bankruptcy price is rounded in the trader's
favour (the receiver gives up less than a tick per unit), the mark to the nearest tick.
A system account never goes below its maintenance margin at a takeover: what it cannot
take moves on down the chain.

A system account is margined like a trader while it sells a takeover on (Binance's and
BitMEX's insurance fund, Hyperliquid's HLP, whose losses go to ADL when it cannot
take them): whenever its equity at the marks is below zero (the engine checks before
every round of a step and after each round that did something), the steps *below it*
in the waterfall (`steps_below`: the fund's loss goes to the backstop, ADL and
socialization; the backstop's to ADL and socialization, never back up) take its
inventory over at its bankruptcy price (`INVENTORY_STEPS`), which hands them exactly
the loss beyond its equity, and what is still below zero is paid as a deficit
(`settle_deficit`). A chain with nothing below it leaves it below zero, recorded as
``system_deficit`` in ``unresolved``.

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

from sim.adl_ranking import AdlRanking
from sim.exchange import Exchange
from sim.ledger import BACKSTOP, GENESIS, INSURANCE_FUND, N_SYSTEM, USD
from sim.margin import Health

#: The system accounts that take positions over, each with the name of its step of the
#: chain, in waterfall order (the fund above the backstop).
HOLDER_STEPS = {INSURANCE_FUND: "insurance_fund", BACKSTOP: "backstop"}
HOLDERS = tuple(HOLDER_STEPS)

#: The waterfall's order: a system account's loss goes only to the steps below its own.
WATERFALL_ORDER = ("insurance_fund", "backstop", "adl", "socialize", "none")

#: The steps that can take a system account's inventory over (`socialize` leaves it with
#: the holder, which goes on selling it, and shares its deficit instead).
INVENTORY_STEPS = ("backstop", "adl")


def steps_below(holder: int, chain: tuple[str, ...]) -> tuple[str, ...]:
    """The steps of ``chain``, in its order, below system account ``holder`` 's own in the
    waterfall: the fund's losses may go to the backstop, ADL and socialization, the
    backstop's to ADL and socialization."""
    rank = WATERFALL_ORDER.index(HOLDER_STEPS[holder])
    return tuple(step for step in chain if WATERFALL_ORDER.index(step) > rank)


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
        system: The system accounts' margin state.
        ranking: ADL's scores of the opposite positions.
    """

    exchange: Exchange
    account: int
    instrument: int
    side: int
    bankrupt: float
    transfer: Transfer
    system: SystemAccounts
    ranking: AdlRanking

    def mark_on_grid(self) -> float:
        """The instrument's mark, rounded to the nearest tick (at least one tick)."""
        inst = self.exchange.instruments[self.instrument]
        return inst.price(max(1, round(float(self.exchange.marks[self.instrument]) / inst.tick_size)))


class SystemAccounts:
    """The insurance fund's and the backstop vault's margin state at the marks, computed
    once and reused while their ledger rows and the prices stay as they were
    (`sim.exchange.Exchange.state_of`), so that a round of liquidations does not
    recompute it for every account it looks at.

    Args:
        exchange: The venue.
    """

    def __init__(self, exchange: Exchange):
        self.exchange = exchange
        self._rows = np.array(HOLDERS)
        self._health: Health | None = None
        self._state: tuple | None = None

    def health(self) -> Health:
        """Two-row `Health`, rows in `HOLDERS` order."""
        ex = self.exchange
        state = ex.state_of(self._rows)
        if state != self._state:
            self._health = ex.health_at(ex.marks, ex.asset_prices, self._rows)
            self._state = state
        return self._health

    def equity(self, holder: int) -> float:
        """``holder`` 's equity (balance plus unrealized PnL at the marks), USD."""
        return float(self.health().equity[HOLDERS.index(holder)])

    def free(self, holder: int) -> float:
        """``holder`` 's equity above the maintenance margin of what it holds, USD."""
        health = self.health()
        row = HOLDERS.index(holder)
        return float(health.equity[row] - health.maint[row])

    def payable(self, holder: int) -> float:
        """USD ``holder`` can pay out now: its free equity, within its USD balance."""
        return max(0.0, min(self.free(holder), float(self.exchange.ledger.balances[holder, USD])))


def takeover_capacity(ex: Exchange, free: float, m: int, side: int, price: float) -> float:
    """Lots of a side-``side`` position in m that a system account with ``free`` USD of
    equity above its maintenance margin can take over at ``price`` and stay margined
    like a trader: its equity at the marks after the takeover covers the maintenance
    margin of everything it holds. A lot costs it the loss it takes on at the mark,
    ``s (price - M)``, plus its maintenance margin (at the highest rate of the
    instrument's tiers, so no tier boundary is crossed unseen); a whole number, or
    ``math.inf`` when the takeover gains it more than it requires."""
    mark = float(ex.marks[m])
    lot = ex.instruments[m].lot_size
    per_lot = side * (price - mark) * lot + float(ex.rules.tiers.mmr[m].max()) * mark * lot
    if per_lot <= 0:
        return math.inf
    return max(0, math.floor(free / per_lot * (1 + 1e-12)))


def _take_over(close: Close, holder: int, lots: int, kind: str) -> int:
    free = close.system.free(holder)
    take = min(lots, takeover_capacity(close.exchange, free, close.instrument, close.side, close.bankrupt))
    if take:
        close.transfer(holder, take, close.bankrupt, kind)
    return lots - take


def insurance_fund(close: Close, lots: int) -> int:
    """The insurance fund takes over what its equity covers, at the bankruptcy price."""
    return _take_over(close, INSURANCE_FUND, lots, "insurance_fund")


def backstop(close: Close, lots: int) -> int:
    """The backstop vault takes over what its capital covers, at the bankruptcy price."""
    return _take_over(close, BACKSTOP, lots, "backstop")


def _opposite(close: Close) -> np.ndarray:
    """Accounts ADL may close ``close`` against: trader positions on the other side
    (other than its own) and genesis's, in id order."""
    positions = close.exchange.ledger.positions[:, close.instrument]
    candidates = np.flatnonzero(np.sign(positions) == -close.side)
    return candidates[((candidates >= N_SYSTEM) | (candidates == GENESIS)) & (candidates != close.account)]


def adl_counterparties(close: Close, lots: int) -> list[int]:
    """The accounts ADL closes ``lots`` of ``close`` against, in order: opposite trader
    positions highest BitMEX score first (ties: lower id), then genesis's (module
    docstring: why); only as many as it takes to hold ``lots``."""
    traders, held = close.ranking.first(close.instrument, close.side, close.account, lots)
    if held >= lots:
        return traders
    genesis = close.exchange.ledger.positions[GENESIS, close.instrument] * close.side < 0
    return [*traders, *([GENESIS] if genesis and close.account != GENESIS else [])]


def adl(close: Close, lots: int) -> int:
    """Close against the `adl_counterparties` at the bankruptcy price, in their order."""
    positions = close.exchange.ledger.positions[:, close.instrument]
    for j in adl_counterparties(close, lots):
        take = min(lots, abs(int(positions[j])))
        close.transfer(j, take, close.bankrupt, "adl")
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


def can_take(close: Close, step: str) -> bool:
    """Whether chain step ``step`` would take at least one lot of ``close`` now (a test
    that changes nothing, for an account the chain could not resolve before)."""
    if step in ("insurance_fund", "backstop"):
        holder = INSURANCE_FUND if step == "insurance_fund" else BACKSTOP
        free = close.system.free(holder)
        return takeover_capacity(close.exchange, free, close.instrument, close.side, close.bankrupt) >= 1
    if step == "adl":
        return _opposite(close).size > 0
    return step == "socialize"


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


def settle_deficit(
    ex: Exchange, system: SystemAccounts, account: int, deficit: float, chain: tuple[str, ...]
) -> list[DeficitShare]:
    """Pay an account's deficit (USD > 0) down the chain (module docstring).

    The fund and backstop pay from their USD balances as far as their equity above the
    maintenance margin of what they hold allows; ``socialize`` charges every trader
    with an open position other than ``account`` pro rata to its notional at the marks
    (the charge lands in the margin that backs its positions: in isolated mode, its
    largest position's). Returns the shares paid, in order; what they leave unpaid stays
    as the account's negative equity.
    """
    ledger = ex.ledger
    shares = []
    for payer in HOLDERS:
        if HOLDER_STEPS[payer] in chain and deficit > 0:
            amount = min(deficit, system.payable(payer))
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

"""The liquidation engine (MARGIN-SPEC sections 4–5): execution through the order book
and the loss waterfall.

The engine's parts, after dYdX v4's split of detection from execution:

- detection: which accounts are liquidatable, from `sim.health_watch.LiquidatableWatch`
  (a full margin pass's answer, recomputing only the accounts near their line or whose
  ledger row changed), at every scan and after every liquidation;
- sizing: pure functions of `sim.margin` (`liquidation_size`, `bankruptcy_prices`), the
  same ones the MARGIN-SPEC tests check;
- execution: this module, an IOC order into the book, then the loss waterfall;
- the waterfall: the named steps of `sim.waterfall` (insurance fund takeover, backstop,
  ADL, socialized loss);
- attribution of cascades: `sim.attribution`.

Each step, after prices moved and traders acted, `LiquidationEngine.run_step` runs up
to ``rounds`` rounds. A round takes the liquidatable accounts worst margin ratio first
(ties: lower account id). For each it cancels the account's open orders, re-checks, and
closes positions largest maintenance margin first:

- Size: `sim.margin.liquidation_size` rounded up to a lot; the per-step cap limits what
  one position may lose in one step to ``ceil(step_cap * |q at its first liquidation
  this step|)`` lots.
- Book: an IOC order, no taker fee. Its limit is the bankruptcy price ``P_bk`` (cross:
  dYdX allocation by MM share), except that fills worse than ``P_bk`` are allowed for
  as long as the insurance fund can pay their shortfall (MARGIN-SPEC E3).
- Clearance of a fill at p with ``delta = s * qty * (p - P_bk)``: ``dydx`` (default) pays
  the fund ``min(phi * qty * M, delta)`` when ``delta >= 0`` and the trader keeps the
  rest; ``binance`` (Binance, BitMEX) gives the fund all of ``delta``. With
  ``delta < 0`` the fund pays ``-delta``.
- Collateral first: an account with a USD debt sells its other collateral to the
  outside world at the index less the asset's haircut (kind ``conversion``; the haircut
  goes to the fund) until the debt is repaid, as venues auto-convert collateral; a
  negative balance counts in margin (`collateral.<asset>.liability_mmr`), so an account
  with debt and only collateral is liquidated this way. With ``auto_convert_debt`` a
  debt above it is converted at the start of each step, liquidatable or not.
- Waterfall: if the book did not absorb the whole slice, the position is beyond what
  the market takes, and the rest of it (within the step cap) goes down the fallback
  chain at ``P_bk`` recomputed after the book fills (a transfer at ``P_bk`` leaves the
  margin ratio unchanged, so sizing it again would never finish). An account left
  flat with negative equity has its deficit settled down the same chain
  (`sim.waterfall.settle_deficit`).
- System accounts: before the first round and after every round that did something, a
  fund or backstop whose equity is below zero passes its inventory and then its loss
  down the chain below it (`LiquidationEngine._relieve_system_accounts`).
- Waiting: an account the chain could not resolve (``book_exhausted``, ``bad_debt``) is
  tried again only when something it depends on could act (`_waiting_for`), and is
  recorded in ``unresolved`` once per episode; the results are those of trying it every
  round, at the cost of one test. Margin states of the account being liquidated and of
  the system accounts are computed once per change of the prices or of their ledger rows.

``liquidation.penalty`` is not charged: it is the discount to the mark at which the
sizing formula assumes the book fills (MARGIN-SPEC E1b, where it is what the trader
loses to the bidder).

Forced selling moves the *index* (`sim.impact`): each liquidation's book fills are a
flow term of the propagator, added right after them, so the index and the marks move
before the next health check; a system account's selling of a takeover (`sim.unwind`)
is a term tagged with the takeover's row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from sim.adl_ranking import AdlRanking
from sim.attribution import CascadeAttribution, Episode
from sim.exchange import Exchange
from sim.health_watch import LiquidatableWatch
from sim.impact import VenueIndex
from sim.ledger import GENESIS, INSURANCE_FUND, N_SYSTEM, USD
from sim.margin import Health, Sizing, bankruptcy_prices, liquidation_size
from sim.types import OrderType, Side
from sim.waterfall import (
    DEFAULT_CHAIN,
    FALLBACKS,
    HOLDER_STEPS,
    HOLDERS,
    INVENTORY_STEPS,
    Close,
    SystemAccounts,
    can_take,
    settle_deficit,
    steps_below,
)

CLEARANCES = ("dydx", "binance")
#: Negative equity below this (USD) is float residue of closing at P_bk, not a deficit.
DEFICIT_TOLERANCE = 1e-6
#: Reasons an account was left unresolved that only a change of the book, the system
#: accounts' capacity or ADL's counterparties can end (see `LiquidationEngine._waiting_for`).
WAITING = ("book_exhausted", "bad_debt")
#: Relative slack when comparing the fund budget with level costs.
_BUDGET_SLACK = 1e-9


@dataclass(frozen=True)
class LiquidationRules:
    """Research switches of the liquidation engine (see the module docstring).

    Attributes:
        full: Close whole positions instead of partial sizing.
        buffer: beta, fraction of notional an account must clear above MM to leave.
        penalty: lambda, the discount to the mark partial sizing assumes.
        fund_fee: phi, the insurance fund's fee as a fraction of mark notional.
        step_cap: Fraction of a position that may be closed in one step (1 = no cap).
        rounds: Scan-and-liquidate rounds per step.
        fallback: Chain of `sim.waterfall.FALLBACKS` applied to what the book cannot absorb.
        clearance: ``dydx`` or ``binance``: who keeps a fill better than ``P_bk``.
            ``binance`` hands the fund everything above the bankruptcy price, so a
            partial fill leaves the margin ratio where it was: it needs ``full``.
        auto_convert_debt: USD debt (a negative USD balance) above which an account's
            other collateral is converted to repay it at the start of a step, whether
            or not the account is liquidatable (inf: only in liquidation).
    """

    full: bool = False
    buffer: float = 0.005
    penalty: float = 0.0025
    fund_fee: float = 0.001
    step_cap: float = 1.0
    rounds: int = 5
    fallback: tuple[str, ...] = DEFAULT_CHAIN
    clearance: str = "dydx"
    auto_convert_debt: float = math.inf

    def __post_init__(self) -> None:
        unknown = [f for f in self.fallback if f not in FALLBACKS]
        if unknown:
            raise ValueError(f"liquidation.fallback: unknown {unknown}, choose from {list(FALLBACKS)}")
        if self.clearance not in CLEARANCES:
            raise ValueError(f"liquidation.clearance must be one of {CLEARANCES}, got {self.clearance!r}")
        if self.clearance == "binance" and not self.full:
            raise ValueError("liquidation.clearance 'binance' needs full liquidation (see LiquidationRules)")
        if not 0 < self.step_cap <= 1:
            raise ValueError(f"liquidation.step_cap must be in (0, 1], got {self.step_cap}")
        if self.rounds < 1:
            raise ValueError(f"liquidation.rounds must be >= 1, got {self.rounds}")
        if not self.auto_convert_debt >= 0:
            raise ValueError(f"liquidation.auto_convert_debt must be >= 0, got {self.auto_convert_debt}")

    @property
    def sizing(self) -> Sizing:
        return Sizing(self.full, self.buffer, self.penalty, self.fund_fee)


@dataclass(slots=True)
class LiquidationRow:
    """One liquidation fill, transfer or deficit payment (a row of the ``liquidations`` table).

    Sizes are base units, prices USD; ``side`` is the side of the closing trade for the
    liquidated account; ``fund_delta`` is the insurance fund's USD balance change from
    this row. Deficit rows (kind ``deficit``, no instrument, size 0) record who paid a
    flat account's negative equity: ``covered`` USD by ``counterparty``, of which
    ``socialized`` was charged to that trader's positions.
    """

    row_id: int
    step: int
    round: int
    account: int
    instrument: int | None
    side: int
    qty: float
    price: float
    mark_price: float
    bankruptcy_price: float
    kind: str
    fund_delta: float
    counterparty: int | None
    cascade_id: int
    trigger: int | None
    covered: float = 0.0
    socialized: float = 0.0


@dataclass
class _StepState:
    """Bookkeeping that lives for one step."""

    step: int
    round: int = 0
    start_lots: dict[tuple[int, int], int] = field(default_factory=dict)
    closed_lots: dict[tuple[int, int], int] = field(default_factory=dict)
    stuck: dict[int, str] = field(default_factory=dict)
    system_stuck: dict[int, str] = field(default_factory=dict)


class LiquidationEngine:
    """Liquidates under-margined accounts of one exchange through its books.

    Args:
        exchange: The venue.
        rules: The research switches.
        index: The venue's index, moved by each liquidation's fills (None: the index
            does not feel the venue, as in unit tests of the engine alone).
        unwinder: Told of every position a system account takes over
            (`sim.unwind.TakeoverUnwinder`; None: they keep them).
    """

    def __init__(self, exchange: Exchange, rules: LiquidationRules, index: VenueIndex | None = None, unwinder=None):
        self.exchange = exchange
        self.rules = rules
        self.index = index
        self.unwinder = unwinder
        self.rows: list[LiquidationRow] = []
        #: (step, account, reason) for accounts left liquidatable at the end of a step.
        self.unresolved: list[tuple[int, int, str]] = []
        #: account -> reason, of the accounts left unresolved at the end of the last step.
        self.open_unresolved: dict[int, str] = {}
        self.system = SystemAccounts(exchange)
        #: ADL's scores of opposite positions, kept between ADLs (`sim.adl_ranking`).
        self.ranking = AdlRanking(exchange)
        #: ((account, its `Exchange.state_of`), its one-row Health) of the last account asked.
        self._health_of: tuple[tuple, Health] | None = None
        is_trader = np.arange(exchange.ledger.n_accounts) >= N_SYSTEM
        self.attribution = CascadeAttribution(exchange, is_trader)
        #: Which accounts are liquidatable, between full passes (`sim.health_watch`).
        self.watch = LiquidatableWatch(exchange, is_trader)
        #: (holder, instrument, lots, row id) taken over in the liquidation being closed.
        self._takeovers: list[tuple[int, int, int, int]] = []

    # ------------------------------------------------------------------ step
    def run_step(self, step: int) -> list[LiquidationRow]:
        """Run the liquidation rounds of one step; return the rows it added.

        First, and after every round that did something, a system account whose equity
        is below zero is relieved down the chain (`_relieve_system_accounts`). Accounts
        still liquidatable afterwards are recorded in `unresolved` with the reason
        (``step_cap``, ``book_exhausted``: the chain left part of a position with the
        trader, ``bad_debt``: a deficit nobody could pay, ``rounds_exhausted``, or
        ``system_deficit``: a system account below zero with nothing below it in the
        chain), once per episode: when the account is first left so, and again only if
        the reason changes.
        """
        first_row = len(self.rows)
        state = _StepState(step)
        self._relieve_system_accounts(state)
        self._auto_convert(state)
        flags = self.watch.liquidatable()
        self.attribution.through_impact(flags, self.index, lambda row: self.rows[row].cascade_id)
        accounts = self._scan(flags)
        while accounts:
            acted = [self._liquidate_account(a, state) for a in accounts]
            state.round += 1
            if not any(acted):
                break
            self._relieve_system_accounts(state)
            accounts = self._scan(self.watch.liquidatable())
            if state.round == self.rules.rounds:
                break
        left = {a: state.stuck.get(a, "rounds_exhausted") for a in accounts if self.attribution.liquidatable[a]}
        self._report_unresolved(step, {**state.system_stuck, **left})
        return self.rows[first_row:]

    def _report_unresolved(self, step: int, reasons: dict[int, str]) -> None:
        """Record the accounts left unresolved (account -> reason) that were not, or were
        for another reason, at the end of the previous step."""
        for account, reason in reasons.items():
            if self.open_unresolved.get(account) != reason:
                self.unresolved.append((step, account, reason))
        self.open_unresolved = reasons

    def _scan(self, flags: np.ndarray) -> list[int]:
        """The (A,) ``flags`` liquidatable accounts, worst margin ratio first (ties: lower id)."""
        self.attribution.scan(flags)
        accounts = np.flatnonzero(flags)
        if accounts.size == 0:
            return []
        ex = self.exchange
        ratio = ex.health_at(ex.marks, ex.asset_prices, accounts).margin_ratio
        order = np.lexsort((accounts, -ratio))
        return [int(a) for a in accounts[order]]

    # ---------------------------------------------------------- system accounts
    def _relieve_system_accounts(self, state: _StepState) -> None:
        """A system account whose equity at the marks is below zero is margined like a
        trader: the steps below it in the waterfall (`sim.waterfall.steps_below`) take
        its inventory over at its bankruptcy price (the backstop as far as its capital
        covers, then ADL), which hands them the loss beyond its equity; what is still
        below zero is paid as a deficit (the backstop's free equity, then socialized).
        A system account left below zero is recorded as ``system_deficit``."""
        ex = self.exchange
        held, balances = ex.ledger.positions[HOLDERS, :], ex.ledger.balances[HOLDERS, USD]
        if not held.any() and balances.min() >= 0:
            return  # nothing held and no debt: their equity is their balance
        for holder in HOLDERS:
            if self.system.equity(holder) >= -DEFICIT_TOLERANCE:
                continue
            below = steps_below(holder, self.rules.fallback)
            inventory_steps = tuple(step for step in below if step in INVENTORY_STEPS)
            episode = self._system_episode(holder)
            maint = self._health(holder).risk.maint[0]
            for m in (int(i) for i in np.argsort(-maint, kind="stable")):
                held = int(ex.ledger.positions[holder, m])
                if held and inventory_steps:
                    first_row = len(self.rows)
                    self._down_the_chain(holder, m, 1 if held > 0 else -1, abs(held), inventory_steps, state, episode)
                    if len(self.rows) > first_row:
                        self._after_rows(m, 0.0, episode)
            self._settle_deficit(holder, state, episode, below)
            if self.system.equity(holder) < -DEFICIT_TOLERANCE:
                state.system_stuck[holder] = "system_deficit"

    def _system_episode(self, holder: int) -> Episode:
        """The cascade a system account's relief belongs to: that of the oldest takeover
        it still holds, whose loss it is passing on (a new one if it holds none)."""
        if self.unwinder is not None:
            for m in range(len(self.exchange.instruments)):
                source = self.unwinder.oldest_source(holder, m)
                if source is not None:
                    return Episode(self.rows[source].cascade_id, source)
        return self.attribution.episode(holder)

    # --------------------------------------------------------------- account
    def _liquidate_account(self, account: int, state: _StepState) -> bool:
        """Cancel, re-check and close positions; True if anything was closed or paid.

        An account the chain could not resolve (``book_exhausted`` or ``bad_debt``, this
        step or at the end of the last) is first tested with `_waiting_for`: while nothing
        it depends on has changed it costs that test, not a liquidation attempt."""
        ex = self.exchange
        if (state.stuck.get(account) or self.open_unresolved.get(account)) in WAITING:
            waiting = self._waiting_for(account)
            if waiting is not None:
                state.stuck[account] = waiting
                return False
        ex.cancel_all(account)
        if not self._health(account).account_liquidatable[0]:
            return False
        episode = self.attribution.episode(account)
        acted = self._convert_collateral(account, state, episode)
        health = self._health(account)
        flagged = health.liquidatable[0]
        for m in (int(i) for i in np.argsort(-health.risk.maint[0], kind="stable")):
            # cross: any position may be closed; isolated: only the liquidatable ones
            if ex.ledger.positions[account, m] == 0 or (ex.ledger.isolated[account] and not flagged[m]):
                continue
            size = liquidation_size(self._health(account), 0, m, self.rules.sizing, ex.rules.tiers)
            if size == 0:
                if ex.ledger.isolated[account]:
                    continue
                break
            held = abs(int(ex.ledger.positions[account, m]))
            lots = self._allowed(account, m, min(held, ex.instruments[m].lots_up(size)), state)
            if lots > 0:
                acted |= self._close(account, m, lots, state, episode)
        if ex.ledger.positions[account].any():
            return acted
        return self._settle_deficit(account, state, episode, self.rules.fallback) or acted

    def _waiting_for(self, account: int) -> str | None:
        """Why a liquidation attempt on ``account`` would do nothing now, or None if it
        could act: it has open orders, or collateral to convert into a USD debt; flat, a
        system account in the chain can pay part of its deficit (else ``bad_debt``);
        else, for a position it must act on, the book takes a lot within what the fund
        can pay (`_affordable`) or a chain step can take one (`sim.waterfall.can_take`;
        else ``book_exhausted``). Changes nothing."""
        ex = self.exchange
        ledger = ex.ledger
        chain = self.rules.fallback
        if "socialize" in chain or ledger.open_bids[account].any() or ledger.open_asks[account].any():
            return None
        if ledger.balances[account, USD] < 0 and (ledger.balances[account, 1:] > 0).any():
            return None
        health = self._health(account)
        if not ledger.positions[account].any():
            payers = any(self.system.payable(h) > 0 for h in HOLDERS if HOLDER_STEPS[h] in chain)
            return None if payers or -health.equity[0] <= DEFICIT_TOLERANCE else "bad_debt"
        bankrupt = bankruptcy_prices(health)[0]
        for m in (int(i) for i in np.flatnonzero(health.liquidatable[0])):
            sign = 1 if ledger.positions[account, m] > 0 else -1
            if self._affordable(m, Side(-sign), 1, float(bankrupt[m]))[0]:
                return None
            close = self._close_at_bankruptcy(account, m, sign, None, None)
            if any(can_take(close, step) for step in chain):
                return None
        return "book_exhausted"

    def _auto_convert(self, state: _StepState) -> None:
        """Trader accounts whose USD debt exceeds ``rules.auto_convert_debt`` and that hold
        other collateral convert it (`_convert_collateral`), liquidatable or not, as
        Binance's multi-assets mode auto-exchanges a negative balance beyond its
        threshold. Each conversion starts an episode of its own (a forced sale)."""
        ledger = self.exchange.ledger
        if math.isinf(self.rules.auto_convert_debt) or len(ledger.assets) == 1:
            return
        over = (ledger.balances[:, USD] < -self.rules.auto_convert_debt) & (ledger.balances[:, 1:] > 0).any(axis=1)
        for account in np.flatnonzero(over[N_SYSTEM:]) + N_SYSTEM:
            self._convert_collateral(int(account), state, self.attribution.episode(int(account)))

    def _convert_collateral(self, account: int, state: _StepState, episode: Episode) -> bool:
        """Repay a USD debt by selling the account's other collateral to the outside world
        at the index less its haircut (the haircut goes to the insurance fund), asset by
        asset in config order; True if anything was sold. Its weighted equity is unchanged;
        the debt and its maintenance margin shrink."""
        ex = self.exchange
        ledger = ex.ledger
        debt = -float(ledger.balances[account, USD])
        acted = False
        for asset in range(1, len(ledger.assets)):
            held = float(ledger.balances[account, asset])
            if debt <= 0 or held <= 0:
                continue
            price, weight = float(ex.asset_prices[asset]), float(ex.rules.weights[asset])
            units = min(held, debt / (price * weight))
            debt -= ledger.convert(account, asset, units, price, 1.0 - weight, INSURANCE_FUND)
            self._record(
                state,
                episode,
                account=account,
                instrument=int(ex.asset_instrument[asset]),
                side=-1,
                qty=units,
                price=price * weight,
                bankruptcy_price=math.nan,
                kind="conversion",
                fund_delta=units * price * (1.0 - weight),
                counterparty=GENESIS,
            )
            acted = True
        return acted

    def _allowed(self, account: int, m: int, lots: int, state: _StepState) -> int:
        """``lots`` cut to what the per-step cap still allows for position m."""
        key = (account, m)
        start = state.start_lots.setdefault(key, abs(int(self.exchange.ledger.positions[account, m])))
        allowed = math.ceil(self.rules.step_cap * start - 1e-9) - state.closed_lots.get(key, 0)
        if allowed < lots:
            state.stuck[account] = "step_cap"
        return max(0, min(lots, allowed))

    # ------------------------------------------------------------- execution
    def _close(self, account: int, m: int, lots: int, state: _StepState, episode: Episode) -> bool:
        """Close ``lots`` of position m through the book, the rest of the position (within
        the step cap) down the fallback chain; True if anything was closed."""
        ex = self.exchange
        sign = 1 if ex.ledger.positions[account, m] > 0 else -1
        first_row = len(self.rows)
        filled, flow = self._sell_into_book(account, m, lots, state, episode)
        state.closed_lots[(account, m)] = state.closed_lots.get((account, m), 0) + filled
        rest = 0 if filled == lots else self._allowed(account, m, abs(int(ex.ledger.positions[account, m])), state)
        if rest:
            left = self._down_the_chain(account, m, sign, rest, self.rules.fallback, state, episode)
            if left:
                state.stuck[account] = "book_exhausted"
            state.closed_lots[(account, m)] += rest - left
        if len(self.rows) == first_row:
            return False
        self._after_rows(m, flow, episode)
        return True

    def _down_the_chain(
        self, account: int, m: int, sign: int, lots: int, steps: tuple[str, ...], state: _StepState, episode: Episode
    ) -> int:
        """Pass ``lots`` of ``account`` 's side-``sign`` position in m down ``steps`` at its
        bankruptcy price now (after any book fills), on the tick grid in its favour;
        return the lots no step took."""
        close = self._close_at_bankruptcy(account, m, sign, state, episode)
        for name in steps:
            if not lots:
                break
            lots = FALLBACKS[name](close, lots)
        return lots

    def _close_at_bankruptcy(
        self, account: int, m: int, sign: int, state: _StepState | None, episode: Episode | None
    ) -> Close:
        """The `Close` of ``account`` 's side-``sign`` position in m at its bankruptcy
        price now, on the tick grid in its favour (``state`` None: a probe that may not
        transfer)."""
        ex = self.exchange
        inst = ex.instruments[m]
        bankrupt = float(bankruptcy_prices(self._health(account))[0, m])
        price = inst.price(max(1, inst.ticks_toward(bankrupt, -sign)))
        transfer = partial(self._transfer, account, m, sign, bankrupt, state, episode)
        return Close(ex, account, m, sign, price, transfer, self.system, self.ranking)

    def _after_rows(self, m: int, flow: float, episode: Episode) -> None:
        """After a liquidation's rows: its book flow (USD, buys > 0) moves the index, the
        system accounts start selling what they took over, the marks follow, and the
        accounts it pushed under are linked to it."""
        if self.index is not None and flow:
            self.index.propagator.add_volume(m, abs(flow))
            self.index.trade({m: flow}, self.rows[-1].row_id, kind="liquidation")
        for takeover in self._takeovers:  # its first slice sells at the index the fills moved
            self.unwinder.take_over(*takeover)
        self._takeovers.clear()
        self.exchange.update_marks()
        self.attribution.after_liquidation(self.rows[-1].row_id, episode, self.watch.liquidatable())

    def _sell_into_book(
        self, account: int, m: int, lots: int, state: _StepState, episode: Episode
    ) -> tuple[int, float]:
        """The IOC order and the clearance of its fills: ``(lots filled, USD flow)``."""
        ex = self.exchange
        inst = ex.instruments[m]
        sign = 1 if ex.ledger.positions[account, m] > 0 else -1
        close_side = Side(-sign)
        mark = float(ex.marks[m])
        bankrupt = float(bankruptcy_prices(self._health(account))[0, m])
        take, limit = self._affordable(m, close_side, lots, bankrupt)
        if not take:
            return 0, 0.0
        kind = "full" if self.rules.full else "partial"
        result = ex.submit(account, m, close_side, inst.qty(take), inst.price(limit), OrderType.IOC, liquidation=True)
        filled, flow = 0, 0.0
        for fill in result.fills:
            size, price = inst.qty(fill.qty), inst.price(fill.price)
            fund = self._clear(account, m, sign * size * (price - bankrupt), size * mark)
            self._record(
                state,
                episode,
                account=account,
                instrument=m,
                side=int(close_side),
                qty=size,
                price=price,
                bankruptcy_price=bankrupt,
                kind=kind,
                fund_delta=fund,
                counterparty=fill.maker_account,
            )
            filled += fill.qty
            flow += close_side * size * price
        return filled, flow

    def _fund_budget(self) -> float:
        """USD the insurance fund can pay now: its balance, as far as its equity allows."""
        balance = float(self.exchange.ledger.balances[INSURANCE_FUND, USD])
        return max(0.0, min(balance, self.system.equity(INSURANCE_FUND)))

    def _affordable(self, m: int, close_side: Side, lots: int, bankrupt: float) -> tuple[int, int | None]:
        """``(lots, limit_ticks)`` the book can take without the fund going negative.

        Walks the opposite side best first: levels at or better than ``P_bk`` are free;
        worse ones cost the fund ``|p - P_bk|`` per unit, taken while the fund can pay.
        """
        ex = self.exchange
        inst = ex.instruments[m]
        budget = None
        taken, limit = 0, None
        for ticks, level_lots in ex.books[m].levels(close_side.opposite):
            want = min(lots - taken, level_lots)
            shortfall = close_side * (inst.price(ticks) - bankrupt)  # > 0: worse than P_bk for the trader
            if shortfall > 0:
                budget = self._fund_budget() if budget is None else budget
                per_lot = shortfall * inst.lot_size
                want = min(want, math.floor(budget / per_lot * (1 + _BUDGET_SLACK)))
                budget -= want * per_lot
            if want <= 0:
                break
            taken += want
            limit = ticks
            if taken >= lots or want < level_lots:
                break
        return taken, limit

    def _clear(self, account: int, m: int, delta: float, mark_notional: float) -> float:
        """The insurance fund's USD from one fill (module docstring: clearance)."""
        if delta >= 0:
            amount = delta if self.rules.clearance == "binance" else min(self.rules.fund_fee * mark_notional, delta)
        else:
            amount = -min(-delta, self._fund_budget())
        self.exchange.ledger.pay(account, m, INSURANCE_FUND, amount)
        return amount

    def _transfer(
        self,
        account: int,
        m: int,
        sign: int,
        bankrupt: float,
        state: _StepState,
        episode: Episode,
        counterparty: int,
        lots: int,
        price: float,
        kind: str,
    ) -> None:
        """A waterfall step's transfer (`sim.waterfall.Transfer`): ``lots`` of the
        side-``sign`` position move to ``counterparty`` at ``price``, and are recorded."""
        ex = self.exchange
        ex.ledger.trade_between(account, counterparty, m, -sign * lots, price, float(ex.cum_funding[m]))
        qty = ex.instruments[m].qty(lots)
        self._record(
            state,
            episode,
            account=account,
            instrument=m,
            side=-sign,
            qty=qty,
            price=price,
            bankruptcy_price=bankrupt,
            kind=kind,
            fund_delta=0.0,
            counterparty=counterparty,
        )
        if self.unwinder is not None and account in HOLDERS:
            self.unwinder.hand_on(account, m, lots)
        if self.unwinder is not None and counterparty in HOLDERS:
            self._takeovers.append((counterparty, m, sign * lots, self.rows[-1].row_id))

    def _settle_deficit(self, account: int, state: _StepState, episode: Episode, chain: tuple[str, ...]) -> bool:
        """``account`` 's negative equity goes down ``chain``; True if anyone paid."""
        ex = self.exchange
        deficit = -float(self._health(account).equity[0])
        if deficit <= DEFICIT_TOLERANCE:
            return False
        shares = settle_deficit(ex, self.system, account, deficit, chain)
        for share in shares:
            fund = share.amount if share.payer == INSURANCE_FUND else 0.0
            social = share.amount if share.socialized else 0.0
            self._record(
                state,
                episode,
                account=account,
                instrument=None,
                side=0,
                qty=0.0,
                price=0.0,
                bankruptcy_price=math.nan,
                kind="deficit",
                fund_delta=-fund,
                counterparty=share.payer,
                covered=share.amount,
                socialized=social,
            )
        if sum(share.amount for share in shares) < deficit - 1e-9:
            state.stuck[account] = "bad_debt"
        return bool(shares)

    # ----------------------------------------------------------------- state
    def _health(self, account: int) -> Health:
        """``account`` 's one-row margin state, reused while its ledger row and the
        prices stay as they were (`sim.exchange.Exchange.state_of`)."""
        state = (account, self.exchange.state_of(account))
        if self._health_of is None or self._health_of[0] != state:
            self._health_of = (state, self.exchange.account_health(account))
        return self._health_of[1]

    # ---------------------------------------------------------------- records
    def _record(self, state: _StepState, episode: Episode, **columns) -> None:
        """Append a row: ``columns`` are the `LiquidationRow` fields that describe the
        trade (account, instrument, side, qty, price, bankruptcy_price, kind, fund_delta,
        counterparty, covered, socialized); the step, round, mark and cascade are filled in."""
        m = columns["instrument"]
        self.rows.append(
            LiquidationRow(
                row_id=len(self.rows),
                step=state.step,
                round=state.round,
                mark_price=math.nan if m is None else float(self.exchange.marks[m]),
                cascade_id=episode.cascade_id,
                trigger=episode.trigger,
                **columns,
            )
        )

"""The liquidation engine (MARGIN-SPEC sections 4–5): detection, sizing, execution through
the order book, insurance fund, fallbacks (backstop, ADL, socialized loss), and cascade
attribution.

Each step, after prices moved and traders acted, `LiquidationEngine.run_step` runs up
to ``rounds`` rounds. A round scans every account at once (vectorized), then takes the
liquidatable ones worst margin ratio first (ties: lower account id). For each it
cancels the account's open orders, re-checks, and closes positions largest maintenance
margin first:

- Size: partial (default) closes ``min(|q|, roundup_lot(S / (M (mmr + beta - lambda - phi))))``
  with shortfall ``S = sum MM + beta sum N - E`` and stops once ``E >= sum MM + beta sum N``;
  full closes everything. The per-step cap limits what one position may lose in one step
  to ``ceil(step_cap * |q at its first liquidation this step|)`` lots.
- Execution: an IOC order *into the book*, no taker fee. Its limit is the bankruptcy
  price ``P_bk`` (cross: dYdX allocation by MM share), except that fills worse than
  ``P_bk`` are allowed for as long as the insurance fund can pay their shortfall, so
  the fund never goes negative (MARGIN-SPEC E3).
- Fund: a fill at price p with ``delta = s * qty * (p - P_bk) >= 0`` pays the fund
  ``min(phi * qty * M, delta)``; with ``delta < 0`` the fund pays ``-delta``.
- Fallback for what the book did not absorb, in the configured order: ``backstop`` (the
  backstop vault takes the rest at ``P_bk``), ``adl`` (opposite positions ranked by the
  BitMEX score close against it at ``P_bk``, no fee), ``socialize`` (the backstop takes
  the rest at the mark; a flat account's negative equity is paid by the fund as far as
  it can and the remainder charged to all open positions of the instrument pro rata to
  size), ``none`` (the rest stays; the account stays liquidatable and says why).

Cascade attribution. The engine keeps every account's liquidatable flag as of the last
health check. Checks happen at every scan and right after every liquidation (its fills,
its fallback transfers, and the mark update that follows). Account j's ``trigger`` is
liquidation L (the id of L's last record row) if j was not liquidatable in the check
right before L and is in the check right after it: L's price impact, or the position
it pushed onto j, put j under. j's records then carry L's ``cascade_id``. An account
that becomes liquidatable any other way (index moves, its own trading) starts a new
cascade with no trigger. A trigger or episode ends when a scan finds the account
healthy again; its later liquidations start afresh.

Forced selling also moves the *index* (`sim.impact`): each liquidation's book fills are
a flow term of the propagator, added right after them, so the index and the marks move
before the next health check, and the backstop's selling of a takeover (a first slice
right after those fills, then every step) is a term tagged with the takeover's row.
Because the index is a sum of known terms, the index without given liquidations is
exact for their terms (at the realised liquidity and book). At each step's first scan, an account that is
liquidatable and was not at the end of the previous step is checked at the prices without
the impact of *all* liquidations still decaying in the index: if it would be healthy
there, liquidations pushed it under, and its trigger is the one whose impact cost it
most (position times the price move that liquidation's terms still cause; row id of the
liquidation's last row, or of the takeover row for the backstop's selling). Otherwise
(the exogenous path, ordinary trading, its own orders) it starts a new cascade. The
within-step rule above covers what happens inside a step, through impact and book alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim.exchange import Exchange
from sim.impact import VenueIndex
from sim.ledger import BACKSTOP, INSURANCE_FUND, N_SYSTEM, USD
from sim.margin import Health, adl_scores, partial_liquidation_size
from sim.types import OrderType, Side

FALLBACKS = ("backstop", "adl", "socialize", "none")
#: Relative slack when comparing the fund budget with level costs.
_BUDGET_SLACK = 1e-9


@dataclass(frozen=True)
class LiquidationRules:
    """Research switches of the liquidation engine (see the module docstring).

    Attributes:
        full: Close whole positions instead of partial sizing.
        buffer: beta, fraction of notional an account must clear above MM to leave.
        penalty: lambda, the liquidation penalty assumed by the sizing formula.
        fund_fee: phi, the insurance fund's fee as a fraction of mark notional.
        step_cap: Fraction of a position that may be closed in one step (1 = no cap).
        rounds: Scan-and-liquidate rounds per step.
        fallback: Chain applied to what the book cannot absorb.
    """

    full: bool = False
    buffer: float = 0.005
    penalty: float = 0.0025
    fund_fee: float = 0.001
    step_cap: float = 1.0
    rounds: int = 5
    fallback: tuple[str, ...] = ("adl",)

    def __post_init__(self) -> None:
        unknown = [f for f in self.fallback if f not in FALLBACKS]
        if unknown:
            raise ValueError(f"liquidation.fallback: unknown {unknown}, choose from {list(FALLBACKS)}")
        if not 0 < self.step_cap <= 1:
            raise ValueError(f"liquidation.step_cap must be in (0, 1], got {self.step_cap}")
        if self.rounds < 1:
            raise ValueError(f"liquidation.rounds must be >= 1, got {self.rounds}")


@dataclass(slots=True)
class LiquidationRow:
    """One liquidation fill or transfer (a row of the run's ``liquidations`` table).

    Sizes are base units, prices USD; ``side`` is the side of the closing trade for the
    liquidated account; ``fund_delta`` is the insurance fund's change from this row.
    """

    row_id: int
    step: int
    round: int
    account: int
    instrument: int
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


@dataclass(slots=True, frozen=True)
class _Target:
    """The numbers a position's liquidation is sized against (USD).

    ``equity``, ``maint`` and ``notional`` are the account's (cross) or the position's
    (isolated); ``position_notional`` is the position's own.
    """

    equity: float
    maint: float
    notional: float
    position_notional: float
    bankruptcy_price: float


@dataclass(slots=True)
class _Episode:
    """An account's current stretch of being liquidatable."""

    cascade_id: int
    trigger: int | None


@dataclass
class _StepState:
    """Bookkeeping that lives for one step."""

    step: int
    round: int = 0
    start_lots: dict[tuple[int, int], int] = field(default_factory=dict)
    closed_lots: dict[tuple[int, int], int] = field(default_factory=dict)
    stuck: dict[int, str] = field(default_factory=dict)


class LiquidationEngine:
    """Liquidates under-margined accounts of one exchange through its books.

    Args:
        exchange: The venue.
        rules: The research switches.
        index: The venue's index, moved by each liquidation's fills (None: the index
            does not feel the venue, as in unit tests of the engine alone).
        unwinder: Told of every position the backstop takes over (None: it keeps them).
    """

    def __init__(self, exchange: Exchange, rules: LiquidationRules, index: VenueIndex | None = None, unwinder=None):
        self.exchange = exchange
        self.rules = rules
        self.index = index
        self.unwinder = unwinder
        self.rows: list[LiquidationRow] = []
        #: (step, account, reason) for accounts left liquidatable at the end of a step.
        self.unresolved: list[tuple[int, int, str]] = []
        n = exchange.ledger.n_accounts
        self._liquidatable = np.zeros(n, dtype=bool)
        self._is_trader = np.arange(n) >= N_SYSTEM
        self._triggers: dict[int, _Episode] = {}
        self._episodes: dict[int, _Episode] = {}
        self._next_cascade = 0
        #: (instrument, lots, row id) the backstop took in the liquidation being closed.
        self._takeovers: list[tuple[int, int, int]] = []

    # ------------------------------------------------------------------ step
    def run_step(self, step: int) -> list[LiquidationRow]:
        """Run the liquidation rounds of one step; return the rows it added.

        Args:
            step: The step number (recorded in the rows).

        Accounts still liquidatable afterwards are listed in `unresolved` with the
        reason: ``step_cap``, ``book_exhausted`` (fallback ``none``) or
        ``rounds_exhausted``.
        """
        first_row = len(self.rows)
        state = _StepState(step)
        health = self.exchange.health()
        self._attribute_impact(health)
        accounts = self._scan(health)
        while accounts:
            acted = [self._liquidate_account(a, state) for a in accounts]
            state.round += 1
            if not any(acted):
                break
            accounts = self._scan(self.exchange.health())
            if state.round == self.rules.rounds:
                break
        for account in accounts:
            if self._liquidatable[account]:
                self.unresolved.append((step, account, state.stuck.get(account, "rounds_exhausted")))
        return self.rows[first_row:]

    def _attribute_impact(self, health: Health) -> None:
        """Link accounts that liquidations' index impact pushed under since the last
        check to the liquidation whose impact cost them most (module docstring)."""
        if self.index is None:
            return
        fresh = np.flatnonzero(health.account_liquidatable & self._is_trader & ~self._liquidatable)
        fresh = np.array([j for j in fresh if j not in self._episodes and j not in self._triggers], dtype=np.int64)
        if fresh.size == 0:
            return
        sources, impact = self.index.propagator.by_source()  # (K,), (K, I) log impact
        if sources.size == 0:
            return
        ex = self.exchange
        index = self.index.without_sources(impact)
        without = ex.health_at(ex.marks_at(index), ex.asset_prices_at(index), fresh)
        caused = fresh[~without.account_liquidatable]
        if caused.size == 0:
            return
        held = ex.ledger.positions[caused] * ex.ledger.lot_sizes  # (J, I) base units
        moved = ex.index * (1.0 - np.exp(-impact))  # (K, I) USD each source moved the index by
        cost = -(held @ moved.T)  # (J, K) USD: > 0 where that source's move lost j money
        for i, k in enumerate(np.argmax(cost, axis=1)):
            if cost[i, k] > 0:
                j = caused[i]
                row = self.rows[int(sources[k])]
                self._triggers[int(j)] = _Episode(row.cascade_id, row.row_id)

    def _scan_flags(self, health: Health) -> np.ndarray:
        """(A,) liquidatable trader accounts; ends the episodes of healthy ones."""
        flags = health.account_liquidatable & self._is_trader
        self._liquidatable = flags
        for book in (self._triggers, self._episodes):
            for account in [a for a in book if not flags[a]]:
                del book[account]
        return flags

    def _scan(self, health: Health) -> list[int]:
        """Liquidatable accounts, worst margin ratio first (ties: lower id)."""
        accounts = np.flatnonzero(self._scan_flags(health))
        if accounts.size == 0:
            return []
        order = np.lexsort((accounts, -health.margin_ratio[accounts]))
        return [int(a) for a in accounts[order]]

    # --------------------------------------------------------------- account
    def _liquidate_account(self, account: int, state: _StepState) -> bool:
        """Cancel, re-check and close positions; True if anything was closed."""
        ex = self.exchange
        ex.cancel_all(account)
        health = ex.account_health(account)
        flagged = health.liquidatable[0]
        if not flagged.any():
            return False
        episode = self._episode(account)
        order = np.argsort(-health.risk.maint[0], kind="stable")
        acted = False
        for m in (int(i) for i in order):
            # cross: any position may be closed; isolated: only the liquidatable ones
            if ex.ledger.positions[account, m] == 0 or (ex.ledger.isolated and not flagged[m]):
                continue
            target = self._target(account, ex.account_health(account), m)
            if target is None:
                if ex.ledger.isolated:
                    continue
                break
            lots = self._size(account, m, target, state)
            if lots > 0:
                acted |= self._close(account, m, lots, target.bankruptcy_price, state, episode)
        return acted

    def _episode(self, account: int) -> _Episode:
        episode = self._episodes.get(account)
        if episode is None:
            episode = self._triggers.pop(account, None)
            if episode is None:
                episode = _Episode(self._next_cascade, None)
                self._next_cascade += 1
            self._episodes[account] = episode
        return episode

    def _target(self, account: int, health: Health, m: int) -> _Target | None:
        """What closing position m works against, or None when it needs no action.

        Cross: the account's equity against all its requirements; the position bears
        equity in proportion to its MM (dYdX allocation). Isolated: the position's own
        margin plus PnL against its own requirement. Partial mode acts while
        ``E < MM + beta N``, full mode while ``E < MM``.
        """
        ex, rules = self.exchange, self.rules
        risk = health.risk
        if ex.ledger.isolated:
            equity = float(ex.ledger.isolated_margin[account, m] + risk.unrealized[0, m])
            maint, notional, share = float(risk.maint[0, m]), float(risk.notional[0, m]), 1.0
        else:
            equity, maint = float(health.equity[0]), float(health.maint[0])
            notional = float(risk.notional[0].sum())
            share = float(risk.maint[0, m]) / maint if maint > 0 else 1.0
        threshold = maint if rules.full else maint + rules.buffer * notional
        if maint <= 0 or equity >= threshold:
            return None
        lots = int(ex.ledger.positions[account, m])
        size = abs(ex.instruments[m].qty(lots))
        bankrupt = float(ex.marks[m]) - math.copysign(1.0, lots) * equity * share / size
        return _Target(equity, maint, notional, float(risk.notional[0, m]), bankrupt)

    def _size(self, account: int, m: int, target: _Target, state: _StepState) -> int:
        """Lots to close now: full or partial sizing, then the per-step cap."""
        ex, rules = self.exchange, self.rules
        inst = ex.instruments[m]
        held = abs(int(ex.ledger.positions[account, m]))
        if rules.full:
            lots = held
        else:
            shortfall = target.maint + rules.buffer * target.notional - target.equity
            rate = inst.tiers.mmr[inst.tiers.tier_of(target.position_notional)]
            size = partial_liquidation_size(
                shortfall, float(ex.marks[m]), rate, rules.buffer, rules.penalty, rules.fund_fee
            )
            lots = min(held, inst.lots_up(size))
        key = (account, m)
        start = state.start_lots.setdefault(key, held)
        allowed = math.ceil(rules.step_cap * start - 1e-9) - state.closed_lots.get(key, 0)
        if allowed < lots:
            state.stuck[account] = "step_cap"
        return max(0, min(lots, allowed))

    # ------------------------------------------------------------- execution
    def _close(self, account: int, m: int, lots: int, bankrupt: float, state: _StepState, episode: _Episode) -> bool:
        """Close ``lots`` of position m through the book, then the fallback chain."""
        ex = self.exchange
        inst = ex.instruments[m]
        held = int(ex.ledger.positions[account, m])
        sign = 1 if held > 0 else -1
        close_side = Side(-sign)
        mark = float(ex.marks[m])
        first_row = len(self.rows)
        kind = "full" if self.rules.full else "partial"
        take, limit = self._affordable(m, close_side, lots, bankrupt)
        filled = 0
        flow = 0.0  # USD, signed as the liquidation's trades
        if take:
            result = ex.submit(
                account, m, close_side, inst.qty(take), inst.price(limit), OrderType.IOC, liquidation=True
            )
            for fill in result.fills:
                size, price = inst.qty(fill.qty), inst.price(fill.price)
                fund = self._settle_fund(account, m, sign * size * (price - bankrupt), size * mark)
                self._record(
                    state, account, m, close_side, size, price, mark, bankrupt, kind, fund, fill.maker_account, episode
                )
                filled += fill.qty
                flow += close_side * size * price
        remaining = lots - filled
        for method in self.rules.fallback:
            if not remaining:
                break
            remaining = getattr(self, f"_{method}")(account, m, remaining, bankrupt, state, episode)
        if remaining:
            state.stuck[account] = "book_exhausted"
        closed = lots - remaining
        state.closed_lots[(account, m)] = state.closed_lots.get((account, m), 0) + closed
        if len(self.rows) > first_row:
            if self.index is not None and flow:
                self.index.propagator.add_volume(m, abs(flow))
                self.index.trade({m: flow}, self.rows[-1].row_id, kind="liquidation")
            for takeover in self._takeovers:  # its first slice sells at the index the fills moved
                self.unwinder.take_over(*takeover)
            self._takeovers.clear()
            ex.update_marks()
            self._attribute(self.rows[-1], episode)
        return closed > 0

    def _affordable(self, m: int, close_side: Side, lots: int, bankrupt: float) -> tuple[int, int | None]:
        """``(lots, limit_ticks)`` the book can take without the fund going negative.

        Walks the opposite side best first: levels at or better than ``P_bk`` are free;
        worse ones cost the fund ``|p - P_bk|`` per unit, taken while the fund can pay.
        """
        ex = self.exchange
        inst = ex.instruments[m]
        budget = float(ex.ledger.balances[INSURANCE_FUND, USD])
        taken, limit = 0, None
        for ticks, level_lots in ex.books[m].levels(close_side.opposite):
            want = min(lots - taken, level_lots)
            shortfall = close_side * (inst.price(ticks) - bankrupt)  # > 0: worse than P_bk for the trader
            if shortfall > 0:
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

    def _settle_fund(self, account: int, m: int, delta: float, mark_notional: float) -> float:
        """Insurance fund's share of one fill: its fee if ``delta >= 0``, else its payment."""
        ledger = self.exchange.ledger
        if delta >= 0:
            amount = min(self.rules.fund_fee * mark_notional, delta)
        else:
            amount = -min(-delta, float(ledger.balances[INSURANCE_FUND, USD]))
        ledger.credit_pocket(account, m, -amount)
        ledger.balances[INSURANCE_FUND, USD] += amount
        return amount

    def _transfer_position(self, account: int, other: int, m: int, lots: int, price: float) -> None:
        """Move ``lots`` (signed, as the liquidated account trades them) to ``other`` at ``price``."""
        self.exchange.ledger.trade_between(account, other, m, lots, price, float(self.exchange.cum_funding[m]))

    # -------------------------------------------------------------- fallbacks
    def _backstop(self, account: int, m: int, lots: int, bankrupt: float, state: _StepState, ep: _Episode) -> int:
        sign = 1 if self.exchange.ledger.positions[account, m] > 0 else -1
        self._transfer_position(account, BACKSTOP, m, -sign * lots, bankrupt)
        self._record_transfer(state, account, m, -sign, lots, bankrupt, bankrupt, "backstop", 0.0, BACKSTOP, ep)
        self._handed_to_backstop(m, sign * lots)
        return 0

    def _adl(self, account: int, m: int, lots: int, bankrupt: float, state: _StepState, ep: _Episode) -> int:
        """Close against opposite positions, highest BitMEX score first, at ``P_bk``."""
        ex = self.exchange
        positions = ex.ledger.positions[:, m]
        sign = 1 if positions[account] > 0 else -1
        candidates = np.flatnonzero((np.sign(positions) == -sign) & self._is_trader)
        candidates = candidates[candidates != account]
        if candidates.size == 0:
            return lots
        equity = ex.health_at(ex.marks, ex.asset_prices, candidates).equity
        inst, mark = ex.instruments[m], float(ex.marks[m])
        sizes = np.abs(positions[candidates]) * inst.lot_size
        scores = adl_scores(np.full(candidates.size, -sign), ex.ledger.entry[candidates, m], mark, sizes * mark, equity)
        for j in candidates[np.lexsort((candidates, -scores))]:
            take = min(lots, abs(int(positions[j])))
            self._transfer_position(account, int(j), m, -sign * take, bankrupt)
            self._record_transfer(state, account, m, -sign, take, bankrupt, bankrupt, "adl", 0.0, int(j), ep)
            lots -= take
            if not lots:
                break
        return lots

    def _socialize(self, account: int, m: int, lots: int, bankrupt: float, state: _StepState, ep: _Episode) -> int:
        """Backstop takes the rest at the mark; a flat account's bad debt is shared."""
        ex = self.exchange
        ledger = ex.ledger
        mark = float(ex.marks[m])
        sign = 1 if ledger.positions[account, m] > 0 else -1
        closes_all = lots == abs(int(ledger.positions[account, m]))
        loss = 0.0
        if ledger.isolated and closes_all:  # cover the position's deficit before its margin is released
            loss = max(
                0.0, -float(ledger.isolated_margin[account, m] + ex.account_health(account).risk.unrealized[0, m])
            )
        self._transfer_position(account, BACKSTOP, m, -sign * lots, mark)
        if not ledger.isolated and not ledger.positions[account].any():
            loss = max(0.0, -float(ex.account_health(account).equity[0]))
        fund = min(loss, float(ledger.balances[INSURANCE_FUND, USD]))
        ledger.balances[INSURANCE_FUND, USD] -= fund
        shared = loss - fund
        if shared > 0:
            holders = np.abs(ledger.positions[:, m]).astype(float)
            holders[account] = 0.0
            for j in np.flatnonzero(holders):
                ledger.credit_pocket(int(j), m, -shared * holders[j] / holders.sum())
        if loss:
            if ledger.isolated:
                ledger.balances[account, USD] += loss  # the margin was released into the balance
            else:
                ledger.credit_pocket(account, m, loss)
        self._record_transfer(state, account, m, -sign, lots, mark, bankrupt, "socialized", -fund, BACKSTOP, ep)
        self._handed_to_backstop(m, sign * lots)
        return 0

    def _handed_to_backstop(self, m: int, lots: int) -> None:
        """Note that the vault took ``lots`` (signed, its side) in the row just recorded;
        the unwinder hears of it once the liquidation's own fills have moved the index."""
        if self.unwinder is not None:
            self._takeovers.append((m, lots, self.rows[-1].row_id))

    def _none(self, account: int, m: int, lots: int, bankrupt: float, state: _StepState, ep: _Episode) -> int:
        return lots

    # ---------------------------------------------------------------- records
    def _record(
        self,
        state: _StepState,
        account: int,
        m: int,
        side: int,
        size: float,
        price: float,
        mark: float,
        bankrupt: float,
        kind: str,
        fund: float,
        counterparty: int | None,
        episode: _Episode,
    ) -> None:
        self.rows.append(
            LiquidationRow(
                len(self.rows),
                state.step,
                state.round,
                account,
                m,
                int(side),
                size,
                price,
                mark,
                bankrupt,
                kind,
                fund,
                counterparty,
                episode.cascade_id,
                episode.trigger,
            )
        )

    def _record_transfer(
        self,
        state: _StepState,
        account: int,
        m: int,
        side: int,
        lots: int,
        price: float,
        bankrupt: float,
        kind: str,
        fund: float,
        counterparty: int,
        episode: _Episode,
    ) -> None:
        size = self.exchange.instruments[m].qty(lots)
        self._record(
            state,
            account,
            m,
            side,
            size,
            price,
            float(self.exchange.marks[m]),
            bankrupt,
            kind,
            fund,
            counterparty,
            episode,
        )

    def _attribute(self, last_row: LiquidationRow, episode: _Episode) -> None:
        """Tag accounts this liquidation pushed under (see the module docstring)."""
        before = self._liquidatable
        after = self.exchange.health().account_liquidatable & self._is_trader
        for j in np.flatnonzero(after & ~before):
            j = int(j)
            if j not in self._episodes and j not in self._triggers:
                self._triggers[j] = _Episode(episode.cascade_id, last_row.row_id)
        self._liquidatable = after

"""Margin math as pure functions over numpy arrays (MARGIN-SPEC sections 2–5).

Nothing here holds state or mutates its inputs. Shapes: ``A`` accounts (or one row for
a pre-trade check), ``I`` instruments, ``S`` collateral assets, ``K`` margin tiers.
Money is USD (the settlement asset), sizes are base units, prices USD per unit.

Speed: (A, I) inputs are best given in Fortran order (each instrument's column
contiguous, as the ledger stores them): numpy then broadcasts per-instrument constants
over long inner loops, about 6x faster than over rows of length I.

Margin modes share one routine for the per-position numbers (`position_risk`) and
differ only in how they add them up (`cross_health`, `isolated_health`); a further mode
(e.g. portfolio scenario stress) is one more function registered in `HEALTH_BY_MODE`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from numba import njit

from sim.instruments import MarginTiers

#: Arrays up to this size take the small-array shortcuts (per-call overhead dominates).
_SMALL = 64


@dataclass(frozen=True)
class TierTable:
    """The margin tiers of all instruments stacked into padded (I, K) arrays.

    Padding tiers have an infinite floor, so no notional ever falls in them.
    """

    floors: np.ndarray
    mmr: np.ndarray
    cum: np.ndarray
    imr: np.ndarray

    @property
    def lowest_second_floor(self) -> float:
        """Below this notional every position of every instrument is in its first tier."""
        return float(self.floors[:, 1].min()) if self.floors.shape[1] > 1 else np.inf

    @classmethod
    def from_tiers(cls, tiers: Sequence[MarginTiers]) -> TierTable:
        k = max(len(t.floors) for t in tiers)
        shape = (len(tiers), k)
        floors = np.full(shape, np.inf)
        mmr, cum, imr = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        for m, t in enumerate(tiers):
            n = len(t.floors)
            floors[m, :n] = t.floors
            mmr[m, :n] = t.mmr
            cum[m, :n] = t.cum
            imr[m, :n] = [1.0 / lev for lev in t.max_leverage]
        return cls(floors, mmr, cum, imr)

    def _tiered(self, notional: np.ndarray, rates: np.ndarray, cum: np.ndarray | None) -> np.ndarray:
        """``N * rate_k - cum_k`` with k the tier of each notional, for (A, I) notionals.

        Most positions sit in the first tier: with one tier, or a few entries all below
        the second floor (the one-row pre-trade check), one product does it (in the
        notional's memory order). Otherwise `_tiered_entries` looks each entry's tier up
        in one compiled pass and returns a Fortran-ordered array, as the ledger's columns
        are (the row sums that follow depend on it).
        """
        if notional.ndim != 2:
            raise ValueError(f"margin tiers: notional must be (accounts, instruments), got shape {notional.shape}")
        if self.floors.shape[1] == 1:
            return notional * rates[:, 0]
        if notional.size <= _SMALL and notional.max(initial=0.0) < self.lowest_second_floor:
            return notional * rates[:, 0]
        return _tiered_entries(notional, self.floors, rates, rates if cum is None else cum, cum is not None)

    def maintenance(self, notional: np.ndarray) -> np.ndarray:
        """Maintenance margin ``N * mmr_k - cum_k`` per position.

        Args:
            notional: (A, I), USD, >= 0.

        Returns:
            (A, I), USD.
        """
        return self._tiered(notional, self.mmr, self.cum)

    def initial(self, notional: np.ndarray) -> np.ndarray:
        """Initial margin ``N / max_leverage_k`` per position, (A, I) as ``notional``."""
        return self._tiered(notional, self.imr, None)


@njit(cache=True)
def _tiered_entries(notional, floors, rates, cum, subtract_cum):
    """(A, I) ``N * rates[m, k] (- cum[m, k])``, k the tier of each notional (the number
    of (I, K) ``floors`` at or below it, less one; entries below the second floor take
    tier 0 without a lookup), Fortran-ordered."""
    n_accounts, n_instruments = notional.shape
    out = np.empty((n_instruments, n_accounts)).T
    for m in range(n_instruments):
        second = floors[m, 1]
        for a in range(n_accounts):
            n = notional[a, m]
            if not n >= second:
                out[a, m] = n * rates[m, 0]
                continue
            tier = -1
            for k in range(floors.shape[1]):
                if n >= floors[m, k]:
                    tier += 1
            value = n * rates[m, tier]
            if subtract_cum:
                value -= cum[m, tier]
            out[a, m] = value
    return out


@dataclass(frozen=True)
class MarginRules:
    """What the requirements depend on besides the portfolio.

    Attributes:
        tiers: Stacked tiers of the I instruments.
        weights: Shape (S,), collateral weight (1 - haircut) of a positive balance.
        liability_weights: Shape (S,), weight (>= 1) of a negative balance.
        liability_mmr: Shape (S,), maintenance margin on the USD value of a negative
            balance (a debt), so that an account with debt and only collateral can be
            liquidated; None = 0.
    """

    tiers: TierTable
    weights: np.ndarray
    liability_weights: np.ndarray
    liability_mmr: np.ndarray | None = None


@dataclass(slots=True)
class Portfolio:
    """Account state, one row per account (views into the ledger are fine).

    Attributes:
        balances: (A, S) collateral balances, asset units (asset 0 is USD).
        positions: (A, I) signed size in lots (long > 0).
        entry: (A, I) average entry price, USD (0 where flat).
        funding_index: (A, I) cumulative funding per unit at the last settlement.
        isolated_margin: (A, I) USD set aside per position (zero in cross mode).
        open_bids: (A, I) lots in resting buy orders.
        open_asks: (A, I) lots in resting sell orders.
        lot_sizes: (I,) base units per lot (sizes stay in lots so that the ledger's
            integer arrays are used as they are; the lot size folds into (I,) factors).
    """

    balances: np.ndarray
    positions: np.ndarray
    entry: np.ndarray
    funding_index: np.ndarray
    isolated_margin: np.ndarray
    open_bids: np.ndarray
    open_asks: np.ndarray
    lot_sizes: np.ndarray


@dataclass(slots=True)
class MarketPrices:
    """Prices the requirements are computed at.

    Attributes:
        marks: (I,) mark price per instrument, USD.
        asset_prices: (S,) USD value of one unit of each collateral asset.
        cum_funding: (I,) cumulative funding per unit of each instrument, USD.
    """

    marks: np.ndarray
    asset_prices: np.ndarray
    cum_funding: np.ndarray


@dataclass(slots=True)
class PositionRisk:
    """Per-position numbers every margin mode adds up. All (A, I) except `collateral` and
    `liability_maint` (A,) (or 0.0 when no account owes anything).

    The initial margin is computed on first access: the liquidation scan, which runs
    every step over every account, never needs it.
    """

    collateral: np.ndarray
    unrealized: np.ndarray
    notional: np.ndarray
    maint: np.ndarray
    source: tuple[Portfolio, MarketPrices, MarginRules]
    liability_maint: np.ndarray | float = 0.0
    _init: np.ndarray | None = None

    @property
    def init(self) -> np.ndarray:
        """(A, I) initial margin with open orders at their worst case, USD."""
        if self._init is None:
            self._init = position_initial(*self.source)
        return self._init


@dataclass(slots=True)
class Health:
    """Margin state of every account (plain slotted class: it is built once per order check).

    Attributes:
        equity: (A,) haircut collateral + isolated margins + unrealized PnL, USD.
        maint: (A,) total maintenance margin, USD.
        account_liquidatable: (A,) accounts with at least one liquidatable position.
        risk: The per-position numbers behind the totals.
        positions: (A, I) the positions (lots) it was computed for.
        position_equity: (A, I) isolated margin + PnL per position; None when every
            account is in cross mode, where one equity covers all positions.
        isolated: (A,) which accounts are in isolated mode when modes are mixed; None
            when all share one mode (isolated iff ``position_equity`` is given).
    """

    equity: np.ndarray
    maint: np.ndarray
    account_liquidatable: np.ndarray
    risk: PositionRisk
    positions: np.ndarray
    position_equity: np.ndarray | None = None
    isolated: np.ndarray | None = None

    def by_mode(self, cross: Callable[[], np.ndarray], isolated: Callable[[], np.ndarray]) -> np.ndarray:
        """Each account's value of its own margin mode: ``cross()`` or ``isolated()``,
        (A,) or (A, I) arrays, each computed only if some account needs it."""
        if self.position_equity is None:
            return cross()
        if self.isolated is None:
            return isolated()
        iso = isolated()
        return np.where(self.isolated if iso.ndim == 1 else self.isolated[:, None], iso, cross())

    def is_isolated(self, row: int) -> bool:
        """Whether account ``row`` is in isolated mode."""
        return self.position_equity is not None and (self.isolated is None or bool(self.isolated[row]))

    @property
    def init(self) -> np.ndarray:
        """(A,) total initial margin (open orders at worst case), USD."""
        return _row_sum(self.risk.init)

    @property
    def init_health(self) -> np.ndarray:
        """(A,) must stay >= 0 for a new order to be accepted, USD. Cross: equity minus
        IM. Isolated: free collateral minus every position's shortfall of equity below IM."""
        return self.by_mode(
            lambda: self.equity - self.init,
            lambda: self.risk.collateral - _row_sum(np.maximum(self.risk.init - self.position_equity, 0.0)),
        )

    @property
    def maint_health(self) -> np.ndarray:
        """(A,) equity minus maintenance margin, USD."""
        return self.equity - self.maint

    @property
    def liquidatable(self) -> np.ndarray:
        """(A, I) positions the liquidation engine must act on (computed on access)."""
        return self.by_mode(
            lambda: (self.positions != 0) & self.account_liquidatable[:, None],
            lambda: (self.risk.maint > 0) & (self.position_equity < self.risk.maint),
        )

    @property
    def margin_ratio(self) -> np.ndarray:
        """(A,) maintenance over equity (>= 1 means liquidatable; inf when equity <= 0
        with a requirement; 0 with none). Isolated: the worst position's ratio."""
        return self.by_mode(
            lambda: _ratio(self.maint, self.equity),
            lambda: _ratio(self.risk.maint, self.position_equity).max(axis=1, initial=0.0),
        )


def collateral_value(balances: np.ndarray, asset_prices: np.ndarray, rules: MarginRules) -> np.ndarray:
    """Haircut value of each account's balances: (A, S) -> (A,), USD.

    Positive balances count at ``weight``, negative ones (liabilities) at
    ``liability_weight``.
    """
    return collateral_and_debt_margin(balances, asset_prices, rules)[0]


def collateral_and_debt_margin(
    balances: np.ndarray, asset_prices: np.ndarray, rules: MarginRules
) -> tuple[np.ndarray, np.ndarray | float]:
    """``(collateral (A,), debt maintenance (A,) or 0.0)``, USD: the haircut value of the
    balances (`collateral_value`) and the maintenance margin on debts,
    ``sum_s max(-balance, 0) * price * liability_mmr``. The debt terms are skipped with
    one cheap test when nobody owes anything (the common case)."""
    value = balances @ (asset_prices * rules.weights)
    if balances.min(initial=0.0) >= 0:
        return value, 0.0
    owed = np.minimum(balances, 0.0)
    value += owed @ (asset_prices * (rules.liability_weights - rules.weights))
    if rules.liability_mmr is None:
        return value, 0.0
    return value, owed @ (-asset_prices * rules.liability_mmr)


def position_risk(portfolio: Portfolio, prices: MarketPrices, rules: MarginRules) -> PositionRisk:
    """Unrealized PnL (net of accrued funding), notional and MM of every position (IM on demand)."""
    # In-place arithmetic on results that keep the ledger's Fortran order: few temporaries.
    size = portfolio.positions * portfolio.lot_sizes  # base units
    notional = np.abs(size)
    notional *= prices.marks
    collateral, debt_maint = collateral_and_debt_margin(portfolio.balances, prices.asset_prices, rules)
    return PositionRisk(
        collateral=collateral,
        unrealized=unrealized_pnl(portfolio, prices, size),
        notional=notional,
        maint=rules.tiers.maintenance(notional),
        source=(portfolio, prices, rules),
        liability_maint=debt_maint,
    )


def unrealized_pnl(portfolio: Portfolio, prices: MarketPrices, size: np.ndarray) -> np.ndarray:
    """(A, I) unrealized PnL net of accrued funding, USD: ``q ((M - Phi) - e + phi)``
    (``size``: (A, I) the positions in base units)."""
    unrealized = (prices.marks - prices.cum_funding) - portfolio.entry
    unrealized += portfolio.funding_index
    unrealized *= size
    return unrealized


def position_initial(portfolio: Portfolio, prices: MarketPrices, rules: MarginRules) -> np.ndarray:
    """(A, I) initial margin with open orders at their worst case, USD.

    Worst case: ``max(|q + bids|, |q - asks|) * M``, which equals ``max(q + bids, asks - q)
    * M`` because bids, asks >= 0; kept in integer lots until the last product.
    """
    lots_worst = portfolio.positions + portfolio.open_bids
    np.maximum(lots_worst, portfolio.open_asks - portfolio.positions, out=lots_worst)
    return rules.tiers.initial(lots_worst * (prices.marks * portfolio.lot_sizes))


def _ratio(requirement: np.ndarray, equity: np.ndarray) -> np.ndarray:
    """requirement / equity with the conventions of `Health.margin_ratio`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = requirement / equity
    ratio[equity <= 0] = np.inf
    ratio[requirement <= 0] = 0.0
    return ratio


def _row_sum(values: np.ndarray) -> np.ndarray:
    """(A, I) -> (A,): a matrix-vector product, faster than a reduction on Fortran-order
    arrays and free of ndarray.sum's Python-level wrapper (hot on one-row checks)."""
    return values @ _ones(values.shape[1])


@cache
def _ones(n: int) -> np.ndarray:
    return np.ones(n)


def cross_health(portfolio: Portfolio, prices: MarketPrices, rules: MarginRules) -> Health:
    """One equity per account covers all of its positions (MARGIN-SPEC 2–4)."""
    risk = position_risk(portfolio, prices, rules)
    equity = risk.collateral + _row_sum(portfolio.isolated_margin) + _row_sum(risk.unrealized)
    maint = _row_sum(risk.maint) + risk.liability_maint
    return Health(
        equity=equity,
        maint=maint,
        account_liquidatable=(maint > 0) & (equity < maint),
        risk=risk,
        positions=portfolio.positions,
    )


def isolated_health(portfolio: Portfolio, prices: MarketPrices, rules: MarginRules) -> Health:
    """Each position stands on its own margin; losses never spill over.

    Position equity is ``isolated_margin + unrealized``. A position is liquidatable when
    its equity is below its MM; the account also is when its free collateral is below
    the maintenance margin on its debts. New orders are admitted while the free
    collateral (the account's balances) covers every position's shortfall of equity
    below its IM.
    """
    risk = position_risk(portfolio, prices, rules)
    pos_equity = portfolio.isolated_margin + risk.unrealized
    return Health(
        equity=risk.collateral + _row_sum(pos_equity),
        maint=_row_sum(risk.maint) + risk.liability_maint,
        account_liquidatable=_isolated_flags(risk, pos_equity),
        risk=risk,
        positions=portfolio.positions,
        position_equity=pos_equity,
    )


def _isolated_flags(risk: PositionRisk, pos_equity: np.ndarray) -> np.ndarray:
    """(A,) isolated accounts with a position below its MM, or debt its collateral does not cover."""
    liquidatable = (risk.maint > 0) & (pos_equity < risk.maint)
    in_debt = (risk.collateral < risk.liability_maint) & (risk.liability_maint > 0)
    return np.logical_or.reduce(liquidatable, axis=1) | in_debt


def mixed_health(portfolio: Portfolio, prices: MarketPrices, rules: MarginRules, isolated: np.ndarray) -> Health:
    """Every account in its own margin mode: (A,) ``isolated`` marks the isolated ones.

    Equity and maintenance add up the same way in both modes (a cross account has no
    isolated margin); only the liquidation test and the `Health` properties differ by
    row. All-cross and all-isolated books take the single-mode functions.
    """
    if not isolated.any():
        return cross_health(portfolio, prices, rules)
    if isolated.all():
        return isolated_health(portfolio, prices, rules)
    risk = position_risk(portfolio, prices, rules)
    pos_equity = portfolio.isolated_margin + risk.unrealized
    equity = risk.collateral + _row_sum(pos_equity)
    maint = _row_sum(risk.maint) + risk.liability_maint
    return Health(
        equity=equity,
        maint=maint,
        account_liquidatable=np.where(isolated, _isolated_flags(risk, pos_equity), (maint > 0) & (equity < maint)),
        risk=risk,
        positions=portfolio.positions,
        position_equity=pos_equity,
        isolated=isolated,
    )


HealthFunction = Callable[[Portfolio, MarketPrices, MarginRules], Health]

#: Margin mode name -> the function that computes `Health` for it (`mixed_health`
#: combines them row by row).
HEALTH_BY_MODE: dict[str, HealthFunction] = {"cross": cross_health, "isolated": isolated_health}


# --------------------------------------------------------------------------- prices
def allocated_equity(health: Health) -> np.ndarray:
    """(A, I) equity each position bears, USD.

    Cross: the account's equity split by maintenance-margin share (dYdX allocation),
    ``E * MM_m / sum MM`` (all of E on each position of an account with no requirement).
    Isolated: the position's own margin plus its PnL.
    """

    def cross() -> np.ndarray:
        maint = health.risk.maint
        total = _row_sum(maint)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(total > 0, maint / total, 1.0)
        return health.equity[:, None] * share

    return health.by_mode(cross, lambda: health.position_equity)


def bankruptcy_prices(health: Health) -> np.ndarray:
    """(A, I) the mark at which closing each position leaves its allocated equity at 0.

    ``P_bk,m = M_m - s_m * E_m / |q_m|`` with ``E_m`` from `allocated_equity`: for one
    position this is ``e - s * WB / |q|`` (MARGIN-SPEC 5). NaN where flat. The engine and
    the MARGIN-SPEC tests use this one function.
    """
    portfolio, prices, _ = health.risk.source
    size = health.positions * portfolio.lot_sizes
    with np.errstate(divide="ignore", invalid="ignore"):
        price = prices.marks - np.sign(size) * allocated_equity(health) / np.abs(size)
    return np.where(size != 0, price, np.nan)


def liquidation_prices(health: Health) -> np.ndarray:
    """(A, I) the mark of each instrument at which the account (cross) or the position
    (isolated) reaches its maintenance margin, everything else held fixed; NaN where flat
    or where no positive price does (venues show this number beside every position).

    Solves ``X + q (P - e') = |q| P mmr_k - cum_k + Y`` for P tier by tier, keeping the
    solution whose notional ``|q| P`` lies in that tier k. ``e'`` is the entry price
    moved by the funding accrued since the last settlement; cross: X is the account's
    equity without this position's PnL and Y the requirement of everything else;
    isolated: X is the position's margin and Y = 0. Collateral is held at its price.
    """
    portfolio, prices, rules = health.risk.source
    risk = health.risk
    q = health.positions * portfolio.lot_sizes
    entry = portfolio.entry + prices.cum_funding - portfolio.funding_index
    other_equity = health.by_mode(lambda: health.equity[:, None] - risk.unrealized, lambda: portfolio.isolated_margin)
    other_maint = health.by_mode(lambda: health.maint[:, None] - risk.maint, lambda: np.zeros_like(risk.maint))
    tiers = rules.tiers
    upper = np.concatenate([tiers.floors[:, 1:], np.full((tiers.floors.shape[0], 1), np.inf)], axis=1)
    out = np.full(q.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(tiers.floors.shape[1]):
            price = (other_maint - tiers.cum[:, k] - other_equity + q * entry) / (q - np.abs(q) * tiers.mmr[:, k])
            notional = np.abs(q) * price
            valid = (q != 0) & (price > 0) & (notional >= tiers.floors[:, k]) & (notional < upper[:, k])
            out = np.where(valid & np.isnan(out), price, out)
    return out


@dataclass(frozen=True, slots=True)
class Sizing:
    """How much of a position a liquidation closes (MARGIN-SPEC 4).

    Attributes:
        full: Close whole positions.
        buffer: beta, fraction of notional an account must clear above MM to leave.
        penalty: lambda, the discount to the mark the sizing assumes the book fills at.
        fund_fee: phi, the insurance fund's fee, fraction of mark notional.
    """

    full: bool = False
    buffer: float = 0.005
    penalty: float = 0.0025
    fund_fee: float = 0.001


def liquidation_size(health: Health, row: int, m: int, sizing: Sizing, tiers: TierTable) -> float:
    """Base units of position m of account ``row`` to close now (0: no action needed).

    Cross: the account's equity against all its requirements; isolated: the position's
    own. Full mode acts while ``E < MM`` and closes everything; partial acts while
    ``E < MM + beta N`` and closes ``S / (M (mmr_k + beta - lambda - phi))`` with
    ``S = MM + beta N - E`` and k the position's tier, capped at the position. The
    caller rounds up to a lot.
    """
    risk = health.risk
    if health.is_isolated(row):
        equity, maint = float(health.position_equity[row, m]), float(risk.maint[row, m])
        notional = float(risk.notional[row, m])
    else:
        equity, maint = float(health.equity[row]), float(health.maint[row])
        notional = float(risk.notional[row].sum())
    threshold = maint if sizing.full else maint + sizing.buffer * notional
    if maint <= 0 or equity >= threshold:
        return 0.0
    portfolio, prices, _ = risk.source
    held = abs(float(health.positions[row, m] * portfolio.lot_sizes[m]))
    if sizing.full:
        return held
    own = float(risk.notional[row, m])
    rate = float(tiers.mmr[m, int((own >= tiers.floors[m]).sum()) - 1])
    size = partial_liquidation_size(
        threshold - equity, float(prices.marks[m]), rate, sizing.buffer, sizing.penalty, sizing.fund_fee
    )
    return min(held, size)


def partial_liquidation_size(
    shortfall: float, mark: float, mmr: float, buffer: float, penalty: float, fund_fee: float
) -> float:
    """Size to close so the account clears ``E >= MM + buffer * N`` (MARGIN-SPEC 4).

    ``S / (M * (mmr + buffer - penalty - fund_fee))`` in base units, before rounding up
    to a lot and capping at the position size.

    Args:
        shortfall: ``S = sum MM + buffer * sum N - E``, USD.
        mark: Mark price of the position being closed.
        mmr: Its maintenance rate (the tier's rate).
        buffer: beta, fraction of notional.
        penalty: lambda, liquidation penalty as a fraction of notional.
        fund_fee: phi, insurance-fund fee as a fraction of notional.
    """
    rate = mmr + buffer - penalty - fund_fee
    if rate <= 0:
        raise ValueError(f"mmr + buffer - penalty - fee must be > 0, got {rate}")
    return shortfall / (mark * rate)


@njit(cache=True)
def adl_score(side: float, entry: float, mark: float, notional: float, equity: float) -> float:
    """BitMEX auto-deleveraging rank of one position: higher is deleveraged first.

    ``PnL% = s (M - e) / e``; ``lev = N / E``; score ``PnL% * lev`` if ``PnL% > 0``
    else ``PnL% / lev``. An account with equity <= 0 has unbounded leverage: it ranks
    first among the profitable (score +inf) and at 0 among the losing, ahead of every
    losing account with equity.
    """
    pnl_pct = side * (mark - entry) / entry
    leverage = notional / equity if equity > 0 else np.inf
    return pnl_pct * leverage if pnl_pct > 0 else pnl_pct / leverage

"""Leveraged position holder: starts the run with a position at its leverage (the
population whose leverage researchers vary) and, if its parameters say so, defends it,
closes it after a holding time and opens a new one.

Sizes: a position is ``leverage x`` the equity share of each instrument, capped where
the venue's margin tiers stop it (`MarginTiers.max_notional`, counting the taker fee
and the entry order's slippage): a 60x draw on an instrument whose tiers allow 50x
holds a 50x position, as a venue's order form would allow.

Each step it reads its own margin ratio (maintenance margin / equity at the start of
the step, `Population.margin_ratio`), its position at the start of the step and the
venue price, and:

- **top-up**: at ``top_up_margin_ratio`` or above, it deposits USD from a finite
  ``wallet`` (`Exchange.deposit`, at once, before any order of the step arrives) to
  bring its ratio back to ``top_up_target``, until the wallet is empty;
- **cut**: at ``cut_margin_ratio`` or above, it closes ``cut_fraction`` of every
  position (at least one lot) with reduce-only IOC orders limited ``max_slippage_bps``
  from the venue price; it does so again every step while the ratio stays there (where
  a cut and a stop or an exit fall in the same step, the whole position is closed);
- **stop-loss**: a share ``stop_share`` of holders has a stop ``stop_loss`` away from
  its entry, rounded *away* to a round number (three significant digits: 47,523 ->
  47,500 for a long, as Osler 2005 finds stop-loss orders clustered at round numbers);
  when the venue price (`MarketView.venue_price`) crosses it, the whole position is
  closed with reduce-only IOC orders, again each step until it is flat.

- **exit**: with ``holding_seconds`` set, it closes every position (reduce-only IOC,
  as a stop) after an exponentially distributed holding time;
- **re-entry**: with ``reentry_seconds`` set, once it is flat (closed, stopped out or
  liquidated) it waits an exponentially distributed time and opens a new position at
  its leverage with what equity it has left: IOC orders ``entry_slippage_bps`` from
  the venue price, long with probability ``long_share`` (``side = "random"``) or on
  its fixed side; its stop, if it keeps one, is set anew from the new entry. So the
  population keeps positions opened near the current price instead of ageing into
  survivors far from their liquidation prices, as a venue's open interest turns over.

Every reaction is off by default (a population of plain holders only holds, and the
model does not schedule it). A population decides with a few (n,) and (n, Ip) array
operations, only for the reactions some member has on; Python work is spent only on
the members that send an order or deposit.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from numba import njit
from pydantic import Field

from agents.base import FractionDist, NonNegativeDist, Population, PositiveDist, StrictParams, within
from agents.compiled import maximum
from agents.orders import OrderSheet, Outbox, Outcome
from sim.distributions import Distribution, Uniform, sample
from sim.instruments import reduce_form
from sim.types import OrderType

#: A margin ratio threshold: in (0, 1] (1 is where the venue liquidates).
RatioDist = Annotated[Distribution, within(0.0, 1.0, strict_low=True)]


class HolderParams(StrictParams):
    """Attributes (``*`` = drawn once per holder; units in brackets):

    side: ``long``, ``short`` or ``random`` (long with probability ``long_share``).
    cut_margin_ratio*: Margin ratio at which it cuts [MM / equity]. None = off (no
        published distribution of personal thresholds; venues send margin-call alerts
        before 1, which a config can use).
    cut_fraction*: Share of each position it closes per cut [fraction]. 0.5 (no
        published value; used only when cutting is on).
    max_slippage_bps*: Limit of its cut and stop orders away from the venue price
        [bps]. 100 (no published value).
    stop_share: Share of holders with a stop-loss [fraction]. 0 = off.
    stop_loss*: Distance of the stop from the entry price [fraction]. Uniform [0.02,
        0.1] (no published value; used only for holders with a stop; the rounding to
        round numbers is Osler 2005's).
    top_up_margin_ratio*: Margin ratio at which it tops up [MM / equity]. None = off.
    top_up_target*: Margin ratio a top-up restores [MM / equity]. 0.5 (no published
        value).
    wallet*: USD it can still deposit [USD]. 0 = off.
    holding_seconds*: Mean holding time of a position [s]; exits are exponentially
        distributed. None = holds to the end (used by the baseline: Binance's BTCUSDT
        perpetual trades about twice its open interest a day, 2024-25 exchange
        statistics, so positions live about half a day).
    reentry_seconds*: Mean wait between being flat and opening again [s],
        exponential. None = never re-enters (no published value).
    entry_slippage_bps*: Limit of its entry orders away from the venue price [bps].
        10 (no published value; the venue charges it as margin up front).
    """

    side: Literal["long", "short", "random"] = "long"
    long_share: Annotated[float, Field(ge=0, le=1)] = 0.5
    cut_margin_ratio: RatioDist | None = None
    cut_fraction: FractionDist = 0.5
    max_slippage_bps: NonNegativeDist = 100.0
    stop_share: Annotated[float, Field(ge=0, le=1)] = 0.0
    stop_loss: FractionDist = Uniform(uniform=(0.02, 0.1))
    top_up_margin_ratio: RatioDist | None = None
    top_up_target: RatioDist = 0.5
    wallet: NonNegativeDist = 0.0
    holding_seconds: PositiveDist | None = None
    reentry_seconds: PositiveDist | None = None
    entry_slippage_bps: NonNegativeDist = 10.0


def round_number(price, down):
    """``price`` rounded to three significant digits, down or up (Osler 2005's round
    numbers: 47,523 -> 47,500 down, 47,600 up). Elementwise over arrays."""
    price = np.asarray(price, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = 10.0 ** (np.floor(np.log10(price)) - 2)
        rounded = np.where(down, np.floor(price / unit), np.ceil(price / unit)) * unit
    out = np.where(price > 0, rounded, price)
    return float(out) if out.ndim == 0 else out


def optional(dist: Distribution | None, rng: np.random.Generator, n: int, off: float) -> np.ndarray:
    """(n,) draws of an optional parameter; ``off`` everywhere (no draw) when it is None."""
    return np.full(n, off) if dist is None else sample(dist, rng, n)


class LeveragedHolder(Population):
    """Opens nothing itself at first: the model gives each member its position at the
    start (see `opening_positions`), sized ``leverage x collateral value`` split equally
    over its instruments (within the margin tiers). Then it holds, defends its position,
    or turns it over (module docstring).

    Per-member state, (n,) unless said: thresholds ``cut_at``, ``top_up_at`` (inf =
    off), ``wallet`` [USD], ``stop_loss`` (NaN = no stop), mean times ``holding`` and
    ``reentry`` [s] (NaN = off; ``reenters`` turns False for a member that leaves),
    and (n, Ip) ``stop_price`` [USD] (NaN = none) with
    ``stop_sign`` (+1 long, -1 short); ``exit_at`` and ``enter_at`` [s] (inf = none
    due). Draws per step: an exponential wait for each member that starts waiting to
    enter, a side (with ``side = "random"``) and an exponential holding time for each
    member that enters.
    """

    Params = HolderParams
    kind = "leveraged_holder"

    def __init__(self, model, first_account, instruments, leverage, params: HolderParams, setup, rng):
        super().__init__(model, first_account, instruments, leverage, params, setup, rng)
        n = self.n
        off = np.full(n, np.inf)
        # Only reactions that are on draw.
        self.cut_at = optional(params.cut_margin_ratio, setup, n, np.inf)
        cutting = params.cut_margin_ratio is not None
        self.cut_fraction = sample(params.cut_fraction, setup, n) if cutting else np.zeros(n)
        self.wallet = sample(params.wallet, setup, n)
        self.top_up_at, self.top_up_target = off.copy(), np.full(n, np.nan)
        if params.top_up_margin_ratio is not None:
            self.top_up_at = np.where(self.wallet > 0, sample(params.top_up_margin_ratio, setup, n), np.inf)
            self.top_up_target = sample(params.top_up_target, setup, n)
        self.stop_loss = np.full(n, np.nan)
        if params.stop_share > 0:
            keeps = setup.random(n) < params.stop_share
            self.stop_loss = np.where(keeps, sample(params.stop_loss, setup, n), np.nan)
        self.holding = optional(params.holding_seconds, setup, n, np.nan)
        self.reentry = optional(params.reentry_seconds, setup, n, np.nan)
        slip = params.entry_slippage_bps
        self.entry_slippage = np.zeros(n) if params.reentry_seconds is None else sample(slip, setup, n) / 1e4
        self.slippage = sample(params.max_slippage_bps, setup, n) / 1e4
        n_inst = len(instruments)
        self.stop_price = np.full((n, n_inst), np.nan)
        self.stop_sign = np.zeros((n, n_inst), dtype=np.int64)
        self.exit_at = off.copy()
        self.enter_at = off.copy()
        #: (n,) members that open a new position once flat (False once one leaves).
        self.reenters = ~np.isnan(self.reentry)
        turns_over = ~np.isnan(self.holding) | self.reenters
        reacts = np.isfinite(self.cut_at) | np.isfinite(self.top_up_at) | ~np.isnan(self.stop_loss) | turns_over
        self.acts = bool(reacts.any())  # plain holders only hold: not scheduled
        # which checks a step needs at all (each costs O(n) array work)
        self.keeps_stops = bool((~np.isnan(self.stop_loss)).any())
        self.any_turnover = bool(turns_over.any())
        self.any_margin_reaction = bool(np.isfinite(self.cut_at).any() or np.isfinite(self.top_up_at).any())
        self._setup = setup

    def opening_positions(self) -> np.ndarray:
        ex = self.exchange
        value = ex.ledger.balances[self.rows] @ ex.asset_prices
        sign = self.sides(self._setup, self.n)
        margin = value / len(self.instruments)
        lots = np.zeros((self.n, len(self.instruments)), dtype=np.int64)
        for j, m in enumerate(self.instruments):
            price = float(ex.index[m])
            inst = ex.instruments[m]
            size = inst.tiers.max_notional(margin, self.leverage) / price / inst.lot_size
            lots[:, j] = sign * size.astype(np.int64)  # truncated to whole lots
            opened = np.flatnonzero(lots[:, j])
            self.set_stops(opened, j, np.full(len(opened), price), sign[opened])
        self.exit_at = self.waits(self._setup, self.holding)
        del self._setup  # the setup stream's last use
        return lots

    def sides(self, rng: np.random.Generator, k: int) -> np.ndarray:
        """(k,) +1 long or -1 short: its fixed side, or long with probability
        ``long_share`` (one uniform per member)."""
        side = self.params.side
        if side == "random":
            return np.where(rng.random(k) < self.params.long_share, 1, -1)
        return np.full(k, 1 if side == "long" else -1)

    def set_stops(self, members: np.ndarray, j: int, entry: np.ndarray, sign: np.ndarray) -> None:
        """The stops in column j of (k,) ``members`` (those that keep one): ``stop_loss``
        from their (k,) ``entry`` prices, rounded away, for positions of (k,) ``sign``."""
        keeps = ~np.isnan(self.stop_loss[members])
        members, price, s = members[keeps], entry[keeps], sign[keeps]
        self.stop_price[members, j] = round_number(price * (1 - s * self.stop_loss[members]), down=s > 0)
        self.stop_sign[members, j] = s

    def waits(self, rng: np.random.Generator, means: np.ndarray) -> np.ndarray:
        """The simulated times [s] exponential waits of (k,) ``means`` seconds from now
        end (inf where the mean is NaN: off); one draw per finite mean."""
        ends = np.full(len(means), np.inf)
        on = ~np.isnan(means)
        ends[on] = self.exchange.time + rng.exponential(means[on])
        return ends

    def decide(self) -> OrderSheet:
        ex = self.exchange
        now = ex.time
        lots = self.lots()
        prices = self.market.venue_prices()[self.cols]  # (Ip,)
        close, holding = _positions_to_close(
            lots, prices, self.stop_sign, self.stop_price, self.exit_at, now, self.keeps_stops, self.any_turnover
        )
        cut = np.zeros(self.n, dtype=bool)
        if self.any_margin_reaction:
            ratio = self.margin_ratio()
            self.top_up(ratio)
            cut = np.isfinite(self.cut_at) & (ratio >= self.cut_at)
        out = Outbox(self)
        member, col, side, order_lots, ticks, sent = _reduce_rows(
            lots, close, cut, prices, self.cut_fraction, self.slippage, self.lot_sizes, self.venue_tick_sizes[self.cols]
        )
        out.add_rows(member, self.cols[col], side, order_lots, ticks, OrderType.IOC, np.ones(len(member), bool), sent)
        if self.any_turnover:
            self.turn_over(out, holding, prices)
        return out.sheet()

    def top_up(self, ratio: np.ndarray) -> None:
        """Members at their top-up ratio deposit what brings the ratio back to their
        target (their whole wallet at most), at once."""
        due = np.flatnonzero((ratio >= self.top_up_at) & (self.wallet > 0))
        if not len(due):
            return
        equity, r, wallet = self.equity()[due], ratio[due], self.wallet[due]
        with np.errstate(invalid="ignore"):
            need = np.where(~np.isfinite(r) | (equity <= 0), wallet, equity * (r / self.top_up_target[due] - 1))
        amount = np.minimum(wallet, need)
        for member, usd in zip(due.tolist(), amount.tolist(), strict=True):
            if usd > 0:
                self.exchange.deposit(int(self.accounts[member]), usd)
                self.wallet[member] -= usd

    def turn_over(self, out: Outbox, holding: np.ndarray, prices: np.ndarray) -> None:
        """Members that re-enter and hold nothing (``holding``: (n,)) forget their stops
        and start an exponential wait; those whose wait is over enter."""
        due = np.flatnonzero(self.enter_at <= self.exchange.time)  # inf: not waiting
        start = np.flatnonzero(self.reenters & ~holding & np.isinf(self.enter_at))
        if len(start):
            self.stop_price[start] = np.nan  # its stops went with its positions
            self.enter_at[start] = self.waits(self.draws, self.reentry[start])
        if len(due):
            self.enter(out, due, prices)

    def enter(self, out: Outbox, members: np.ndarray, prices: np.ndarray) -> None:
        """(k,) members open a position at their leverage in every instrument with their
        equity: IOC orders ``entry_slippage`` from the venue price, sized to what the
        margin tiers allow after the taker fee and the limit's distance from the mark
        (which the venue's margin check charges). A member that cannot open a lot any
        more leaves (its re-entry is off)."""
        ex = self.exchange
        sign = self.sides(self.draws, len(members))
        margin = self.equity()[members] / len(self.instruments)
        sent = np.zeros(len(members), dtype=bool)
        for j, m in enumerate(self.instruments):
            limit = prices[j] * (1 + sign * self.entry_slippage[members])
            cost = ex.fees.taker + np.maximum(0.0, sign * (limit / float(ex.marks[m]) - 1.0))
            notional = ex.instruments[m].tiers.max_notional(margin, self.leverage[members], cost)
            sent |= out.add(m, members, sign, notional / limit, limit, OrderType.IOC)
        self.reenters[members[~sent]] = False  # too little equity for a lot: it leaves the venue
        self.enter_at[members] = np.inf
        entered = members[sent]
        self.exit_at[entered] = self.waits(self.draws, self.holding[entered])

    def receive(self, sheet: OrderSheet, outcome: Outcome) -> None:
        """An entry that filled sets the member's stop from its last fill price (if it
        keeps a stop)."""
        entered = ~sheet.reduce_only & (outcome.filled > 0)
        if not entered.any():
            return
        for j, m in enumerate(self.instruments):
            pick = entered & (sheet.instrument == m)
            entry = outcome.last_fill_ticks[pick] * self.exchange.instruments[m].tick_size
            self.set_stops(sheet.member[pick], j, entry, sheet.side[pick])


@njit(cache=True, error_model="numpy")
def _positions_to_close(lots, prices, stop_sign, stop_price, exit_at, now, keeps_stops, any_turnover):
    """``(close, holding)``: (n, Ip) the positions to close whole this step (a stop
    crossed by the venue prices, or a holding time up) and (n,) who holds anything.
    Forgets the stops of positions gone and the holding times of members now flat (in
    ``stop_price`` and ``exit_at``, in place).

    Args:
        lots: (n, Ip) positions. prices: (Ip,) venue prices (USD).
        stop_sign, stop_price: (n, Ip) stops (NaN: none). exit_at: (n,) [s] (inf: none).
        now: Simulated time [s]. keeps_stops, any_turnover: Whether anyone has a stop,
            a holding time or a re-entry (the checks nobody needs are skipped).
    """
    n, n_cols = lots.shape
    close, holding = np.zeros((n, n_cols), np.bool_), np.zeros(n, np.bool_)
    for i in range(n):
        for j in range(n_cols):
            held = lots[i, j] != 0
            holding[i] |= held
            if keeps_stops and stop_sign[i, j] * (prices[j] - stop_price[i, j]) <= 0:  # NaN: no stop
                if held:
                    close[i, j] = True
                else:
                    stop_price[i, j] = np.nan  # a stop of a position gone
        if any_turnover and exit_at[i] <= now:  # holding time up (inf: none running)
            if holding[i]:
                for j in range(n_cols):
                    close[i, j] |= lots[i, j] != 0
            else:
                exit_at[i] = np.inf  # flat: nothing left to exit
    return close, holding


@njit(cache=True, error_model="numpy")
def _reduce_rows(lots, close, cut, prices, cut_fraction, slippage, lot_sizes, tick_sizes):
    """The reduce-only IOC orders of members closing positions (``close``, (n, Ip)) or
    cutting them (``cut``, (n,): ``cut_fraction`` of each position, at least a lot), on
    the grid: ``(member, col, side, lots, ticks, sent)``, instrument column outermost,
    members ascending; limits ``slippage`` from the (Ip,) venue ``prices``."""
    n, n_cols = lots.shape
    size = n * n_cols
    member, col, side = np.empty(size, np.int64), np.empty(size, np.int64), np.empty(size, np.int64)
    out_lots, ticks, sent = np.empty(size, np.int64), np.empty(size, np.int64), np.empty(size, np.bool_)
    k = 0
    for j in range(n_cols):
        lot = lot_sizes[j]
        for i in range(n):
            signed = lots[i, j]
            if not (close[i, j] or (cut[i] and signed != 0)):
                continue
            whole = abs(signed) * lot
            qty = whole if close[i, j] else maximum(cut_fraction[i] * whole, lot)
            limit = prices[j] * (1 - np.sign(signed) * slippage[i])
            side[k], out_lots[k], ticks[k], sent[k] = reduce_form(signed, qty, limit, lot, tick_sizes[j])
            member[k], col[k] = i, j
            k += 1
    return member[:k], col[:k], side[:k], out_lots[:k], ticks[:k], sent[:k]

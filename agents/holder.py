"""Leveraged position holder: starts the run with a position at its leverage (the
population whose leverage researchers vary) and, if its parameters say so, defends it,
closes it after a holding time and opens a new one.

Sizes: a position is ``leverage x`` the equity share of each instrument, capped where
the venue's margin tiers stop it (`MarginTiers.max_notional`, counting the taker fee
and the entry order's slippage): a 60x draw on an instrument whose tiers allow 50x
holds a 50x position, as a venue's order form would allow.

Each step it reads its own margin ratio (maintenance margin / equity at the start of
the step, `Trader.margin_ratio`) and, in this order:

- **top-up**: at ``top_up_margin_ratio`` or above, it deposits USD from a finite
  ``wallet`` (`Exchange.deposit`) to bring its ratio back to ``top_up_target``, until
  the wallet is empty;
- **cut**: at ``cut_margin_ratio`` or above, it closes ``cut_fraction`` of every
  position (at least one lot) with reduce-only IOC orders limited ``max_slippage_bps``
  from the venue price; it does so again every step while the ratio stays there;
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

Every reaction is off by default (a plain holder only holds, and the model does not
schedule it). A holder with reactions costs one cached array read and a few
comparisons per step when nothing triggers.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field

from agents.base import FractionDist, NonNegativeDist, PositiveDist, StrictParams, Trader, within
from sim.distributions import Distribution, Uniform, draw
from sim.types import OrderType, Side

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


def round_number(price: float, down: bool) -> float:
    """``price`` rounded to three significant digits, down or up (Osler 2005's round
    numbers: 47,523 -> 47,500 down, 47,600 up)."""
    if price <= 0:
        return price
    unit = 10.0 ** (math.floor(math.log10(price)) - 2)
    return (math.floor if down else math.ceil)(price / unit) * unit


class LeveragedHolder(Trader):
    """Opens nothing itself at first: the model gives it its position at the start (see
    `opening_positions`), sized ``leverage x collateral value`` split equally over its
    instruments (within the margin tiers). Then it holds, defends its position, or
    turns it over (module docstring)."""

    Params = HolderParams
    kind = "leveraged_holder"

    def __init__(self, model, account, instruments, leverage, params: HolderParams, rng):
        super().__init__(model, account, instruments, leverage, params, rng)
        # Only reactions that are on draw, so plain holders draw what they always did.
        off = math.inf
        self.cut_at = off if params.cut_margin_ratio is None else draw(params.cut_margin_ratio, rng)
        self.cut_fraction = draw(params.cut_fraction, rng) if self.cut_at < off else 0.0
        self.wallet = draw(params.wallet, rng)
        self.top_up_at = off
        if params.top_up_margin_ratio is not None and self.wallet > 0:
            self.top_up_at = draw(params.top_up_margin_ratio, rng)
            self.top_up_target = draw(params.top_up_target, rng)
        self.stop_loss = None
        if params.stop_share > 0 and rng.random() < params.stop_share:
            self.stop_loss = draw(params.stop_loss, rng)
        #: Mean holding time and mean wait before re-entry [s]; None = off.
        self.holding = None if params.holding_seconds is None else draw(params.holding_seconds, rng)
        self.reentry = None if params.reentry_seconds is None else draw(params.reentry_seconds, rng)
        self.entry_slippage = draw(params.entry_slippage_bps, rng) / 1e4 if self.reentry is not None else 0.0
        self.slippage = draw(params.max_slippage_bps, rng) / 1e4 if self.reacts else 0.0
        #: instrument -> (stop price USD, +1 long / -1 short).
        self.stops: dict[int, tuple[float, int]] = {}
        #: Simulated times [s] of its next exit and next entry (inf: none due).
        self.exit_at = off
        self.enter_at = off
        if not self.reacts:
            self.acts = False  # nothing to do: the model need not schedule it

    @property
    def reacts(self) -> bool:
        return (
            self.cut_at < math.inf
            or self.top_up_at < math.inf
            or self.stop_loss is not None
            or self.holding is not None
            or self.reentry is not None
        )

    def opening_positions(self) -> list[tuple[int, int, float]]:
        ex = self.exchange
        value = float(ex.ledger.balances[self.account] @ ex.asset_prices)
        sign = self.side()
        margin = value / len(self.instruments)
        opened = []
        for m in self.instruments:
            price = float(ex.index[m])
            inst = ex.instruments[m]
            lots = int(inst.tiers.max_notional(margin, self.leverage) / price / inst.lot_size)
            opened.append((m, sign * lots, price))
            if lots:
                self.set_stop(m, price, sign)
        self.exit_at = self.wait(self.holding)
        return opened

    def side(self) -> int:
        """+1 long or -1 short: its fixed side, or long with probability ``long_share``."""
        side = self.params.side
        if side == "random":
            side = "long" if self.draws.random() < self.params.long_share else "short"
        return 1 if side == "long" else -1

    def set_stop(self, m: int, entry: float, sign: int) -> None:
        """Its stop in m, ``stop_loss`` from ``entry`` rounded away (if it keeps one)."""
        if self.stop_loss is not None:
            self.stops[m] = (round_number(entry * (1 - sign * self.stop_loss), down=sign > 0), sign)

    def wait(self, mean: float | None) -> float:
        """The simulated time [s] an exponential wait of ``mean`` seconds from now ends
        (inf without a mean)."""
        return math.inf if mean is None else self.exchange.time + float(self.draws.exponential(mean))

    def step(self) -> None:
        ratio = self.margin_ratio()
        if ratio >= self.top_up_at:
            self.top_up(ratio)
        if ratio >= self.cut_at:
            self.cut()
        if self.stops:
            self.check_stops()
        if self.holding is not None or self.reentry is not None:
            self.turn_over()

    def top_up(self, ratio: float) -> None:
        """Deposit what brings the ratio back to its target (the whole wallet at most)."""
        equity = self.equity()
        need = self.wallet if not math.isfinite(ratio) or equity <= 0 else equity * (ratio / self.top_up_target - 1)
        amount = min(self.wallet, need)
        if amount > 0:
            self.exchange.deposit(self.account, amount)
            self.wallet -= amount

    def cut(self) -> None:
        """Close ``cut_fraction`` of every position (at least one lot)."""
        market = self.market
        for m in self.instruments:
            size = abs(self.position(m))
            if size:
                qty = max(self.cut_fraction * size, self.exchange.instruments[m].lot_size)
                sign = 1 if self.position(m) > 0 else -1
                self.reduce(m, qty, market.venue_price(m) * (1 - sign * self.slippage))

    def check_stops(self) -> None:
        """Close the whole position where the venue price crossed the stop."""
        market = self.market
        for m, (stop, sign) in list(self.stops.items()):
            price = market.venue_price(m)
            if (price - stop) * sign > 0:
                continue
            if not self.close(m):
                del self.stops[m]

    def close(self, m: int) -> bool:
        """Send a reduce-only IOC for the whole position in m, ``max_slippage_bps`` from
        the venue price; False when already flat there."""
        size = self.position(m)
        if size == 0:
            return False
        price = self.market.venue_price(m)
        self.reduce(m, abs(size), price * (1 - (1 if size > 0 else -1) * self.slippage))
        return True

    def turn_over(self) -> None:
        """Exit when the holding time is up; once flat, wait, then enter again."""
        if self.exchange.ledger.positions[self.account].any():
            if self.exchange.time >= self.exit_at:
                for m in self.instruments:
                    self.close(m)
            return
        self.stops.clear()
        if self.reentry is None:
            return
        if self.enter_at == math.inf:
            self.enter_at = self.wait(self.reentry)
        elif self.exchange.time >= self.enter_at:
            self.enter()

    def enter(self) -> None:
        """Open a position at its leverage in every instrument with its equity: IOC
        orders ``entry_slippage`` from the venue price, sized to what the margin tiers
        allow after the taker fee and the limit's distance from the mark (which the
        venue's margin check charges). A holder that cannot open a lot any more leaves."""
        ex = self.exchange
        sign = self.side()
        margin = self.equity() / len(self.instruments)
        orders = {}  # instrument -> its entry order (none where it rounds to no lot)
        for m in self.instruments:
            price = self.market.venue_price(m)
            limit = price * (1 + sign * self.entry_slippage)
            cost = ex.fees.taker + max(0.0, sign * (limit / float(ex.marks[m]) - 1.0))
            notional = ex.instruments[m].tiers.max_notional(margin, self.leverage, cost)
            order = self.order(m, Side(sign), notional / limit, limit, OrderType.IOC)
            if order is not None:
                orders[m] = order
        if not orders:
            self.reentry = None  # too little equity for a lot: it leaves the venue
            return
        for m, result in zip(orders, self.submit_many(list(orders.values())), strict=True):
            if result.fills:
                self.set_stop(m, self.market.venue_price(m), sign)
        self.enter_at = math.inf
        self.exit_at = self.wait(self.holding)

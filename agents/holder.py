"""Leveraged position holder: starts the run with a position at its leverage (the
population whose leverage researchers vary) and, if its parameters say so, defends it.

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

Every reaction is off by default (a plain holder only holds, and the model does not
schedule it). A holder with reactions costs one cached array read and a few
comparisons per step when nothing triggers.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field

from agents.base import FractionDist, NonNegativeDist, StrictParams, Trader, within
from sim.distributions import Distribution, Uniform, draw

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


def round_number(price: float, down: bool) -> float:
    """``price`` rounded to three significant digits, down or up (Osler 2005's round
    numbers: 47,523 -> 47,500 down, 47,600 up)."""
    if price <= 0:
        return price
    unit = 10.0 ** (math.floor(math.log10(price)) - 2)
    return (math.floor if down else math.ceil)(price / unit) * unit


class LeveragedHolder(Trader):
    """Opens nothing itself: the model gives it its position at the start (see
    `opening_positions`), sized ``leverage x collateral value``, split equally over
    its instruments. Then it holds, or defends its position (module docstring)."""

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
        self.slippage = draw(params.max_slippage_bps, rng) / 1e4 if self.reacts else 0.0
        #: instrument -> (stop price USD, +1 long / -1 short).
        self.stops: dict[int, tuple[float, int]] = {}
        if not self.reacts:
            self.acts = False  # nothing to do: the model need not schedule it

    @property
    def reacts(self) -> bool:
        return self.cut_at < math.inf or self.top_up_at < math.inf or self.stop_loss is not None

    def opening_positions(self) -> list[tuple[int, int, float]]:
        ex = self.exchange
        value = float(ex.ledger.balances[self.account] @ ex.asset_prices)
        side = self.params.side
        if side == "random":
            side = "long" if self.draws.random() < self.params.long_share else "short"
        sign = 1 if side == "long" else -1
        per_instrument = self.leverage * value / len(self.instruments)
        opened = []
        for m in self.instruments:
            price = float(ex.index[m])
            lots = int(per_instrument / price / ex.instruments[m].lot_size)
            opened.append((m, sign * lots, price))
            if self.stop_loss is not None and lots:
                self.stops[m] = (round_number(price * (1 - sign * self.stop_loss), down=sign > 0), sign)
        return opened

    def step(self) -> None:
        ratio = self.margin_ratio()
        if ratio >= self.top_up_at:
            self.top_up(ratio)
        if ratio >= self.cut_at:
            self.cut()
        if self.stops:
            self.check_stops()

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
            size = abs(self.position(m))
            if size == 0:
                del self.stops[m]
                continue
            self.reduce(m, size, price * (1 - sign * self.slippage))

"""Instrument specifications: tick and lot sizes, margin tiers, unit conversions.

An instrument is a linear perpetual future settled in the settlement asset (USD):
price in USD per unit of the base asset, size in base units. The book works in
integer ticks (``price / tick_size``) and lots (``size / lot_size``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

#: Relative slack when deciding whether a float price or size sits on the grid.
GRID_TOLERANCE = 1e-9
#: Most lots or ticks a size or price can be: beyond 2**53 steps a float no longer
#: tells whole numbers apart, so a size or price there counts as off the grid.
MAX_GRID_UNITS = 2**53


@dataclass(frozen=True)
class MarginTiers:
    """Binance-style brackets for one instrument.

    Tier k covers notional in ``[floors[k], floors[k+1])`` (USD). Maintenance margin in
    tier k is ``N * mmr[k] - cum[k]`` with ``cum[0] = 0`` and
    ``cum[k] = cum[k-1] + floors[k] * (mmr[k] - mmr[k-1])``, which makes it continuous
    at every boundary. Initial margin is ``N / max_leverage[k]`` for N in tier k.

    Attributes:
        floors: Shape (K,), lower notional bound of each tier, ``floors[0] == 0``.
        mmr: Shape (K,), maintenance margin rate per tier, non-decreasing.
        max_leverage: Shape (K,), maximum leverage per tier, non-increasing.
    """

    floors: tuple[float, ...]
    mmr: tuple[float, ...]
    max_leverage: tuple[float, ...]

    def __post_init__(self) -> None:
        k = len(self.floors)
        if k == 0 or len(self.mmr) != k or len(self.max_leverage) != k:
            raise ValueError("margin tiers need equally many floors, mmr and max_leverage values (at least one)")
        if self.floors[0] != 0:
            raise ValueError(f"the first margin tier must start at notional 0, not {self.floors[0]}")
        if any(b <= a for a, b in zip(self.floors, self.floors[1:], strict=False)):
            raise ValueError(f"margin tier floors must increase: {list(self.floors)}")
        if any(not 0 < r < 1 for r in self.mmr) or any(b < a for a, b in zip(self.mmr, self.mmr[1:], strict=False)):
            raise ValueError(f"maintenance rates must be in (0, 1) and non-decreasing: {list(self.mmr)}")
        if any(lev < 1 for lev in self.max_leverage) or any(
            b > a for a, b in zip(self.max_leverage, self.max_leverage[1:], strict=False)
        ):
            # a rising leverage would make initial margin fall as a position grows: a fill
            # or a cancel could then raise an account's requirement (`sim.exchange`'s batch
            # re-checks rely on it never doing so), and no venue's brackets do that
            raise ValueError(f"max leverage must be >= 1 and non-increasing: {list(self.max_leverage)}")
        for rate, lev in zip(self.mmr, self.max_leverage, strict=True):
            if 1 / lev <= rate:
                raise ValueError(f"initial rate 1/{lev} must exceed the maintenance rate {rate}")

    @classmethod
    def flat(cls, mmr: float, max_leverage: float) -> MarginTiers:
        """A single tier: the same rates at every size."""
        return cls((0.0,), (mmr,), (max_leverage,))

    @property
    def cum(self) -> tuple[float, ...]:
        """Maintenance amounts per tier (USD), see the class docstring."""
        cum = [0.0]
        for k in range(1, len(self.floors)):
            cum.append(cum[-1] + self.floors[k] * (self.mmr[k] - self.mmr[k - 1]))
        return tuple(cum)

    def tier_of(self, notional: float) -> int:
        """Index of the tier a notional (USD) falls in."""
        return int(np.searchsorted(self.floors, notional, side="right")) - 1

    def max_notional(self, margin, leverage=math.inf, cost_rate=0.0):
        """The largest position (USD notional) that ``margin`` USD can open: at most
        ``leverage x margin``, and within the venue's initial margin with ``cost_rate``
        of the notional paid on top (taker fee and slippage), i.e. the largest N with
        ``N / max_leverage(N) + cost_rate x N <= margin``, as a venue's "max open"
        calculator gives it. 0 for no margin. Elementwise over arrays (numpy
        broadcasting: a population's members at once); a float for floats."""
        margin = np.asarray(margin, dtype=float)
        best = np.zeros(np.broadcast(margin, leverage, cost_rate).shape)
        ceilings = (*self.floors[1:], math.inf)
        for floor, ceiling, lev in zip(self.floors, ceilings, self.max_leverage, strict=True):
            fits = margin / (1.0 / lev + cost_rate)
            best = np.where(fits >= floor, np.maximum(best, np.minimum(fits, math.nextafter(ceiling, 0.0))), best)
        with np.errstate(invalid="ignore"):  # inf leverage x no margin
            out = np.where(margin > 0, np.minimum(best, leverage * margin), 0.0)
        return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class Instrument:
    """A linear perpetual future.

    Attributes:
        name: Unique name, e.g. ``"BTC"``.
        tick_size: Price increment (USD).
        lot_size: Size increment (base units).
        tiers: Margin brackets.
        base_asset: Collateral asset priced by this instrument's index (defaults to
            ``name``): a balance of that asset is valued at this index price.
    """

    name: str
    tick_size: float
    lot_size: float
    tiers: MarginTiers
    base_asset: str | None = None

    def __post_init__(self) -> None:
        if not (self.tick_size > 0 and math.isfinite(self.tick_size)):
            raise ValueError(f"instrument {self.name}: tick_size must be > 0, got {self.tick_size}")
        if not (self.lot_size > 0 and math.isfinite(self.lot_size)):
            raise ValueError(f"instrument {self.name}: lot_size must be > 0, got {self.lot_size}")

    @property
    def asset(self) -> str:
        return self.base_asset or self.name

    def to_ticks(self, price: float) -> int | None:
        """Price (USD) to ticks; None when not finite, not positive or off the tick grid."""
        return _on_grid(price, self.tick_size)

    def to_lots(self, qty: float) -> int | None:
        """Size (base units) to lots; None when not finite, not positive or off the lot grid."""
        return _on_grid(qty, self.lot_size)

    def lots_up(self, qty: float) -> int:
        """Smallest whole number of lots covering ``qty`` base units (round up)."""
        return _snap(qty / self.lot_size, math.ceil)

    def lots_down(self, qty: float) -> int:
        """Largest whole number of lots within ``qty`` base units (round down)."""
        return _snap(qty / self.lot_size, math.floor)

    def ticks_toward(self, price: float, side: int) -> int:
        """``price`` on the tick grid, rounded away from the touch: down for a buy
        (side > 0), up for a sell, so the order never becomes more aggressive."""
        return _snap(price / self.tick_size, math.floor if side > 0 else math.ceil)

    def price(self, ticks: int) -> float:
        return ticks * self.tick_size

    def qty(self, lots: int) -> float:
        return lots * self.lot_size


def _snap(units: float, rounding) -> int:
    """``units`` to a whole number: the nearest one when within float noise of it,
    else ``rounding`` (math.floor or math.ceil)."""
    nearest = round(units)
    if abs(units - nearest) <= GRID_TOLERANCE * max(1.0, abs(units)):
        return int(nearest)
    return int(rounding(units))


@njit(cache=True)
def _snap_one(u, down):
    """`_snap` in compiled code: the nearest whole number when ``u`` is within float
    noise of it, else rounded down (``down``) or up; 0 when not finite."""
    if not np.isfinite(u):
        return 0
    nearest = np.rint(u)
    if abs(u - nearest) <= GRID_TOLERANCE * max(1.0, abs(u)):
        return int(nearest)
    return int(np.floor(u)) if down else int(np.ceil(u))


# `order_form`, `reduce_form` and `_snap_one` (and `GRID_TOLERANCE`, frozen into them)
# are called by the populations' kernels in `agents/`: numba's cache checks a kernel's
# own file only, so after editing them delete `agents/__pycache__` too (`make clean`).
@njit(cache=True)
def order_form(qty, price, side, lot_size, tick_size):
    """An order form's rounding of one order: ``(lots, ticks, sent)``. The size (base
    units) floored to lots (`Instrument.lots_down`), the limit (USD) rounded away from the
    touch for side +1 / -1 (`Instrument.ticks_toward`); not sent (0 lots and ticks) when
    a size or limit is not a finite positive number or rounds to nothing."""
    if not (np.isfinite(qty) and np.isfinite(price) and qty > 0 and price > 0):
        return 0, 0, False
    lots, ticks = _snap_one(qty / lot_size, True), _snap_one(price / tick_size, side > 0)
    if lots > 0 and ticks > 0:
        return lots, ticks, True
    return 0, 0, False


@njit(cache=True)
def reduce_form(held, qty, limit, lot_size, tick_size):
    """The rounding of one reduce-only order against a signed position ``held`` (lots):
    ``(side, lots, ticks, sent)``. The side shrinks the position, the size is ``qty``
    base units floored to lots and capped at the position, the limit ``limit`` USD
    rounded away from the touch (at least one tick); sent when a lot or more remains."""
    side = -1 if held > 0 else 1
    lots = min(abs(held), _snap_one(qty / lot_size, True))
    ticks = max(_snap_one(limit / tick_size, side > 0), 1)
    return side, lots, ticks, lots > 0


@njit(cache=True)
def order_grid(qty, price, side, instrument, lot_sizes, tick_sizes):
    """`order_form` of (k,) orders: ``(lots, ticks, sent)``, (k,) each, for (k,) sizes,
    limits, sides and instruments (indices into the (I,) ``lot_sizes`` and
    ``tick_sizes``)."""
    k = qty.shape[0]
    lots, ticks, sent = np.empty(k, np.int64), np.empty(k, np.int64), np.empty(k, np.bool_)
    for i in range(k):
        m = instrument[i]
        lots[i], ticks[i], sent[i] = order_form(qty[i], price[i], side[i], lot_sizes[m], tick_sizes[m])
    return lots, ticks, sent


@njit(cache=True)
def reduce_grid(held, qty, limit, lot_size, tick_size):
    """`reduce_form` of (k,) reduce-only orders in one instrument: ``(side, lots, ticks,
    sent)``, (k,) each."""
    k = held.shape[0]
    side, lots, ticks = np.empty(k, np.int64), np.empty(k, np.int64), np.empty(k, np.int64)
    sent = np.empty(k, np.bool_)
    for i in range(k):
        side[i], lots[i], ticks[i], sent[i] = reduce_form(held[i], qty[i], limit[i], lot_size, tick_size)
    return side, lots, ticks, sent


def _on_grid(value: float, step: float) -> int | None:
    """``value / step`` as a whole number of steps (1 to `MAX_GRID_UNITS`); None when
    ``value`` is not a finite positive number or not within float noise of the grid."""
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        return None
    units = value / step
    nearest = round(units) if units <= MAX_GRID_UNITS else 0
    if nearest <= 0 or abs(units - nearest) > GRID_TOLERANCE * max(1.0, abs(units)):
        return None
    return int(nearest)


def on_grid_many(values: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """`Instrument.to_ticks` / `to_lots` elementwise: (k,) float values on (k,) grid
    steps (tick or lot sizes) as int64 whole steps, 0 where those give None."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        units = values / steps
        nearest = np.round(units)
        on = (
            np.isfinite(values)
            & (values > 0)
            & (nearest > 0)
            & (nearest <= MAX_GRID_UNITS)
            & (np.abs(units - nearest) <= GRID_TOLERANCE * np.maximum(1.0, np.abs(units)))
        )
    return np.where(on, nearest, 0.0).astype(np.int64)


@dataclass(frozen=True)
class CollateralAsset:
    """A collateral asset and its haircuts.

    Attributes:
        name: e.g. ``"USD"``, ``"BTC"``. USD is the settlement asset, priced at 1.
        weight: Value weight of a positive balance (1 - haircut), in (0, 1].
        liability_weight: Weight of a negative balance (a liability), >= 1.
        liability_mmr: Maintenance margin on the USD value of a negative balance.
    """

    name: str
    weight: float = 1.0
    liability_weight: float = 1.0
    liability_mmr: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.weight <= 1:
            raise ValueError(f"collateral {self.name}: weight must be in (0, 1], got {self.weight}")
        if self.liability_weight < 1:
            raise ValueError(f"collateral {self.name}: liability_weight must be >= 1, got {self.liability_weight}")
        if not 0 <= self.liability_mmr < 1:
            raise ValueError(f"collateral {self.name}: liability_mmr must be in [0, 1), got {self.liability_mmr}")

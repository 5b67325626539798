"""Value types shared by the book and the exchange.

Prices inside the book are integer ticks and sizes integer lots; the instrument
(`sim.instruments.Instrument`) converts them to floats for the ledger.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

import numpy as np


class Side(IntEnum):
    """Order side, usable as the sign of a signed quantity."""

    BUY = 1
    SELL = -1

    @property
    def opposite(self) -> Side:
        return Side(-self.value)


class OrderType(StrEnum):
    """How an order meets the book.

    - ``LIMIT``: matches what crosses its price, rests the remainder (good till cancel).
    - ``MARKET``: matches at any price, the unfilled remainder is cancelled.
    - ``IOC``: matches what crosses its price, the remainder is cancelled.
    - ``POST_ONLY``: rests at its price; rejected if it would cross on arrival.
    """

    LIMIT = "limit"
    MARKET = "market"
    IOC = "ioc"
    POST_ONLY = "post_only"


class RejectReason(StrEnum):
    """Why an order was refused. A rejection is a result, never an exception."""

    BAD_QUANTITY = "bad_quantity"
    BAD_PRICE = "bad_price"
    OFF_TICK = "off_tick"
    OFF_LOT = "off_lot"
    WOULD_CROSS = "would_cross"
    INSUFFICIENT_MARGIN = "insufficient_margin"
    REDUCE_ONLY_WOULD_INCREASE = "reduce_only_would_increase"
    REDUCE_ONLY_MUST_NOT_REST = "reduce_only_must_not_rest"
    UNKNOWN_ACCOUNT = "unknown_account"
    UNKNOWN_INSTRUMENT = "unknown_instrument"
    OUTSIDE_PRICE_BAND = "outside_price_band"
    MODE_CHANGE_NOT_FLAT = "mode_change_not_flat"
    NOT_ISOLATED = "not_isolated"
    INSUFFICIENT_BALANCE = "insufficient_balance"


@dataclass(slots=True, frozen=True)
class OrderRequest:
    """An order as a trader sends it: size in base units, price in USD.

    Attributes:
        instrument: Index of the instrument.
        side: BUY or SELL.
        qty: Size in base units (a multiple of the lot size).
        price: Limit price in USD (a multiple of the tick); ignored for MARKET.
        kind: LIMIT, MARKET, IOC or POST_ONLY.
        reduce_only: Only shrink the position.
    """

    instrument: int
    side: Side
    qty: float
    price: float | None = None
    kind: OrderType = OrderType.LIMIT
    reduce_only: bool = False


@dataclass(slots=True)
class Fill:
    """One executed trade between an incoming (taker) and a resting (maker) order.

    Attributes:
        instrument: Index of the instrument.
        price: Execution price in ticks (always the maker's price).
        qty: Size in lots.
        taker_side: Side of the taker; the maker is on the other side.
        liquidation: True when the taker was a liquidation order.
    """

    instrument: int
    taker_order: int
    maker_order: int
    taker_account: int
    maker_account: int
    taker_side: Side
    price: int
    qty: int
    liquidation: bool = False


@dataclass(frozen=True, slots=True)
class FillColumns:
    """Fills as (n,) arrays, in their order (`FillLog.columns`).

    Attributes:
        instrument, taker_account, maker_account: Indices, int64.
        taker_side: +1 or -1, int64.
        price: USD (ticks times the tick size, as `sim.instruments.Instrument.price`).
        qty: Base units (lots times the lot size, as `Instrument.qty`).
        liquidation: bool.
    """

    instrument: np.ndarray
    taker_account: np.ndarray
    maker_account: np.ndarray
    taker_side: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    liquidation: np.ndarray


class FillLog:
    """Fills in execution order, kept as (n, 9) int64 blocks of the `Fill` fields: a
    batch's fills are written as one block from the book's arrays, without a `Fill`
    object each (2,600 fills a step at 100,000 accounts); the vectorized consumers (the
    recorder, the index's flow) read `columns`, and `Fill` objects are made only when
    iterated or indexed. Equal to another log, or to a list of `Fill`, with the same
    fills in the same order."""

    def __init__(self) -> None:
        self._blocks: list[np.ndarray] = []
        self._n = 0

    def add_columns(self, *columns: np.ndarray) -> None:
        """Append fills given as (n,) arrays, one per `Fill` field in its order."""
        self.add_table(np.column_stack(columns).astype(np.int64, copy=False))

    def add_table(self, table: np.ndarray) -> None:
        """Append fills given as an (n, 9) int64 table of the `Fill` fields (kept, not
        copied: the caller does not write to it afterwards)."""
        if table.shape[0]:
            self._blocks.append(table)
            self._n += table.shape[0]

    def extend(self, fills: Sequence[Fill]) -> None:
        """Append `Fill` objects."""
        if fills:
            self.add_columns(*(np.array(column, np.int64) for column in zip(*map(_fields, fills), strict=True)))

    def columns(self, tick_sizes: np.ndarray, lot_sizes: np.ndarray) -> FillColumns:
        """Every fill, as columns, priced with the (I,) instruments' ``tick_sizes`` and
        ``lot_sizes``."""
        table = self._table()
        m = table[:, 0]
        return FillColumns(
            instrument=m,
            taker_account=table[:, 3],
            maker_account=table[:, 4],
            taker_side=table[:, 5],
            price=table[:, 6] * tick_sizes[m],
            qty=table[:, 7] * lot_sizes[m],
            liquidation=table[:, 8].astype(bool),
        )

    def clear(self) -> None:
        self._blocks.clear()
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[Fill]:
        return map(_fill, self._table().tolist())

    def __getitem__(self, i: int | slice) -> Fill | list[Fill]:
        if isinstance(i, slice):
            return list(map(_fill, self._table()[i].tolist()))
        return _fill(self._table()[i].tolist())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FillLog):
            return np.array_equal(self._table(), other._table())
        return isinstance(other, list) and list(self) == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FillLog({list(self)!r})"

    def _table(self) -> np.ndarray:
        """(n, 9) every fill (the blocks joined into one, once)."""
        if len(self._blocks) != 1:
            self._blocks = [np.concatenate(self._blocks) if self._blocks else np.empty((0, 9), np.int64)]
        return self._blocks[0]


def _fields(fill: Fill) -> tuple[int, ...]:
    return (
        fill.instrument, fill.taker_order, fill.maker_order, fill.taker_account, fill.maker_account,
        int(fill.taker_side), fill.price, fill.qty, int(fill.liquidation),
    )  # fmt: skip


def _fill(row: list[int]) -> Fill:
    return Fill(*row[:5], Side(row[5]), row[6], row[7], bool(row[8]))


@dataclass(slots=True)
class CancelledOrder:
    """A resting order taken off the book, with the quantity that was still open."""

    instrument: int
    order_id: int
    account: int
    side: Side
    price: int
    qty: int


@dataclass(slots=True)
class SubmitResult:
    """What happened to a submitted order.

    Attributes:
        order_id: The order's id; -1 when it was rejected before reaching a book.
        fills: Matches, in execution order.
        rested: Lots left resting on the book.
        cancelled: Lots of this order cancelled (IOC/market remainder).
        reject: Reason when the order was refused; ``None`` when accepted.
        self_trade_cancels: Resting orders of the same account that self-trade
            prevention removed while this order matched.
        clipped: Lots removed from a reduce-only order before it reached the book.
    """

    order_id: int
    fills: list[Fill] = field(default_factory=list)
    rested: int = 0
    cancelled: int = 0
    reject: RejectReason | None = None
    self_trade_cancels: list[CancelledOrder] = field(default_factory=list)
    clipped: int = 0

    @property
    def accepted(self) -> bool:
        return self.reject is None

    @property
    def filled(self) -> int:
        """Lots of this order that traded."""
        return sum(f.qty for f in self.fills)

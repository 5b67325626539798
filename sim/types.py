"""Value types shared by the book and the exchange.

Prices inside the book are integer ticks and sizes integer lots; the instrument
(`sim.instruments.Instrument`) converts them to floats for the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from operator import attrgetter

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
    """Fills as (n,) int64 arrays, in their order (for the vectorized consumers of a
    step's fills: the recorder, the index's flow).

    Attributes:
        instrument, taker_account, maker_account: Indices.
        taker_side: +1 or -1.
        price: Ticks.
        qty: Lots.
        liquidation: (n,) bool.
    """

    instrument: np.ndarray
    taker_account: np.ndarray
    maker_account: np.ndarray
    taker_side: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    liquidation: np.ndarray

    @classmethod
    def of(cls, fills: Sequence[Fill]) -> FillColumns:
        n = len(fills)
        return cls(
            *(np.fromiter(map(attrgetter(name), fills), np.int64, n) for name in _INT_FILL_FIELDS),
            liquidation=np.fromiter(map(attrgetter("liquidation"), fills), bool, n),
        )


_INT_FILL_FIELDS = ("instrument", "taker_account", "maker_account", "taker_side", "price", "qty")


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

"""The batch path's admission against the order-by-order one: grid checks, reduce-only
clipping and the price band of `Exchange.submit_batch` equal `Exchange._admit` on every
row (bad values included); groups equal `Exchange.submit_many`; the integer entry point
(`submit_batch_lots`) equals the float one."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.book import KIND_CANCEL, KIND_CODES
from sim.exchange import EXCHANGE_REJECTS, Exchange, FeeSchedule, _Batch
from sim.instruments import CollateralAsset
from sim.ledger import GENESIS, N_SYSTEM, USD
from sim.types import OrderRequest, OrderType, Side
from tests.conftest import btc, eth

TRADERS = 5


def exchange(mode: str = "cross", band: float = 0.0, cash: float = 1_000.0) -> Exchange:
    ex = Exchange(
        [btc(), eth()], [CollateralAsset("USD")], TRADERS, [50_000.0, 3_000.0], FeeSchedule(0.0005, -0.0001), mode
    )
    ex.price_band = band
    for account in range(N_SYSTEM, N_SYSTEM + TRADERS):
        ex.ledger.deposit(account, USD, cash)  # tight: some orders fail the margin check
    return ex


def sizes(lot: float) -> st.SearchStrategy:
    """Sizes on the lot grid, off it, and bad ones."""
    return st.one_of(
        st.integers(1, 300).map(lambda n: n * lot),
        st.floats(-1.0, 1.0),
        st.sampled_from([0.0, -lot, lot / 2, lot * 1.5, math.nan, math.inf, 1e300, 1e-300]),
    )


def prices(mark: float, tick: float) -> st.SearchStrategy:
    """Prices on the tick grid around ``mark``, off it, and bad ones (None: no price)."""
    return st.one_of(
        st.integers(-400, 400).map(lambda n: round(mark / tick + n) * tick),
        st.floats(-10.0, 2 * mark),
        st.sampled_from([None, 0.0, -tick, tick / 3, math.nan, -math.inf, 1e300]),
    )


@st.composite
def admission_rows(draw):
    n = draw(st.integers(1, 40))
    rows = []
    for _ in range(n):
        m = draw(st.sampled_from([0, 0, 1, 1, -1, 2]))
        inst = (btc(), eth())[m if m in (0, 1) else 0]
        mark = (50_000.0, 3_000.0)[m if m in (0, 1) else 0]
        account = draw(st.sampled_from([*range(N_SYSTEM, N_SYSTEM + TRADERS), -1, 999]))
        side = draw(st.sampled_from([1, -1]))
        qty = draw(sizes(inst.lot_size))
        price = draw(prices(mark, inst.tick_size))
        kind = draw(st.sampled_from(list(OrderType)))
        rows.append((account, m, side, qty, price, kind, draw(st.booleans())))
    return rows


@settings(max_examples=150, deadline=None)
@given(
    admission_rows(),
    st.lists(st.integers(-3, 3), min_size=TRADERS * 2, max_size=TRADERS * 2),
    st.sampled_from([0.0, 0.002, 0.05]),
    st.booleans(),
    st.floats(0.97, 1.03),
)
def test_batch_admission_equals_admit_order_by_order(rows, positions, band, liquidation, move):
    """`_Batch.from_floats` (ids, grid) + `Exchange._admit_many` (reduce-only, band) give
    `Exchange._admit`'s reject, lots, ticks, kind and clipped lots on every row."""
    ex = exchange(band=band)
    for i, held in enumerate(positions):  # some long, some short, some flat
        if held:
            ex.ledger.trade_between(N_SYSTEM + i // 2, GENESIS, i % 2, held * 100, float(ex.marks[i % 2]), 0.0)
    marks = ex.marks * np.array([move, 1 / move])
    ex.set_prices(marks, marks)
    columns = [list(c) for c in zip(*rows, strict=True)]
    columns[4] = [math.nan if p is None else p for p in columns[4]]
    columns[5] = [KIND_CODES[k] for k in columns[5]]
    b = _Batch.from_floats(ex, *columns, None, None)
    got = ex._admit_many(
        b.book_accounts, b.books, b.sides, b.want_lots, b.want_ticks, b.want_kinds, b.reduce_only, b.grid_reject,
        liquidation,
    )  # fmt: skip
    for k, (account, instrument, side, qty, price, kind, ro) in enumerate(rows):
        reject, lots, ticks, kind_after, clipped = ex._admit(
            account, OrderRequest(instrument, Side(side), qty, price, kind, ro), liquidation
        )
        expected = (reject, lots, -1 if ticks is None else ticks, KIND_CODES[kind_after], clipped)
        assert (EXCHANGE_REJECTS[got[0][k]], *(int(c[k]) for c in got[1:])) == expected, (k, rows[k])


def order_fields() -> tuple:
    """(instrument, side, lots (<= 0: bad), ticks from the mark / 10 (None: no price), kind, reduce only)."""
    return (
        st.integers(0, 1),
        st.sampled_from([1, -1]),
        st.integers(-1, 30),
        st.one_of(st.integers(-20, 20), st.none()),
        st.sampled_from(list(OrderType)),
        st.booleans(),
    )


#: A batch as items: a cancel (naming the (n % 10)-th order id), an order alone, or a
#: group of orders of one trader.
items = st.lists(
    st.one_of(
        st.tuples(st.just("cancel"), st.integers(0, 4), st.integers(0, 40)),
        st.tuples(st.just("alone"), st.integers(0, 4), st.lists(st.tuples(*order_fields()), min_size=1, max_size=1)),
        st.tuples(st.just("group"), st.integers(0, 4), st.lists(st.tuples(*order_fields()), min_size=2, max_size=4)),
    ),
    max_size=30,
)


def _row(ex: Exchange, fields: tuple) -> tuple[int, int, int, int, int, bool, float, float]:
    """(instrument, side, lots, ticks, kind code, reduce only, size, price) of an order."""
    m, side, lots, offset, kind, reduce_only = fields
    inst = ex.instruments[m]
    ticks = 0 if offset is None else inst.to_ticks(float(ex.marks[m])) + 10 * offset
    price = math.nan if offset is None else inst.price(ticks)
    return m, side, 10 * lots, ticks, KIND_CODES[kind], reduce_only, inst.qty(10 * lots), price


@settings(max_examples=80, deadline=None)
@given(items, st.sampled_from(["cross", "isolated"]), st.sampled_from([0.0, 0.002]))
def test_groups_equal_submit_many_and_lots_equal_floats(batch_items, mode, band):
    """A batch with groups gives, to the bit, the outcomes, ids, trades and ledger of a
    loop of `cancel`, `submit` and `submit_many` (a group); `submit_batch_lots` gives
    those of `submit_batch` on the same orders in lots and ticks."""
    loop, floats, ints = exchange(mode, band), exchange(mode, band), exchange(mode, band)
    expected, rows = [], []
    for group, (what, trader, payload) in enumerate(batch_items):
        account = N_SYSTEM + trader
        if what == "cancel":
            target = (payload % 20) * 2 + payload % 2
            gone = loop.cancel(target)
            expected.append((target, None, 0, gone.qty if gone else 0, 0, 0))
            rows.append((account, 0, 1, 0, 0, KIND_CANCEL, False, 0.0, 0.0, target, -1))
            continue
        orders = [_row(loop, fields) for fields in payload]
        requests = [
            OrderRequest(m, Side(side), qty, None if math.isnan(price) else price, kind, ro)
            for (m, side, _, _, _, ro, qty, price), (*_, kind, _) in zip(orders, payload, strict=True)
        ]
        alone = what == "alone"
        results = [loop.submit(account, *_args(requests[0]))] if alone else loop.submit_many(account, requests)
        expected += [(r.order_id, r.reject, r.rested, r.cancelled, r.clipped, r.filled) for r in results]
        rows += [(account, *o, -1, -1 if alone else group) for o in orders]
    if not rows:
        return
    accounts, ms, sides, lots, ticks, kinds, ro, qtys, prices, cancel_ids, groups = map(list, zip(*rows, strict=True))
    by_floats = floats.submit_batch(accounts, ms, sides, qtys, prices, kinds, ro, cancel_ids, groups)
    by_ints = ints.submit_batch_lots(accounts, ms, sides, lots, ticks, kinds, ro, cancel_ids, groups)
    for result, ex in ((by_floats, floats), (by_ints, ints)):
        got = zip(
            result.order_id.tolist(), result.reasons(), result.rested.tolist(), result.cancelled.tolist(),
            result.clipped.tolist(), result.filled.tolist(), strict=True,
        )  # fmt: skip
        assert list(got) == expected
        assert ex.trades == loop.trades and ex.n_orders == loop.n_orders and ex.n_cancels == loop.n_cancels
        for name in ("balances", "positions", "entry", "funding_index", "isolated_margin", "open_bids", "open_asks"):
            assert np.array_equal(getattr(ex.ledger, name), getattr(loop.ledger, name)), name


def _args(request: OrderRequest) -> tuple:
    return request.instrument, request.side, request.qty, request.price, request.kind, request.reduce_only


@pytest.mark.parametrize(
    ("accounts", "kinds", "groups", "message"),
    [
        ([N_SYSTEM] * 3, [0, 0, 0], [1, 2, 1], "consecutive"),
        ([N_SYSTEM, N_SYSTEM + 1], [0, 0], [1, 1], "one account"),
        ([N_SYSTEM, N_SYSTEM], [KIND_CANCEL, 0], [1, 1], "no cancels"),
    ],
)
def test_malformed_groups_are_refused_loudly(accounts, kinds, groups, message):
    ex = exchange()
    n = len(accounts)
    with pytest.raises(ValueError, match=message):
        ex.submit_batch_lots(accounts, [0] * n, [1] * n, [1] * n, [500_000] * n, kinds, None, [0] * n, groups)


def test_a_group_refused_at_the_start_is_checked_again_after_a_cancel_frees_its_margin():
    """A group whose first order needs no check (reduce-only) and whose bid fails the
    check only while the account's older bid rests: cancelled first in the batch, the
    group passes, as `cancel` then `submit_many` would."""
    ex = exchange()
    account = N_SYSTEM
    ex.ledger.trade_between(account, GENESIS, 0, 100, 50_000.0, 0.0)  # long 0.1 BTC
    old_bid = ex.submit(account, 0, Side.BUY, 0.2, 49_000.0).order_id
    sell, buy = (
        (-1, 50, 500_010, KIND_CODES[OrderType.IOC], True),
        (1, 150, 495_000, KIND_CODES[OrderType.LIMIT], False),
    )
    result = ex.submit_batch_lots(
        [account] * 3, [0] * 3, [1, sell[0], buy[0]], [0, sell[1], buy[1]], [0, sell[2], buy[2]],
        [KIND_CANCEL, sell[3], buy[3]], [False, sell[4], buy[4]], [old_bid, -1, -1], [-1, 7, 7],
    )  # fmt: skip
    assert result.reasons() == [None, None, None] and result.rested[2] == 150
    assert ex.ledger.open_bids[account, 0] == 150 and ex.ledger.positions[account, 0] == 100

"""Order book: one test per operation, properties checked against a naive model, and the
batch API checked against one call per event."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.book import BOOK_REJECTS, KIND_CANCEL, KIND_CODES, OrderBook
from sim.types import OrderType, RejectReason

LIMIT, MARKET, IOC, POST = OrderType.LIMIT, OrderType.MARKET, OrderType.IOC, OrderType.POST_ONLY
BUY, SELL = 1, -1


def _book_with(*orders: tuple[int, int, int, int, int]) -> OrderBook:
    """Rest ``(order_id, account, side, lots, price)`` limit orders on a new book."""
    book = OrderBook()
    for oid, account, side, lots, price in orders:
        assert book.submit(oid, account, side, lots, price, LIMIT)[1] == lots
    return book


def test_limit_orders_rest_and_set_the_touch():
    book = _book_with((1, 10, BUY, 5, 99), (2, 11, BUY, 3, 98), (3, 12, SELL, 4, 101))
    assert (book.best_bid(), book.best_ask(), book.mid()) == (99, 101, 100.0)
    assert len(book) == 3


def test_fifo_within_a_level_and_partial_fill():
    book = _book_with((1, 10, SELL, 2, 100), (2, 11, SELL, 3, 100), (3, 12, SELL, 1, 101))
    fills, rested, cancelled, stp, reject = book.submit(4, 20, BUY, 4, 100, LIMIT)
    assert reject is None and not stp
    assert fills == [(1, 10, 100, 2), (2, 11, 100, 2)]
    assert (rested, cancelled) == (0, 0)
    assert book.resting_qty(2) == 1
    assert book.best_ask() == 100


def test_market_order_sweeps_levels_and_cancels_the_rest():
    book = _book_with((1, 10, SELL, 2, 100), (2, 11, SELL, 3, 105))
    fills, rested, cancelled, _, _ = book.submit(3, 20, BUY, 9, None, MARKET)
    assert fills == [(1, 10, 100, 2), (2, 11, 105, 3)]
    assert (rested, cancelled) == (0, 4)
    assert book.best_ask() is None and len(book) == 0


def test_ioc_respects_its_limit_and_never_rests():
    book = _book_with((1, 10, BUY, 2, 100), (2, 11, BUY, 3, 95))
    fills, rested, cancelled, _, _ = book.submit(3, 20, SELL, 4, 98, IOC)
    assert fills == [(1, 10, 100, 2)]
    assert (rested, cancelled) == (0, 2)
    assert book.best_bid() == 95 and book.best_ask() is None


def test_limit_remainder_rests_after_crossing():
    book = _book_with((1, 10, SELL, 2, 100))
    fills, rested, _, _, _ = book.submit(2, 20, BUY, 5, 101, LIMIT)
    assert fills == [(1, 10, 100, 2)] and rested == 3
    assert (book.best_bid(), book.best_ask()) == (101, None)


def test_post_only_rejected_when_it_would_cross_and_rests_otherwise():
    book = _book_with((1, 10, SELL, 2, 100))
    assert book.submit(2, 20, BUY, 1, 100, POST)[4] == RejectReason.WOULD_CROSS
    assert len(book) == 1
    _, rested, _, _, reject = book.submit(3, 20, BUY, 1, 99, POST)
    assert reject is None and rested == 1


def test_bad_size_or_price_is_rejected_without_change():
    book = _book_with((1, 10, SELL, 2, 100))
    assert book.submit(2, 20, BUY, 0, 100, LIMIT)[4] == RejectReason.BAD_QUANTITY
    assert book.submit(3, 20, BUY, 1, None, LIMIT)[4] == RejectReason.BAD_PRICE
    assert book.submit(4, 20, BUY, 1, -5, IOC)[4] == RejectReason.BAD_PRICE
    assert len(book) == 1 and book.resting_qty(1) == 2


def test_cancel_by_id():
    book = _book_with((1, 10, BUY, 5, 99), (2, 11, BUY, 3, 99))
    assert book.cancel(1) == (1, 10, BUY, 99, 5)
    assert book.cancel(1) is None
    assert book.cancel(12345) is None
    assert book.depth(1).bids == [(99, 3)]
    # the cancelled order is skipped by matching
    fills = book.submit(3, 20, SELL, 3, None, MARKET)[0]
    assert fills == [(2, 11, 99, 3)]


def test_cancel_last_order_removes_the_level():
    book = _book_with((1, 10, BUY, 5, 99), (2, 11, BUY, 3, 98))
    book.cancel(1)
    assert book.best_bid() == 98
    book.cancel(2)
    assert book.best_bid() is None


def test_cancel_all_for_an_account():
    book = _book_with((1, 10, BUY, 5, 99), (2, 11, BUY, 3, 98), (3, 10, SELL, 2, 105), (4, 10, BUY, 1, 90))
    gone = book.cancel_all(10)
    assert [c[0] for c in gone] == [1, 3, 4]
    assert book.open_orders(10) == [] and book.open_orders(11) == [2]
    assert book.cancel_all(10) == []


def test_self_trade_prevention_cancels_the_resting_order():
    book = _book_with((1, 10, SELL, 2, 100), (2, 11, SELL, 3, 100))
    fills, _, _, stp, _ = book.submit(3, 10, BUY, 3, 100, LIMIT)
    assert stp == [(1, 10, SELL, 100, 2)]
    assert fills == [(2, 11, 100, 3)]
    assert book.resting_qty(1) == 0 and len(book) == 0


def test_depth_snapshot():
    book = _book_with((1, 10, BUY, 5, 9_990), (2, 11, BUY, 3, 9_950), (3, 12, BUY, 7, 9_800), (4, 13, SELL, 4, 10_010))
    snap = book.depth(levels=2, pct=0.01)  # mid 10,000: bids >= 9,900, asks <= 10,100
    assert snap.bids == [(9_990, 5), (9_950, 3)]
    assert snap.asks == [(10_010, 4)]
    assert (snap.bid_lots_within, snap.ask_lots_within) == (8, 4)
    assert OrderBook().depth().bid_lots_within == 0
    assert book.lots_within(0.01) == (8, 4) and OrderBook().lots_within() == (0, 0)


def test_average_price_walks_the_opposite_side_best_first():
    """A sell of 1.5 lots' worth takes the best bid whole and half of the next one; more
    than the side holds has no price."""
    book = _book_with((1, 10, BUY, 2, 9_990), (2, 11, BUY, 3, 9_950), (3, 12, SELL, 4, 10_010))
    tick, lot = 0.1, 0.01  # USD per tick, base units per lot
    best, next_ = 9_990 * tick * 2 * lot, 9_950 * tick * 1 * lot  # 2 lots at the best, 1 at the next
    assert book.average_price(SELL, best + next_, tick, lot) == pytest.approx((best + next_) / (3 * lot))
    assert book.average_price(BUY, 20.0, tick, lot) == pytest.approx(10_010 * tick)  # 4 lots hold ~40 USD
    assert book.average_price(BUY, 1e9, tick, lot) is None
    assert OrderBook().average_price(SELL, 1.0, tick, lot) is None


def test_sweep_estimates_without_trading():
    book = _book_with((1, 10, SELL, 2, 100), (2, 11, SELL, 3, 105))
    assert book.sweep(BUY, 4) == (4, 105)
    assert book.sweep(BUY, 4, limit=102) == (2, 100)
    assert book.sweep(SELL, 1) == (0, None)
    assert len(book) == 2


# ----------------------------------------------------------------- properties


class NaiveBook:
    """Reference: a flat list scanned in (price, arrival) order. Slow and obviously right."""

    def __init__(self) -> None:
        self.orders: list[list[int]] = []  # [order_id, account, side, price, lots]

    def submit(self, oid, account, side, lots, price, kind):
        crossing = [o for o in self.orders if o[2] == -side and (kind is MARKET or (price - o[3]) * side >= 0)]
        if kind is POST and crossing:
            return [], []
        fills, stp = [], []
        remaining = lots
        if kind is not POST:
            # stable sort: best price first, arrival order within a price
            for o in sorted(crossing, key=lambda o: o[3] if side > 0 else -o[3]):
                if not remaining:
                    break
                if o[1] == account:
                    stp.append(o[0])
                    o[4] = 0
                    continue
                take = min(remaining, o[4])
                fills.append((o[0], o[1], o[3], take))
                o[4] -= take
                remaining -= take
        self.orders = [o for o in self.orders if o[4] > 0]
        if remaining and kind in (LIMIT, POST):
            self.orders.append([oid, account, side, price, remaining])
        return fills, stp

    def cancel(self, oid):
        for o in self.orders:
            if o[0] == oid:
                self.orders.remove(o)
                return o[4]
        return 0


order_ops = st.tuples(
    st.just("submit"),
    st.integers(0, 3),  # account
    st.sampled_from([BUY, SELL]),
    st.integers(1, 6),  # lots
    st.integers(95, 105),  # price
    st.sampled_from([LIMIT, LIMIT, LIMIT, MARKET, IOC, POST]),
)
cancel_ops = st.tuples(st.just("cancel"), st.integers(0, 60))
cancel_all_ops = st.tuples(st.just("cancel_all"), st.integers(0, 3))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(order_ops, order_ops, order_ops, cancel_ops, cancel_all_ops), max_size=60))
def test_book_matches_the_naive_model_and_conserves_quantity(ops):
    book, naive = OrderBook(), NaiveBook()
    submitted = traded = cancelled = 0
    for step, op in enumerate(ops):
        if op[0] == "submit":
            _, account, side, lots, price, kind = op
            fills, rested, gone, stp, reject = book.submit(step, account, side, lots, price, kind)
            ref_fills, ref_stp = naive.submit(step, account, side, lots, price, kind)
            assert list(fills) == ref_fills  # price-time priority, FIFO, fill sizes
            assert [c[0] for c in stp] == ref_stp
            if reject is not None:
                assert kind is POST and not fills
                continue
            taken = sum(f[3] for f in fills)
            assert taken + rested + gone == lots
            submitted += lots
            traded += taken
            cancelled += gone + sum(c[4] for c in stp)
        elif op[0] == "cancel":
            got = book.cancel(op[1])
            assert (got[4] if got else 0) == naive.cancel(op[1])
            cancelled += got[4] if got else 0
        else:
            gone = book.cancel_all(op[1])
            for c in gone:
                assert naive.cancel(c[0]) == c[4]
            assert not [o for o in naive.orders if o[1] == op[1]]
            cancelled += sum(c[4] for c in gone)
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is None or ask is None or bid < ask, "book crossed"
        resting = book.total_lots(BUY) + book.total_lots(SELL)
        assert resting == sum(o[4] for o in naive.orders)
        assert len(book) == len(naive.orders)
        # every lot submitted was filled (each trade fills a taker and a maker lot), rests or was cancelled
        assert submitted == 2 * traded + resting + cancelled


def _replay(book, naive, ops, first_id=0):
    """Apply ``ops`` to the book and the naive model; assert they agree after each."""
    for step, op in enumerate(ops, start=first_id):
        if op[0] == "submit":
            _, account, side, lots, price, kind = op
            fills, _, _, stp, _ = book.submit(step, account, side, lots, price, kind)
            ref_fills, ref_stp = naive.submit(step, account, side, lots, price, kind)
            assert list(fills) == ref_fills
            assert [c[0] for c in stp] == ref_stp
        else:
            got = book.cancel(op[1])
            assert (got[4] if got else 0) == naive.cancel(op[1])
        assert book.best_bid() == max((o[3] for o in naive.orders if o[2] > 0), default=None)
        assert book.best_ask() == min((o[3] for o in naive.orders if o[2] < 0), default=None)
        assert len(book) == len(naive.orders)


wide_orders = st.tuples(
    st.just("submit"),
    st.integers(0, 3),
    st.sampled_from([BUY, SELL]),
    st.integers(1, 6),
    st.integers(1, 50_000),  # far apart: the window of levels moves and widens
    st.sampled_from([LIMIT, LIMIT, MARKET, IOC, POST]),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(wide_orders, wide_orders, cancel_ops), max_size=40))
def test_book_matches_the_naive_model_across_far_prices(ops):
    _replay(OrderBook(), NaiveBook(), ops)


def test_many_resting_orders_grow_the_pool_and_the_id_table():
    book, naive = OrderBook(), NaiveBook()
    ops = [
        ("submit", i % 7, BUY, 1 + i % 3, 1_000 - i % 5, LIMIT)
        if i % 2
        else ("submit", i % 7, SELL, 1 + i % 3, 1_010 + i % 5, LIMIT)
        for i in range(3_000)
    ]
    _replay(book, naive, ops)
    assert len(book) == 3_000  # more than the initial pool of 1,024 slots
    ops = [("cancel", i) for i in range(0, 3_000, 3)]
    ops += [("submit", 9, BUY, 2_000, 1_012, IOC), ("submit", 9, SELL, 2_000, 998, IOC)]
    _replay(book, naive, ops, first_id=3_000)


def _random_flow(seed: int, n: int) -> list[tuple]:
    """``n`` events: submits ``(id, account, side, lots, price, kind)`` and cancels ``(id,)``."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        if i and rng.random() < 0.3:
            events.append((rng.randrange(i),))
        else:
            kind = rng.choice([LIMIT, LIMIT, LIMIT, MARKET, IOC, POST])
            events.append((i, rng.randrange(6), rng.choice([BUY, SELL]), rng.randint(1, 9), rng.randint(90, 110), kind))
    return events


def _as_columns(events):
    ids, accounts, sides, lots, prices, kinds = ([] for _ in range(6))
    for e in events:
        ids.append(e[0])
        if len(e) == 1:
            accounts.append(0), sides.append(0), lots.append(0), prices.append(0), kinds.append(KIND_CANCEL)
        else:
            accounts.append(e[1]), sides.append(e[2]), lots.append(e[3])
            prices.append(e[4] or 0), kinds.append(KIND_CODES[e[5]])
    return ids, accounts, sides, lots, prices, kinds


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 400), st.sampled_from([1, 7, 1_000]))
def test_batch_equals_one_call_per_event(seed, n, size):
    """submit_batch (cancels inline) gives the fills, outcomes and book of single calls."""
    events = _random_flow(seed, n)
    single, batched = OrderBook(), OrderBook()
    expected_fills, expected = [], []
    for i, e in enumerate(events):
        if len(e) == 1:
            gone = single.cancel(e[0])
            expected.append((0, gone[4] if gone else 0, 0))
            continue
        fills, rested, cancelled, _, reject = single.submit(*e)
        expected_fills += [(i, *f) for f in fills]
        expected.append((rested, cancelled, BOOK_REJECTS.index(reject)))
    got_fills, got = [], []
    for start in range(0, n, size):
        chunk = _as_columns(events[start : start + size])
        r = batched.submit_batch(*chunk)
        got_fills += [
            (start + t, m, a, p, q)
            for t, m, a, p, q in zip(
                r.fill_taker.tolist(), r.fill_maker.tolist(), r.fill_maker_account.tolist(),
                r.fill_price.tolist(), r.fill_lots.tolist(), strict=True,
            )
        ]  # fmt: skip
        got += list(zip(r.rested.tolist(), r.cancelled.tolist(), r.reject.tolist(), strict=True))
    assert got_fills == expected_fills
    assert got == expected
    for side in (BUY, SELL):
        assert list(batched.levels(side)) == list(single.levels(side))
    assert batched.open_orders(-1) == single.open_orders(-1)


def test_batch_is_deterministic_and_cancel_batch_reports_what_it_took():
    columns = _as_columns(_random_flow(3, 500))
    a, b = OrderBook(), OrderBook()
    ra, rb = a.submit_batch(*columns), b.submit_batch(*columns)
    for name in ("fill_taker", "fill_maker", "fill_price", "fill_lots", "rested", "cancelled", "reject", "stp"):
        assert np.array_equal(getattr(ra, name), getattr(rb, name))
    resting = a.open_orders(-1)
    expected = [a.order(i) for i in resting[:5]]
    taken = a.cancel_batch([*resting[:5], 10**9])
    assert [tuple(row) for row in taken.tolist()] == expected
    assert len(a) == len(b) - 5

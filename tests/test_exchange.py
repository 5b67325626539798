"""Exchange: admission, settlement, fees, open-order bookkeeping, conservation, and the
batch path against a loop of single submits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sim.book import KIND_CANCEL, KIND_CODES
from sim.exchange import Exchange, FeeSchedule
from sim.instruments import CollateralAsset, order_grid, reduce_grid
from sim.ledger import FEE_POOL, GENESIS, N_SYSTEM, USD
from sim.types import OrderRequest, OrderType, RejectReason, Side
from tests.conftest import btc, eth

BUY, SELL = Side.BUY, Side.SELL
A, B, C = N_SYSTEM, N_SYSTEM + 1, N_SYSTEM + 2


NO_FEES = FeeSchedule(0.0, 0.0)


def make_exchange(n_traders=3, fees=NO_FEES, mode="cross", cash=100_000.0) -> Exchange:
    ex = Exchange([btc(), eth()], [CollateralAsset("USD")], n_traders, [50_000.0, 3_000.0], fees, mode)
    for account in range(N_SYSTEM, N_SYSTEM + n_traders):
        ex.ledger.deposit(account, USD, cash)
    return ex


def trade(ex: Exchange, maker: int, taker: int, side: Side, qty: float, price: float, instrument: int = 0):
    """``taker`` takes ``qty`` on ``side`` from a resting order of ``maker`` at ``price``."""
    rest = ex.submit(maker, instrument, side.opposite, qty, price)
    assert rest.accepted and rest.rested
    take = ex.submit(taker, instrument, side, qty, price, OrderType.IOC)
    assert take.accepted and take.filled
    return take


# ------------------------------------------------------------------ admission


@pytest.mark.parametrize(
    ("qty", "price", "reason"),
    [
        (0.0, 50_000.0, RejectReason.BAD_QUANTITY),
        (-1.0, 50_000.0, RejectReason.BAD_QUANTITY),
        (math.nan, 50_000.0, RejectReason.BAD_QUANTITY),
        (0.0005, 50_000.0, RejectReason.OFF_LOT),
        (1.0, math.nan, RejectReason.BAD_PRICE),
        (1.0, -3.0, RejectReason.BAD_PRICE),
        (1.0, None, RejectReason.BAD_PRICE),
        (1.0, 50_000.05, RejectReason.OFF_TICK),
    ],
)
def test_bad_orders_are_rejected_as_values(qty, price, reason):
    ex = make_exchange()
    result = ex.submit(A, 0, BUY, qty, price)
    assert result.reject == reason and not result.accepted
    assert len(ex.books[0]) == 0 and ex.ledger.open_bids.sum() == 0


def test_unknown_account_and_instrument():
    ex = make_exchange()
    assert ex.submit(999, 0, BUY, 1.0, 50_000.0).reject == RejectReason.UNKNOWN_ACCOUNT
    assert ex.submit(A, 7, BUY, 1.0, 50_000.0).reject == RejectReason.UNKNOWN_INSTRUMENT


def test_margin_check_uses_max_leverage():
    ex = make_exchange(cash=5_000.0)  # 20x max on BTC: at most 2 BTC of notional 100k
    assert ex.submit(A, 0, BUY, 2.0, 50_000.0).accepted
    assert ex.submit(A, 0, BUY, 0.001, 50_000.0).reject == RejectReason.INSUFFICIENT_MARGIN
    # the resting bid already uses the room; the opposite side nets against it
    assert ex.submit(A, 0, SELL, 2.0, 50_100.0).accepted
    assert ex.ledger.open_bids[A, 0] == 2000 and ex.ledger.open_asks[A, 0] == 2000


def test_margin_check_counts_the_loss_of_a_fill_above_mark():
    ex = make_exchange(cash=5_000.0)
    # 1.9 BTC at 52,000 when the mark is 50,000: IM 4,940 + immediate loss 3,800 > 5,000
    assert ex.submit(A, 0, BUY, 1.9, 52_000.0).reject == RejectReason.INSUFFICIENT_MARGIN
    assert ex.submit(A, 0, BUY, 0.9, 52_000.0).accepted


def test_market_order_margin_check_walks_the_book():
    ex = make_exchange(cash=5_000.0)
    ex.submit(B, 0, SELL, 1.0, 50_000.0)
    ex.submit(B, 0, SELL, 5.0, 60_000.0)
    assert ex.submit(A, 0, BUY, 3.0, kind=OrderType.MARKET).reject == RejectReason.INSUFFICIENT_MARGIN
    assert ex.submit(A, 0, BUY, 1.0, kind=OrderType.MARKET).filled == 1000


def test_price_band_rejects_far_orders_and_caps_market_and_liquidation_orders():
    """Binance's PERCENT_PRICE filter: orders within 5 % of the mark (50,000)."""
    ex = Exchange([btc()], [CollateralAsset("USD")], 3, [50_000.0], NO_FEES, price_band=0.05)
    for account in (A, B, C):
        ex.ledger.deposit(account, USD, 1e6)
    # orders that could trade beyond the band are refused: a buy above 52,500, a sell below 47,500
    assert ex.submit(A, 0, BUY, 0.1, 53_000.0).reject is RejectReason.OUTSIDE_PRICE_BAND
    assert ex.submit(A, 0, SELL, 0.1, 47_000.0, OrderType.IOC).reject is RejectReason.OUTSIDE_PRICE_BAND
    assert ex.submit(A, 0, BUY, 0.1, 47_500.0).rested  # a bid at the edge
    assert ex.submit(B, 0, BUY, 1.0, 46_000.0).rested  # a deep bid may rest: it can only trade at 46,000
    dump = ex.submit(C, 0, SELL, 2.0, kind=OrderType.MARKET)  # walks only to the band's edge
    assert [ex.instruments[0].price(f.price) for f in dump.fills] == [47_500.0]  # not the 46,000 bid
    liquidation = ex.submit(C, 0, SELL, 1.0, 40_000.0, OrderType.IOC, liquidation=True)
    assert liquidation.accepted and not liquidation.fills  # clipped to 47,500: the 46,000 bid is out of reach
    assert ex.ledger.conservation_error(ex.marks, ex.cum_funding) == pytest.approx(0.0, abs=1e-6)


def test_reduce_only_is_clipped_rejected_or_must_not_rest():
    ex = make_exchange()
    trade(ex, B, A, BUY, 1.0, 50_000.0)
    ex.submit(C, 0, BUY, 5.0, 49_000.0)
    assert ex.submit(A, 0, BUY, 1.0, kind=OrderType.MARKET, reduce_only=True).reject == (
        RejectReason.REDUCE_ONLY_WOULD_INCREASE
    )
    assert ex.submit(A, 0, SELL, 1.0, 49_000.0, reduce_only=True).reject == RejectReason.REDUCE_ONLY_MUST_NOT_REST
    result = ex.submit(A, 0, SELL, 3.0, kind=OrderType.MARKET, reduce_only=True)
    assert result.clipped == 2000 and result.filled == 1000
    assert ex.ledger.positions[A, 0] == 0


def test_reduce_only_skips_the_margin_check():
    ex = make_exchange(cash=5_000.0)
    trade(ex, B, A, BUY, 2.0, 50_000.0)
    ex.set_prices([47_600.0, 3_000.0], [47_600.0, 3_000.0])  # A's init health now < 0
    assert ex.account_health(A).init_health[0] < 0
    ex.submit(C, 0, BUY, 2.0, 47_600.0)
    assert ex.submit(A, 0, SELL, 1.0, 47_600.0, OrderType.IOC).reject == RejectReason.INSUFFICIENT_MARGIN
    assert ex.submit(A, 0, SELL, 1.0, 47_600.0, OrderType.IOC, reduce_only=True).filled == 1000


# ----------------------------------------------------------------- settlement


def test_average_entry_realized_pnl_and_flip():
    ex = make_exchange()
    ledger = ex.ledger
    trade(ex, B, A, BUY, 1.0, 50_000.0)
    trade(ex, B, A, BUY, 1.0, 52_000.0)
    assert ledger.positions[A, 0] == 2000 and ledger.entry[A, 0] == pytest.approx(51_000.0)
    trade(ex, B, A, SELL, 0.5, 53_000.0)  # realize 0.5 * 2,000
    assert ledger.balances[A, USD] == pytest.approx(100_000.0 + 1_000.0)
    assert ledger.entry[A, 0] == pytest.approx(51_000.0)
    trade(ex, B, A, SELL, 2.5, 50_000.0)  # close 1.5 (realize -1,500), open 1 short at 50,000
    assert ledger.balances[A, USD] == pytest.approx(101_000.0 - 1_500.0)
    assert ledger.positions[A, 0] == -1000 and ledger.entry[A, 0] == pytest.approx(50_000.0)
    trade(ex, B, A, BUY, 1.0, 49_000.0)
    assert ledger.positions[A, 0] == 0 and ledger.entry[A, 0] == 0.0
    assert ledger.balances[A, USD] == pytest.approx(99_500.0 + 1_000.0)
    assert ledger.positions[B, 0] == 0
    assert ledger.balances[B, USD] == pytest.approx(100_000.0 - 500.0)


def test_fees_go_to_the_fee_pool_and_rebates_come_from_it():
    ex = make_exchange(fees=FeeSchedule(taker=0.0005, maker=-0.0001))
    trade(ex, B, A, BUY, 1.0, 50_000.0)
    assert ex.ledger.balances[A, USD] == pytest.approx(100_000.0 - 25.0)
    assert ex.ledger.balances[B, USD] == pytest.approx(100_000.0 + 5.0)
    assert ex.ledger.balances[FEE_POOL, USD] == pytest.approx(20.0)


def test_fees_must_cover_rebates():
    with pytest.raises(ValueError, match="cover the maker rebate"):
        FeeSchedule(taker=0.0001, maker=-0.0002)


def test_fills_are_recorded_with_last_price():
    ex = make_exchange()
    result = trade(ex, B, A, BUY, 1.0, 50_000.0)
    fill = result.fills[0]
    assert (fill.taker_account, fill.maker_account, fill.price, fill.qty) == (A, B, 500_000, 1000)
    assert ex.trades == [fill]
    assert ex.last_price[0] == 50_000.0


def test_open_orders_follow_rest_fill_cancel_and_self_trade():
    ex = make_exchange()
    ledger = ex.ledger
    r1 = ex.submit(A, 0, SELL, 2.0, 50_100.0)
    r2 = ex.submit(A, 0, SELL, 1.0, 50_200.0)
    assert ledger.open_asks[A, 0] == 3000
    ex.submit(B, 0, BUY, 0.5, 50_100.0, OrderType.IOC)
    assert ledger.open_asks[A, 0] == 2500
    assert ex.cancel(r2.order_id).qty == 1000
    assert ex.cancel(r2.order_id) is None
    assert ledger.open_asks[A, 0] == 1500
    stp = ex.submit(A, 0, BUY, 1.0, 50_100.0, OrderType.IOC)  # meets its own ask
    assert [c.order_id for c in stp.self_trade_cancels] == [r1.order_id]
    assert ledger.open_asks[A, 0] == 0 and not stp.fills
    ex.submit(A, 1, BUY, 1.0, 2_900.0)
    ex.submit(A, 0, BUY, 1.0, 49_000.0)
    assert len(ex.cancel_all(A)) == 2
    assert ledger.open_bids[A].sum() == 0


def test_collateral_in_other_assets_is_valued_at_index_with_haircut():
    collateral = [CollateralAsset("USD"), CollateralAsset("BTC", 0.95), CollateralAsset("ETH", 0.9)]
    ex = Exchange([btc(), eth()], collateral, 1, [50_000.0, 3_000.0], FeeSchedule(0, 0))
    ex.ledger.deposit(A, 1, 0.1)
    ex.ledger.deposit(A, 2, 2.0)
    assert ex.account_health(A).equity[0] == pytest.approx(0.1 * 50_000 * 0.95 + 2 * 3_000 * 0.9)
    ex.set_prices([40_000.0, 3_000.0], [40_000.0, 3_000.0])
    assert ex.account_health(A).equity[0] == pytest.approx(0.1 * 40_000 * 0.95 + 2 * 3_000 * 0.9)


def test_collateral_needs_a_pricing_instrument():
    with pytest.raises(ValueError, match="no instrument prices it"):
        Exchange([btc()], [CollateralAsset("USD"), CollateralAsset("SOL", 0.8)], 1, [50_000.0])


def test_isolated_mode_sets_margin_aside_and_returns_it():
    ex = make_exchange(mode="isolated", cash=10_000.0)
    ledger = ex.ledger
    trade(ex, B, A, BUY, 1.0, 50_000.0)
    assert ledger.isolated_margin[A, 0] == pytest.approx(2_500.0)  # 50,000 / 20x
    assert ledger.balances[A, USD] == pytest.approx(7_500.0)
    trade(ex, B, A, SELL, 1.0, 51_000.0)
    assert ledger.isolated_margin[A, 0] == 0.0
    assert ledger.balances[A, USD] == pytest.approx(11_000.0)


def test_isolated_loss_does_not_touch_the_other_position():
    ex = make_exchange(mode="isolated", cash=10_000.0)
    trade(ex, B, A, BUY, 1.0, 50_000.0)
    trade(ex, B, A, SELL, 10.0, 3_000.0, instrument=1)
    ex.set_prices([47_000.0, 3_000.0], [47_000.0, 3_000.0])
    health = ex.account_health(A)
    assert health.liquidatable[0].tolist() == [True, False]
    cross = make_exchange(mode="cross", cash=10_000.0)
    trade(cross, B, A, BUY, 1.0, 50_000.0)
    trade(cross, B, A, SELL, 10.0, 3_000.0, instrument=1)
    cross.set_prices([47_000.0, 3_000.0], [47_000.0, 3_000.0])
    assert not cross.account_health(A).liquidatable.any()


def test_margin_mode_per_account():
    """A cross market maker beside an isolated holder: each account margined its own way."""
    ex = make_exchange(cash=10_000.0)
    assert ex.set_margin_mode(A, "isolated") is None
    trade(ex, B, A, BUY, 1.0, 50_000.0)
    trade(ex, B, A, SELL, 10.0, 3_000.0, instrument=1)
    assert ex.ledger.isolated_margin[A, 0] == pytest.approx(2_500.0)  # isolated: set aside
    assert not ex.ledger.isolated_margin[B].any()  # cross: none
    ex.set_prices([47_000.0, 3_000.0], [47_000.0, 3_000.0])
    health = ex.health()
    assert health.liquidatable[A].tolist() == [True, False]  # as in isolated mode
    assert health.equity[A] == pytest.approx(ex.account_health(A).equity[0])
    assert health.margin_ratio[B] == pytest.approx(ex.account_health(B).margin_ratio[0])
    assert ex.set_margin_mode(A, "cross") is RejectReason.MODE_CHANGE_NOT_FLAT
    assert ex.set_margin_mode(C, "isolated") is None and ex.ledger.isolated[C]


def test_add_margin_moves_balance_into_an_isolated_position():
    ex = make_exchange(mode="isolated", cash=10_000.0)
    trade(ex, B, A, BUY, 1.0, 50_000.0)
    ex.set_prices([47_000.0, 3_000.0], [47_000.0, 3_000.0])
    assert ex.account_health(A).liquidatable[0, 0]
    assert ex.add_margin(A, 0, 1_000.0) is None
    assert ex.ledger.isolated_margin[A, 0] == pytest.approx(3_500.0)
    assert ex.ledger.balances[A, USD] == pytest.approx(6_500.0)
    assert not ex.account_health(A).liquidatable[0, 0]
    assert ex.add_margin(A, 0, 1e9) is RejectReason.INSUFFICIENT_BALANCE
    assert ex.add_margin(A, 0, -5.0) is RejectReason.BAD_QUANTITY
    assert ex.add_margin(A, 1, 100.0) is RejectReason.NOT_ISOLATED  # no ETH position
    cross = make_exchange(cash=10_000.0)
    trade(cross, B, A, BUY, 1.0, 50_000.0)
    assert cross.add_margin(A, 0, 100.0) is RejectReason.NOT_ISOLATED


def test_unknown_margin_mode_is_refused():
    with pytest.raises(ValueError, match="margin mode"):
        make_exchange(mode="portfolio")


# --------------------------------------------------------------- conservation


def order_fields(kinds: list) -> tuple:
    """Strategies of (trader, instrument, side, lots / 10, ticks / 10 from mark, kind, reduce only)."""
    return (
        st.integers(0, 4),
        st.integers(0, 1),
        st.sampled_from([BUY, SELL]),
        st.integers(1, 30),
        st.integers(-20, 20),
        st.sampled_from(kinds),
        st.booleans(),
    )


# each order with the mark's move before it
random_orders = st.lists(st.tuples(*order_fields(list(OrderType)), st.floats(-0.03, 0.03)), max_size=80)


@settings(max_examples=100, deadline=None)
@given(random_orders, st.sampled_from(["cross", "isolated"]))
def test_value_is_conserved_and_positions_net_to_zero(orders, mode):
    ex = make_exchange(n_traders=5, fees=FeeSchedule(0.0005, -0.0001), mode=mode, cash=20_000.0)
    marks = np.array([50_000.0, 3_000.0])
    for trader, m, side, lots, offset, kind, reduce_only, move in orders:
        marks[m] = round(marks[m] * (1 + move), 1 if m == 0 else 2)
        ex.set_prices(marks, marks)
        inst = ex.instruments[m]
        price = inst.price(inst.to_ticks(marks[m]) + 10 * offset)
        ex.submit(N_SYSTEM + trader, m, side, inst.qty(10 * lots), price, kind, reduce_only)
        ledger = ex.ledger
        assert ex.ledger.conservation_error(ex.marks, ex.cum_funding) == pytest.approx(0.0, abs=1e-6)
        assert not ledger.net_positions().any()
        for book, bids, asks in zip(ex.books, ledger.open_bids.T, ledger.open_asks.T, strict=True):
            assert bids.sum() == book.total_lots(BUY) and asks.sum() == book.total_lots(SELL)
            for account in range(ledger.n_accounts):
                ids = book.open_orders(account)
                resting = [book.order(i) for i in ids]
                assert sum(o[4] for o in resting if o[2] > 0) == bids[account]
                assert sum(o[4] for o in resting if o[2] < 0) == asks[account]


def test_grid_rounding_ignores_float_noise():
    inst = btc()  # tick 0.1, lot 0.001
    assert inst.lots_down(0.3) == 300 and inst.lots_down(0.0029999) == 2 and inst.lots_up(0.0021) == 3
    assert inst.ticks_toward(49_950.000000001, 1) == 499_500  # noise, not a tick above
    assert inst.ticks_toward(49_950.05, 1) == 499_500 and inst.ticks_toward(49_950.05, -1) == 499_501
    assert inst.to_ticks(0.1 * 3) == 3 and inst.to_ticks(50_000.05) is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(-1e7, 1e7),
            st.integers(-(10**6), 10**6).map(lambda n: n * 0.1),  # on the grid, up to float noise
            st.integers(-(10**6), 10**6).map(lambda n: n * 0.1 + 0.05),  # half a tick off it
        ),
        max_size=30,
    ),
    st.data(),
)
def test_the_compiled_order_forms_round_as_the_scalar_helpers(values, data):
    """`order_grid` and `reduce_grid` give, entry by entry, what `lots_down` and
    `ticks_toward` give (0.1 is BTC's tick: float noise off the grid snaps); an order
    with a size or limit that is not positive or rounds to nothing is not sent."""
    inst = btc()
    sides = np.array(data.draw(st.lists(st.sampled_from([1, -1]), min_size=len(values), max_size=len(values))))
    prices, sizes = np.array(values) * 1.0, np.abs(values) * 0.01
    grid = np.zeros(len(values), np.int64), np.array([inst.lot_size]), np.array([inst.tick_size])
    lots, ticks, sent = order_grid(sizes, prices, sides, *grid)
    for q, p, s, got_lots, got_ticks, was_sent in zip(sizes, prices, sides, lots, ticks, sent, strict=True):
        expected = (inst.lots_down(q), inst.ticks_toward(p, s)) if q > 0 and p > 0 else (0, 0)
        assert was_sent == (min(expected) > 0)
        assert (got_lots, got_ticks) == (expected if was_sent else (0, 0))
    held = np.array(data.draw(st.lists(st.integers(-500, 500), min_size=len(values), max_size=len(values))), np.int64)
    side, lots, ticks, sent = reduce_grid(held, sizes, np.abs(prices), inst.lot_size, inst.tick_size)
    assert side.tolist() == [-1 if h > 0 else 1 for h in held]
    assert lots.tolist() == [min(abs(h), inst.lots_down(q)) for h, q in zip(held, sizes, strict=True)]
    assert ticks.tolist() == [max(inst.ticks_toward(abs(p), s), 1) for p, s in zip(prices, side, strict=True)]
    assert sent.tolist() == (lots > 0).tolist()


def test_the_compiled_order_forms_send_nothing_for_what_is_not_a_number():
    inst = btc()
    values = np.array([np.nan, np.inf, -np.inf, 1.0])
    grid = np.zeros(4, np.int64), np.array([inst.lot_size]), np.array([inst.tick_size])
    lots, ticks, sent = order_grid(values, values[::-1].copy(), np.array([1, -1, 1, 1]), *grid)
    assert sent.tolist() == [False] * 4 and lots.tolist() == ticks.tolist() == [0] * 4
    lots, ticks, sent = order_grid(values, np.ones(4), np.array([1, -1, 1, 1]), *grid)
    assert sent.tolist() == [False, False, False, True] and lots.tolist() == [0, 0, 0, 1000]
    side, lots, ticks, sent = reduce_grid(np.full(4, 5), values, values, inst.lot_size, inst.tick_size)
    assert (
        side.tolist() == [-1] * 4
        and lots.tolist() == [0, 0, 0, 5]
        and ticks.tolist() == [1, 1, 1, 10]
        and sent.tolist() == [False] * 3 + [True]
    )


# ---------------------------------------------------------------------- batches

batch_rows = st.lists(st.tuples(*order_fields([*OrderType, "cancel"])), max_size=60)


def _batch_exchange(mode: str, band: float) -> Exchange:
    ex = Exchange([btc(), eth()], [CollateralAsset("USD")], 5, [50_000.0, 3_000.0], FeeSchedule(0.0005, -0.0001), mode)
    ex.price_band = band
    for account in range(N_SYSTEM, N_SYSTEM + 5):
        ex.ledger.deposit(account, USD, 1_000.0)  # tight: some orders fail the margin check
    return ex


@settings(max_examples=60, deadline=None)
@given(batch_rows, st.sampled_from(["cross", "isolated"]), st.sampled_from([1, 4, 100]), st.sampled_from([0.0, 0.002]))
def test_submit_batch_equals_a_loop_of_submit(rows, mode, size, band):
    """Same outcomes, order ids, trades and ledger, to the bit, as one `submit` / `cancel` per row."""
    loop, batched = _batch_exchange(mode, band), _batch_exchange(mode, band)
    columns = []
    for trader, m, side, lots, offset, kind, reduce_only in rows:
        inst = loop.instruments[m]
        price = inst.price(inst.to_ticks(float(loop.marks[m])) + 10 * offset)
        target = (lots % 10) * 2 + m  # a cancel names the (lots % 10)-th order, if it went to m
        columns.append((N_SYSTEM + trader, m, int(side), inst.qty(10 * lots), price, kind, reduce_only, target))
    expected = []
    for account, m, side, qty, price, kind, reduce_only, target in columns:
        if kind == "cancel":
            gone = loop.cancel(target)
            expected.append((target, None, 0, gone.qty if gone else 0, 0, 0))
            continue
        r = loop.submit(account, m, Side(side), qty, price, kind, reduce_only)
        expected.append((r.order_id, r.reject, r.rested, r.cancelled, r.clipped, r.filled))
    got = []
    for start in range(0, len(columns), size):
        chunk = columns[start : start + size]
        r = batched.submit_batch(
            [c[0] for c in chunk],
            [c[1] for c in chunk],
            [c[2] for c in chunk],
            [c[3] for c in chunk],
            [c[4] for c in chunk],
            [KIND_CANCEL if c[5] == "cancel" else KIND_CODES[c[5]] for c in chunk],
            reduce_only=[c[6] for c in chunk],
            cancel_ids=[c[7] for c in chunk],
        )
        got += zip(
            r.order_id.tolist(), r.reasons(), r.rested.tolist(), r.cancelled.tolist(), r.clipped.tolist(),
            r.filled.tolist(), strict=True,
        )  # fmt: skip
    assert got == expected
    assert batched.trades == loop.trades
    assert batched.n_orders == loop.n_orders and batched.n_cancels == loop.n_cancels
    for name in ("balances", "positions", "entry", "funding_index", "isolated_margin", "open_bids", "open_asks"):
        assert np.array_equal(getattr(batched.ledger, name), getattr(loop.ledger, name)), name
    assert np.array_equal(batched.last_price, loop.last_price, equal_nan=True)


def test_submit_batch_rechecks_an_order_after_an_earlier_one_used_the_margin():
    """Two bids of one account that each fit alone but not together: the second is refused,
    as in a loop of submits, although both passed the check against the batch's start."""
    ex = make_exchange(cash=5_000.0)  # room for 2 BTC at 20x
    result = ex.submit_batch([A, B, A], [0, 0, 0], [1, -1, 1], [1.5, 1.0, 1.5], [50_000.0, 51_000.0, 49_900.0], [0] * 3)
    assert result.reasons() == [None, None, RejectReason.INSUFFICIENT_MARGIN]
    assert result.order_id.tolist() == [0, 2, -1]
    assert ex.ledger.open_bids[A, 0] == 1500 and ex.ledger.open_asks[B, 0] == 1000


@pytest.mark.parametrize("mode", ["cross", "isolated"])
@pytest.mark.parametrize(("bid", "refused"), [(52_000.0, True), (50_000.0, False)])
def test_a_maker_fill_before_an_order_s_turn_counts_against_its_check(mode, bid, refused):
    """A (6,000 USD, 20x) rests a bid for 1 BTC; B sells into it, then A bids for 1 BTC
    more at 49,900. The second bid passes against the state before the fill. Filled at
    52,000 (a 2,000 USD loss at the 50,000 mark) A no longer has the margin for it, and a
    loop of submits refuses it; filled at the mark the fill costs only its fee. Cross
    mode re-checks the bid only when the fill's cost exceeds what its check left; isolated
    mode after any fill."""
    fees = FeeSchedule(0.0005, 0.0001)
    rows = ([B, A], [0, 0], [-1, 1], [1.0, 1.0], [49_000.0, 49_900.0], [KIND_CODES[OrderType.IOC], 0])
    loop, batched = (make_exchange(fees=fees, mode=mode, cash=6_000.0) for _ in range(2))
    for ex in (loop, batched):
        assert ex.submit(A, 0, BUY, 1.0, bid).rested
    kinds = (OrderType.IOC, OrderType.LIMIT)
    expected = [
        loop.submit(*row[:2], Side(row[2]), *row[3:5], kind) for *row, kind in zip(*rows[:5], kinds, strict=True)
    ]
    checks = []
    original = batched._pre_trade_health
    batched._pre_trade_health = lambda *args: checks.append(args[0]) or original(*args)
    result = batched.submit_batch(*rows)
    assert [r.reject for r in expected] == result.reasons()
    assert batched.trades == loop.trades
    assert np.array_equal(batched.ledger.balances, loop.ledger.balances)
    if mode == "cross":
        assert result.reasons() == [None, RejectReason.INSUFFICIENT_MARGIN if refused else None]
    assert len(checks) == (2 if refused or mode == "isolated" else 1)  # the batch's check, then a re-check of A


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["cross", "isolated"]),
    st.sampled_from([0.0001, -0.0001]),  # maker fee or rebate
    st.integers(4_000, 12_000),  # A's USD
    st.integers(-3_000, 3_000),  # A's resting order: USD from the mark
    st.sampled_from([BUY, SELL]),
    st.integers(1, 1_000),  # lots of it that B takes
    st.floats(0.7, 1.05),  # A's next bid: this share of the margin room A has before the fill
    st.lists(st.tuples(st.sampled_from([BUY, SELL]), st.integers(1, 3_000), st.integers(-300, 300)), max_size=2),
)
@example("cross", 0.0001, 6_000, 2_000, BUY, 1_000, 0.9, [])  # the fill costs A the room its bid needs
def test_orders_after_a_maker_fill_equal_a_loop_of_submit(mode, maker_fee, cash, away, side, taken, share, after):
    """A rests 1 BTC away from the mark; B takes some of it; then A bids for a ``share``
    of the room its margin has before the fill (near the line, where the fill's cost
    decides), then sends up to two more orders (lots, USD from the mark). The batch
    refuses and accepts what a loop of submits does, and settles the same, whether or
    not it re-checked A's orders (`Exchange._maker_fill_costs`)."""
    fees = FeeSchedule(0.0005, maker_fee)
    loop, batched = (make_exchange(fees=fees, mode=mode, cash=float(cash)) for _ in range(2))
    if not all(ex.submit(A, 0, side, 1.0, 50_000.0 + away).rested for ex in (loop, batched)):
        return  # A cannot afford its resting order
    room = float(loop.account_health(A).init_health[0])
    bid_lots = max(1, int(share * room / (50_000.0 / 20) * 1_000))  # 20x: 2,500 USD of initial margin a BTC
    rows = [(B, 0, side.opposite, taken / 1_000, 50_000.0 + away, KIND_CODES[OrderType.IOC])]
    orders = [(BUY, bid_lots, -50), *after]
    rows += [(A, 0, s, lots / 1_000, 50_000.0 + usd, KIND_CODES[OrderType.LIMIT]) for s, lots, usd in orders]
    expected = [
        loop.submit(a, m, Side(s), q, p, OrderType.IOC if k == KIND_CODES[OrderType.IOC] else OrderType.LIMIT)
        for a, m, s, q, p, k in rows
    ]
    result = batched.submit_batch(*(list(column) for column in zip(*rows, strict=True)))
    assert result.reasons() == [r.reject for r in expected]
    assert batched.trades == loop.trades
    for name in ("balances", "positions", "entry", "isolated_margin", "open_bids", "open_asks"):
        assert np.array_equal(getattr(batched.ledger, name), getattr(loop.ledger, name)), name


def test_a_reduce_only_order_in_a_group_is_clipped_after_a_maker_fill_before_its_turn():
    """A is long 1 BTC and offers it at the mark. B lifts the offer (A is flat), then A
    sends a group: a reduce-only IOC sell of 1 BTC and a small bid. The fill costs A only
    its fee, well within the group's margin check, but the clip reads the position: the
    group is re-admitted and the sell refused (it would open a short), as in a loop."""
    fees = FeeSchedule(0.0005, 0.0001)

    def make() -> Exchange:
        ex = make_exchange(fees=fees)
        ex.ledger.trade_between(A, GENESIS, 0, 1000, 50_000.0, 0.0)
        assert ex.submit(A, 0, SELL, 1.0, 50_000.0).rested and ex.submit(C, 0, BUY, 1.0, 49_500.0).rested
        return ex

    loop, batched = make(), make()
    expected = [loop.submit(B, 0, BUY, 1.0, 50_000.0, OrderType.IOC)]
    expected += loop.submit_many(
        A,
        [OrderRequest(0, SELL, 1.0, 49_000.0, OrderType.IOC, True), OrderRequest(0, BUY, 0.1, 48_000.0)],
    )
    ioc, limit = KIND_CODES[OrderType.IOC], KIND_CODES[OrderType.LIMIT]
    result = batched.submit_batch(
        [B, A, A], [0, 0, 0], [1, -1, 1], [1.0, 1.0, 0.1], [50_000.0, 49_000.0, 48_000.0], [ioc, ioc, limit],
        reduce_only=[False, True, False], groups=[-1, 7, 7],
    )  # fmt: skip
    assert result.reasons() == [r.reject for r in expected] == [None, RejectReason.REDUCE_ONLY_WOULD_INCREASE, None]
    assert np.array_equal(batched.ledger.positions, loop.ledger.positions) and batched.trades == loop.trades


def _maker_then_taker(make, rows, kinds) -> tuple[list, list]:
    """The rejects of ``rows`` (account, instrument, side, qty, price) sent one by one
    and as one batch, on two exchanges ``make`` builds; the ledgers must agree."""
    loop, batched = make(), make()
    expected = [loop.submit(a, m, Side(s), q, p, k).reject for (a, m, s, q, p), k in zip(rows, kinds, strict=True)]
    result = batched.submit_batch(*(list(column) for column in zip(*rows, strict=True)), [KIND_CODES[k] for k in kinds])
    for name in ("balances", "positions", "entry", "open_bids", "open_asks"):
        assert np.array_equal(getattr(batched.ledger, name), getattr(loop.ledger, name)), name
    return expected, result.reasons()


def test_the_maker_fee_alone_can_use_up_an_order_s_margin():
    """A's second bid leaves 50 USD of health; B fills A's first bid at the mark, and
    its 0.2 % maker fee (100 USD) is all the fill costs: the batch refuses the second
    bid, as a loop does."""

    def make() -> Exchange:
        ex = make_exchange(n_traders=2, fees=FeeSchedule(0.0, 0.002), cash=0.0)
        ex.ledger.deposit(A, USD, 5_050.0)
        ex.ledger.deposit(B, USD, 100_000.0)
        assert ex.submit(A, 0, BUY, 1.0, 50_000.0).rested
        return ex

    rows = [(B, 0, -1, 1.0, 50_000.0), (A, 0, 1, 1.0, 50_000.0)]
    expected, got = _maker_then_taker(make, rows, [OrderType.IOC, OrderType.LIMIT])
    assert expected == got == [None, RejectReason.INSUFFICIENT_MARGIN]


def test_a_usd_debt_weighted_above_one_makes_every_maker_fill_a_touch():
    """A is long 1 BTC from 60,000 (10,000 USD under water at the 50,000 mark) and owes
    5,000 USD (liability weight 1.5) against 1 BTC of collateral. Its offer at the mark
    fills at no loss at the mark and no fee, but the realized 10,000 moves into the debt
    at weight 1.5: A's bid, checked before the fill with 1,250 USD to spare, fails after
    it, in the batch as in a loop."""

    def make() -> Exchange:
        collateral = [CollateralAsset("USD", liability_weight=1.5), CollateralAsset("BTC", weight=0.9)]
        ex = Exchange([btc(), eth()], collateral, 2, [50_000.0, 3_000.0], NO_FEES)
        ex.ledger.deposit(A, 1, 1.0)
        ex.ledger.deposit(A, USD, -5_000.0)
        ex.ledger.deposit(B, USD, 1_000_000.0)
        ex.ledger.trade_between(A, GENESIS, 0, 1_000, 60_000.0, 0.0)
        assert ex.submit(A, 0, SELL, 1.0, 50_000.0).rested
        return ex

    rows = [(B, 0, 1, 1.0, 50_000.0), (A, 0, 1, 9.5, 50_000.0)]
    expected, got = _maker_then_taker(make, rows, [OrderType.IOC, OrderType.LIMIT])
    assert expected == got == [None, RejectReason.INSUFFICIENT_MARGIN]


def test_submit_batch_refuses_bad_kinds_and_sides_loudly():
    ex = make_exchange()
    with pytest.raises(ValueError, match="kinds"):
        ex.submit_batch([A], [0], [1], [1.0], [50_000.0], [9])
    with pytest.raises(ValueError, match="sides"):
        ex.submit_batch([A], [0], [0], [1.0], [50_000.0], [0])


def _python_settle_trade(ledger, account, m, lots, price, cum):
    """The ledger's settlement as it was written in Python before it was compiled (reference)."""
    held = int(ledger.positions[account, m])
    paid = held * float(ledger.lot_sizes[m]) * (cum - float(ledger.funding_index[account, m]))
    ledger.funding_index[account, m] = cum
    pocket = (
        (ledger.isolated_margin, (account, m))
        if ledger.isolated[account] and held
        else (ledger.balances, (account, USD))
    )
    if paid:
        pocket[0][pocket[1]] -= paid
    old, new, entry = held, held + lots, float(ledger.entry[account, m])
    if old == 0 or (old > 0) == (lots > 0):
        ledger.entry[account, m] = (abs(old) * entry + abs(lots) * price) / abs(new)
    else:
        closed = min(abs(lots), abs(old))
        realized = closed * float(ledger.lot_sizes[m]) * (price - entry) * (1 if old > 0 else -1)
        pocket = (
            (ledger.isolated_margin, (account, m))
            if ledger.isolated[account] and held
            else (ledger.balances, (account, USD))
        )
        pocket[0][pocket[1]] += realized
        if new == 0:
            ledger.entry[account, m] = 0.0
        elif (new > 0) != (old > 0):
            ledger.entry[account, m] = price
    ledger.positions[account, m] = new
    if new == 0 and ledger.isolated[account]:
        ledger.balances[account, USD] += ledger.isolated_margin[account, m]
        ledger.isolated_margin[account, m] = 0.0


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(-40, 40), st.integers(49_000, 51_000)),
        min_size=1,
        max_size=60,
    ),
    st.booleans(),
)
def test_batch_settlement_matches_one_by_one_to_the_cent(trades, isolated):
    """`Ledger.settle_fills` over a batch == the Python settlement of each fill in turn."""
    fast, slow = (make_exchange(n_traders=4, mode="isolated" if isolated else "cross").ledger for _ in range(2))
    for ledger in (fast, slow):
        ledger.isolated_margin[N_SYSTEM:, 0] = 1_000.0 if isolated else 0.0
    rows = [(N_SYSTEM + t, N_SYSTEM + (t + 1 + mk % 3) % 4, lots or 1, price / 10) for t, mk, lots, price in trades]
    takers, makers, lots, prices = (np.array(c) for c in zip(*rows, strict=True))
    fees = 0.0005 * np.abs(lots) * 0.001 * prices
    cum = np.linspace(0.0, 3.0, len(rows))
    instruments = np.zeros(len(rows), np.int64)
    done = 0
    while done < len(rows):
        done = fast.settle_fills(takers, makers, instruments, lots, prices, cum, fees, -fees / 5, done)
    for i, (taker, maker, signed, price) in enumerate(rows):
        _python_settle_trade(slow, taker, 0, signed, price, cum[i])
        _python_settle_trade(slow, maker, 0, -signed, price, cum[i])
        (slow.open_asks if signed > 0 else slow.open_bids)[maker, 0] -= abs(signed)
        for account, fee in ((taker, fees[i]), (maker, -fees[i] / 5)):
            slow.credit_pocket(account, 0, -fee)
            slow.balances[FEE_POOL, USD] += fee
    for name in ("balances", "positions", "entry", "funding_index", "isolated_margin", "open_bids", "open_asks"):
        assert np.allclose(getattr(fast, name), getattr(slow, name), rtol=0, atol=0.005), name


@settings(max_examples=100, deadline=None)
@given(touches=st.lists(st.tuples(st.integers(0, 999 + N_SYSTEM), st.integers(0, 999 + N_SYSTEM)), max_size=30))
def test_rows_changed_since_reads_the_row_versions(touches):
    """`Ledger.rows_changed_since` finds, from its block versions, exactly the rows a scan
    of every row version finds, after any transfers, from every earlier clock."""
    ex = Exchange([btc()], [CollateralAsset("USD")], 1_000, [50_000.0])
    ledger = ex.ledger
    for src, dst in touches:
        ledger.transfer(src, dst, 1.0)
    for version in range(-1, ledger.clock + 1):
        assert ledger.rows_changed_since(version).tolist() == np.flatnonzero(ledger.row_version > version).tolist()


def test_a_batch_with_columns_of_other_lengths_or_cancels_without_ids_is_refused():
    ex = make_exchange()
    limit = KIND_CODES[OrderType.LIMIT]
    with pytest.raises(ValueError, match="one entry per row"):
        ex.submit_batch_lots([3, 4, 5], [0], [1, 1, 1], [1, 1, 1], [500_000] * 3, [limit] * 3)
    with pytest.raises(ValueError, match="cancels need cancel_ids"):
        ex.submit_batch_lots([3], [0], [1], [0], [0], [KIND_CANCEL])

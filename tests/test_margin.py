"""Margin math against MARGIN-SPEC's checked worked examples (E0–E3)."""

from __future__ import annotations

import math
from dataclasses import fields, replace

import numpy as np
import pytest

from sim.adl_ranking import AdlRanking
from sim.exchange import Exchange
from sim.instruments import CollateralAsset, Instrument, MarginTiers
from sim.ledger import GENESIS, N_SYSTEM, USD
from sim.margin import (
    MarginRules,
    MarketPrices,
    Portfolio,
    Sizing,
    TierTable,
    adl_score,
    bankruptcy_prices,
    collateral_value,
    cross_health,
    isolated_health,
    liquidation_prices,
    liquidation_size,
    mixed_health,
    partial_liquidation_size,
)
from tests.conftest import E0_TIERS, eth

# ----------------------------------------------------------------------- E0 tiers


def test_e0_cum_amounts():
    assert E0_TIERS.cum == pytest.approx((0.0, 50.0, 1_300.0, 16_300.0))


@pytest.mark.parametrize(
    ("notional", "expected"),
    [
        (0.0, 0.0),
        (10_000.0, 40.0),
        (49_999.999999, 200.0),  # just below the 50k boundary ...
        (50_000.0, 200.0),  # ... and on it: continuous
        (500_000.0, 3_700.0),  # 5,000 - 1,300
        (250_000.0, 1_200.0),
        (1_000_000.0, 8_700.0),
        (2_000_000.0, 33_700.0),
    ],
)
def test_e0_maintenance_margin(notional, expected):
    table = TierTable.from_tiers([E0_TIERS])
    assert table.maintenance(np.array([[notional]]))[0, 0] == pytest.approx(expected, abs=1e-3)


def test_maintenance_is_continuous_at_every_boundary():
    table = TierTable.from_tiers([E0_TIERS])
    for floor in E0_TIERS.floors[1:]:
        below, at = table.maintenance(np.array([[floor - 1e-6], [floor]]))[:, 0]
        assert below == pytest.approx(at, abs=1e-4)


def test_initial_margin_uses_the_tier_leverage():
    table = TierTable.from_tiers([E0_TIERS])
    assert table.initial(np.array([[10_000.0, 100_000.0, 2_000_000.0]]).T).ravel() == pytest.approx(
        [10_000 / 125, 100_000 / 100, 2_000_000 / 20]
    )


def test_max_notional_is_what_the_tiers_let_a_margin_open():
    btc = MarginTiers((0.0, 250_000.0, 1_000_000.0), (0.004, 0.005, 0.01), (50.0, 25.0, 10.0))
    # 10,000 USD: 50x would be 500,000, past the 250,000 floor of the 25x tier; at 25x it is
    # 250,000 exactly, the top notional that margin opens
    assert btc.max_notional(10_000.0) == pytest.approx(250_000.0)
    assert btc.max_notional(2_000.0) == pytest.approx(100_000.0)  # 50x, within the first tier
    assert btc.max_notional(2_000.0, leverage=20.0) == 40_000.0  # its own leverage binds
    # fee and slippage paid up front: N (1/50 + 0.0015) = 2,000
    assert btc.max_notional(2_000.0, cost_rate=0.0015) == pytest.approx(2_000.0 / 0.0215)
    # 3,000 USD: 50x = 150,000 fits the first tier; 25x = 75,000 is below the second's floor
    assert btc.max_notional(3_000.0) == pytest.approx(150_000.0)
    # 6,000 USD: 50x = 300,000 crosses 250,000, 25x = 150,000 does not reach it: the first
    # tier's top is the most it can open
    assert btc.max_notional(6_000.0) == pytest.approx(250_000.0)
    assert btc.max_notional(6_000.0) < 250_000.0
    assert btc.max_notional(0.0) == 0.0 and btc.max_notional(-5.0) == 0.0
    for margin in (1.0, 5_000.0, 10_000.0, 60_000.0, 1e6):
        n = btc.max_notional(margin)
        assert n / btc.max_leverage[btc.tier_of(n)] <= margin * (1 + 1e-12)


def test_tables_of_different_depth_stack():
    table = TierTable.from_tiers([E0_TIERS, MarginTiers.flat(0.01, 20)])
    mm = table.maintenance(np.array([[500_000.0, 500_000.0]]))
    assert mm[0] == pytest.approx([3_700.0, 5_000.0])


@pytest.mark.parametrize("order", ["F", "C"])
def test_tiers_apply_in_any_memory_layout(order):
    """Rows picked by an index array are C-ordered; their tiers once went unapplied."""
    table = TierTable.from_tiers([E0_TIERS, MarginTiers.flat(0.01, 20)])
    notional = np.array([[500_000.0, 500_000.0], [10_000.0, 2e6], [2e6, 10.0]] * 30, order=order)
    mm = table.maintenance(notional)
    assert mm[:3] == pytest.approx(np.array([[3_700.0, 5_000.0], [40.0, 20_000.0], [33_700.0, 0.1]]))
    assert table.initial(notional)[0, 0] == pytest.approx(500_000.0 / 50.0)


@pytest.mark.parametrize(
    ("floors", "mmr", "lev", "message"),
    [
        ((10.0,), (0.01,), (20.0,), "start at notional 0"),
        ((0.0, 5.0, 5.0), (0.01, 0.02, 0.03), (20.0, 10.0, 5.0), "floors must increase"),
        ((0.0, 5.0), (0.02, 0.01), (20.0, 10.0), "non-decreasing"),
        ((0.0,), (0.06,), (20.0,), "must exceed the maintenance rate"),
        ((0.0, 5.0), (0.004, 0.005), (10.0, 50.0), "non-increasing"),  # IM would fall as a position grows
    ],
)
def test_bad_tiers_are_refused(floors, mmr, lev, message):
    with pytest.raises(ValueError, match=message):
        MarginTiers(floors, mmr, lev)


# ------------------------------------------------------------------ health helpers


def _rules(*tiers: MarginTiers, weights=(1.0,), liability=(1.0,)) -> MarginRules:
    return MarginRules(TierTable.from_tiers(tiers), np.array(weights), np.array(liability))


def _portfolio(balances, positions, entry, isolated=None, bids=None, asks=None) -> Portfolio:
    positions = np.atleast_2d(np.array(positions, dtype=float))
    zeros = np.zeros_like(positions)
    return Portfolio(
        balances=np.atleast_2d(np.array(balances, dtype=float)),
        positions=positions,
        entry=np.atleast_2d(np.array(entry, dtype=float)),
        funding_index=zeros,
        isolated_margin=zeros if isolated is None else np.atleast_2d(np.array(isolated, dtype=float)),
        open_bids=zeros if bids is None else np.atleast_2d(np.array(bids, dtype=float)),
        open_asks=zeros if asks is None else np.atleast_2d(np.array(asks, dtype=float)),
        lot_sizes=np.ones(positions.shape[1]),
    )


def _prices(marks, asset_prices=(1.0,)) -> MarketPrices:
    marks = np.array(marks, dtype=float)
    return MarketPrices(marks, np.array(asset_prices, dtype=float), np.zeros_like(marks))


BTC5 = MarginTiers.flat(0.005, 20)
ETH1 = MarginTiers.flat(0.01, 20)

# ---------------------------------------------------------------------------- E1


@pytest.mark.parametrize(
    ("qty", "liq", "bankrupt"),
    [(1.0, 45_226.13, 45_000.0), (-1.0, 54_726.37, 55_000.0)],
)
def test_e1_single_position_prices(qty, liq, bankrupt):
    for mark in (46_000.0, 50_000.0, 53_000.0):  # the same at any mark
        health = cross_health(_portfolio([[5_000.0]], [[qty]], [[50_000.0]]), _prices([mark]), _rules(BTC5))
        assert liquidation_prices(health)[0, 0] == pytest.approx(liq, abs=0.01)
        assert bankruptcy_prices(health)[0, 0] == pytest.approx(bankrupt)


def test_e1_health_flips_at_the_liquidation_price():
    rules = _rules(BTC5)
    pf = _portfolio([[5_000.0]], [[1.0]], [[50_000.0]])
    above = cross_health(pf, _prices([45_226.14]), rules)
    below = cross_health(pf, _prices([45_226.12]), rules)
    assert not above.liquidatable[0, 0] and below.liquidatable[0, 0]
    assert above.margin_ratio[0] < 1 <= below.margin_ratio[0]


def test_liquidation_price_is_nan_when_nothing_liquidates_or_flat():
    # A 1x long: equity stays above MM all the way to a zero price.
    health = cross_health(
        _portfolio([[200.0]], [[1.0, 0.0]], [[100.0, 0.0]]), _prices([100.0, 1.0]), _rules(BTC5, ETH1)
    )
    assert np.isnan(liquidation_prices(health)[0]).all()


def test_liquidation_price_walks_tiers():
    # 20 BTC long at 50k with 100k wallet: notional ~ 600k-1M at liquidation -> tier 2 (1 %).
    health = cross_health(_portfolio([[100_000.0]], [[20.0]], [[50_000.0]]), _prices([50_000.0]), _rules(E0_TIERS))
    price = liquidation_prices(health)[0, 0]
    n = 20 * price
    assert 250_000 <= n < 1_000_000
    assert 100_000 + 20 * (price - 50_000) == pytest.approx(n * 0.01 - 1_300, abs=1e-6)


# --------------------------------------------------------------------------- E1b


def test_e1b_partial_liquidation_size_and_outcome():
    mark, beta, lam, phi, mmr = 45_200.0, 0.005, 0.0025, 0.001, 0.005
    rules = _rules(BTC5)
    health = cross_health(_portfolio([[10_000.0]], [[2.0]], [[50_000.0]]), _prices([mark]), rules)
    assert health.equity[0] == pytest.approx(400.0)
    assert health.maint[0] == pytest.approx(452.0)
    assert health.maint_health[0] == pytest.approx(-52.0)  # H_maint = E - sum MM < 0: liquidatable
    shortfall = health.maint[0] + beta * health.risk.notional.sum() - health.equity[0]
    assert shortfall == pytest.approx(504.0)
    size = partial_liquidation_size(shortfall, mark, mmr, beta, lam, phi)
    assert size == pytest.approx(1.7155, abs=1e-4)
    closed = math.ceil(round(size / 0.001, 9)) * 0.001
    assert closed == pytest.approx(1.716)
    fill = mark * (1 - lam)
    assert fill == pytest.approx(45_087.0)
    assert closed * mark * lam == pytest.approx(193.91, abs=0.01)  # penalty
    fund_fee = closed * mark * phi
    assert fund_fee == pytest.approx(77.56, abs=0.01)
    wallet = 10_000.0 + closed * (fill - 50_000.0) - fund_fee
    after = cross_health(_portfolio([[wallet]], [[2.0 - closed]], [[50_000.0]]), _prices([mark]), rules)
    assert after.equity[0] == pytest.approx(128.53, abs=0.01)
    assert after.maint[0] == pytest.approx(64.18, abs=0.01)
    assert after.maint[0] + beta * after.risk.notional.sum() == pytest.approx(128.37, abs=0.01)
    assert after.equity[0] >= after.maint[0] + beta * after.risk.notional.sum()


# ---------------------------------------------------------------------------- E2

E2_MARKS = [44_000.0, 2_700.0]


def test_e2_cross_margin_keeps_the_account_healthy():
    pf = _portfolio([[11_000.0]], [[1.0, -20.0]], [[50_000.0, 3_000.0]])
    health = cross_health(pf, _prices(E2_MARKS), _rules(BTC5, ETH1))
    assert health.risk.unrealized[0] == pytest.approx([-6_000.0, 6_000.0])
    assert health.equity[0] == pytest.approx(11_000.0)
    assert health.maint[0] == pytest.approx(760.0)
    assert health.risk.maint[0] == pytest.approx([220.0, 540.0])
    assert not health.liquidatable.any()


def test_e2_isolated_btc_position_is_liquidated():
    # The same BTC long on its own 5,000 of isolated margin (ETH short on 6,000).
    pf = _portfolio([[0.0]], [[1.0, -20.0]], [[50_000.0, 3_000.0]], isolated=[[5_000.0, 6_000.0]])
    health = isolated_health(pf, _prices(E2_MARKS), _rules(BTC5, ETH1))
    assert health.liquidatable[0].tolist() == [True, False]
    # ... and its liquidation price is E1's 45,226.13.
    edge = isolated_health(pf, _prices([45_226.14, 2_700.0]), _rules(BTC5, ETH1))
    assert not edge.liquidatable[0, 0]


def test_e2_cross_liquidation_price_with_eth_held():
    pf = _portfolio([[11_000.0]], [[1.0, -20.0]], [[50_000.0, 3_000.0]])
    health = cross_health(pf, _prices(E2_MARKS), _rules(BTC5, ETH1))
    assert liquidation_prices(health)[0, 0] == pytest.approx(33_708.54, abs=0.01)
    isolated = _portfolio([[0.0]], [[1.0, -20.0]], [[50_000.0, 3_000.0]], isolated=[[5_000.0, 6_000.0]])
    alone = isolated_health(isolated, _prices(E2_MARKS), _rules(BTC5, ETH1))
    assert liquidation_prices(alone)[0, 0] == pytest.approx(45_226.13, abs=0.01)  # E1's, on its own margin


def test_e2_bankruptcy_prices_by_mm_allocation():
    q = np.array([[1.0, -20.0]])
    marks = np.array(E2_MARKS)
    health = cross_health(_portfolio([[11_000.0]], q, [[50_000.0, 3_000.0]]), _prices(E2_MARKS), _rules(BTC5, ETH1))
    bk = bankruptcy_prices(health)
    assert bk[0] == pytest.approx([40_815.79, 3_090.79], abs=0.01)
    losses = (q[0] * (marks - bk[0])).sum()  # loss of closing both at their bankruptcy prices
    assert losses == pytest.approx(11_000.0)


# ---------------------------------------------------------------------------- E3


def test_e3_bankruptcy_and_adl_ranking():
    a = cross_health(_portfolio([[50_000.0]], [[10.0]], [[50_000.0]]), _prices([44_900.0]), _rules(BTC5))
    assert bankruptcy_prices(a)[0, 0] == pytest.approx(45_000.0)
    mark = 44_900.0
    entry = np.array([48_000.0, 52_000.0, 46_000.0])
    size = np.array([4.0, 3.0, 5.0])
    wallet = np.array([4_000.0, 30_000.0, 4_000.0])
    equity = wallet + size * (entry - mark)
    scores = adl_scores(np.full(3, -1.0), entry, mark, size * mark, equity)
    assert scores == pytest.approx([0.707, 0.359, 0.565], abs=1e-3)
    assert np.argsort(-scores).tolist() == [0, 2, 1]  # S1, S3, S2


def test_adl_score_of_a_losing_position_divides_by_leverage():
    score = adl_scores(np.array([1.0]), np.array([100.0]), 90.0, np.array([900.0]), np.array([90.0]))
    assert score[0] == pytest.approx(-0.1 / 10)


def adl_scores(side, entry, mark, notional, equity) -> np.ndarray:
    """`adl_score` of each of n positions, (n,) arrays."""
    rows = zip(side, entry, notional, equity, strict=True)
    return np.array([adl_score(float(s), float(e), mark, float(n), float(q)) for s, e, n, q in rows])


# --------------------------------------------------------------- collateral, orders


def test_haircuts_and_liabilities():
    rules = _rules(BTC5, weights=(1.0, 0.95, 0.90), liability=(1.0, 1.05, 1.1))
    balances = np.array([[1_000.0, 0.5, 10.0], [-500.0, -0.1, 0.0]])
    value = collateral_value(balances, np.array([1.0, 40_000.0, 3_000.0]), rules)
    assert value == pytest.approx([1_000 + 0.5 * 40_000 * 0.95 + 10 * 3_000 * 0.9, -500 - 0.1 * 40_000 * 1.05])


def test_open_orders_count_at_their_worst_case():
    rules = _rules(BTC5)
    flat = cross_health(_portfolio([[10_000.0]], [[1.0]], [[100.0]]), _prices([100.0]), rules)
    quoting = cross_health(
        _portfolio([[10_000.0]], [[1.0]], [[100.0]], bids=[[2.0]], asks=[[5.0]]), _prices([100.0]), rules
    )
    assert flat.init[0] == pytest.approx(100.0 / 20)
    assert quoting.init[0] == pytest.approx(max(abs(1 + 2), abs(1 - 5)) * 100.0 / 20)  # |1-5| = 4 > 3


def test_accrued_funding_reduces_unrealized_pnl():
    pf = _portfolio([[1_000.0]], [[2.0]], [[100.0]])
    pf = replace(pf, funding_index=np.array([[0.5]]))
    prices = MarketPrices(np.array([110.0]), np.array([1.0]), np.array([1.5]))
    health = cross_health(pf, prices, _rules(BTC5))
    assert health.risk.unrealized[0, 0] == pytest.approx(2 * 10 - 2 * 1.0)


def _row(values: np.ndarray, name: str, i: int) -> np.ndarray:
    return values if name == "lot_sizes" else values[i : i + 1]


def test_all_accounts_at_once_match_row_by_row():
    rng = np.random.default_rng(0)
    a = 50
    pf = _portfolio(
        rng.uniform(100, 10_000, (a, 1)),
        rng.normal(0, 3, (a, 2)),
        rng.uniform(90, 110, (a, 2)),
        bids=rng.uniform(0, 1, (a, 2)),
        asks=rng.uniform(0, 1, (a, 2)),
    )
    prices, rules = _prices([100.0, 100.0]), _rules(E0_TIERS, ETH1)
    whole = cross_health(pf, prices, rules)
    for i in range(a):
        row = Portfolio(**{f.name: _row(getattr(pf, f.name), f.name, i) for f in fields(Portfolio)})
        one = cross_health(row, prices, rules)
        assert one.equity[0] == pytest.approx(whole.equity[i])
        assert one.init_health[0] == pytest.approx(whole.init_health[i])
        assert one.maint[0] == pytest.approx(whole.maint[i])


def test_isolated_bankruptcy_price_uses_the_position_margin():
    pf = _portfolio([[0.0]], [[1.0, -20.0]], [[50_000.0, 3_000.0]], isolated=[[5_000.0, 6_000.0]])
    health = isolated_health(pf, _prices(E2_MARKS), _rules(BTC5, ETH1))
    assert bankruptcy_prices(health)[0] == pytest.approx([45_000.0, 3_300.0])


def test_adl_score_ranks_an_account_without_equity_first():
    """Issue 9 case 9: equity <= 0 gave a negative leverage, so a profitable but bankrupt
    counterparty ranked last."""
    scores = adl_scores(
        np.full(3, -1.0), np.array([48_000.0] * 3), 44_900.0, np.full(3, 44_900.0), np.array([-100.0, 0.0, 4_000.0])
    )
    assert np.argsort(-scores, kind="stable").tolist() == [0, 1, 2]
    losing = adl_scores(np.full(2, 1.0), np.full(2, 100.0), 90.0, np.full(2, 900.0), np.array([-5.0, 90.0]))
    assert losing[0] > losing[1]


@pytest.mark.parametrize(("full", "expected"), [(False, 1.716), (True, 2.0)])
def test_e1b_liquidation_size_from_health(full, expected):
    health = cross_health(_portfolio([[10_000.0]], [[2.0]], [[50_000.0]]), _prices([45_200.0]), _rules(BTC5))
    sizing = Sizing(full=full, buffer=0.005, penalty=0.0025, fund_fee=0.001)
    size = liquidation_size(health, 0, 0, sizing, TierTable.from_tiers([BTC5]))
    assert math.ceil(round(size / 0.001, 9)) * 0.001 == pytest.approx(expected)
    healthy = cross_health(_portfolio([[10_000.0]], [[2.0]], [[50_000.0]]), _prices([49_000.0]), _rules(BTC5))
    assert liquidation_size(healthy, 0, 0, sizing, TierTable.from_tiers([BTC5])) == 0.0


def test_mixed_modes_match_each_mode_row_by_row():
    pf = _portfolio(
        [[0.0], [11_000.0], [0.0]],
        [[1.0, -20.0], [1.0, -20.0], [2.0, 0.0]],
        [[50_000.0, 3_000.0]] * 3,
        isolated=[[5_000.0, 6_000.0], [0.0, 0.0], [4_000.0, 0.0]],
    )
    prices, rules = _prices(E2_MARKS), _rules(BTC5, ETH1)
    mask = np.array([True, False, True])
    mixed = mixed_health(pf, prices, rules, mask)
    cross, isolated = cross_health(pf, prices, rules), isolated_health(pf, prices, rules)
    for row, alone in ((0, isolated), (1, cross), (2, isolated)):
        assert mixed.account_liquidatable[row] == alone.account_liquidatable[row]
        assert mixed.liquidatable[row].tolist() == alone.liquidatable[row].tolist()
        assert mixed.margin_ratio[row] == pytest.approx(alone.margin_ratio[row])
        assert mixed.init_health[row] == pytest.approx(alone.init_health[row])
        assert bankruptcy_prices(mixed)[row] == pytest.approx(bankruptcy_prices(alone)[row], nan_ok=True)
        assert liquidation_prices(mixed)[row] == pytest.approx(liquidation_prices(alone)[row], nan_ok=True)
    assert mixed.liquidatable[0].tolist() == [True, False] and not mixed.account_liquidatable[1]


@pytest.mark.parametrize("isolated_share", [0.0, 0.5, 1.0])
def test_adl_ranks_by_health_s_equity_through_trades_and_moves(isolated_share):
    """ADL ranks every opposite position by equity, from terms kept per ledger row
    (`sim.adl_ranking`): health's equity, to rounding, after trades, debts, funding and
    price moves."""
    rng = np.random.default_rng(7)
    btc = Instrument("BTC", tick_size=0.1, lot_size=0.001, tiers=E0_TIERS)
    ex = Exchange(
        [btc, eth()], [CollateralAsset("USD"), CollateralAsset("BTC", 0.9, 1.1, 0.05)], 40, [50_000.0, 3_000.0]
    )
    for account in range(N_SYSTEM, N_SYSTEM + 40):
        ex.ledger.deposit(account, USD, float(rng.uniform(-1_000, 50_000)))
        ex.ledger.deposit(account, 1, float(rng.uniform(-0.1, 0.5)))
        ex.ledger.set_isolated(account, bool(rng.random() < isolated_share))
        for m, price in enumerate((50_000.0, 3_000.0)):
            ex.ledger.trade_between(
                account, GENESIS, m, int(rng.integers(-40_000, 40_000)), price * rng.uniform(0.9, 1.1), 0.0
            )
    ex.accrue_funding(np.array([3.0, -0.2]))
    ex.set_prices([51_000.0, 2_950.0], [51_000.0, 2_950.0])
    ranking = AdlRanking(ex)
    assert_ranks_by_health(ex, ranking)
    richest = N_SYSTEM + int(np.argmax(ex.health().equity[N_SYSTEM:]))  # scored by its equity (> 0)
    ex.ledger.trade_between(richest, GENESIS, 0, 500, 50_500.0, float(ex.cum_funding[0]))  # a funding index of 3
    ex.ledger.deposit(N_SYSTEM + 5, 1, -0.3)  # into debt
    ex.accrue_funding(np.array([-1.0, 0.4]))
    ex.set_prices([48_000.0, 3_100.0], [48_000.0, 3_100.0])
    assert_ranks_by_health(ex, ranking)


def assert_ranks_by_health(ex: Exchange, ranking: AdlRanking) -> None:
    """The candidates are the other side's trader rows but the excluded one, scored with
    health's equity (to rounding)."""
    equity = ex.health().equity
    for m, side in ((0, 1), (0, -1), (1, 1)):
        excluded = N_SYSTEM + 7
        ids, scores, held = ranking.candidates(m, side, excluded)
        positions = ex.ledger.positions[:, m]
        expected = [r for r in range(N_SYSTEM, ex.ledger.n_accounts) if positions[r] * side < 0 and r != excluded]
        assert ids.tolist() == expected and np.array_equal(held, np.abs(positions[ids]))
        mark = float(ex.marks[m])
        notional = held * ex.instruments[m].lot_size * mark
        health = adl_scores(np.full(ids.size, -side), ex.ledger.entry[ids, m], mark, notional, equity[ids])
        np.testing.assert_allclose(scores, health, rtol=1e-9)


def test_tiers_take_accounts_by_instruments_only():
    table = TierTable.from_tiers([E0_TIERS])
    with pytest.raises(ValueError, match="accounts, instruments"):
        table.maintenance(np.array([1e9]))

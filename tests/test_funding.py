"""Funding (MARGIN-SPEC 6) and the mark-price rules (MARGIN-SPEC 1)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sim.config import load_config
from sim.exchange import Exchange, FeeSchedule
from sim.funding import Funding, FundingRules
from sim.instruments import CollateralAsset
from sim.ledger import N_SYSTEM, USD
from sim.marks import IndexMark, LastMark, MarkSettings, MedianMark
from sim.model import MarketModel
from sim.types import Side
from tests.conftest import btc

A, B, MM = N_SYSTEM, N_SYSTEM + 1, N_SYSTEM + 2


def venue() -> Exchange:
    ex = Exchange([btc()], [CollateralAsset("USD")], 3, [50_000.0], FeeSchedule(0.0, 0.0))
    for account in (A, B, MM):
        ex.ledger.deposit(account, USD, 1e6)
    return ex


def test_premium_from_impact_prices():
    ex = venue()
    rules = FundingRules(interval=8, impact_notional=100_000.0)
    # bids 1 @ 50,100 and 1 @ 50,050: selling 100k averages ~50,075 (> index: premium)
    ex.submit(MM, 0, Side.BUY, 1.0, 50_100.0)
    ex.submit(MM, 0, Side.BUY, 1.0, 50_050.0)
    ex.submit(MM, 0, Side.SELL, 5.0, 50_200.0)
    premium = Funding(ex, rules).premium()[0]
    sold = 100_000.0
    first = 50_100.0
    second_qty = (sold - first) / 50_050.0
    impact_bid = sold / (1 + second_qty)
    assert premium == pytest.approx((impact_bid - 50_000.0) / 50_000.0)


def test_thin_side_contributes_nothing():
    ex = venue()
    ex.submit(MM, 0, Side.BUY, 0.1, 50_100.0)  # 5k of bids: too thin for 10k
    assert Funding(ex, FundingRules(impact_notional=10_000.0)).premium()[0] == 0.0


@pytest.mark.parametrize(
    ("premium", "expected"),
    [(0.0, 0.0001), (0.0003, 0.0001), (0.002, 0.0015), (-0.002, -0.0015)],
)
def test_rate_is_premium_plus_clamped_interest_difference(premium, expected):
    ex = venue()
    funding = Funding(ex, FundingRules(interval=4, interest=0.0001, clamp=0.0005))
    funding._premium_sum[:] = premium * 3
    funding._samples = 3
    assert funding.estimate()[0] == pytest.approx(expected)


def test_longs_pay_shorts_and_value_is_conserved():
    ex = venue()
    ex.submit(B, 0, Side.SELL, 2.0, 50_000.0)
    ex.submit(A, 0, Side.BUY, 2.0, 50_000.0)
    funding = Funding(ex, FundingRules(interval=3, interest=0.0001, clamp=0.0005, impact_notional=1e12))
    paid = [funding.step(t) for t in range(1, 7)]
    assert paid == [False, False, True, False, False, True]
    assert funding.rate[0] == pytest.approx(0.0001)  # no book: premium 0, rate = interest
    health = ex.health()
    assert health.equity[A] == pytest.approx(1e6 - 2 * 2 * 50_000 * 0.0001)
    assert health.equity[B] == pytest.approx(1e6 + 2 * 2 * 50_000 * 0.0001)
    assert ex.ledger.conservation_error(ex.marks, ex.cum_funding) == pytest.approx(0.0, abs=1e-6)
    ex.submit(MM, 0, Side.SELL, 2.0, 50_000.0)  # touching A's position settles its funding
    ex.submit(A, 0, Side.BUY, 0.001, 50_000.0)
    assert ex.ledger.balances[A, USD] == pytest.approx(1e6 - 20.0)
    assert ex.ledger.conservation_error(ex.marks, ex.cum_funding) == pytest.approx(0.0, abs=1e-6)


def test_mark_rules():
    index, last, age = np.array([100.0, 50.0]), np.array([90.0, np.nan]), np.zeros(2)
    assert IndexMark(2)(index, last, age).tolist() == [100.0, 50.0]
    assert LastMark(2)(index, last, age).tolist() == [90.0, 50.0]
    # 3 samples: a 15 s window at 5 s steps
    median = MedianMark(2, MarkSettings(step_seconds=5.0, basis_window_seconds=15.0, stale_seconds=60.0))
    median.observe(index, np.array([100.0, np.nan]), np.array([0.001, 0.0]))
    # last alone cannot move it: median(100.1, 100, 90) = 100
    assert median(index, last, age).tolist() == [100.0, 50.0]
    for _ in range(3):  # a persistent basis of -5 does
        median.observe(index, np.array([95.0, np.nan]), np.array([0.001, 0.0]))
    assert median(index, last, age).tolist() == [95.0, 50.0]


def test_median_mark_falls_back_to_the_index_when_the_book_is_stale_or_one_sided():
    index, last = np.array([100.0]), np.array([90.0])
    median = MedianMark(1, MarkSettings(step_seconds=5.0, basis_window_seconds=15.0, stale_seconds=60.0))
    for _ in range(3):  # the book sat 5 below the index
        median.observe(index, np.array([95.0]), np.zeros(1))
    assert median(index, last, np.array([10.0])).tolist() == [95.0]  # median(100, 95, 90)
    # the last trade is 2 minutes old: it counts as the index, median(100, 95, 100)
    assert median(index, last, np.array([120.0])).tolist() == [100.0]
    for _ in range(3):  # a side of the book is empty: basis samples of 0
        median.observe(index, np.array([np.nan]), np.zeros(1))
    assert median(index, last, np.array([10.0])).tolist() == [100.0]  # median(100, 100, 90)


def test_rate_is_capped_per_interval():
    funding = Funding(venue(), FundingRules(interval=4, cap=0.003))
    funding._premium_sum[:] = 0.05 * 3
    funding._samples = 3
    assert funding.estimate()[0] == pytest.approx(0.003)
    funding._premium_sum[:] = -0.05 * 3
    assert funding.estimate()[0] == pytest.approx(-0.003)


def test_market_table_shows_the_rate_paid_at_payment_steps():
    """Issue 9 case 6: at a payment step the table showed the next interval's empty
    estimate (the interest rate), not the rate just paid."""
    config = load_config(
        "configs/flash_crash.toml", ["steps=40", "funding.interval_seconds=50", "mark.method=last", "funding.clamp=0"]
    )
    model = MarketModel(config)
    paid = {}
    for _ in range(config.steps):
        before = model.exchange.cum_funding.copy()
        model.step()
        if (model.exchange.cum_funding != before).any():
            paid[model.t] = float(model.funding.rate[0])
    assert len(paid) >= 2 and set(paid) <= {10, 20, 30, 40}
    market = model.recorder.tables()["market"]
    shown = dict(market.filter(pl.col("step").is_in(list(paid))).select("step", "funding_rate").iter_rows())
    assert shown == pytest.approx(paid)
    assert all(rate != 0.0 for rate in paid.values())  # with no clamp the rate is the premium

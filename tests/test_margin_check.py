"""The compiled pre-trade check (`sim.margin_check`) against `sim.margin`'s numpy math."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.instruments import MarginTiers
from sim.margin import MarginRules, MarketPrices, Portfolio, TierTable, mixed_health
from sim.margin_check import pre_trade_init_health

TIERS = (
    MarginTiers(floors=(0.0, 50_000.0, 250_000.0), mmr=(0.004, 0.005, 0.01), max_leverage=(50, 25, 10)),
    MarginTiers(floors=(0.0, 100_000.0), mmr=(0.005, 0.01), max_leverage=(40, 20)),
    MarginTiers(floors=(0.0,), mmr=(0.01,), max_leverage=(20,)),
)
LOT_SIZES = np.array([0.001, 0.01, 0.1])
TICK_SIZES = np.array([0.1, 0.01, 0.001])
TAKER_FEE = 0.0005


def _reference(portfolio, prices, rules, isolated, accounts, groups, instruments, sides, lots, ticks):
    """The check as the exchange computed it with `sim.margin`: pick the rows, add the
    orders as open and as filled at their worst price, take ``init_health``."""
    rows = Portfolio(
        *(np.asfortranarray(getattr(portfolio, name)[accounts]) for name in Portfolio.__slots__[:-1]),
        lot_sizes=portfolio.lot_sizes,
    )
    size = lots * LOT_SIZES[instruments]
    marks = prices.marks[instruments]
    price = np.where(ticks >= 0, ticks * TICK_SIZES[instruments], marks)
    cost = sides * size * (price - marks) + TAKER_FEE * size * price
    buy, iso = sides > 0, isolated[accounts][groups]
    np.add.at(rows.open_bids, (groups[buy], instruments[buy]), lots[buy])
    np.add.at(rows.open_asks, (groups[~buy], instruments[~buy]), lots[~buy])
    np.subtract.at(rows.isolated_margin, (groups[iso], instruments[iso]), cost[iso])
    np.subtract.at(rows.balances, (groups[~iso], 0), cost[~iso])
    return mixed_health(rows, prices, rules, isolated[accounts]).init_health


@st.composite
def books_and_orders(draw):
    n_accounts = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    positions = rng.integers(-3000, 3000, (n_accounts, 3)) * rng.integers(0, 2, (n_accounts, 3))
    entry = np.where(positions != 0, [50_000.0, 3_000.0, 150.0] * rng.uniform(0.8, 1.2, (n_accounts, 3)), 0.0)
    portfolio = Portfolio(
        # USD, BTC, ETH; some accounts owe USD or an asset
        balances=np.asfortranarray(rng.normal([2e4, 0.5, 2.0], [4e4, 1.0, 3.0], (n_accounts, 3))),
        positions=np.asfortranarray(positions.astype(float)),
        entry=np.asfortranarray(entry),
        funding_index=np.asfortranarray(rng.normal(0, 5, (n_accounts, 3))),
        isolated_margin=np.asfortranarray(rng.uniform(0, 5_000, (n_accounts, 3)) * (positions != 0)),
        open_bids=np.asfortranarray(rng.integers(0, 500, (n_accounts, 3)).astype(float)),
        open_asks=np.asfortranarray(rng.integers(0, 500, (n_accounts, 3)).astype(float)),
        lot_sizes=LOT_SIZES,
    )
    isolated = rng.random(n_accounts) < draw(st.sampled_from([0.0, 0.5, 1.0]))
    n_groups = draw(st.integers(1, n_accounts))
    accounts = rng.choice(n_accounts, n_groups, replace=False)
    n_orders = draw(st.integers(n_groups, 12))
    groups = np.sort(np.concatenate([np.arange(n_groups), rng.integers(0, n_groups, n_orders - n_groups)]))
    instruments = rng.integers(0, 3, n_orders)
    marks = np.array([50_000.0, 3_000.0, 150.0]) * rng.uniform(0.7, 1.3, 3)
    ticks = np.round(marks[instruments] * rng.uniform(0.9, 1.1, n_orders) / TICK_SIZES[instruments]).astype(np.int64)
    ticks[rng.random(n_orders) < 0.3] = -1  # valued at the mark (a market order on an empty book)
    orders = (
        instruments,
        rng.choice([-1, 1], n_orders),
        rng.integers(1, 20_000, n_orders) * rng.choice([1, 100], n_orders),  # reach the higher tiers
        ticks,
    )
    prices = MarketPrices(marks, np.array([1.0, 48_000.0, 2_900.0]), rng.normal(0, 5, 3))
    return portfolio, prices, isolated, accounts, groups, orders


@settings(max_examples=300, deadline=None)
@given(books_and_orders())
def test_compiled_check_equals_the_margin_module(case):
    _assert_check_equals_the_margin_module(*case)


def test_compiled_check_at_a_tier_floor_and_at_a_zero_price():
    """One account: worst-case lots exactly at BTC's second floor (1 BTC at 50,000), and
    an order with a limit of 0 ticks (valued at 0, not at the mark)."""

    def one(values: list[float]) -> np.ndarray:
        return np.asfortranarray(np.array([values]))

    portfolio = Portfolio(
        balances=one([10_000.0, 0.0, 0.0]),
        positions=one([600.0, 0.0, 0.0]),
        entry=one([50_000.0, 0.0, 0.0]),
        funding_index=one([0.0, 0.0, 0.0]),
        isolated_margin=one([0.0, 0.0, 0.0]),
        open_bids=one([0.0, 0.0, 0.0]),
        open_asks=one([0.0, 0.0, 0.0]),
        lot_sizes=LOT_SIZES,
    )
    prices = MarketPrices(np.array([50_000.0, 3_000.0, 150.0]), np.array([1.0, 48_000.0, 2_900.0]), np.zeros(3))
    orders = (np.array([0, 1]), np.array([1, 1]), np.array([400, 5]), np.array([500_000, 0]))  # 0.4 BTC: 1 BTC worst
    _assert_check_equals_the_margin_module(
        portfolio, prices, np.zeros(1, bool), np.zeros(1, np.int64), np.zeros(2, np.int64), orders
    )


def _assert_check_equals_the_margin_module(portfolio, prices, isolated, accounts, groups, orders):
    instruments, sides, lots, ticks = orders
    rules = MarginRules(
        TierTable.from_tiers(TIERS), weights=np.array([1.0, 0.95, 0.9]), liability_weights=np.array([1.0, 1.05, 1.1])
    )
    expected = _reference(portfolio, prices, rules, isolated, accounts, groups, instruments, sides, lots, ticks)
    weights = prices.asset_prices * rules.weights
    got = pre_trade_init_health(
        accounts, groups, instruments, sides, lots, ticks,
        portfolio.balances, portfolio.positions, portfolio.entry, portfolio.funding_index, portfolio.isolated_margin,
        portfolio.open_bids, portfolio.open_asks, isolated,
        LOT_SIZES, TICK_SIZES, prices.marks, prices.cum_funding,
        weights, prices.asset_prices * rules.liability_weights - weights,
        rules.tiers.floors, rules.tiers.imr, TAKER_FEE,
    )  # fmt: skip
    # sums of terms up to ~1e8 USD, added in another order: a few ulps of that
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-6)

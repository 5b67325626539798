"""The index propagator (square-root law, decay, exact counterfactuals) and the
backstop's unwinding into the rest of the market."""

from __future__ import annotations

import numpy as np
import pytest

from sim.exchange import Exchange, FeeSchedule
from sim.impact import (
    KERNEL_TOLERANCE,
    MAX_LAG_SECONDS,
    TRADERS,
    ImpactParams,
    Propagator,
    VenueIndex,
    exponential_sum,
)
from sim.instruments import CollateralAsset
from sim.ledger import BACKSTOP, GENESIS, INSURANCE_FUND, N_SYSTEM, USD
from sim.types import OrderType, Side
from sim.unwind import TakeoverUnwinder
from tests.conftest import btc

PARAMS = ImpactParams(daily_volatility=0.04, venue_share=0.25, y=1.0, beta=0.5, decay_seconds=5.0)


def propagator(volume_usd: float = 1e6, now: float = 10.0) -> Propagator:
    p = Propagator([PARAMS])
    p.advance(now)
    p.add_volume(0, volume_usd)
    return p


def test_instant_impact_is_the_square_root_law():
    p = propagator()
    # V_D = 1e6 USD traded in 10 s -> 8.64e9 per day on the venue, / 0.25 share = 3.456e10
    v_d = 1e6 * 86_400 / 10 / 0.25
    assert p.daily_volume()[0] == pytest.approx(v_d)
    assert p.instant_impact(0, 1e5) == pytest.approx(0.04 * np.sqrt(1e5 / v_d))
    assert p.instant_impact(0, 4e5) == pytest.approx(2 * p.instant_impact(0, 1e5))  # concave
    assert p.instant_impact(0, -1e5) == pytest.approx(-p.instant_impact(0, 1e5))
    assert p.instant_impact(0, 0.0) == 0.0


def test_impact_decays_with_the_propagator_kernel():
    p = propagator()
    f = p.add(0, -2e5, source=3)
    assert p.log_impact()[0] == pytest.approx(f)
    p.advance(10.0 + 15.0)  # 15 s later: G = (1 + 15 / 5)^-0.5 = 1/2
    assert p.log_impact()[0] == pytest.approx(f / 2)
    p.advance(10.0 + 495.0)  # G = (1 + 99)^-0.5 = 1/10
    assert p.log_impact()[0] == pytest.approx(f / 10)


@pytest.mark.parametrize("beta", [0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 30.0])
@pytest.mark.parametrize("decay_seconds", [0.5, 5.0, 300.0])
def test_the_exponential_sum_is_the_power_law_within_its_tolerance(beta, decay_seconds):
    rates, weights = exponential_sum(beta, decay_seconds)
    lags = np.concatenate([[0.0], np.geomspace(1e-3, MAX_LAG_SECONDS, 3000)])
    exact = (1.0 + lags / decay_seconds) ** -beta
    approx = np.exp(-np.outer(lags, rates)) @ weights
    kept = exact > 1e-250  # beta = 30 underflows far out
    assert np.abs(approx[kept] / exact[kept] - 1.0).max() <= KERNEL_TOLERANCE
    assert approx[0] == pytest.approx(1.0, abs=1e-15) and (rates >= 0).all() and (weights > 0).all()


def exact_impact(times: np.ndarray, impacts: np.ndarray, now: float, params: ImpactParams) -> float:
    """The propagator's sum with the power law itself, term by term (the old algorithm)."""
    lags = now - times
    return float(np.sum((1.0 + lags / params.decay_seconds) ** -params.beta * impacts))


def test_a_long_run_keeps_the_power_law_impact_series():
    """20,000 steps of 5 s (28 h) of random flow with liquidation bursts: the running
    sums give the impact series the exact sum over all past terms gives, within the
    kernel's tolerance of the sum of the terms' absolute decayed impacts."""
    rng = np.random.default_rng(5)
    params = [PARAMS, ImpactParams(daily_volatility=0.05, venue_share=0.1, beta=0.7, decay_seconds=30.0)]
    p = Propagator(params)
    times, insts, impacts = [], [], []
    checked = 0
    for step in range(1, 20_001):
        now = step * 5.0
        p.advance(now)
        for m in range(2):
            p.add_volume(m, 1e6)
            impacts.append(p.add(m, float(rng.normal(0.0, 2e5))))
            times.append(now), insts.append(m)
        if step % 997 == 0:  # a liquidation
            impacts.append(p.add(0, -5e6, source=step))
            times.append(now), insts.append(0)
        if step % 500 == 0 or step in (1, 2, 20_000):
            t, i, f = np.array(times), np.array(insts), np.array(impacts)
            for m, param in enumerate(params):
                mine = i == m
                expected = exact_impact(t[mine], f[mine], now, param)
                scale = exact_impact(t[mine], np.abs(f[mine]), now, param)
                assert abs(p.log_impact()[m] - expected) <= KERNEL_TOLERANCE * scale + 1e-15
            checked += 1
    assert checked == 42
    sources, by_source = p.by_source()
    assert sources.tolist() == list(range(997, 20_001, 997))
    first = exact_impact(np.array([997 * 5.0]), np.array([impacts[2 * 997]]), 20_000 * 5.0, PARAMS)
    assert by_source[0, 0] == pytest.approx(first, rel=KERNEL_TOLERANCE)


def test_the_clock_only_moves_forward():
    p = propagator(now=10.0)
    with pytest.raises(ValueError, match="cannot go back"):
        p.advance(5.0)


def test_the_index_without_a_liquidation_is_exact():
    ex = Exchange([btc()], [CollateralAsset("USD")], 1, [50_000.0])
    paths = np.full((3, 1), 50_000.0)
    index = VenueIndex(ex, paths, Propagator([PARAMS]), step_seconds=5.0)
    index.advance(1)
    index.propagator.add_volume(0, 5e6)
    index.trade({0: 3e5})  # traders bought
    index.trade({0: -1e6}, source=7, kind="liquidation")
    index.trade({0: -2e5}, source=9, kind="unwind")
    index.advance(2)
    sources, impact = index.propagator.by_source()
    assert sources.tolist() == [7, 9]
    assert impact.shape == (2, 1) and (impact < 0).all()
    # removing every liquidation leaves the exogenous path times the traders' impact alone
    traders_only = Propagator([PARAMS])
    traders_only.advance(5.0)
    traders_only.add_volume(0, 5e6)
    traders_only.add(0, 3e5, TRADERS)
    traders_only.advance(10.0)
    expected = 50_000.0 * np.exp(traders_only.log_impact())
    assert index.without_sources(impact)[0] == pytest.approx(expected[0])
    assert ex.index[0] == pytest.approx(50_000.0 * np.exp(index.propagator.log_impact()[0]))
    assert index.flows["liquidation"][0] == 0.0  # per-step tallies restart each step


def test_resting_quotes_move_nothing_fills_do():
    ex = Exchange([btc()], [CollateralAsset("USD")], 2, [50_000.0], FeeSchedule(0.0, 0.0))
    index = VenueIndex(ex, np.full((2, 1), 50_000.0), Propagator([PARAMS]), step_seconds=1.0)
    index.advance(1)
    maker, taker = N_SYSTEM, N_SYSTEM + 1
    for account in (maker, taker):
        ex.ledger.deposit(account, USD, 1e6)
    ex.submit(maker, 0, Side.SELL, 1.0, 50_010.0)  # rests
    ex.submit(maker, 0, Side.BUY, 1.0, 49_000.0)  # rests
    ex.cancel(ex.submit(maker, 0, Side.BUY, 1.0, 49_500.0).order_id)  # rests, then cancelled
    index.record_fills(ex.fill_columns())
    assert ex.index[0] == 50_000.0 and index.flows["traders"][0] == 0.0
    ex.submit(taker, 0, Side.BUY, 0.5, 50_010.0, OrderType.IOC)  # takes half of the ask
    index.record_fills(ex.fill_columns())
    assert index.flows["traders"][0] == pytest.approx(0.5 * 50_010.0)
    assert ex.index[0] > 50_000.0  # an executed aggressive buy moves the index up


def test_a_slice_sold_for_several_takeovers_has_the_impact_of_one_trade():
    one, many = Propagator([PARAMS]), Propagator([PARAMS])
    for p in (one, many):
        p.advance(10.0)
        p.add_volume(0, 1e7)
    whole = one.add(0, -5e5, source=3)
    split = many.add(0, -5e5, source=[(0.5, 3), (0.3, 4), (0.2, 5)])
    assert split == pytest.approx(whole) and many.log_impact()[0] == pytest.approx(whole)
    sources, impact = many.by_source()
    assert sources.tolist() == [3, 4, 5]
    assert impact[:, 0] == pytest.approx([0.5 * whole, 0.3 * whole, 0.2 * whole])


def unwinding_venue() -> tuple[Exchange, VenueIndex, TakeoverUnwinder]:
    """One BTC venue at step 1 whose takeovers sell with a half-life of one step."""
    ex = Exchange([btc()], [CollateralAsset("USD")], 1, [50_000.0], FeeSchedule(0.0, 0.0))
    index = VenueIndex(ex, np.full((4, 1), 50_000.0), Propagator([PARAMS]), step_seconds=5.0)
    index.advance(1)
    index.propagator.add_volume(0, 1e7)
    return ex, index, TakeoverUnwinder(ex, index, half_life_seconds=5.0, step_seconds=5.0)


def test_backstop_sells_its_takeovers_with_a_half_life():
    ex, index, unwinder = unwinding_venue()
    ex.ledger.trade_between(BACKSTOP, N_SYSTEM, 0, 1_000, 50_000.0, 0.0)  # the vault took 1 BTC long
    unwinder.take_over(BACKSTOP, 0, 1_000, source=4)  # a first slice at once: half, in one half-life
    assert ex.ledger.positions[BACKSTOP, 0] == 500
    assert ex.ledger.positions[GENESIS, 0] == 500  # sold to the rest of the market
    assert index.flows["unwind"][0] == pytest.approx(-0.5 * 50_000.0)
    assert index.propagator.by_source()[0].tolist() == [4]
    assert ex.index[0] < 50_000.0  # with impact
    index.advance(2)
    unwinder.step()
    assert ex.ledger.positions[BACKSTOP, 0] == 250
    assert not ex.ledger.net_positions().any()


def test_backstop_sells_oldest_takeovers_first_and_nets_opposite_ones():
    ex = Exchange([btc()], [CollateralAsset("USD")], 1, [50_000.0], FeeSchedule(0.0, 0.0))
    index = VenueIndex(ex, np.full((2, 1), 50_000.0), Propagator([PARAMS]), step_seconds=5.0)
    unwinder = TakeoverUnwinder(ex, index, half_life_seconds=1e12, step_seconds=5.0)  # sells 1 lot a time
    for lots, source in ((600, 4), (400, 8), (-100, 9)):
        ex.ledger.trade_between(BACKSTOP, N_SYSTEM, 0, lots, 50_000.0, 0.0)
        unwinder.take_over(BACKSTOP, 0, lots, source)
    # 1,000 long taken in two takeovers, each sold one lot at once (from itself); the
    # short takeover nets 100 lots of the oldest and leaves nothing to sell
    assert ex.ledger.positions[BACKSTOP, 0] == 898
    queue = unwinder._queues[BACKSTOP, 0]
    assert [list(q) for q in queue] == [[499, 4], [399, 8]]
    assert TakeoverUnwinder._slices(queue, 600) == [(499, 4), (101, 8)]


def test_the_insurance_fund_sells_its_takeovers_too():
    ex, index, unwinder = unwinding_venue()
    ex.ledger.trade_between(INSURANCE_FUND, N_SYSTEM, 0, -1_000, 50_000.0, 0.0)  # the fund took 1 BTC short
    unwinder.take_over(INSURANCE_FUND, 0, -1_000, source=2)
    assert ex.ledger.positions[INSURANCE_FUND, 0] == -500
    assert index.flows["unwind"][0] > 0  # it buys back
    index.advance(2)
    unwinder.step()
    assert ex.ledger.positions[INSURANCE_FUND, 0] == -250
    assert not ex.ledger.net_positions().any()

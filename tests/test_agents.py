"""Each agent type in a small hand-built market: what it sends given what it sees,
per-agent draws, and the same behaviour in seconds at 1-second and 5-second steps.

States are built by hand: a liquidity account (``account:lp``) rests orders, the index
is set directly, and the market view's step and history are written as a run would
have left them. Agents' ``step`` is called directly (the model's loop is not run).
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from agents import AGENT_TYPES
from sim.config import Config, load_config
from sim.model import MarketModel
from sim.types import OrderType, Side

MARKET = """
steps = 2000
step_seconds = {step_seconds}
[instruments.BTC]
tick = 0.1
lot = 0.001
initial_price = 50000.0
[instruments.BTC.price]
volatility = 0.0
[funding]
interval = 0
[[accounts]]
name = "lp"
collateral = {{ USD = 100000000.0 }}
"""


def build(populations: str, step_seconds: float = 1.0) -> MarketModel:
    """A one-instrument market with a liquidity account and the given populations."""
    data = tomllib.loads(MARKET.format(step_seconds=step_seconds) + populations)
    return MarketModel(Config.model_validate(data))


def population(kind: str, params: str = "", count: int = 1, collateral: float = 1_000_000.0, leverage=3.0) -> str:
    return (
        f'[[populations]]\ntype = "{kind}"\ncount = {count}\ncollateral = {{ USD = {collateral} }}\n'
        f"leverage = {leverage}\nparams = {{ {params} }}\n"
    )


def agents(model: MarketModel, kind: str) -> list:
    return [a for a in model.agents if isinstance(a, AGENT_TYPES[kind])]


def lp(model: MarketModel) -> int:
    return model.account_types.index("account:lp")


def quote(model: MarketModel, bid: float | None, ask: float | None, qty: float = 100.0) -> None:
    """The liquidity account rests a bid and an ask."""
    ex = model.exchange
    if bid is not None:
        assert ex.submit(lp(model), 0, Side.BUY, qty, bid).rested
    if ask is not None:
        assert ex.submit(lp(model), 0, Side.SELL, qty, ask).rested


def own_orders(model: MarketModel, agent) -> list[tuple[int, int, int, int, int]]:
    book = model.exchange.books[0]
    return [book.order(oid) for oid in book.open_orders(agent.account)]


def set_history(model: MarketModel, prices: np.ndarray, step: int) -> None:
    """The venue price at the end of steps ``step - len(prices) .. step - 1``; now is ``step``."""
    market = model.market
    market.step = step
    market.venue_history[step - len(prices) : step, 0] = prices


def alternating(n: int, per_step: float, level: float = 50_000.0) -> np.ndarray:
    """n prices whose per-step log returns alternate +per_step, -per_step (std = per_step)."""
    return level * np.exp(per_step * (np.arange(n) % 2))


# ----------------------------------------------------------------- market view
def test_venue_price_falls_back_from_last_trade_to_mid_to_index():
    model = build("")
    market = model.market
    assert market.venue_price(0) == 50_000.0  # nothing: the index
    quote(model, 48_900.0, 49_100.0)
    assert market.venue_price(0) == pytest.approx(49_000.0)  # the mid
    model.exchange.last_price[0] = 49_050.0
    assert market.venue_price(0) == 49_050.0  # the last trade
    assert market.venue_mid(0) == pytest.approx(49_000.0)  # quoting reference: mid first


@pytest.mark.parametrize("step_seconds", [1.0, 5.0])
def test_returns_and_volatility_are_per_second_at_any_step_length(step_seconds):
    model = build("", step_seconds)
    market = model.market
    k = round(60 / step_seconds)  # one minute of history
    drift = 2e-5  # log return per second
    times = np.arange(-k, 0) * step_seconds
    set_history(model, 50_000.0 * np.exp(drift * times), k)
    model.exchange.last_price[0] = 50_000.0
    assert market.venue_drift(0, 60.0) == pytest.approx(drift)
    assert market.venue_return(0, 60.0) == pytest.approx(drift * 60.0)
    sigma = 1e-3  # per sqrt(second)
    set_history(model, alternating(k + 1, sigma * math.sqrt(step_seconds)), k + 1)
    assert market.venue_vol(0, 60.0) == pytest.approx(sigma, rel=1e-6)


def test_chance_per_step_keeps_the_rate_per_second():
    one, five = build("", 1.0).market, build("", 5.0).market
    assert (one.chance(10.0), five.chance(10.0), five.chance(2.0)) == (0.1, 0.5, 1.0)  # mean wait 10 s
    assert five.steps_for(100.0) == 20 and one.steps_for(100.0) == 100


def test_order_helper_snaps_to_the_grid():
    model = build(population("noise"))
    noise = agents(model, "noise")[0]
    request = noise.order(0, Side.BUY, 0.12345, 49_999.97, OrderType.LIMIT)
    assert (request.qty, request.price) == (pytest.approx(0.123), pytest.approx(49_999.9))


# ------------------------------------------------------------- noise, momentum
def test_noise_trader_quotes_around_the_venue_not_the_index():
    model = build(population("noise", "interval_seconds = 0.001, market_share = 0.0, limit_range_bps = 30.0"))
    noise = agents(model, "noise")[0]
    quote(model, 48_950.0, 49_050.0)  # the venue at 49,000, the index at 50,000
    for _ in range(20):
        noise.step()
        (order,) = own_orders(model, noise)
        assert 49_000 * (1 - 0.003) <= order[3] / 10 <= 49_000 * (1 + 0.003)


@pytest.mark.parametrize("step_seconds", [1.0, 5.0])
def test_noise_trader_acts_once_per_interval_on_average(step_seconds):
    model = build(population("noise", "interval_seconds = 10.0, market_share = 0.0"), step_seconds)
    noise = agents(model, "noise")[0]
    before = model.exchange.n_orders
    for _ in range(round(4_000 / step_seconds)):
        noise.step()
    assert 400 * 0.85 < model.exchange.n_orders - before < 400 * 1.15


@pytest.mark.parametrize("step_seconds", [1.0, 5.0])
def test_momentum_buys_a_venue_uptrend_over_its_lookback_in_seconds(step_seconds):
    params = "lookback_seconds = 20.0, threshold = 0.01, max_order_notional = 20000.0"
    model = build(population("momentum", params), step_seconds)
    momentum = agents(model, "momentum")[0]
    quote(model, None, 50_100.0, qty=5.0)
    k = round(20 / step_seconds)
    model.market.venue_history[0, 0] = 49_000.0  # the venue 20 s ago
    model.market.step = k
    model.exchange.last_price[0] = 50_100.0  # +2.2 % over the lookback
    momentum.step()
    assert momentum.position(0) == 0.4  # max_order_notional (20,000) at the mark (50,000) per step
    model.market.step = k + 1  # now the lookback starts after the jump: nothing new
    model.market.venue_history[1, 0] = 50_100.0
    momentum.step()
    assert momentum.position(0) == 0.4


# ------------------------------------------------ market maker, fundamentalist (before their rewrite)
OLD_MARKET = """
steps = 100
[instruments.BTC]
tick = 0.1
lot = 0.001
initial_price = 50000.0
[instruments.BTC.price]
volatility = 0.0
[funding]
interval = 0
[[populations]]
type = "market_maker"
count = 1
collateral = { USD = 3000000.0 }
leverage = 1.0
params = { levels = 1, half_spread_bps = 10.0, inventory_skew_bps = 50.0, vol_window = 5, withdraw_multiple = 2.0 }
[[populations]]
type = "momentum"
count = 1
collateral = { USD = 100000.0 }
leverage = 3.0
params = { lookback_seconds = 20.0, threshold = 0.01, max_order_notional = 20000.0 }
[[populations]]
type = "fundamentalist"
count = 1
collateral = { USD = 100000.0 }
leverage = 3.0
params = { threshold_bps = 20.0, order_notional = 10000.0 }
[[populations]]
type = "noise"
count = 2
collateral = { USD = 1000000.0 }
leverage = 3.0
params = { interval_seconds = 3.0, market_share = 0.0 }
"""


def market(tmp_path: Path) -> tuple[MarketModel, dict]:
    path = tmp_path / "m.toml"
    path.write_text(OLD_MARKET)
    model = MarketModel(load_config(path))
    agents = {kind: [a for a in model.agents if isinstance(a, cls)] for kind, cls in AGENT_TYPES.items()}
    return model, agents


def test_market_maker_quotes_both_sides_and_withdraws_on_a_volatility_spike(tmp_path):
    model, agents = market(tmp_path)
    mm = agents["market_maker"][0]
    mm.step()
    book = model.exchange.books[0]
    assert len(book.open_orders(mm.account)) == 2
    assert book.best_bid() * 0.1 == 49_950.0 and book.best_ask() * 0.1 == 50_050.0  # 10 bps around 50,000
    # a calm history, then a 10 % jump in the last step: short-run vol >> long-run vol
    model.market.index_history[:61, 0] = 50_000.0 * np.exp(0.0001 * np.arange(61))
    model.market.index_history[60, 0] *= 1.1
    model.market.step = 60
    model.market._vol_cache.clear()
    mm.step()
    assert book.open_orders(mm.account) == []


def test_market_maker_skews_against_inventory(tmp_path):
    model, agents = market(tmp_path)
    mm, noise = agents["market_maker"][0], agents["noise"][0]
    mm.step()
    flat_bid = model.exchange.books[0].best_bid()
    model.exchange.ledger.trade_between(mm.account, noise.account, 0, 30_000, 50_000.0, 0.0)  # long 30 BTC
    mm.step()
    assert model.exchange.books[0].best_bid() < flat_bid  # long inventory: quotes move down


def test_fundamentalist_trades_the_venue_back_to_the_index(tmp_path):
    model, agents = market(tmp_path)
    ex, fundamentalist, seller = model.exchange, agents["fundamentalist"][0], agents["noise"][0]
    ex.submit(seller.account, 0, Side.SELL, 5.0, 49_800.0)
    ex.submit(seller.account, 0, Side.BUY, 5.0, 49_700.0)  # the venue trades 0.5 % cheap
    fundamentalist.step()
    assert fundamentalist.position(0) == 0.2  # bought 10,000 USD at the index limit (49,800 ask)

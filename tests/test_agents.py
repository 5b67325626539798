"""Each agent type in a small live market: what it sends given what it sees."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agents import AGENT_TYPES
from sim.config import load_config
from sim.model import MarketModel
from sim.types import Side

MARKET = """
steps = 100
[instruments.BTC]
tick = 0.1
lot = 0.001
initial_price = 50000.0
[instruments.BTC.price]
volatility = 0.0
[funding]
interval_seconds = 0
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
params = { lookback = 20, threshold = 0.01, max_order_notional = 20000.0 }
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
params = { activity = 0.3, market_share = 0.0 }
"""


def market(tmp_path: Path) -> tuple[MarketModel, dict]:
    path = tmp_path / "m.toml"
    path.write_text(MARKET)
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


def test_momentum_buys_an_uptrend(tmp_path):
    model, agents = market(tmp_path)
    ex, momentum, seller = model.exchange, agents["momentum"][0], agents["noise"][0]
    ex.submit(seller.account, 0, Side.SELL, 5.0, 50_100.0)
    model.market.step = 20
    model.market.last_history[0, 0] = 49_000.0
    ex.last_price[0] = 50_100.0  # +2.2 % over the lookback
    momentum.step()
    assert momentum.position(0) > 0
    assert momentum.position(0) == 0.4  # max_order_notional (20,000) at the mark (50,000) per step


def test_fundamentalist_trades_the_venue_back_to_the_index(tmp_path):
    model, agents = market(tmp_path)
    ex, fundamentalist, seller = model.exchange, agents["fundamentalist"][0], agents["noise"][0]
    ex.submit(seller.account, 0, Side.SELL, 5.0, 49_800.0)
    ex.submit(seller.account, 0, Side.BUY, 5.0, 49_700.0)  # the venue trades 0.5 % cheap
    fundamentalist.step()
    assert fundamentalist.position(0) == 0.2  # bought 10,000 USD at the index limit (49,800 ask)


def test_noise_trader_acts_with_its_activity(tmp_path):
    model, agents = market(tmp_path)
    noise = agents["noise"][0]
    acted = 0
    for _ in range(200):
        before = model.exchange.n_orders
        noise.step()
        acted += model.exchange.n_orders > before
    assert 40 <= acted <= 80

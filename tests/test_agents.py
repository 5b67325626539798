"""Each population type in a small hand-built market: what its members send given what
they see, per-member draws, and the same behaviour in seconds at 1-second and 5-second
steps.

States are built by hand: a liquidity account (``account:lp``) rests orders, the index
is set directly, and the market view's step and history are written as a run would
have left them. `act` runs one population's decisions and sends them (the model's loop
is not run); member 0 of a one-member population is "the" trader of a test.
"""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from agents import AGENT_TYPES
from agents.compiled import clip, column_sums, log_return_std, maximum, minimum
from agents.market_maker import MAX_HALF_SPREAD
from agents.orders import Outbox, send
from sim.book import KIND_CODES
from sim.config import Config, ConfigError, load_config
from sim.exchange import EXCHANGE_REJECTS
from sim.ledger import GENESIS
from sim.model import MarketModel
from sim.types import OrderRequest, OrderType, RejectReason, Side

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
interval_seconds = 0
[market]
price_band = 0.0  # the exchange's band is tested in test_exchange; here: the agents' own rules
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
    """The populations of one type (one per ``[[populations]]`` entry of that type)."""
    return [a for a in model.agents if isinstance(a, AGENT_TYPES[kind])]


def act(model: MarketModel, pop) -> None:
    """One step of a population's members: decide, send in their order, learn the results."""
    sheet = pop.decide()
    (outcome,) = send(model.exchange, [sheet], np.arange(len(sheet.members)))
    pop.receive(sheet, outcome)


def lp(model: MarketModel) -> int:
    return model.account_types.index("account:lp")


def quote(model: MarketModel, bid: float | None, ask: float | None, qty: float = 100.0) -> None:
    """The liquidity account rests a bid and an ask."""
    ex = model.exchange
    if bid is not None:
        assert ex.submit(lp(model), 0, Side.BUY, qty, bid).rested
    if ask is not None:
        assert ex.submit(lp(model), 0, Side.SELL, qty, ask).rested


def own_orders(model: MarketModel, pop, member: int = 0) -> list[tuple[int, int, int, int, int]]:
    book = model.exchange.books[0]
    return [book.order(oid) for oid in book.open_orders(int(pop.accounts[member]))]


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


@pytest.mark.parametrize("columns", [1, 2, 3, 5])
def test_compiled_statistics_give_numpys_bits(columns):
    """`column_sums` and `log_return_std` reproduce numpy's summation order (pairwise down
    one column, row by row across several), so the venue's volatility, and every table
    after it, is the same bit for bit as the numpy expression gives."""
    rng = np.random.default_rng(columns)
    for _ in range(300):
        k = int(rng.integers(2, 2_000))
        x = rng.normal(0.0, 10 ** rng.uniform(-6, 0), (k, columns)) + rng.normal(0, 1e-3)
        assert np.array_equal(column_sums(x), x.sum(axis=0))
        prices = 50_000.0 * np.exp(np.cumsum(x, axis=0))
        assert np.array_equal(log_return_std(prices), np.diff(np.log(prices), axis=0).std(axis=0))
    zeros = np.full((9, columns), -0.0)  # numpy sums one column onto +0.0
    assert np.signbit(column_sums(zeros)).tolist() == np.signbit(zeros.sum(axis=0)).tolist()


def test_compiled_elementwise_rules_are_numpys():
    """`minimum`, `maximum` and `clip` give numpy's results to the bit: NaN wins, and on
    a tie of 0.0 and -0.0 the second argument."""
    values = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -2.0]
    for a in values:
        assert np.array_equal(clip(a, 0.0, 1.0), np.clip(a, 0.0, 1.0), equal_nan=True)
        assert np.signbit(clip(a, 0.0, 1.0)) == np.signbit(np.clip(a, 0.0, 1.0))
        for b in values:
            for ours, numpys in ((minimum, np.minimum), (maximum, np.maximum)):
                got, want = ours(a, b), numpys(a, b)
                assert np.array_equal(got, want, equal_nan=True) and (
                    np.isnan(want) or np.signbit(got) == np.signbit(want)
                )


def test_outbox_refuses_columns_of_other_lengths_and_hands_out_its_own_mask():
    model = build(population("noise", count=3))
    out = Outbox(agents(model, "noise")[0])
    members, side = np.array([0, 1, 2]), np.array([1, -1, 1])
    with pytest.raises(ValueError, match="columns must all be"):
        out.add(0, members, side, np.full(3, 0.1), np.array([50_000.0]), OrderType.LIMIT)
    sent = out.add(0, members, side, np.full(3, 0.1), np.full(3, 50_000.0), "limit")  # a kind's name works too
    sent[1:] = False  # the caller's copy: the outbox keeps its own
    assert out.sheet().members.tolist() == [0, 1, 2]


def test_chance_per_step_keeps_the_rate_per_second():
    one, five = build("", 1.0).market, build("", 5.0).market
    assert (one.chance(10.0), five.chance(10.0), five.chance(2.0)) == (0.1, 0.5, 1.0)  # mean wait 10 s
    assert five.steps_for(100.0) == 20 and one.steps_for(100.0) == 100


def test_outbox_snaps_orders_to_the_grid_and_drops_what_rounds_to_nothing():
    model = build(population("noise", count=3))
    out = Outbox(agents(model, "noise")[0])
    sent = out.add(
        0,
        np.array([0, 1, 2]),
        np.array([1, -1, 1]),
        np.array([0.12345, 0.12345, 0.0009]),
        np.array([49_999.97, 49_999.91, 50_000.0]),
        OrderType.LIMIT,
    )
    assert sent.tolist() == [True, True, False]  # 0.0009 BTC is no lot
    sheet = out.sheet()
    assert sheet.lots.tolist() == [123, 123] and sheet.ticks.tolist() == [499_999, 500_000]
    assert sheet.side.tolist() == [1, -1] and sheet.n_orders.tolist() == [1, 1]
    assert sheet.accounts.tolist() == agents(model, "noise")[0].accounts[:2].tolist()


def test_outbox_groups_rows_by_member_in_the_order_members_first_sent_something():
    """`Outbox.sheet` against a plain model: members in the order of their first cancel
    or sent order (an order that rounds to nothing does not count), each member's
    cancels and orders in call order."""
    model = build(population("noise", count=6))
    noise = agents(model, "noise")[0]
    rng = np.random.default_rng(7)
    for _ in range(20):
        out, calls = Outbox(noise), []
        for _ in range(rng.integers(0, 6)):
            k = int(rng.integers(0, 5))
            members = rng.integers(0, 6, size=k)
            if rng.random() < 0.3:
                ids = rng.integers(1, 1000, size=k)
                out.cancel(members, ids)
                calls += [("cancel", m, i) for m, i in zip(members.tolist(), ids.tolist(), strict=True)]
                continue
            side = np.where(rng.random(k) < 0.5, 1, -1)
            qty = rng.choice([0.0005, 0.01, 0.2], size=k)  # 0.0005 BTC is no lot
            if rng.random() < 0.5:
                sent = out.add(0, members, side, qty, np.full(k, 50_000.0), OrderType.POST_ONLY)
            else:
                sent = out.reduce(0, members, -side * 1_000, qty, np.full(k, 50_000.0))
            calls += [
                ("order", m, q) for m, q, ok in zip(members.tolist(), qty.tolist(), sent.tolist(), strict=True) if ok
            ]
        order = list(dict.fromkeys(m for _, m, _ in calls))
        sheet = out.sheet()
        assert sheet.members.tolist() == order
        assert sheet.cancel_ids.tolist() == [
            i for m in order for what, who, i in calls if who == m and what == "cancel"
        ]
        assert sheet.member.tolist() == [m for m in order for what, who, _ in calls if who == m and what == "order"]
        assert (sheet.lots * 0.001).round(6).tolist() == [
            q for m in order for what, who, q in calls if who == m and what == "order"
        ]
        counts = [[what for what, who, _ in calls if who == m] for m in order]
        assert sheet.n_cancels.tolist() == [c.count("cancel") for c in counts]
        assert sheet.n_orders.tolist() == [c.count("order") for c in counts]


# ------------------------------------------------------------- noise, momentum
def test_noise_trader_quotes_around_the_venue_not_the_index():
    model = build(population("noise", "interval_seconds = 0.001, market_share = 0.0, limit_range_bps = 30.0"))
    noise = agents(model, "noise")[0]
    quote(model, 48_950.0, 49_050.0)  # the venue at 49,000, the index at 50,000
    for _ in range(20):
        act(model, noise)
        (order,) = own_orders(model, noise)
        assert 49_000 * (1 - 0.003) <= order[3] / 10 <= 49_000 * (1 + 0.003)


@pytest.mark.parametrize("step_seconds", [1.0, 5.0])
def test_noise_trader_acts_once_per_interval_on_average(step_seconds):
    model = build(population("noise", "interval_seconds = 10.0, market_share = 0.0"), step_seconds)
    noise = agents(model, "noise")[0]
    before = model.exchange.n_orders
    for _ in range(round(4_000 / step_seconds)):
        act(model, noise)
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
    act(model, momentum)
    assert momentum.position(0, 0) == 0.4  # max_order_notional (20,000) at the mark (50,000) per step
    model.market.step = k + 1  # now the lookback starts after the jump: nothing new
    model.market.venue_history[1, 0] = 50_100.0
    act(model, momentum)
    assert momentum.position(0, 0) == 0.4


# ---------------------------------------------------------------- market maker
MM = (
    "levels = 1, order_notional = 50000.0, risk_aversion = 10.0, arrival_decay = 2000.0, horizon_seconds = 60.0, "
    "index_weight = 0.0, vol_tolerance = 2.0, loss_limit = 0.1, refill_seconds = 60.0"
)


def test_market_maker_quotes_the_avellaneda_stoikov_spread_around_its_fair_value():
    model = build(population("market_maker", MM, collateral=3_000_000.0))
    mm = agents(model, "market_maker")[0]
    act(model, mm)
    half = math.log1p(10 / 2000) / 10  # no volatility yet: the base half-spread, ~5 bps
    orders = sorted(own_orders(model, mm), key=lambda o: o[2])
    assert [(o[2], o[3], o[4]) for o in orders] == [
        (-1, math.ceil(50_000 * math.exp(half) * 10), 1000),
        (1, math.floor(50_000 * math.exp(-half) * 10), 1000),
    ]


def test_market_maker_fair_value_mixes_venue_and_index_by_its_weight():
    model = build(population("market_maker", MM.replace("index_weight = 0.0", "index_weight = 0.25"), count=1))
    mm = agents(model, "market_maker")[0]
    quote(model, 48_900.0, 49_100.0)
    assert mm.fair_values()[0, 0] == pytest.approx(0.75 * 49_000.0 + 0.25 * 50_000.0)
    micro = build(population("market_maker", MM + ', reference = "microprice"'))
    quote(micro, 48_900.0, None, qty=3.0)
    quote(micro, None, 49_100.0, qty=1.0)
    assert agents(micro, "market_maker")[0].fair_values()[0, 0] == pytest.approx(49_050.0)  # leans to the thin ask


@pytest.mark.parametrize("step_seconds", [1.0, 5.0])
def test_market_maker_reservation_price_leans_against_inventory(step_seconds):
    model = build(population("market_maker", MM, collateral=3_000_000.0), step_seconds)
    mm = agents(model, "market_maker")[0]
    sigma = 1e-3  # per sqrt(second)
    k = round(30 / step_seconds)
    set_history(model, alternating(k + 1, sigma * math.sqrt(step_seconds)), k + 1)
    account = int(mm.accounts[0])
    model.exchange.ledger.trade_between(account, lp(model), 0, 1000, 50_000.0, 0.0)  # long 1 quote size
    (r,), (half,) = mm.reservations()
    risk = 10 * sigma**2 * 60
    assert half[0] == pytest.approx(0.5 * risk + math.log1p(10 / 2000) / 10)
    assert r[0] == pytest.approx(50_000.0 * math.exp(-risk))  # q = 1
    model.exchange.ledger.trade_between(account, lp(model), 0, 9000, 50_000.0, 0.0)  # q = 10
    (r,), (half,) = mm.reservations()
    assert r[0] == pytest.approx(50_000.0 * math.exp(-half[0]))  # capped: its ask stays at its fair value


@pytest.mark.parametrize("step_seconds", [1.0, 5.0])
def test_market_maker_withdraws_in_a_volatility_spike_and_refills_over_seconds(step_seconds):
    model = build(population("market_maker", MM, collateral=3_000_000.0), step_seconds)
    mm = agents(model, "market_maker")[0]
    s = step_seconds
    n_long, n_short = round(900 / s), round(30 / s)
    calm, wild = 1e-5 * math.sqrt(s), 1e-3 * math.sqrt(s)
    t = n_long + 1
    prices = np.concatenate([alternating(n_long + 1 - n_short, calm), alternating(n_short, wild)])
    set_history(model, prices, t)
    act(model, mm)
    assert mm.capacity[0, 0] == 0.0 and own_orders(model, mm) == []  # short-run vol > 2 x tolerance x long-run
    t2 = t + round(60 / s)
    set_history(model, alternating(round(60 / s), calm), t2)  # a calm minute after it
    act(model, mm)
    assert mm.capacity[0, 0] == pytest.approx(1 - math.exp(-1))  # 60 s of a 60 s refill time
    assert {o[4] for o in own_orders(model, mm)} == {632}  # 0.632 of 1 BTC per quote
    model.market.step = t2 + round(240 / s)
    act(model, mm)
    assert mm.capacity[0, 0] == pytest.approx(1 - math.exp(-5))


def test_market_maker_capacity_shrinks_partly_with_volatility_and_drawdown():
    model = build(population("market_maker", MM))
    mm = agents(model, "market_maker")[0]
    mm.peak_equity[:] = 1_000_000.0
    assert mm.capacity_targets(np.array([950_000.0]))[0, 0] == pytest.approx(0.5)  # 5 % of a 10 % loss limit
    assert mm.capacity_targets(np.array([1_000_000.0]))[0, 0] == 1.0
    model.market.venue_vols = lambda seconds: np.array([3.0 if seconds == 30.0 else 1.0])  # ratio 3, tolerance 2
    assert mm.capacity_targets(np.array([1_000_000.0]))[0, 0] == pytest.approx(0.5)


def test_market_makers_draw_their_own_risk_limits():
    model = build(population("market_maker", "", count=2))
    (mm,) = agents(model, "market_maker")
    for name in ("index_weight", "vol_tolerance", "loss_limit", "refill"):
        a, b = getattr(mm, name)
        assert a != b, name


# ----------------------------------------------------------------- arbitrageur
@pytest.mark.parametrize("step_seconds", [1.0, 5.0])
def test_arbitrageur_buys_a_cheap_venue_at_its_rate_limit(step_seconds):
    model = build(population("arbitrageur", "capacity_notional_per_second = 10000.0"), step_seconds)
    arb = agents(model, "arbitrageur")[0]
    quote(model, 49_600.0, 49_700.0)  # mid 49,650: 0.7 % below the index
    for t in range(round(10 / step_seconds)):
        model.market.step = t
        act(model, arb)
        assert arb.position(0, 0) == pytest.approx(0.2 * step_seconds * (t + 1))  # 10,000 USD/s at the index
    assert arb.position(0, 0) == pytest.approx(2.0)  # 10 seconds either way


def test_arbitrageur_waits_inside_its_cost_and_unwinds_inside_its_exit_band():
    model = build(population("arbitrageur", "capacity_notional_per_second = 10000.0"))
    arb = agents(model, "arbitrageur")[0]
    assert arb.entry_cost()[0] == pytest.approx(0.001)  # taker fee 5 bps on both legs
    model.exchange.ledger.trade_between(int(arb.accounts[0]), lp(model), 0, 1000, 50_000.0, 0.0)  # long 1 BTC
    quote(model, 49_950.0, 49_970.0)  # basis -8 bps: inside the cost, outside the 5 bps exit band
    act(model, arb)
    assert arb.position(0, 0) == 1.0
    model.exchange.set_index([49_960.0])  # basis 0: unwind at the rate limit
    act(model, arb)
    assert arb.position(0, 0) == pytest.approx(0.8)


def test_arbitrageur_stays_within_its_capital():
    model = build(population("arbitrageur", "capacity_notional_per_second = 1000000.0", collateral=100_000.0))
    arb = agents(model, "arbitrageur")[0]
    quote(model, 51_000.0, 51_100.0)  # the venue 2 % rich: it sells
    act(model, arb)
    assert arb.position(0, 0) == pytest.approx(-6.0)  # leverage 3 x 100,000 USD at the 50,000 index


# ------------------------------------------------------------------------- FCN
FUNDAMENTAL = (
    "fundamental_weight = 1.0, chart_weight = 0.0, noise_weight = 0.0, window_seconds = 100.0, "
    "mean_reversion_seconds = 100.0, order_margin = 0.01, interval_seconds = 0.001, order_notional = 2000.0"
)
CHARTIST = FUNDAMENTAL.replace(
    "fundamental_weight = 1.0, chart_weight = 0.0", "fundamental_weight = 0.0, chart_weight = 1.0"
)


def test_fcn_fundamentalist_bids_below_its_expected_price_when_the_index_is_above():
    model = build(population("fcn", FUNDAMENTAL))
    fcn = agents(model, "fcn")[0]
    quote(model, 49_900.0, 50_100.0)
    model.exchange.set_index([50_500.0])
    act(model, fcn)
    # p = mid 50,000; r = ln(50,500 / 50,000) / 100 s; p_hat = p exp(r 100 s) = 50,500;
    # a buy at p_hat (1 - 0.01) = 49,995, resting (below the 50,100 ask), 2,000 USD.
    assert own_orders(model, fcn) == [(fcn.expiring_id[0], fcn.accounts[0], 1, 499_950, 40)]
    model = build(population("fcn", FUNDAMENTAL))
    fcn = agents(model, "fcn")[0]
    quote(model, 49_900.0, 50_100.0)
    model.exchange.set_index([49_500.0])
    act(model, fcn)  # the index below: a sell at 49,500 * 1.01 = 49,995 (above the 49,900 bid)
    assert [o[2:] for o in own_orders(model, fcn)] == [(-1, 499_950, 40)]


@pytest.mark.parametrize("step_seconds", [1.0, 5.0])
@pytest.mark.parametrize(("then", "side"), [(49_000.0, 1), (51_000.0, -1)])
def test_fcn_chartist_follows_the_venue_trend_over_its_window_in_seconds(step_seconds, then, side):
    model = build(population("fcn", CHARTIST), step_seconds)
    fcn = agents(model, "fcn")[0]
    quote(model, 49_900.0, 50_100.0)
    k = round(100 / step_seconds)
    model.market.venue_history[0, 0] = then  # the venue 100 s ago
    model.market.step = k
    act(model, fcn)
    # C = ln(50,000 / then) / 100 s; p_hat = 50,000 exp(C 100 s) = 50,000^2 / then, beyond
    # the touch after the 1 % margin: it takes 0.04 BTC in the trend's direction.
    assert fcn.position(0, 0) == pytest.approx(side * 0.04)
    assert not fcn.expiring_id.size  # filled: nothing rests
    wide = build(population("fcn", CHARTIST.replace("order_margin = 0.01", "order_margin = 0.03")), step_seconds)
    fcn = agents(wide, "fcn")[0]
    quote(wide, 49_900.0, 50_100.0)
    wide.market.venue_history[0, 0] = then
    wide.market.step = k
    act(wide, fcn)  # with a 3 % margin the order rests at p_hat (1 -+ 0.03)
    p_hat = 50_000.0**2 / then
    ticks = math.floor(p_hat * 0.97 * 10) if side > 0 else math.ceil(p_hat * 1.03 * 10)
    assert [o[2:4] for o in own_orders(wide, fcn)] == [(side, ticks)]


@pytest.mark.parametrize("step_seconds", [1.0, 5.0])
def test_fcn_cancels_its_order_when_its_lifetime_in_seconds_ends(step_seconds):
    model = build(population("fcn", FUNDAMENTAL + ", lifetime_seconds = 30.0"), step_seconds)
    fcn = agents(model, "fcn")[0]
    quote(model, 49_900.0, 50_100.0)
    model.exchange.set_index([50_500.0])
    act(model, fcn)
    assert len(own_orders(model, fcn)) == 1
    fcn.chance[:] = 0.0  # from now on it only tends its orders
    model.market.step = round(30 / step_seconds) - 1
    act(model, fcn)
    assert len(own_orders(model, fcn)) == 1  # 30 s not yet over
    model.market.step += 1
    act(model, fcn)
    assert own_orders(model, fcn) == [] and not fcn.expiring_id.size


@pytest.mark.parametrize("step_seconds", [1.0, 5.0])
def test_fcn_acts_once_per_interval_on_average(step_seconds):
    model = build(
        population("fcn", FUNDAMENTAL.replace("interval_seconds = 0.001", "interval_seconds = 20.0")), step_seconds
    )
    fcn = agents(model, "fcn")[0]
    decisions = []
    fcn.expected_prices = lambda members, cols, eps: decisions.extend(members) or (np.ones(len(eps)),) * 2
    for _ in range(round(8_000 / step_seconds)):
        act(model, fcn)
    assert 400 * 0.85 < len(decisions) < 400 * 1.15  # 8,000 s / 20 s, within ~3 standard deviations


def test_fcn_respects_its_position_limit():
    model = build(population("fcn", FUNDAMENTAL, collateral=10_000.0, leverage=2.0))
    fcn = agents(model, "fcn")[0]
    quote(model, 49_000.0, 50_000.0)
    model.exchange.ledger.trade_between(int(fcn.accounts[0]), lp(model), 0, 380, 50_000.0, 0.0)  # 19,000 of 20,000
    model.exchange.set_index([52_000.0])
    act(model, fcn)
    # room: 2 x 10,000 USD at its price p (the 49,500 mid) less 0.38 BTC = 0.024 BTC, not 0.04
    assert fcn.position(0, 0) == pytest.approx(0.404)


def test_fcn_agents_draw_their_own_parameters():
    model = build(population("fcn", count=2))
    (fcn,) = agents(model, "fcn")
    for name in ("g1", "g2", "noise_weight", "window", "tau_f", "margin"):
        a, b = getattr(fcn, name)
        assert a != b, name
    assert (fcn.window >= 100).all() and (fcn.window <= 200).all() and (fcn.lifetime == fcn.window).all()
    assert (fcn.margin >= 0).all() and (fcn.margin <= 0.001).all()


def test_a_distribution_outside_a_parameters_range_is_a_config_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(MARKET.format(step_seconds=1.0) + population("fcn", "chart_weight = { uniform = [-1.0, 1.0] }"))
    with pytest.raises(ConfigError, match=r"params.chart_weight: draws must lie in \[0.0, inf\]"):
        load_config(path)


# ------------------------------------------------------------ leveraged holder
def holder_market(params: str) -> tuple[MarketModel, object]:
    model = build(population("leveraged_holder", params, collateral=10_000.0, leverage=10.0))
    return model, agents(model, "leveraged_holder")[0]


def crash_to(model: MarketModel, index: float) -> None:
    """Move the index (and the index mark) and recompute everyone's margin state."""
    model.exchange.set_index([index])
    model.health = model.exchange.health()


def test_plain_holder_only_holds_and_is_not_scheduled():
    model, holder = holder_market("")
    assert holder.position(0, 0) == 2.0  # 10 x 10,000 USD at 50,000
    assert not holder.acts and holder not in list(model.actors)
    reacting = holder_market("cut_margin_ratio = 0.5")[1]
    assert reacting.acts and reacting in list(reacting.model.actors)


def test_holder_cuts_part_of_its_position_at_its_margin_ratio():
    model, holder = holder_market("cut_margin_ratio = 0.2, cut_fraction = 0.5, max_slippage_bps = 100.0")
    quote(model, 45_900.0, None)
    crash_to(model, 47_000.0)  # equity 4,000, MM 470: ratio 0.12
    act(model, holder)
    assert holder.position(0, 0) == 2.0
    crash_to(model, 46_000.0)  # equity 2,000, MM 460: ratio 0.23
    act(model, holder)
    assert holder.position(0, 0) == 1.0  # half, sold into the 45,900 bid (within 1 % of 46,000)


def test_holder_stop_loss_sits_at_a_round_number_and_closes_when_crossed():
    model, holder = holder_market("stop_share = 1.0, stop_loss = 0.043")
    assert (holder.stop_price[0, 0], holder.stop_sign[0, 0]) == (47_800.0, 1)  # 50,000 x 0.957, rounded down
    quote(model, 47_700.0, None)
    model.exchange.last_price[0] = 47_900.0
    act(model, holder)
    assert holder.position(0, 0) == 2.0
    model.exchange.last_price[0] = 47_750.0
    act(model, holder)
    assert holder.position(0, 0) == 0.0
    act(model, holder)
    assert np.isnan(holder.stop_price[0, 0])


def test_holder_tops_up_from_its_finite_wallet():
    params = "top_up_margin_ratio = 0.2, top_up_target = 0.1, wallet = 5000.0"
    model, holder = holder_market(params)
    crash_to(model, 46_000.0)  # equity 2,000, MM 460: ratio 0.23
    act(model, holder)
    assert holder.wallet[0] == pytest.approx(5_000.0 - 2_600.0)  # to ratio 0.1: equity 4,600
    crash_to(model, 46_000.0)
    assert holder.margin_ratio()[0] == pytest.approx(0.1)
    crash_to(model, 45_000.0)  # equity 3,600, MM 450: 0.125 < 0.2, nothing
    act(model, holder)
    crash_to(model, 44_000.0)  # equity 2,600, MM 440: ratio 0.17
    crash_to(model, 43_000.0)  # equity 1,600, MM 430: ratio 0.27
    act(model, holder)
    assert holder.wallet[0] == 0.0  # needed 2,700, had 2,400
    assert model.exchange.ledger.balances[holder.accounts[0], 0] == pytest.approx(15_000.0)


def test_holders_draw_their_own_thresholds_and_only_some_have_stops():
    model = build(
        population(
            "leveraged_holder",
            "cut_margin_ratio = { uniform = [0.5, 0.9] }, stop_share = 0.5",
            count=40,
            collateral=10_000.0,
            leverage=5.0,
        )
    )
    (holders,) = agents(model, "leveraged_holder")
    assert len(set(holders.cut_at.tolist())) == 40
    assert 8 < (~np.isnan(holders.stop_price[:, 0])).sum() < 32


def test_holder_position_stops_at_the_venues_max_leverage():
    model = build(population("leveraged_holder", "", collateral=10_000.0, leverage=60.0))
    holder = agents(model, "leveraged_holder")[0]
    assert holder.position(0, 0) == 4.0  # the default tiers allow 20x: 200,000 USD at 50,000


def test_holder_exits_after_its_holding_time_then_waits_and_enters_again():
    params = "holding_seconds = 600.0, reentry_seconds = 60.0, stop_share = 1.0, stop_loss = 0.05"
    model, holder = holder_market(params)
    ex = model.exchange
    assert holder.acts and 0 < holder.exit_at[0] < math.inf and not np.isnan(holder.stop_price[0, 0])
    quote(model, 49_990.0, 50_010.0)
    ex.time = holder.exit_at[0] - 1.0
    act(model, holder)
    assert holder.position(0, 0) == 2.0  # not yet
    ex.time = holder.exit_at[0]
    act(model, holder)
    assert holder.position(0, 0) == 0.0  # sold into the bid
    act(model, holder)
    assert np.isnan(holder.stop_price[0, 0]) and ex.time < holder.enter_at[0] < math.inf  # waiting
    ex.time = holder.enter_at[0]
    model.health = ex.health()
    equity = holder.equity()[0]
    act(model, holder)
    # long at 10x its equity, sized at its limit 10 bp above the venue price (the last
    # trade, its own exit at 49,990); bought at the 50,010 ask
    assert equity == pytest.approx(10_000.0 - 20.0 - 0.0005 * 2 * 49_990.0)
    assert holder.position(0, 0) == math.floor(10 * equity / (49_990.0 * 1.001) / 0.001) * 0.001
    assert (holder.stop_price[0, 0], holder.stop_sign[0, 0]) == (47_500.0, 1)  # 5 % under 50,010, rounded down
    assert holder.enter_at[0] == math.inf and ex.time < holder.exit_at[0] < math.inf


def test_holder_that_cannot_open_a_lot_leaves():
    model, holder = holder_market("reentry_seconds = 60.0")
    ex = model.exchange
    account = int(holder.accounts[0])
    ex.ledger.trade_between(account, lp(model), 0, -2000, 50_000.0, 0.0)  # flat
    ex.ledger.balances[account, 0] = 1.0  # 1 USD left: 10 USD of notional, < 1 lot
    model.health = ex.health()
    act(model, holder)
    ex.time = holder.enter_at[0]
    act(model, holder)
    assert holder.position(0, 0) == 0.0 and not holder.reenters[0]
    act(model, holder)
    assert holder.enter_at[0] == math.inf  # no new wait: it left


def test_holders_decide_apart_and_only_those_that_act_send():
    """Three holders with stops at different distances: a price between them stops out
    only the nearer one; each keeps its own ledger row."""
    params = "stop_share = 1.0, stop_loss = { choice = [0.02, 0.05, 0.08] }"
    model = build(population("leveraged_holder", params, count=30, collateral=10_000.0, leverage=5.0))
    (holders,) = agents(model, "leveraged_holder")
    assert holders.accounts.tolist() == [i for i, k in enumerate(model.account_types) if k == "leveraged_holder"]
    quote(model, 47_000.0, None, qty=1_000.0)
    model.exchange.last_price[0] = 48_000.0  # under the 2 % stops (49,000), above 47,500 and 46,000
    sheet = holders.decide()
    near = np.flatnonzero(holders.stop_loss == 0.02)
    assert 0 < len(near) < 30 and sorted(sheet.members.tolist()) == near.tolist()
    assert (sheet.accounts == holders.accounts[sheet.members]).all() and sheet.reduce_only.all()


def test_round_numbers():
    from agents.holder import round_number

    assert round_number(47_523.0, down=True) == 47_500.0
    assert round_number(47_523.0, down=False) == 47_600.0
    assert round_number(1.2345, down=True) == pytest.approx(1.23)


# ------------------------------------------------------------------ all agents
def test_every_agent_type_runs_in_a_live_market():
    pops = "".join(
        [
            population("market_maker", "", count=2, collateral=3_000_000.0),
            population("fcn", "", count=30, collateral=100_000.0),
            population("arbitrageur", "", count=2),
            population("noise", "", count=10, collateral=50_000.0),
            population("momentum", "", count=3, collateral=50_000.0),
            population("leveraged_holder", "cut_margin_ratio = 0.8, stop_share = 0.5", count=20, collateral=10_000.0),
        ]
    )
    model = build(pops)
    for _ in range(200):
        model.step()
    ex = model.exchange
    assert ex.ledger.conservation_error(ex.marks, ex.cum_funding) == pytest.approx(0.0, abs=1e-4)
    trades = model.recorder.tables()["trades"]
    buyers = {model.account_types[a] for a in trades["buyer"].to_list()}
    assert {"fcn", "market_maker"} <= buyers
    assert abs(model.market.venue_price(0) / ex.index[0] - 1) < 0.01


def test_shipped_configs_use_only_known_agents():
    for path in sorted(Path("configs").glob("*.toml")):
        config = load_config(path, ["steps=1"])
        assert all(p.type in AGENT_TYPES for p in config.populations)
    assert "fundamentalist" not in AGENT_TYPES


def test_market_maker_stays_out_when_volatility_leaves_no_sensible_quote(monkeypatch):
    """A volatility spike far beyond crypto's makes the A-S half-spread wider than
    `MAX_HALF_SPREAD` (and its exponentials overflow): the maker quotes nothing."""
    model = build(population("market_maker", "levels = 1"))
    mm = agents(model, "market_maker")[0]
    quote(model, 49_990.0, 50_010.0)
    model.exchange.ledger.trade_between(int(mm.accounts[0]), GENESIS, 0, -1_000, 50_000.0, 0.0)  # short 1 BTC

    def quotes():
        out = Outbox(mm)
        mm.quote(out, mm.equity())
        return out.sheet().lots.tolist()

    for sigma in (1.0, 1e6):
        monkeypatch.setattr(model.market, "venue_vols", lambda seconds, sigma=sigma: np.array([sigma]))
        assert mm.reservations()[1][0, 0] == math.inf
        assert quotes() == []
    monkeypatch.setattr(model.market, "venue_vols", lambda seconds: np.array([0.01]))  # wide, but quoted
    assert 0 < mm.reservations()[1][0, 0] <= MAX_HALF_SPREAD
    assert quotes()


def test_orders_of_all_populations_arrive_in_one_shuffled_order(monkeypatch):
    """No population goes first every step: the model shuffles every member's orders
    together, and sends them through `agents.orders.send` (one call per step)."""
    pops = population("noise", "interval_seconds = 1.0", count=20) + population(
        "fcn", "interval_seconds = 1.0", count=20
    )
    model = build(pops)
    quote(model, 49_990.0, 50_010.0, qty=1_000.0)
    seen = []

    def record(exchange, sheets, arrival):
        kinds = np.concatenate([np.full(len(s.members), s.population.kind) for s in sheets])
        seen.append(kinds[arrival].tolist())
        return send(exchange, sheets, arrival)

    monkeypatch.setattr("sim.model.send", record)
    for _ in range(10):
        model.step()
    assert len(seen) == 10 and {kinds[0] for kinds in seen} == {"noise", "fcn"}
    assert all(kinds != sorted(kinds) and kinds != sorted(kinds, reverse=True) for kinds in seen)


def test_send_gives_each_member_what_its_cancels_then_submit_or_submit_many_would():
    """`send` (one batch for the step, several-order members as groups) against the
    loop it stands for: per member in arrival order, `cancel` each id, then `submit` its
    order or `submit_many` its orders; same outcomes (ids, rejects, rested and filled
    lots, last fill price) and ledger."""
    pops = "".join(
        [
            population("market_maker", "levels = 2", count=3, collateral=3_000_000.0),
            population("market_maker", "levels = 2", count=3, collateral=1_000.0),  # a ladder too big for one check
            population("noise", "interval_seconds = 2.0", count=40, collateral=50_000.0),
            population("fcn", "interval_seconds = 5.0", count=30, collateral=100_000.0),
        ]
    )
    model = build(pops)
    for _ in range(30):
        model.step()
    sheets = [pop.decide() for pop in model.actors]
    assert any((s.n_orders > 1).any() for s in sheets) and any(s.n_cancels.any() for s in sheets)
    arrival = np.random.default_rng(7).permutation(sum(len(s.members) for s in sheets))
    loop = copy.deepcopy(model.exchange)
    outcomes = send(model.exchange, sheets, arrival)
    kind_of = {code: kind for kind, code in KIND_CODES.items()}
    slots = [
        (s, i, int(s.n_cancels[:i].sum()), int(s.n_orders[:i].sum())) for s in sheets for i in range(len(s.members))
    ]
    expected = {}
    for s, i, first_cancel, first_order in (slots[k] for k in arrival):
        for order_id in s.cancel_ids[first_cancel : first_cancel + s.n_cancels[i]].tolist():
            loop.cancel(order_id)
        rows = range(first_order, first_order + s.n_orders[i])
        requests = []
        for r in rows:
            inst = loop.instruments[s.instrument[r]]
            qty, price = inst.qty(int(s.lots[r])), inst.price(int(s.ticks[r]))
            kind = kind_of[int(s.kind[r])]
            requests.append(
                OrderRequest(int(s.instrument[r]), Side(int(s.side[r])), qty, price, kind, s.reduce_only[r])
            )
        account = int(s.accounts[i])
        if len(requests) == 1:
            (one,) = requests
            results = [loop.submit(account, one.instrument, one.side, one.qty, one.price, one.kind, one.reduce_only)]
        else:
            results = loop.submit_many(account, requests)
        for r, res in zip(rows, results, strict=True):
            last = res.fills[-1].price if res.fills else -1
            expected[id(s), r] = (res.order_id, res.reject, res.rested, res.filled, last)
    for s, outcome in zip(sheets, outcomes, strict=True):
        columns = (outcome.order_id, outcome.reject, outcome.rested, outcome.filled, outcome.last_fill_ticks)
        for r, (order_id, reject, rested, filled, last) in enumerate(zip(*(c.tolist() for c in columns), strict=True)):
            assert (order_id, EXCHANGE_REJECTS[reject], rested, filled, last) == expected[id(s), r]
    assert any(reject is RejectReason.INSUFFICIENT_MARGIN for _, reject, *_ in expected.values())
    for name in ("balances", "positions", "open_bids", "open_asks"):
        assert np.array_equal(getattr(model.exchange.ledger, name), getattr(loop.ledger, name)), name


def test_send_refuses_an_arrival_order_that_is_not_a_permutation():
    model = build(population("noise", count=3))
    noise = agents(model, "noise")[0]
    out = Outbox(noise)
    out.add(0, np.array([0, 1]), np.array([1, -1]), np.full(2, 0.1), np.full(2, 50_000.0), OrderType.LIMIT)
    sheet = out.sheet()
    for arrival in ([0, 0], [0], [1, 2]):
        with pytest.raises(ValueError, match="permutation"):
            send(model.exchange, [sheet], np.array(arrival))

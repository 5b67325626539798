"""Liquidation engine through the real exchange and books: MARGIN-SPEC E1b, E2, E3,
fallbacks, conservation under random books and gaps, and cascade attribution."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim import waterfall
from sim.cascades import cascade_summary
from sim.exchange import Exchange, FeeSchedule
from sim.impact import ImpactParams, Propagator, VenueIndex
from sim.instruments import CollateralAsset
from sim.ledger import BACKSTOP, FEE_POOL, GENESIS, INSURANCE_FUND, N_SYSTEM, USD
from sim.liquidation import LiquidationEngine, LiquidationRules
from sim.losses import LOSS_COLUMNS, LossAccount
from sim.marks import LastMark
from sim.types import OrderType, Side
from sim.waterfall import Close, steps_below, takeover_capacity
from tests.conftest import btc, eth

E1B_RULES = LiquidationRules(buffer=0.005, penalty=0.0025, fund_fee=0.001)


def venue(n_traders: int, mode: str = "cross", prices=(50_000.0, 3_000.0), max_leverage=100.0, **kw) -> Exchange:
    instruments = [btc(max_leverage=max_leverage), eth(max_leverage=min(max_leverage, 50.0))]
    return Exchange(instruments, [CollateralAsset("USD")], n_traders, prices, FeeSchedule(0.0, 0.0), mode, **kw)


def trader(i: int) -> int:
    return N_SYSTEM + i


def give(ex: Exchange, account: int, m: int, qty: float, entry: float, counterparty: int) -> None:
    """Open a position off the book against ``counterparty`` (test set-up only)."""
    ex.ledger.trade_between(
        account, counterparty, m, ex.instruments[m].to_lots(abs(qty)) * int(np.sign(qty)), entry, 0.0
    )


def mark_to(ex: Exchange, *marks: float) -> None:
    ex.set_prices(list(marks), list(marks))


def check_invariants(ex: Exchange, engine: LiquidationEngine | None = None) -> None:
    """Value conserved, positions net to zero, and no system account below zero unless
    the chain ends there and ``engine`` has recorded it so (``system_deficit``)."""
    assert ex.ledger.conservation_error(ex.marks, ex.cum_funding) == pytest.approx(0.0, abs=1e-6)
    assert not ex.ledger.net_positions().any()
    for system in (INSURANCE_FUND, BACKSTOP):
        if engine is None or engine.open_unresolved.get(system) != "system_deficit":
            assert ex.account_health(system).equity[0] >= -1e-6


# -------------------------------------------------------------------------- E1b


def test_e1b_partial_liquidation_through_the_book():
    ex = venue(3)
    a, bidder, short = trader(0), trader(1), trader(2)
    ex.ledger.deposit(a, USD, 10_000.0)
    ex.ledger.deposit(bidder, USD, 1_000_000.0)
    ex.ledger.deposit(short, USD, 1_000_000.0)
    ex.ledger.deposit(INSURANCE_FUND, USD, 1_000.0)
    give(ex, a, 0, 2.0, 50_000.0, short)
    mark_to(ex, 45_200.0, 3_000.0)
    assert ex.submit(bidder, 0, Side.BUY, 2.0, 45_087.0).rested
    engine = LiquidationEngine(ex, E1B_RULES)
    rows = engine.run_step(step=1)
    assert len(rows) == 1
    row = rows[0]
    assert (row.kind, row.account, row.side, row.counterparty) == ("partial", a, -1, bidder)
    assert row.qty == pytest.approx(1.716)
    assert row.price == pytest.approx(45_087.0)
    assert row.bankruptcy_price == pytest.approx(45_000.0)
    assert row.fund_delta == pytest.approx(77.56, abs=0.01)
    assert row.trigger is None
    health = ex.account_health(a)
    assert ex.ledger.positions[a, 0] == 284
    assert health.equity[0] == pytest.approx(128.53, abs=0.01)
    assert health.maint[0] == pytest.approx(64.18, abs=0.01)
    assert not health.liquidatable.any() and engine.unresolved == []
    assert ex.trades[-1].liquidation
    check_invariants(ex)


# --------------------------------------------------------------------------- E3


def e3_venue(fallback=("adl",)) -> tuple[Exchange, LiquidationEngine, dict[str, int]]:
    ex = venue(6)
    ids = dict(A=trader(0), S1=trader(1), S2=trader(2), S3=trader(3), G=trader(4), bidder=trader(5))
    ledger = ex.ledger
    for name, cash in dict(A=50_000.0, S1=4_000.0, S2=30_000.0, S3=4_000.0, G=1e7, bidder=1e7).items():
        ledger.deposit(ids[name], USD, cash)
    ledger.deposit(INSURANCE_FUND, USD, 600.0)
    give(ex, ids["S1"], 0, -4.0, 48_000.0, ids["G"])
    give(ex, ids["S2"], 0, -3.0, 52_000.0, ids["G"])
    give(ex, ids["S3"], 0, -5.0, 46_000.0, ids["G"])
    give(ex, ids["A"], 0, 10.0, 50_000.0, ids["G"])  # G ends long 2: the only shorts are S1-S3
    mark_to(ex, 44_900.0, 3_000.0)
    for qty, price in ((3.0, 44_900.0), (2.0, 44_800.0), (5.0, 44_000.0)):
        assert ex.submit(ids["bidder"], 0, Side.BUY, qty, price).rested
    return ex, LiquidationEngine(ex, LiquidationRules(fallback=fallback)), ids


def test_e3_fund_exhausted_then_adl():
    ex, engine, ids = e3_venue()
    assert ex.account_health(ids["A"]).equity[0] == pytest.approx(-1_000.0)
    rows = engine.run_step(step=1)
    book_rows = [(r.qty, r.price, r.fund_delta) for r in rows if r.kind == "partial"]
    assert book_rows == [
        (pytest.approx(3.0), pytest.approx(44_900.0), pytest.approx(-300.0)),
        (pytest.approx(1.5), pytest.approx(44_800.0), pytest.approx(-300.0)),
    ]
    assert ex.ledger.balances[INSURANCE_FUND, USD] == pytest.approx(0.0, abs=1e-9)
    adl = [(r.counterparty, r.qty, r.price) for r in rows if r.kind == "adl"]
    assert adl == [
        (ids["S1"], pytest.approx(4.0), pytest.approx(45_000.0)),
        (ids["S3"], pytest.approx(1.5), pytest.approx(45_000.0)),
    ]
    assert ex.ledger.positions[ids["A"], 0] == 0
    assert ex.account_health(ids["A"]).equity[0] == pytest.approx(0.0, abs=1e-6)
    assert ex.ledger.positions[ids["S2"], 0] == -3000  # ranked last, untouched
    assert ex.ledger.positions[ids["S3"], 0] == -3500
    check_invariants(ex)


def test_backstop_takes_what_the_book_cannot_at_the_bankruptcy_price():
    ex, engine, ids = e3_venue(fallback=("backstop",))
    ex.ledger.deposit(BACKSTOP, USD, 2_000.0)
    rows = engine.run_step(step=1)
    assert [r.kind for r in rows] == ["partial", "partial", "backstop"]
    assert ex.ledger.positions[BACKSTOP, 0] == 5500
    assert ex.ledger.entry[BACKSTOP, 0] == pytest.approx(45_000.0)
    assert ex.account_health(ids["A"]).equity[0] == pytest.approx(0.0, abs=1e-6)
    backstop = ex.account_health(BACKSTOP)
    assert backstop.equity[0] == pytest.approx(2_000.0 - 5.5 * 100.0)
    assert backstop.equity[0] >= backstop.maint[0]  # it stays margined like a trader
    check_invariants(ex)


def test_none_leaves_the_position_and_says_why():
    ex, engine, ids = e3_venue(fallback=("none",))
    engine.run_step(step=1)
    assert ex.ledger.positions[ids["A"], 0] == 5500
    assert (1, ids["A"], "book_exhausted") in engine.unresolved
    check_invariants(ex)


def test_socialized_loss_is_shared_by_other_traders_positions():
    """The fund takes over what its 600 covers: at a loss of 100 a BTC at the mark plus
    its maintenance margin of 224.50, 1.848 BTC. The rest closes at the mark and A's
    deficit (1,000 less the 184.80 the takeover spared it) is charged to every other
    trader with a position, pro rata to notional (14 BTC), never to a system account."""
    ex, engine, ids = e3_venue(fallback=("insurance_fund", "socialize"))
    ex.cancel_all(ids["bidder"])  # an empty book: nothing is absorbed there
    before = ex.ledger.settlement_value(ex.marks, ex.cum_funding)
    rows = engine.run_step(step=1)
    assert [r.kind for r in rows][:2] == ["insurance_fund", "socialized"]
    assert (rows[0].qty, rows[0].price) == (pytest.approx(1.848), pytest.approx(45_000.0))
    assert (rows[1].qty, rows[1].price) == (pytest.approx(8.152), pytest.approx(44_900.0))
    deficit = 1_000.0 - 1.848 * 100.0
    deficits = [r for r in rows if r.kind == "deficit"]
    assert sum(r.covered for r in deficits) == pytest.approx(deficit)
    fund_paid = sum(r.covered for r in deficits if r.counterparty == INSURANCE_FUND)
    assert fund_paid < 1.0  # all it had beyond its margin: 600 - 184.80 - 1.848 x 224.50
    assert sum(r.socialized for r in deficits) == pytest.approx(deficit - fund_paid)
    assert {r.counterparty for r in deficits} == {ids[k] for k in ("S1", "S2", "S3", "G")}
    assert ex.ledger.positions[ids["A"], 0] == 0
    assert ex.account_health(ids["A"]).equity[0] == pytest.approx(0.0, abs=1e-6)
    paid = before - ex.ledger.settlement_value(ex.marks, ex.cum_funding)
    assert paid[ids["S2"]] == pytest.approx((deficit - fund_paid) * 3 / 14.0)
    # the rest it took at the mark cost it nothing (and is beyond its margin: it sells it on)
    assert ex.account_health(INSURANCE_FUND).equity[0] == pytest.approx(600.0 - 184.8 - fund_paid)
    assert ex.account_health(BACKSTOP).equity[0] == 0.0
    check_invariants(ex)


# --------------------------------------------------------------------- E2 modes


@pytest.mark.parametrize(("mode", "liquidated"), [("cross", False), ("isolated", True)])
def test_e2_isolated_liquidates_the_btc_position_cross_does_not(mode, liquidated):
    ex = venue(3, mode=mode, max_leverage=20.0)
    a, other, bidder = trader(0), trader(1), trader(2)
    ex.ledger.deposit(a, USD, 11_000.0)
    ex.ledger.deposit(other, USD, 1e7)
    ex.ledger.deposit(bidder, USD, 1e7)
    ex.ledger.deposit(INSURANCE_FUND, USD, 10_000.0)
    give(ex, a, 0, 1.0, 50_000.0, other)
    give(ex, a, 1, -20.0, 3_000.0, other)
    if mode == "isolated":
        ex.ledger.allocate_isolated(a, 0, 5_000.0)
        ex.ledger.allocate_isolated(a, 1, 6_000.0)
        ex.ledger.allocate_isolated(other, 0, 1e6)
        ex.ledger.allocate_isolated(other, 1, 1e6)
    mark_to(ex, 44_000.0, 2_700.0)
    ex.submit(bidder, 0, Side.BUY, 1.0, 43_900.0)
    ex.submit(bidder, 1, Side.SELL, 20.0, 2_701.0)
    rows = LiquidationEngine(ex, LiquidationRules()).run_step(step=1)
    assert bool(rows) == liquidated
    assert all(r.instrument == 0 for r in rows)
    assert ex.ledger.positions[a, 1] == -2000
    check_invariants(ex)


# ------------------------------------------------------------------- step cap


def test_step_cap_spreads_a_liquidation_over_steps():
    ex, _, ids = e3_venue()
    engine = LiquidationEngine(ex, LiquidationRules(full=True, step_cap=0.2, fallback=("backstop",)))
    engine.run_step(step=1)
    assert ex.ledger.positions[ids["A"], 0] == 8000
    assert (1, ids["A"], "step_cap") in engine.unresolved
    engine.run_step(step=2)
    assert ex.ledger.positions[ids["A"], 0] == 6400  # 20 % of the 8 BTC it held at the start of step 2
    check_invariants(ex)


def test_bad_rules_are_refused():
    with pytest.raises(ValueError, match="unknown"):
        LiquidationRules(fallback=("pray",))
    with pytest.raises(ValueError, match="step_cap"):
        LiquidationRules(step_cap=0.0)
    with pytest.raises(ValueError, match="auto_convert_debt"):
        LiquidationRules(auto_convert_debt=-1.0)


# --------------------------------------------------------------- conservation


CHAINS = [
    ("adl",),
    ("backstop",),
    ("socialize",),
    ("none",),
    ("insurance_fund", "backstop", "adl"),
    ("insurance_fund", "backstop", "adl", "socialize"),
    ("insurance_fund", "socialize"),
    ("socialize", "adl"),
]


def adl_only_when_no_system_account_can(chain: tuple[str, ...]):
    """The ADL step, checking first that the fund and backstop ahead of it in ``chain``,
    and below the account whose position it closes (a system account's loss goes down
    the waterfall, never up), cannot take a single lot of the position over."""

    def checked(close: Close, lots: int) -> int:
        for holder, name in ((INSURANCE_FUND, "insurance_fund"), (BACKSTOP, "backstop")):
            below = close.account not in (INSURANCE_FUND, BACKSTOP) or name in steps_below(close.account, chain)
            if below and name in chain[: chain.index("adl")]:
                free = close.system.free(holder)
                assert takeover_capacity(close.exchange, free, close.instrument, close.side, close.bankrupt) == 0
        return waterfall.adl(close, lots)

    return checked


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 30), st.floats(0.1, 12.0)), min_size=1, max_size=8),  # (lots x 0.1, leverage)
    st.lists(st.tuples(st.integers(1, 40), st.integers(1, 30)), max_size=6),  # bid levels (bps below, lots x 0.1)
    st.floats(0.0, 0.25),  # price gap
    st.lists(st.floats(-0.08, 0.04), min_size=2, max_size=2),  # the moves after steps 0 and 1
    st.floats(0.0, 2_000.0),  # insurance fund
    st.floats(0.0, 5_000.0),  # backstop capital
    st.sampled_from(CHAINS),
    st.booleans(),  # full liquidation
    st.sampled_from(["cross", "isolated"]),
    st.booleans(),  # the shorts are the outside world (genesis)
    st.sampled_from(["dydx", "binance"]),
)
def test_waterfall_property(longs, bids, gap, moves, fund, capital, chain, full, mode, outside, clearance):
    """Random books, gaps, later moves and chains: value is conserved; no system account
    is below zero after a step unless the chain ends there and says so (what the fund and
    backstop took over loses as the price moves on); a trader left with a position and
    negative equity is liquidatable and listed with its reason; ADL runs only when the
    fund and backstop could not take a lot; each unresolved account is listed once per
    episode."""
    n = len(longs)
    ex = venue(n + 3, mode=mode)
    shorts, bidder, shorts2 = trader(n), trader(n + 1), trader(n + 2)
    for account in (shorts, bidder, shorts2):
        ex.ledger.deposit(account, USD, 1e8)
        if mode == "isolated":
            ex.ledger.allocate_isolated(account, 0, 1e7)
    ex.ledger.deposit(INSURANCE_FUND, USD, fund)
    ex.ledger.deposit(BACKSTOP, USD, capital)
    for i, (tenths, leverage) in enumerate(longs):
        qty = tenths / 10
        cash = qty * 50_000.0 / leverage
        ex.ledger.deposit(trader(i), USD, cash)
        give(ex, trader(i), 0, qty, 50_000.0, GENESIS if outside else (shorts if i % 2 else shorts2))
        if mode == "isolated":
            ex.ledger.allocate_isolated(trader(i), 0, cash)
    price = 50_000.0 * (1 - gap)
    mark_to(ex, round(price, 1), 3_000.0)
    for bps, tenths in bids:
        ex.submit(bidder, 0, Side.BUY, tenths / 10, round(price * (1 - bps / 10_000), 1))
    rules = LiquidationRules(full=full or clearance == "binance", fallback=chain, clearance=clearance)
    engine = LiquidationEngine(ex, rules)
    steps = {**waterfall.FALLBACKS, "adl": adl_only_when_no_system_account_can(chain)}
    with patch.dict(waterfall.FALLBACKS, steps):
        for step in range(3):
            before = dict(engine.open_unresolved)
            engine.run_step(step)
            check_invariants(ex, engine)
            recorded = {account: reason for s, account, reason in engine.unresolved if s == step}
            assert all(before.get(account) != reason for account, reason in recorded.items())
            assert {**before, **recorded}.items() >= engine.open_unresolved.items()
            health = ex.health()
            held = ex.ledger.positions.any(axis=1)
            underwater = np.flatnonzero(held & (health.equity < -1e-6))
            underwater = underwater[underwater >= N_SYSTEM]
            assert health.account_liquidatable[underwater].all()
            assert set(underwater.tolist()) <= set(engine.open_unresolved)
            if step < 2:
                price *= 1 + moves[step]
                mark_to(ex, round(price, 1), 3_000.0)
    if chain[0] != "none":
        assert not (ex.health().liquidatable.any(axis=1)[N_SYSTEM:]).any() or engine.unresolved


# -------------------------------------------------------------------- cascades


def cascade_market(depth_lots: float) -> tuple[Exchange, LiquidationEngine]:
    """Longs with staggered liquidation prices above a book of bids every 0.2 %."""
    ex = venue(12, mark_rule=LastMark(2))
    short, bidder = trader(10), trader(11)
    ex.ledger.deposit(short, USD, 1e8)
    ex.ledger.deposit(bidder, USD, 1e8)
    ex.ledger.deposit(INSURANCE_FUND, USD, 1e6)
    for i in range(10):
        leverage = 30.0 - 1.5 * i  # liquidation prices ~ 2.9 % ... 5.7 % below 50,000
        ex.ledger.deposit(trader(i), USD, 50_000.0 / leverage)
        give(ex, trader(i), 0, 1.0, 50_000.0, short)
    for level in range(1, 60):
        ex.submit(bidder, 0, Side.BUY, depth_lots, round(50_000.0 * (1 - 0.002 * level), 1))
    return ex, LiquidationEngine(ex, LiquidationRules(full=True, rounds=20, fallback=("backstop",)))


def shock(ex: Exchange, qty: float) -> None:
    """An exogenous market sell that moves the last trade (and so the mark)."""
    seller = trader(10)
    ex.submit(seller, 0, Side.SELL, qty, kind=OrderType.MARKET)
    ex.update_marks()


def test_thin_book_cascades_deep_book_absorbs():
    thin, thin_engine = cascade_market(depth_lots=0.3)
    shock(thin, 5.0)  # walks the thin book 3.4 % down
    thin_rows = thin_engine.run_step(step=1)
    deep, deep_engine = cascade_market(depth_lots=5.0)
    shock(deep, 5.0)
    deep_rows = deep_engine.run_step(step=1)
    thin_accounts = {r.account for r in thin_rows}
    assert len(thin_accounts) > len({r.account for r in deep_rows})
    assert max(r.round for r in thin_rows) >= 1  # unfolds over several rounds of one step
    # attribution: follow trigger links back to a root liquidation
    by_id = {r.row_id: r for r in thin_rows}
    first_row_of: dict[int, object] = {}
    for r in thin_rows:
        first_row_of.setdefault(r.account, r)

    def generation(row) -> int:
        return 1 if row.trigger is None else 1 + generation(by_id[row.trigger])

    depth = max(generation(r) for r in thin_rows)
    assert depth >= 3
    # the shock itself liquidated the three most leveraged accounts: roots, no trigger
    roots = sorted(r.account for r in first_row_of.values() if r.trigger is None)
    assert roots == [trader(0), trader(1), trader(2)]
    # every other account was pushed under by a liquidation and joins its cascade
    assert all(by_id[r.trigger].cascade_id == r.cascade_id for r in thin_rows if r.trigger is not None)
    assert all(by_id[r.trigger].account != r.account for r in thin_rows if r.trigger is not None)
    check_invariants(thin)
    check_invariants(deep)


def test_cascade_summary_of_the_thin_book_cascade():
    thin, engine = cascade_market(depth_lots=0.3)
    shock(thin, 5.0)
    rows = engine.run_step(step=1)
    summary = cascade_summary(rows)
    assert summary["cascade_id"].to_list() == sorted({r.cascade_id for r in rows})
    assert summary["accounts"].sum() == len({r.account for r in rows})
    assert summary["notional"].sum() == pytest.approx(sum(r.qty * r.price for r in rows))
    biggest = summary.sort("accounts", descending=True).row(0, named=True)
    assert biggest["root_account"] == trader(0)
    assert biggest["depth"] >= 3 and biggest["duration_steps"] == 1
    assert cascade_summary([]).height == 0


def test_impact_links_liquidations_across_steps():
    """B goes under at step 2 only because A's forced selling at step 1 moved the index;
    C is under at step 2 whatever the impact, so it starts a cascade of its own."""
    ex = venue(5)
    a, b, c, short, bidder = (trader(i) for i in range(5))
    for account, cash in ((a, 2_000.0), (b, 2_600.0), (c, 500.0), (short, 1e8), (bidder, 1e8)):
        ex.ledger.deposit(account, USD, cash)
    ex.ledger.deposit(INSURANCE_FUND, USD, 1e6)
    for account in (a, b):
        give(ex, account, 0, 1.0, 50_000.0, short)
    ex.submit(bidder, 0, Side.BUY, 5.0, 47_000.0)
    paths = np.array([[50_000.0, 3_000.0], [48_200.0, 3_000.0], [47_700.0, 3_000.0]])
    # sigma_D 2 and a venue that is the whole market make A's one sale move the index ~60 bp
    propagator = Propagator([ImpactParams(daily_volatility=2.0, venue_share=1.0)] * 2)
    index = VenueIndex(ex, paths, propagator, step_seconds=1.0)
    engine = LiquidationEngine(ex, LiquidationRules(full=True, fallback=("backstop",)), index)
    ex.time = 1.0
    index.advance(1)  # A (liq. ~48,240) goes under, B (~47,640) does not
    first = engine.run_step(step=1)
    assert {r.account for r in first} == {a}
    assert ex.index[0] < 48_200.0  # A's fills moved the index
    give(ex, c, 0, 1.0, 49_000.0, short)  # C (liq. ~48,740) opens late, under at any price here
    ex.time = 2.0
    index.advance(2)
    assert ex.index[0] < 47_638.0  # 47,700 exogenous, below B's liquidation price only with A's impact
    second = engine.run_step(step=2)
    rows = {r.account: r for r in second}
    assert rows[b].trigger == first[-1].row_id and rows[b].cascade_id == first[-1].cascade_id
    assert rows[c].trigger is None and rows[c].cascade_id != first[-1].cascade_id
    check_invariants(ex)


# ---------------------------------------------------- issue 9 regression cases


def test_isolated_top_up_never_borrows():
    """Case 1: after a partial sale the position was topped back up to its initial
    margin from a USD balance of 0, leaving the account in debt nobody could liquidate."""
    ex = venue(2, mode="isolated", max_leverage=20.0)
    a, bidder = trader(0), trader(1)
    ex.ledger.deposit(a, USD, 10_000.0)
    ex.ledger.deposit(bidder, USD, 1e7)
    ex.ledger.allocate_isolated(bidder, 0, 1e6)
    ex.ledger.deposit(INSURANCE_FUND, USD, 1_000.0)
    give(ex, a, 0, 2.0, 50_000.0, bidder)
    ex.ledger.allocate_isolated(a, 0, 10_000.0)
    mark_to(ex, 45_200.0, 3_000.0)
    ex.submit(bidder, 0, Side.BUY, 2.0, 45_087.0)
    LiquidationEngine(ex, E1B_RULES).run_step(step=1)
    assert ex.ledger.positions[a, 0] == 284
    assert ex.ledger.balances[a, USD] == pytest.approx(0.0, abs=1e-9)
    assert ex.account_health(a).equity[0] == pytest.approx(128.53, abs=0.01)
    check_invariants(ex)


def test_fund_payment_on_a_closed_isolated_position_reaches_the_balance():
    """Case 7: the fund's payment on the fill that closed an isolated position was
    stranded in that position's (released) margin, the balance left negative."""
    ex = venue(3, mode="isolated")
    a, g, bidder = trader(0), trader(1), trader(2)
    for account in (a, g, bidder):
        ex.ledger.deposit(account, USD, 50_000.0 if account == a else 1e7)
    ex.ledger.allocate_isolated(g, 0, 1e6)
    ex.ledger.deposit(INSURANCE_FUND, USD, 10_000.0)
    give(ex, a, 0, 10.0, 50_000.0, g)
    ex.ledger.allocate_isolated(a, 0, 50_000.0)
    mark_to(ex, 44_900.0, 3_000.0)
    ex.submit(bidder, 0, Side.BUY, 10.0, 44_900.0)
    rows = LiquidationEngine(ex, LiquidationRules(full=True)).run_step(step=1)
    assert rows[0].fund_delta == pytest.approx(-1_000.0)
    assert ex.ledger.positions[a, 0] == 0
    assert not ex.ledger.isolated_margin[a].any()
    assert ex.ledger.balances[a, USD] == pytest.approx(0.0, abs=1e-9)
    check_invariants(ex)


def test_liquidation_fills_pay_no_maker_rebate():
    """Case 8: liquidation fills pay no taker fee, yet makers got their rebate from the
    fee pool, which went negative."""
    instruments = [btc(max_leverage=100.0), eth()]
    ex = Exchange(instruments, [CollateralAsset("USD")], 3, (50_000.0, 3_000.0), FeeSchedule(0.0005, -0.0002))
    a, short, bidder = trader(0), trader(1), trader(2)
    for account, cash in ((a, 10_000.0), (short, 1e7), (bidder, 1e7)):
        ex.ledger.deposit(account, USD, cash)
    ex.ledger.deposit(INSURANCE_FUND, USD, 1_000.0)
    give(ex, a, 0, 2.0, 50_000.0, short)
    mark_to(ex, 45_200.0, 3_000.0)
    ex.submit(bidder, 0, Side.BUY, 2.0, 45_087.0)
    assert LiquidationEngine(ex, E1B_RULES).run_step(step=1)
    assert ex.ledger.balances[FEE_POOL, USD] == 0.0
    check_invariants(ex)


def test_backstop_without_capital_takes_no_loss():
    """Case 2: with no capital the backstop absorbed any loss (equity -516,007 after a
    -99 % shock, bad_debt 0). Now what it cannot take stays with the trader, who stays
    liquidatable and says why."""
    ex, engine, ids = e3_venue(fallback=("backstop",))
    ex.cancel_all(ids["bidder"])
    mark_to(ex, 500.0, 3_000.0)  # -99 %
    assert not engine.run_step(step=1)
    assert ex.ledger.positions[BACKSTOP, 0] == 0
    assert (1, ids["A"], "book_exhausted") in engine.unresolved
    assert ex.account_health(ids["A"]).equity[0] < 0  # visible as the trader's negative equity
    check_invariants(ex)


@pytest.mark.parametrize("gap", [44_900.0, 45_100.0])  # bankrupt, and not bankrupt but liquidatable
def test_fund_takes_over_before_any_adl(gap):
    """Case 3: with a full fund and an empty book, ADL fired next; the fund takes over."""
    ex, _, ids = e3_venue()
    ex.ledger.deposit(INSURANCE_FUND, USD, 1e6)
    ex.cancel_all(ids["bidder"])
    mark_to(ex, gap, 3_000.0)
    engine = LiquidationEngine(ex, LiquidationRules())  # the default chain
    rows = engine.run_step(step=1)
    assert [r.kind for r in rows] == ["insurance_fund"]
    assert ex.ledger.positions[INSURANCE_FUND, 0] == 10_000
    assert ex.ledger.positions[ids["S1"], 0] == -4000  # nobody deleveraged
    assert engine.unresolved == []
    check_invariants(ex)


def test_partial_liquidation_finishes_when_the_fallback_takes_at_the_bankruptcy_price():
    """Case 4: a transfer at the bankruptcy price leaves the margin ratio unchanged, so
    partial sizing shrank the position round after round (a row per round, then a
    false rounds_exhausted). E1b's account with an empty book: the backstop takes it all."""
    ex = venue(2)
    a, short = trader(0), trader(1)
    ex.ledger.deposit(a, USD, 10_000.0)
    ex.ledger.deposit(short, USD, 1e7)
    ex.ledger.deposit(BACKSTOP, USD, 1e6)
    give(ex, a, 0, 2.0, 50_000.0, short)
    mark_to(ex, 45_200.0, 3_000.0)
    engine = LiquidationEngine(ex, LiquidationRules(fallback=("backstop",)))
    rows = engine.run_step(step=1)
    assert [(r.kind, r.qty, r.price) for r in rows] == [("backstop", pytest.approx(2.0), pytest.approx(45_000.0))]
    assert engine.unresolved == []
    check_invariants(ex)


def test_transfers_are_on_the_tick_grid_and_use_the_bankruptcy_price_after_the_fills():
    """Case 9: the fallback got the bankruptcy price computed before the book fills
    (here a fill above it left A 2,275.50 better off, so the stale price handed the
    backstop's money to A), and transfers happened off the tick grid."""
    ex, _, ids = e3_venue()
    a = ids["A"]
    ex.ledger.deposit(BACKSTOP, USD, 1e6)
    ex.ledger.transfer(a, INSURANCE_FUND, 0.37)  # P_bk 45,000.037: off the grid
    ex.cancel_all(ids["bidder"])
    ex.submit(ids["bidder"], 0, Side.BUY, 5.0, 45_500.0)
    engine = LiquidationEngine(ex, LiquidationRules(full=True, fallback=("backstop",)))
    rows = engine.run_step(step=1)
    assert [r.kind for r in rows] == ["full", "backstop"]
    takeover = rows[1]
    # after the fill: E = -1,000.37 + 5 x 600 - 224.50 fee = 1,775.13 on 5 BTC left
    assert takeover.bankruptcy_price == pytest.approx(44_900.0 - 1_775.13 / 5.0)
    assert ex.instruments[0].to_ticks(takeover.price) is not None
    assert takeover.price == pytest.approx(44_545.0)  # rounded up: in the seller's favour
    assert 0.0 <= ex.account_health(a).equity[0] < 5 * 0.1
    check_invariants(ex)


def wrong_way_account() -> tuple[Exchange, int]:
    """-2,295 USD and 1 ETH (haircut 10 %) of collateral, no positions."""
    instruments = [btc(max_leverage=100.0), eth()]
    collateral = [CollateralAsset("USD", liability_mmr=0.1), CollateralAsset("ETH", weight=0.9, liability_mmr=0.1)]
    ex = Exchange(instruments, collateral, 2, (50_000.0, 3_000.0), FeeSchedule(0.0, 0.0))
    a = trader(0)
    ex.ledger.deposit(a, 1, 1.0)
    ex.ledger.deposit(trader(1), USD, 1e6)
    ex.ledger.transfer(a, trader(1), 2_295.0)  # a realized loss
    ex.ledger.deposit(INSURANCE_FUND, USD, 10_000.0)
    return ex, a


def test_debt_with_only_collateral_is_liquidated_by_converting_it():
    """Case 10: an account with debt, collateral and no positions had maintenance margin 0
    and could never be liquidated while ETH fell to 600."""
    ex, a = wrong_way_account()
    assert not ex.account_health(a).account_liquidatable[0]  # 2,700 - 2,295 = 405 > 229.50
    mark_to(ex, 50_000.0, 2_800.0)  # 2,520 - 2,295 = 225 < 229.50
    rows = LiquidationEngine(ex, LiquidationRules()).run_step(step=1)
    assert [(r.kind, r.instrument) for r in rows] == [("conversion", 1)]
    assert rows[0].qty == pytest.approx(2_295.0 / 2_520.0)
    assert rows[0].fund_delta == pytest.approx(2_295.0 / 0.9 * 0.1)  # the haircut
    assert ex.ledger.balances[a, USD] == pytest.approx(0.0, abs=1e-9)
    assert ex.account_health(a).equity[0] == pytest.approx(225.0)
    assert not ex.account_health(a).account_liquidatable[0]
    check_invariants(ex)


def test_debt_beyond_the_collateral_is_paid_down_the_chain():
    ex, a = wrong_way_account()
    mark_to(ex, 50_000.0, 600.0)
    rows = LiquidationEngine(ex, LiquidationRules()).run_step(step=1)
    assert [r.kind for r in rows] == ["conversion", "deficit"]
    assert rows[1].covered == pytest.approx(2_295.0 - 540.0) and rows[1].counterparty == INSURANCE_FUND
    assert ex.account_health(a).equity[0] == pytest.approx(0.0, abs=1e-9)
    assert ex.ledger.balances[a, 1] == pytest.approx(0.0)
    check_invariants(ex)


@pytest.mark.parametrize(("threshold", "converted"), [(1_000.0, True), (5_000.0, False)])
def test_a_debt_above_the_threshold_is_auto_converted_though_not_liquidatable(threshold, converted):
    """Issue 9: "above a threshold, collateral is auto-converted at the index minus a
    haircut". Conversion happened only in liquidation: A's 2,295 USD debt against 1 ETH
    at 3,000 (weighted 2,700) stayed while A was not liquidatable."""
    ex, a = wrong_way_account()
    engine = LiquidationEngine(ex, LiquidationRules(auto_convert_debt=threshold))
    rows = engine.run_step(step=1)
    if not converted:
        assert rows == [] and ex.ledger.balances[a, USD] == pytest.approx(-2_295.0)
        return
    assert [(r.kind, r.account) for r in rows] == [("conversion", a)]
    assert rows[0].qty == pytest.approx(2_295.0 / 2_700.0) and rows[0].price == pytest.approx(2_700.0)
    assert ex.ledger.balances[a, USD] == pytest.approx(0.0, abs=1e-9)
    assert ex.account_health(a).equity[0] == pytest.approx(2_700.0 - 2_295.0)  # weighted equity unchanged
    assert rows[0].fund_delta == pytest.approx(2_295.0 / 0.9 * 0.1)  # the haircut, to the fund
    check_invariants(ex)


@pytest.mark.parametrize(("clearance", "fund_fee"), [("dydx", 77.56), ("binance", 2.0 * 87.0)])
def test_clearance_decides_who_keeps_a_fill_above_the_bankruptcy_price(clearance, fund_fee):
    """E1b's fill at 45,087 is 87 above the bankruptcy price: dYdX gives the fund its capped
    fee and the trader the rest; Binance and BitMEX (full liquidation) give the fund all
    of it."""
    ex = venue(3)
    a, bidder, short = trader(0), trader(1), trader(2)
    for account, cash in ((a, 10_000.0), (bidder, 1e6), (short, 1e6)):
        ex.ledger.deposit(account, USD, cash)
    give(ex, a, 0, 2.0, 50_000.0, short)
    mark_to(ex, 45_200.0, 3_000.0)
    ex.submit(bidder, 0, Side.BUY, 2.0, 45_087.0)
    rules = LiquidationRules(
        full=clearance == "binance", buffer=0.005, penalty=0.0025, fund_fee=0.001, clearance=clearance
    )
    rows = LiquidationEngine(ex, rules).run_step(step=1)
    assert len(rows) == 1 and rows[0].fund_delta == pytest.approx(fund_fee, abs=0.01)
    assert ex.ledger.balances[INSURANCE_FUND, USD] == pytest.approx(sum(r.fund_delta for r in rows))
    check_invariants(ex)


def test_the_readme_waterfall_example():
    """README, "The loss waterfall": E3 with the default chain and a backstop of 2,000."""
    ex, _, ids = e3_venue()
    ex.ledger.deposit(BACKSTOP, USD, 2_000.0)
    engine = LiquidationEngine(ex, LiquidationRules())
    rows = engine.run_step(step=1)
    assert [(r.kind, r.qty, r.price, r.fund_delta) for r in rows] == [
        ("partial", pytest.approx(3.0), pytest.approx(44_900.0), pytest.approx(-300.0)),
        ("partial", pytest.approx(1.5), pytest.approx(44_800.0), pytest.approx(-300.0)),
        ("backstop", pytest.approx(5.5), pytest.approx(45_000.0), 0.0),
    ]
    losses = LossAccount()
    losses.add_rows(rows)
    columns = dict(zip(LOSS_COLUMNS, losses.columns(ex.health(), ex.ledger), strict=True))
    assert columns["fund_draws"] == pytest.approx(600.0)
    assert columns["backstop_pnl"] == pytest.approx(-550.0)
    assert columns["system_loss"] == pytest.approx(1_150.0)
    assert columns["adl_notional"] == 0.0
    assert ex.account_health(ids["A"]).equity[0] == pytest.approx(0.0, abs=1e-6)

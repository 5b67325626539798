"""System accounts in the loss waterfall: a fund or backstop whose inventory lost more
than its equity passes the loss down the chain (issue 9: "a system account never goes
below zero unseen"); ADL finds the rest of the market (genesis) on the other side; an
account the chain cannot resolve is recorded once per episode."""

from __future__ import annotations

from unittest.mock import patch

import pytest

from sim.ledger import BACKSTOP, GENESIS, INSURANCE_FUND, USD
from sim.liquidation import LiquidationEngine, LiquidationRules
from sim.types import Side
from tests.test_liquidation import check_invariants, give, mark_to, trader, venue


def fund_under_water(backstop_capital: float, chain: tuple[str, ...]):
    """The fund (1,000 USD) holds 1 BTC long from 50,000 (a takeover it has not sold);
    the mark falls to 48,500: its equity is -500, its bankruptcy price 49,000. Trader S
    is short 0.4 BTC, genesis (the rest of the market) 0.6 BTC and the fund's 1 BTC."""
    ex = venue(2)
    s, g = trader(0), trader(1)
    ex.ledger.deposit(s, USD, 100_000.0)
    ex.ledger.deposit(g, USD, 100_000.0)
    ex.ledger.deposit(INSURANCE_FUND, USD, 1_000.0)
    ex.ledger.deposit(BACKSTOP, USD, backstop_capital)
    give(ex, INSURANCE_FUND, 0, 1.0, 50_000.0, GENESIS)
    give(ex, s, 0, -0.4, 50_000.0, g)
    give(ex, g, 0, 0.4, 50_000.0, GENESIS)
    mark_to(ex, 48_500.0, 3_000.0)
    assert ex.account_health(INSURANCE_FUND).equity[0] == pytest.approx(-500.0)
    return ex, LiquidationEngine(ex, LiquidationRules(fallback=chain)), s


def test_a_fund_below_zero_hands_its_inventory_to_the_backstop_at_its_bankruptcy_price():
    """Before: the fund sat at -500 (its loss in no one's account but its own) while the
    chain's next step had capital to spare."""
    ex, engine, _ = fund_under_water(10_000.0, ("insurance_fund", "backstop", "adl"))
    rows = engine.run_step(step=1)
    assert [(r.account, r.kind, r.counterparty, r.qty, r.price) for r in rows] == [
        (INSURANCE_FUND, "backstop", BACKSTOP, pytest.approx(1.0), pytest.approx(49_000.0))
    ]
    assert ex.account_health(INSURANCE_FUND).equity[0] == pytest.approx(0.0, abs=1e-6)
    assert ex.account_health(BACKSTOP).equity[0] == pytest.approx(10_000.0 - 500.0)
    assert engine.unresolved == []
    check_invariants(ex)


def test_what_the_backstop_cannot_take_is_deleveraged_traders_first_then_genesis():
    ex, engine, s = fund_under_water(0.0, ("insurance_fund", "backstop", "adl"))
    rows = engine.run_step(step=1)
    assert [(r.kind, r.counterparty, r.qty, r.price) for r in rows] == [
        ("adl", s, pytest.approx(0.4), pytest.approx(49_000.0)),
        ("adl", GENESIS, pytest.approx(0.6), pytest.approx(49_000.0)),
    ]
    assert ex.ledger.positions[INSURANCE_FUND, 0] == 0
    assert ex.account_health(INSURANCE_FUND).equity[0] == pytest.approx(0.0, abs=1e-6)
    check_invariants(ex)


def test_a_socialized_chain_shares_the_funds_deficit_and_it_keeps_selling():
    """``socialize`` takes no inventory: the fund keeps its BTC (the unwinder sells it on)
    and its 500 below zero is charged to the traders with positions, pro rata."""
    ex, engine, s = fund_under_water(0.0, ("insurance_fund", "socialize"))
    rows = engine.run_step(step=1)
    assert {r.kind for r in rows} == {"deficit"}
    assert sum(r.socialized for r in rows) == pytest.approx(500.0)
    assert {r.counterparty for r in rows} == {s, trader(1)}
    assert ex.ledger.positions[INSURANCE_FUND, 0] == 1000
    assert ex.account_health(INSURANCE_FUND).equity[0] == pytest.approx(0.0, abs=1e-6)
    check_invariants(ex)


def test_a_chain_that_ends_at_the_fund_says_so_once():
    """Nothing below the fund: it stays below zero, and ``unresolved`` says so in one row
    for the episode, not one a step."""
    ex, engine, _ = fund_under_water(10_000.0, ("insurance_fund",))
    for step in (1, 2, 3):
        assert engine.run_step(step) == []
    assert engine.unresolved == [(1, INSURANCE_FUND, "system_deficit")]
    assert ex.account_health(INSURANCE_FUND).equity[0] == pytest.approx(-500.0)
    assert ex.account_health(BACKSTOP).equity[0] == pytest.approx(10_000.0)  # above the fund: not asked


def test_the_backstops_loss_goes_to_adl_never_up_to_the_fund():
    ex = venue(1)
    s = trader(0)
    ex.ledger.deposit(s, USD, 100_000.0)
    ex.ledger.deposit(INSURANCE_FUND, USD, 1e6)
    ex.ledger.deposit(BACKSTOP, USD, 1_000.0)
    give(ex, BACKSTOP, 0, 1.0, 50_000.0, GENESIS)
    give(ex, s, 0, -1.0, 50_000.0, GENESIS)
    mark_to(ex, 48_500.0, 3_000.0)
    engine = LiquidationEngine(ex, LiquidationRules())  # the default chain: fund, backstop, ADL
    rows = engine.run_step(step=1)
    assert [(r.account, r.kind, r.counterparty, r.price) for r in rows] == [
        (BACKSTOP, "adl", s, pytest.approx(49_000.0))
    ]
    assert ex.account_health(BACKSTOP).equity[0] == pytest.approx(0.0, abs=1e-6)
    assert ex.account_health(INSURANCE_FUND).equity[0] == pytest.approx(1e6)
    check_invariants(ex)


# ------------------------------------------------------------- ADL and genesis


def bankrupt_long_against_the_market():
    """A is 10 BTC long from 50,000 with 50,000 (bankrupt at 45,000), the mark at 44,000,
    an empty book and an empty fund. Trader S is short 1 BTC; the other 9 BTC of shorts
    are the rest of the market's (genesis)."""
    ex = venue(3)
    a, s, late = trader(0), trader(1), trader(2)
    for account, cash in ((a, 50_000.0), (s, 1e6), (late, 1e6)):
        ex.ledger.deposit(account, USD, cash)
    give(ex, a, 0, 10.0, 50_000.0, GENESIS)
    give(ex, s, 0, -1.0, 50_000.0, GENESIS)  # genesis: -10 + 1
    mark_to(ex, 44_000.0, 3_000.0)
    return ex, a, s, late


def test_adl_finishes_in_the_step_against_the_rest_of_the_market():
    """Issue 9's "ADL at a frozen price": the opposite side was mostly genesis, which ADL
    skipped, so a bankrupt account was deleveraged a trader at a time for minutes, every
    new short closed at its stale bankruptcy price. Genesis is the last ADL candidate:
    A is flat within the step and a short opened later is nobody's counterparty."""
    ex, a, s, late = bankrupt_long_against_the_market()
    engine = LiquidationEngine(ex, LiquidationRules(fallback=("adl",)))
    rows = engine.run_step(step=1)
    assert [(r.counterparty, r.qty, r.price) for r in rows] == [
        (s, pytest.approx(1.0), pytest.approx(45_000.0)),
        (GENESIS, pytest.approx(9.0), pytest.approx(45_000.0)),
    ]
    assert ex.ledger.positions[a, 0] == 0
    assert ex.account_health(a).equity[0] == pytest.approx(0.0, abs=1e-6)
    give(ex, late, 0, -1.0, 44_000.0, GENESIS)  # a new short at the mark
    assert engine.run_step(step=2) == []
    assert ex.ledger.positions[late, 0] == -1000
    assert engine.unresolved == []
    check_invariants(ex)


# ------------------------------------------------- what the chain cannot resolve


def test_an_account_the_chain_cannot_resolve_waits_for_what_it_depends_on():
    """Thousands of such accounts were retried every step at ~1.2 ms each and listed once
    a step. Now one costs a test of what it waits for (here the fund's capacity and the
    book), is listed once for its episode, and is liquidated as soon as the fund can."""
    ex = venue(2)
    a, g = trader(0), trader(1)
    ex.ledger.deposit(a, USD, 50_000.0)
    ex.ledger.deposit(g, USD, 1e7)
    give(ex, a, 0, 10.0, 50_000.0, g)
    mark_to(ex, 44_900.0, 3_000.0)  # bankrupt at 45,000; an empty book, an empty fund
    engine = LiquidationEngine(ex, LiquidationRules(fallback=("insurance_fund",)))
    with patch.object(engine, "_close", wraps=engine._close) as attempts:
        for step in (1, 2, 3, 4):
            assert engine.run_step(step) == []
        assert attempts.call_count == 1  # step 1; then nothing it waits for changed
        ex.ledger.deposit(INSURANCE_FUND, USD, 1e6)
        rows = engine.run_step(step=5)
    assert [(r.kind, r.qty) for r in rows] == [("insurance_fund", pytest.approx(10.0))]
    assert engine.unresolved == [(1, a, "book_exhausted")]
    assert engine.open_unresolved == {}
    check_invariants(ex)


def test_a_waiting_account_is_tried_again_when_the_book_can_take_it():
    ex = venue(3)
    a, g, bidder = trader(0), trader(1), trader(2)
    for account, cash in ((a, 50_000.0), (g, 1e7), (bidder, 1e7)):
        ex.ledger.deposit(account, USD, cash)
    give(ex, a, 0, 10.0, 50_000.0, g)
    mark_to(ex, 45_100.0, 3_000.0)  # liquidatable, not bankrupt (45,000)
    engine = LiquidationEngine(ex, LiquidationRules(full=True, fallback=("none",)))
    assert engine.run_step(step=1) == [] and engine.open_unresolved == {a: "book_exhausted"}
    ex.submit(bidder, 0, Side.BUY, 10.0, 45_050.0)
    rows = engine.run_step(step=2)
    assert [(r.kind, r.qty, r.price) for r in rows] == [("full", pytest.approx(10.0), pytest.approx(45_050.0))]
    check_invariants(ex)

"""`sim.health_watch.LiquidatableWatch` answers as a full margin pass would, bit for bit,
through price moves, funding, tier crossings, collateral repricing and ledger changes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.exchange import Exchange, FeeSchedule
from sim.health_watch import LiquidatableWatch
from sim.instruments import CollateralAsset, Instrument
from sim.ledger import GENESIS, N_SYSTEM, USD
from tests.conftest import E0_TIERS, eth
from tests.conftest import btc as flat_btc

N_TRADERS = 12
BTC_ASSET = 1


def venue(seed: int, isolated_share: float, spread: int = 1) -> Exchange:
    """Traders near their liquidation lines: tiered BTC (MARGIN-SPEC E0 brackets), flat
    ETH, USD and BTC collateral (with debts), some accounts in isolated mode; the i-th at
    row `trader` (i, spread), with empty accounts between them."""
    rng = np.random.default_rng(seed)
    btc = Instrument("BTC", tick_size=0.1, lot_size=0.001, tiers=E0_TIERS)
    collateral = [CollateralAsset("USD"), CollateralAsset("BTC", 0.9, 1.1, 0.05)]
    n = (N_TRADERS - 1) * spread + 1
    ex = Exchange([btc, eth()], collateral, n, [50_000.0, 3_000.0], FeeSchedule(0.0, 0.0))
    ledger = ex.ledger
    for i in range(N_TRADERS):
        account = trader(i, spread)
        ledger.deposit(account, USD, float(rng.uniform(-2_000, 20_000)))
        ledger.deposit(account, BTC_ASSET, float(rng.uniform(0, 0.2)))
        if rng.random() < isolated_share:
            ledger.set_isolated(account, True)
        for m, price in enumerate((50_000.0, 3_000.0)):
            lots = int(rng.integers(-30_000, 30_000)) if m == 0 else int(rng.integers(-3_000, 3_000))
            if lots:
                ledger.trade_between(account, GENESIS, m, lots, price * rng.uniform(0.97, 1.03), 0.0)
                if ledger.isolated[account]:
                    ledger.allocate_isolated(account, m, float(rng.uniform(0, 8_000)))
    return ex


def trader(i: int, spread: int) -> int:
    """The row of the i-th trader of a `venue` with that ``spread``."""
    return N_SYSTEM + i * spread


def full(ex: Exchange, is_trader: np.ndarray) -> np.ndarray:
    return ex.health().account_liquidatable & is_trader


move = st.tuples(st.floats(-0.08, 0.08), st.floats(-0.08, 0.08))
action = st.one_of(
    st.tuples(st.just("prices"), move),
    st.tuples(st.just("funding"), move),
    st.tuples(st.just("trade"), st.integers(0, N_TRADERS - 1), st.integers(-5_000, 5_000)),
    st.tuples(st.just("transfer"), st.integers(0, N_TRADERS - 1), st.floats(-3_000, 3_000)),
    st.tuples(st.just("collateral"), st.integers(0, N_TRADERS - 1), st.floats(-0.1, 0.1)),
    st.tuples(st.just("isolate"), st.integers(0, N_TRADERS - 1), st.floats(0, 5_000)),
)


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    isolated_share=st.sampled_from([0.0, 0.5, 1.0]),
    refresh_share=st.sampled_from([0.1, 1.0]),
    actions=st.lists(action, max_size=12),
    spread=st.sampled_from([1, 700]),
)
def test_the_watch_flags_what_a_full_pass_flags(seed, isolated_share, refresh_share, actions, spread):
    """Spread 700 puts the traders in blocks of rows of their own (of
    ``2**sim.ledger.VERSION_BLOCK_BITS`` rows), which a question skips while none of
    their rows changed or came near its line."""
    ex = venue(seed, isolated_share, spread)
    is_trader = np.arange(ex.ledger.n_accounts) >= N_SYSTEM
    watch = LiquidatableWatch(ex, is_trader, refresh_share)
    watch.refresh()
    for kind, *args in actions:
        if kind == "prices":
            prices = ex.index * (1.0 + np.array(args[0]))
            ex.set_prices(prices, prices)
        elif kind == "funding":
            ex.accrue_funding(np.array(args[0]) * ex.marks * 0.01)
        elif kind == "trade":
            account, lots = trader(args[0], spread), args[1]
            if lots:
                ex.ledger.trade_between(account, GENESIS, 0, lots, float(ex.marks[0]), float(ex.cum_funding[0]))
        elif kind == "transfer":
            ex.ledger.transfer(trader(args[0], spread), GENESIS, args[1])
        elif kind == "collateral":
            ex.ledger.deposit(trader(args[0], spread), BTC_ASSET, args[1])
        else:  # an isolated account moves margin into its BTC position; a cross one turns isolated
            account = trader(args[0], spread)
            if ex.ledger.isolated[account]:
                ex.ledger.allocate_isolated(account, 0, args[1])
            else:
                ex.ledger.set_isolated(account, True)
        assert np.array_equal(watch.liquidatable(), full(ex, is_trader))


def test_after_a_small_move_only_the_accounts_near_their_line_are_recomputed():
    ex = venue(3, 0.5)
    is_trader = np.arange(ex.ledger.n_accounts) >= N_SYSTEM
    watch = LiquidatableWatch(ex, is_trader, refresh_share=1.0)
    far = N_SYSTEM + 1
    ex.ledger.deposit(far, USD, 1e9)  # nothing a move of prices does can liquidate it
    watch.refresh()
    prices = ex.index * 1.001
    ex.set_prices(prices, prices)
    flags = watch.liquidatable()
    assert far not in watch.recomputed and watch.recomputed.size < N_TRADERS
    assert np.array_equal(flags, full(ex, is_trader))
    ex.ledger.transfer(far, GENESIS, 1e9 + 1e6)  # its row changed: recomputed, now under
    assert watch.liquidatable()[far] and far in watch.recomputed


def test_a_short_is_watched_for_its_margin_rising_with_the_price():
    """A rise of the mark costs a short its PnL *and* raises its MM: slack 100.5 USD, a
    move that loses it 100 of PnL and 1 of MM puts it under."""
    ex = Exchange([eth()], [CollateralAsset("USD")], 1, [3_000.0], FeeSchedule(0.0, 0.0))
    account = N_SYSTEM
    ex.ledger.deposit(account, USD, 400.5)
    ex.ledger.trade_between(account, GENESIS, 0, -1_000, 3_000.0, 0.0)  # short 10 ETH: MM 300
    watch = LiquidatableWatch(ex, np.arange(ex.ledger.n_accounts) >= N_SYSTEM, refresh_share=1.0)
    assert not watch.liquidatable()[account]
    ex.set_prices([3_010.0], [3_010.0])
    assert watch.liquidatable()[account]


def test_an_isolated_account_in_debt_is_watched_for_its_collateral_price():
    """Isolated positions stand on their own margins, but a debt is margined against the
    account's collateral: 1 BTC owed (liability weight 1.1, MMR 5 %) against 57,600 USD
    is covered at 50,000 (slack 100 USD) and not at 50,100."""
    ex = venue(0, 0.0)
    account = N_SYSTEM + N_TRADERS - 1
    ledger = ex.ledger
    for m in (0, 1):  # flat, no collateral but what the test gives it
        if ledger.positions[account, m]:
            ledger.trade_between(account, GENESIS, m, -int(ledger.positions[account, m]), float(ex.marks[m]), 0.0)
    ledger.transfer(account, GENESIS, float(ledger.balances[account, USD]) - 57_600.0)
    ledger.deposit(account, BTC_ASSET, -1.0 - float(ledger.balances[account, BTC_ASSET]))
    ledger.set_isolated(account, True)
    is_trader = np.arange(ledger.n_accounts) >= N_SYSTEM
    watch = LiquidatableWatch(ex, is_trader, refresh_share=1.0)
    assert not watch.liquidatable()[account]
    ex.set_prices([50_100.0, 3_000.0], [50_100.0, 3_000.0])
    assert watch.liquidatable()[account] and np.array_equal(watch.liquidatable(), full(ex, is_trader))


def test_recomputed_rows_get_the_bits_of_a_full_pass():
    """Rows picked by an index array were C-ordered copies, and BLAS summed their
    collateral to another last bit than the full pass: an account within that bit of its
    line got another flag (found in review; three collateral assets, a debt)."""
    collateral = [CollateralAsset("USD"), CollateralAsset("BTC", 0.9, 1.1, 0.05), CollateralAsset("ETH", 0.8, 1.2, 0.1)]
    ex = Exchange([flat_btc(), eth()], collateral, 30, [50_000.0, 3_000.0], FeeSchedule(0.0, 0.0))
    ledger, account = ex.ledger, 29
    is_trader = np.arange(ledger.n_accounts) >= N_SYSTEM
    ledger.deposit(account, 1, -0.012711115168446615)
    ledger.deposit(account, 2, 17.16234510409263)
    watch = LiquidatableWatch(ex, is_trader, refresh_share=1.0)
    watch.liquidatable()
    for other in (4, 5, 6, 9, 12, 13, 19, 20, 22, 23, 25, 28, 31, 32, 33):
        ledger.deposit(other, USD, 1.0)
    ledger.deposit(account, USD, -40458.739127636625)  # onto its line, within a bit
    assert np.array_equal(watch.liquidatable(), full(ex, is_trader))

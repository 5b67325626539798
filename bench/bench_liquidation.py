"""Liquidation phase cost when nobody is liquidatable: 10,000 accounts x 5 instruments
(target < 1 ms a step) and 100,000 accounts x 3 instruments (target < 5 ms a step).

The per-step scan must stay vectorized. Uses the ledger of ``bench_margin.py`` with every
account well collateralized, wired as the model wires it (the venue's index with its
impact propagator, the takeover unwinder, the default loss waterfall), and times
`LiquidationEngine.run_step` (which accounts are liquidatable, the attribution's check
and the scan) in cross and isolated mode. Before every timed step the index moves, as
it does in a run (a random walk of 2e-4 a step: BTC's volatility per 5 s), so the
engine's `sim.health_watch.LiquidatableWatch` answers for prices it has not seen, and
3 % of the accounts pay each other 1 USD, as a calm step of `configs/scale_crash.toml`
changes the ledger rows of about that share of its accounts (their fills).
Run: ``python bench/bench_liquidation.py [--accounts N --instruments I] [--mode cross|isolated|both]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from bench_margin import NAMES, PRICES, build

from sim.impact import ImpactParams, Propagator, VenueIndex
from sim.liquidation import LiquidationEngine, LiquidationRules
from sim.runtime import tune_runtime
from sim.unwind import TakeoverUnwinder

#: (accounts, instruments, target ms per step) printed by default.
SIZES = ((10_000, 5, 1.0), (100_000, 3, 5.0))


#: Steps of the index's random walk (more than any --repeat), and its volatility per step.
WALK_STEPS = 10_000
WALK_VOLATILITY = 2e-4
#: Share of the accounts whose ledger row changes between two steps.
TOUCHED_SHARE = 0.03


def engine_for(n_accounts: int, mode: str, n_instruments: int = len(NAMES)) -> LiquidationEngine:
    """A healthy venue and its engine, as `sim.model.MarketModel` builds them, on an
    index that follows a random walk."""
    ex = build(n_accounts, mode, n_instruments)
    ex.ledger.balances[:] = np.abs(ex.ledger.balances)
    ex.ledger.balances[:, 0] = 1e6  # everyone healthy
    if mode == "isolated":
        ex.ledger.isolated_margin[:] = 1e5
    walk = np.random.default_rng(0).normal(0.0, WALK_VOLATILITY, (WALK_STEPS, n_instruments))
    paths = np.array(PRICES[:n_instruments]) * np.exp(np.vstack([np.zeros(n_instruments), walk.cumsum(axis=0)]))
    params = [ImpactParams(daily_volatility=0.03, venue_share=0.2)] * n_instruments
    index = VenueIndex(ex, paths, Propagator(params), 1.0)
    index.advance(1)
    unwinder = TakeoverUnwinder(ex, index, half_life_seconds=60.0, step_seconds=1.0)
    return LiquidationEngine(ex, LiquidationRules(), index, unwinder)


def median_ms(engine: LiquidationEngine, repeat: int) -> float:
    assert not engine.run_step(0), "bench state must have no liquidatable account"
    ledger = engine.exchange.ledger
    rng = np.random.default_rng(1)
    times = []
    for step in range(1, repeat + 1):
        engine.index.advance(step)
        payers = rng.choice(ledger.n_accounts, round(TOUCHED_SHARE * ledger.n_accounts / 2), replace=False)
        for payer, payee in zip(payers.tolist(), rng.permutation(payers).tolist(), strict=True):
            ledger.transfer(payer, payee, 1.0)
        start = time.perf_counter()
        engine.run_step(step)
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, help="one size instead of the default two")
    parser.add_argument("--instruments", type=int, default=len(NAMES), choices=range(2, len(NAMES) + 1))
    parser.add_argument("--mode", default="both", choices=["cross", "isolated", "both"])
    parser.add_argument("--repeat", type=int, default=100)
    args = parser.parse_args()
    tune_runtime()
    sizes = SIZES if args.accounts is None else ((args.accounts, args.instruments, None),)
    for accounts, instruments, target in sizes:
        for mode in ("cross", "isolated") if args.mode == "both" else (args.mode,):
            ms = median_ms(engine_for(accounts, mode, instruments), args.repeat)
            verdict = "" if target is None else f" (target < {target:g} ms: {'met' if ms < target else 'MISSED'})"
            print(
                f"liquidation phase ({mode}), nobody liquidatable: {accounts:,} accounts x {instruments} "
                f"instruments: median {ms:.3f} ms per step{verdict}"
            )


if __name__ == "__main__":
    main()

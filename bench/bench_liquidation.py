"""Liquidation phase cost when nobody is liquidatable: 10,000 accounts x 5 instruments.

The per-step scan must stay vectorized (target < 1 ms). Uses the ledger of
``bench_margin.py`` with every account well collateralized, wired as the model wires
it (the venue's index with its impact propagator, the takeover unwinder, the default
loss waterfall), and times `LiquidationEngine.run_step` in cross and isolated mode.
Run: ``python bench/bench_liquidation.py [--accounts N] [--mode cross|isolated|both]``.
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


def engine_for(n_accounts: int, mode: str) -> LiquidationEngine:
    """A healthy venue and its engine, as `sim.model.MarketModel` builds them."""
    ex = build(n_accounts, mode)
    ex.ledger.balances[:] = np.abs(ex.ledger.balances)
    ex.ledger.balances[:, 0] = 1e6  # everyone healthy
    if mode == "isolated":
        ex.ledger.isolated_margin[:] = 1e5
    paths = np.tile(np.array(PRICES), (2, 1))
    index = VenueIndex(ex, paths, Propagator([ImpactParams(daily_volatility=0.03, venue_share=0.2)] * len(NAMES)), 1.0)
    index.advance(1)
    unwinder = TakeoverUnwinder(ex, index, half_life_seconds=60.0, step_seconds=1.0)
    return LiquidationEngine(ex, LiquidationRules(), index, unwinder)


def median_ms(engine: LiquidationEngine, repeat: int) -> float:
    assert not engine.run_step(0), "bench state must have no liquidatable account"
    times = []
    for step in range(repeat):
        start = time.perf_counter()
        engine.run_step(step)
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--mode", default="both", choices=["cross", "isolated", "both"])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    tune_runtime()
    for mode in ("cross", "isolated") if args.mode == "both" else (args.mode,):
        ms = median_ms(engine_for(args.accounts, mode), args.repeat)
        print(
            f"liquidation phase ({mode}), nobody liquidatable: {args.accounts:,} accounts x {len(NAMES)} "
            f"instruments: median {ms:.3f} ms per step"
        )


if __name__ == "__main__":
    main()

"""Liquidation phase cost when nobody is liquidatable: 10,000 accounts.

The per-step scan must stay vectorized. Uses the ledger of ``bench_margin.py`` with
every account well collateralized, and times `LiquidationEngine.run_step`.
Run: ``python bench/bench_liquidation.py [--accounts N]``.
"""

from __future__ import annotations

import argparse
import time

from bench_margin import NAMES, build

from sim.liquidation import LiquidationEngine, LiquidationRules
from sim.runtime import tune_runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    tune_runtime()
    ex = build(args.accounts, "cross")
    ex.ledger.balances[:, 0] = 1e6  # everyone healthy
    engine = LiquidationEngine(ex, LiquidationRules())
    assert not engine.run_step(0), "bench state must have no liquidatable account"
    times = []
    for step in range(args.repeat):
        start = time.perf_counter()
        engine.run_step(step)
        times.append(time.perf_counter() - start)
    times.sort()
    print(
        f"liquidation phase, nobody liquidatable: {args.accounts:,} accounts x {len(NAMES)} instruments: "
        f"median {times[len(times) // 2] * 1e3:.3f} ms per step"
    )


if __name__ == "__main__":
    main()

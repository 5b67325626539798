"""The traders' phase of a step (every population decides, the orders are sent) at
1,000, 10,000 and 100,000 leveraged holders plus the flash crash's other populations,
before the crash (nobody liquidated), so its cost per step can be read against the
number of accounts: it should grow with the members that act, not with the members.

With ``--turnover`` the holders turn over as the baseline's do (held ~12 h, reopened
after ~1 h, a third with stops), so the members that act grow with the population.
Run: ``python bench/bench_agents.py [--holders 1000 10000 100000] [--steps N] [--turnover]``.
Prints, per size, the setup time, the traders' phase in ms/step (median and mean over
the steps) and the orders sent per step.
"""

from __future__ import annotations

import argparse
import statistics
import time

from sim.config import load_config
from sim.model import MarketModel
from sim.runtime import tune_runtime

CONFIG = "configs/flash_crash.toml"
#: The holders' population in the flash crash.
HOLDERS = 5
#: The baseline's holder parameters (``configs/baseline.toml``).
TURNOVER = (
    '{ side = "random", long_share = 0.6, stop_share = 0.3, holding_seconds = 43200.0, reentry_seconds = 3600.0 }'
)


def measure(holders: int, steps: int, turnover: bool = False) -> tuple[float, list[float], float]:
    """``(setup seconds, traders' phase seconds per step, orders per step)``."""
    overrides = [f"steps={steps}", f"populations.{HOLDERS}.count={holders}", f"shocks.0.step={steps + 1}"]
    if turnover:
        overrides.append(f"populations.{HOLDERS}.params={TURNOVER}")
    config = load_config(CONFIG, overrides)
    start = time.perf_counter()
    model = MarketModel(config)
    setup = time.perf_counter() - start
    phase = []
    act = model._traders_act

    def timed() -> None:
        begin = time.perf_counter()
        act()
        phase.append(time.perf_counter() - begin)

    model._traders_act = timed
    before = model.exchange.n_orders
    model.run()
    return setup, phase, (model.exchange.n_orders - before) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holders", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--turnover", action="store_true", help="holders turn over as the baseline's")
    args = parser.parse_args()
    tune_runtime()
    for holders in args.holders:
        setup, phase, orders = measure(holders, args.steps, args.turnover)
        print(
            f"{holders:>7,} holders: setup {setup:.1f} s, traders' phase median "
            f"{statistics.median(phase) * 1e3:.2f} ms/step (mean {statistics.mean(phase) * 1e3:.2f}), "
            f"{orders:.1f} orders/step"
        )


if __name__ == "__main__":
    main()

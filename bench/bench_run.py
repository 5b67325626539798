"""Whole-run throughput: ``configs/baseline.toml`` (1,000 agents, 3 instruments, 2,000 steps).

Prints wall seconds, agent-steps per second and order events (orders sent to the books
plus cancels) per second, then the same workload with 10x agents (every population
scaled) for ``--scaled-steps`` steps to show how the cost per step grows.
Run: ``python bench/bench_run.py [--steps N] [--scaled-steps N] [--scale K]``.
"""

from __future__ import annotations

import argparse
import time

from sim.config import load_config
from sim.model import MarketModel
from sim.runtime import tune_runtime

CONFIG = "configs/baseline.toml"


def measure(overrides: list[str]) -> tuple[float, int, int, int]:
    """``(seconds, agents, steps, order_events)`` of one run (recording included)."""
    config = load_config(CONFIG, overrides)
    model = MarketModel(config)
    start = time.perf_counter()
    model.run()
    model.recorder.tables()
    seconds = time.perf_counter() - start
    agents = sum(p.count for p in config.populations)
    return seconds, agents, config.steps, model.exchange.n_orders + model.exchange.n_cancels


def report(label: str, seconds: float, agents: int, steps: int, events: int) -> None:
    print(
        f"{label}: {agents:,} agents x {steps:,} steps in {seconds:.1f} s = {seconds / steps * 1e3:.1f} ms/step, "
        f"{agents * steps / seconds:,.0f} agent-steps/s, {events / seconds:,.0f} order events/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--scaled-steps", type=int, default=200)
    args = parser.parse_args()
    tune_runtime()
    report("baseline", *measure([f"steps={args.steps}"]))
    base = load_config(CONFIG)
    scaled = [f"populations.{i}.count={p.count * args.scale}" for i, p in enumerate(base.populations)]
    report(f"{args.scale}x agents", *measure([f"steps={args.scaled_steps}", *scaled]))


if __name__ == "__main__":
    main()

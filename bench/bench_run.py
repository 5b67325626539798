"""Whole-run throughput: ``configs/baseline.toml`` (3 instruments, 2,000 steps), against
the code before the market formed its own price, measured in the same run.

This VM's speed drifts by up to +-20 % between runs, so the old code's baseline (a
``git worktree`` of ``--old`` in a temporary folder, its own ``configs/baseline.toml``)
runs in a subprocess right before the new one, and the ratio is printed. Then the new
workload with 10x agents (every population scaled) for ``--scaled-steps`` steps shows
how the cost per step grows, and with ``--old``, the old code's order events/s at that
size (issue 11's target: >= 10x at 10,000 agents against 04fd630, the code before it).
Run: ``python bench/bench_run.py [--steps N] [--old REV] [--scaled-steps N] [--scale K] [--rounds R]``;
``--rounds`` repeats the whole comparison (old and new alternating) and prints the
ranges, as this VM's drift asks.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sim.config import load_config
from sim.model import MarketModel
from sim.runtime import tune_runtime

CONFIG = "configs/baseline.toml"
ROOT = Path(__file__).resolve().parent.parent
#: The last commit before "The market forms its own price" (index feedback, old agents).
OLD = "3f47bd1"


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


def old_worktree(rev: str) -> Path:
    """A ``git worktree`` of commit ``rev`` in a temporary folder (made once, then reused)."""
    folder = Path(tempfile.gettempdir()) / f"cascadelab-bench-{rev}"
    if not folder.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(folder), rev], cwd=ROOT, check=True)
    return folder


def run_old(rev: str, code: str) -> object:
    """Run ``code`` (Python that prints JSON last) with the code of commit ``rev``
    and its ``bench`` modules importable (``json`` imported), in a subprocess; return what
    it printed."""
    prelude = "import json, sys; sys.path[:0] = ['.', 'bench']\n"
    out = subprocess.run(
        [sys.executable, "-c", prelude + code], cwd=old_worktree(rev), check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_old(rev: str, overrides: list[str]) -> tuple[float, int, int, int]:
    """`measure` of the baseline with ``overrides`` at commit ``rev``, in a worktree of it
    and a subprocess."""
    code = (
        "from bench_run import measure; from sim.runtime import tune_runtime; tune_runtime();"
        f"print(json.dumps(measure({overrides!r})))"
    )
    return tuple(run_old(rev, code))


def report(label: str, seconds: float, agents: int, steps: int, events: int) -> None:
    print(
        f"{label}: {agents:,} agents x {steps:,} steps in {seconds:.1f} s = {seconds / steps * 1e3:.1f} ms/step, "
        f"{agents * steps / seconds:,.0f} agent-steps/s, {events / seconds:,.0f} order events/s"
    )


def compare(args: argparse.Namespace) -> tuple[float | None, float | None]:
    """One round: the baseline and the scaled run, with the old code's before each when
    ``args.old``. Returns ``(old / new wall time of the baseline, new / old order
    events/s of the scaled run)``, None without ``--old``."""
    old = measure_old(args.old, [f"steps={args.steps}"]) if args.old else None
    if old:
        report(f"old baseline ({args.old})", *old)
    new = measure([f"steps={args.steps}"])
    report("baseline", *new)
    speedup = old[0] / new[0] if old else None
    if old:
        print(f"new / old wall time: {new[0] / old[0]:.2f} (old / new: {speedup:.2f}x faster)")
    base = load_config(CONFIG)
    scaled = [
        f"steps={args.scaled_steps}",
        *(f"populations.{i}.count={p.count * args.scale}" for i, p in enumerate(base.populations)),
    ]
    new = measure(scaled)
    report(f"{args.scale}x agents", *new)
    if not args.old:
        return None, None
    old = measure_old(args.old, scaled)
    report(f"old, {args.scale}x agents ({args.old})", *old)
    ratio = (new[3] / new[0]) / (old[3] / old[0])
    print(f"order events/s at {args.scale}x agents, new / old: {ratio:.2f}x")
    return speedup, ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--old", default=OLD, help="commit of the code to compare with ('' to skip)")
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--scaled-steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1, help="repeat the comparison and print the ranges")
    args = parser.parse_args()
    tune_runtime()
    rounds = []
    for r in range(args.rounds):
        if args.rounds > 1:
            print(f"round {r + 1} of {args.rounds}")
        rounds.append(compare(args))
    if args.rounds > 1 and args.old:
        speedups, ratios = zip(*rounds, strict=True)
        print(
            f"over {args.rounds} rounds: baseline {min(speedups):.2f}-{max(speedups):.2f}x faster than {args.old}, "
            f"order events/s at {args.scale}x agents {min(ratios):.2f}-{max(ratios):.2f}x"
        )


if __name__ == "__main__":
    main()

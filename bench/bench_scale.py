"""Scale: the 100,000-account flash crash of ``configs/scale_crash.toml`` (3 instruments,
1,000 steps) against the code before issue 11, measured in the same run.

Prints, in this order:

1. the old code's baseline (``configs/baseline.toml``, 2,000 steps, at ``--old``, by
   default 04fd630, the last commit before issue 11) in a ``git worktree`` of it and a
   subprocess (`bench_run.measure_old`);
2. the impact propagator's cost per step after 1,000 and after 20,000 steps (constant
   when decay is O(1) per step), and the cost of recording the accounts table at 100,000
   accounts x 3 instruments (21 snapshots, as the config records them, on the ledger of
   ``bench_margin.py``): per snapshot, the table's size and its parquet's;
3. the cost per step of the scale crash at 1,000, 10,000 and 100,000 trader accounts
   (every population scaled; ``--series-steps`` steps, before the shock);
4. the whole scale crash: wall time (building the model, the run and its tables), peak
   memory (the process's maximum resident set, `peak_mb`), order events
   (orders + cancels) per second and the ratio to the old baseline's wall time (target
   <= 4, peak <= 2 GB).

Every model run is its own subprocess, so each peak memory is that run's alone. This
VM's speed drifts between runs: compare figures of one run only.
Run: ``python bench/bench_scale.py [--old REV] [--series-steps N] [--steps N] [--no-full]``
(``make bench-scale``; the whole crash takes minutes).
"""

from __future__ import annotations

import argparse
import inspect
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_margin import build
from bench_run import measure_old, report, run_old

from sim.config import load_config
from sim.impact import ImpactParams, Propagator
from sim.model import MarketModel
from sim.recorder import AccountSnapshots
from sim.runtime import tune_runtime

CONFIG = "configs/scale_crash.toml"
#: The last commit before issue 11 ("Scale: a 100,000-account crash in a minute").
OLD = "04fd630"
#: Fractions of the config's populations for the cost-per-step series.
SERIES = (0.01, 0.1, 1.0)
#: Run lengths at which the propagator's cost per step is measured.
PROPAGATOR_STEPS = (1_000, 20_000)
WALL_RATIO_TARGET = 4.0
PEAK_TARGET_MB = 2048.0


def measure(overrides: list[str]) -> dict:
    """One run of the scale crash in this process: seconds to build the model, to run it
    and to build its tables, accounts, steps, order events and peak resident MB."""
    config = load_config(CONFIG, overrides)
    start = time.perf_counter()
    model = MarketModel(config)
    built = time.perf_counter()
    model.run()
    model.recorder.tables()
    done = time.perf_counter()
    return {
        "build": built - start,
        "run": done - built,
        "accounts": sum(p.count for p in config.populations),
        "steps": config.steps,
        "events": model.exchange.n_orders + model.exchange.n_cancels,
        "peak_mb": peak_mb(),
    }


def peak_mb() -> float:
    """This process's peak resident memory, MB: ``VmHWM`` of its address space (Linux keeps
    ``getrusage``'s ``ru_maxrss`` across ``execve``, so a child started by a process that
    had grown larger would report the parent's peak); ``ru_maxrss`` elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure_in_child(overrides: list[str]) -> dict:
    """`measure` in a fresh interpreter (its own peak memory)."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(overrides)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def scaled(fraction: float) -> list[str]:
    """Overrides scaling every population of the config by ``fraction`` (at least one agent)."""
    config = load_config(CONFIG)
    return [f"populations.{i}.count={max(1, round(p.count * fraction))}" for i, p in enumerate(config.populations)]


def propagator_step_us(steps: int, window: int = 1_000) -> float:
    """Microseconds per step of the impact propagator over the last ``window`` of
    ``steps`` steps: advance, one traders' term per instrument, read the impact."""
    p = Propagator([ImpactParams(daily_volatility=0.03, venue_share=0.2)] * 3)
    flows = np.random.default_rng(0).normal(0.0, 1e5, (steps, 3))
    start = 0.0
    for step in range(1, steps + 1):
        if step == steps - window + 1:
            start = time.perf_counter()
        p.advance(step * 5.0)
        for m in range(3):
            p.add_volume(m, 1e6)
            p.add(m, float(flows[step - 1, m]))
        p.log_impact()
    return (time.perf_counter() - start) / window * 1e6


def recording_cost(accounts: int = 100_000, snapshots: int = 21) -> tuple[float, float, float]:
    """``(ms per snapshot, table MB, parquet MB)`` of the accounts table of ``accounts``
    accounts x 3 instruments over ``snapshots`` snapshots (health computed outside)."""
    ex = build(accounts, "cross", 3)
    snaps = AccountSnapshots([inst.name for inst in ex.instruments], ["trader"] * ex.ledger.n_accounts, snapshots)
    health, seconds = ex.health(), []
    for k in range(snapshots):
        start = time.perf_counter()
        snaps.add(k, health, ex.ledger)
        seconds.append(time.perf_counter() - start)
    frame = snaps.frame()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "accounts.parquet"
        frame.write_parquet(path)
        parquet = path.stat().st_size
    return sorted(seconds)[snapshots // 2] * 1e3, frame.estimated_size() / 1e6, parquet / 1e6


def print_propagator(label: str, us: list[float]) -> None:
    after = ", ".join(f"{u:.1f} us/step after {n:,} steps" for n, u in zip(PROPAGATOR_STEPS, us, strict=True))
    print(f"{label}: {after}")


def show(label: str, r: dict) -> float:
    """Print one run's figures; return its wall seconds (build + run + tables)."""
    wall = r["build"] + r["run"]
    print(
        f"{label}: {r['accounts']:,} trader accounts x {r['steps']:,} steps in {wall:.1f} s "
        f"(build {r['build']:.1f} s, run {r['run']:.1f} s = {r['run'] / r['steps'] * 1e3:.1f} ms/step), "
        f"{r['events'] / r['run']:,.0f} order events/s, peak {r['peak_mb']:,.0f} MB"
    )
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default=OLD, help="commit of the code to compare with ('' to skip)")
    parser.add_argument("--series-steps", type=int, default=50, help="steps of each cost-per-step run (0: skip)")
    parser.add_argument("--steps", type=int, help="steps of the whole crash (default: the config's)")
    parser.add_argument("--no-full", action="store_true", help="skip the whole 100,000-account crash")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    tune_runtime()
    if args.child is not None:
        print(json.dumps(measure(json.loads(args.child))))
        return
    old = measure_old(args.old, ["steps=2000"]) if args.old else None
    if old:
        report(f"old baseline ({args.old}, configs/baseline.toml)", *old)
    print_propagator("impact propagator", [propagator_step_us(steps) for steps in PROPAGATOR_STEPS])
    if args.old:
        code = "\n".join(
            [
                "import time; import numpy as np; from sim.impact import ImpactParams, Propagator",
                inspect.getsource(propagator_step_us),
                f"print(json.dumps([propagator_step_us(n) for n in {PROPAGATOR_STEPS}]))",
            ]
        )
        print_propagator(f"old impact propagator ({args.old})", run_old(args.old, code))
    ms, table_mb, parquet_mb = recording_cost()
    print(
        f"accounts table, 100,000 accounts x 3 instruments x 21 snapshots: {ms:.1f} ms per snapshot, "
        f"{table_mb:,.0f} MB in memory, {parquet_mb:,.0f} MB of parquet"
    )
    if args.series_steps:
        per_step = []
        for fraction in SERIES:
            r = measure_in_child([f"steps={args.series_steps}", *scaled(fraction)])
            show(f"{fraction:g}x populations", r)
            per_step.append((r["accounts"], r["run"] / r["steps"] * 1e3))
        growth = ", ".join(f"{a:,}: {ms:.1f} ms" for a, ms in per_step)
        print(f"cost per step by trader accounts ({args.series_steps} steps, before the shock): {growth}")
    if args.no_full:
        return
    full = measure_in_child([] if args.steps is None else [f"steps={args.steps}"])
    wall = show(f"scale crash ({Path(CONFIG).name})", full)
    print(f"peak memory {full['peak_mb']:,.0f} MB (target <= {PEAK_TARGET_MB:,.0f} MB)")
    if old:
        print(f"scale crash / old baseline wall time: {wall / old[0]:.2f} (target <= {WALL_RATIO_TARGET:g})")


if __name__ == "__main__":
    main()

"""Sweep overhead and scaling: a 2 x 2 x 3-seed sweep of a small config.

1. Simulates each of the 12 runs in this process (the "run itself": model steps only).
2. Starts a Dask LocalCluster (timed separately: it happens once per sweep) and warms
   its workers up (imports), then runs the sweep on it with 1 worker. The overhead per
   run is (sweep time - the runs' simulation time) / 12: model set-up, shipping the
   task, writing tables, metrics and report, aggregation.
3. The same with 2 workers (all cores here), and the speed-up.
Run: ``python bench/bench_sweep.py``.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from dask.distributed import Client, LocalCluster

from sim.config import Config
from sim.model import MarketModel
from sim.runtime import tune_runtime
from sim.sweep import load_sweep, run_sweep

ROOT = Path(__file__).resolve().parent.parent
SWEEP = f"""
base = "{ROOT / "configs" / "flash_crash.toml"}"
seeds = 3
set = {{ steps = 120, "shocks.0.step" = 60, "populations.4.count" = 100, "populations.3.count" = 40 }}
[grid]
"liquidation.mode" = ["partial", "full"]
"populations.0.params.order_notional" = [20000.0, 80000.0]
"""


def _warm_up() -> bool:
    import sim.run  # noqa: F401  (the imports a worker pays once)

    return True


def timed_sweep(path: Path, out: Path, workers: int) -> tuple[float, float]:
    """``(cluster start seconds, sweep seconds)`` on a fresh local cluster."""
    start = time.perf_counter()
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(_warm_up)
        ready = time.perf_counter()
        run_sweep(path, out, address=cluster.scheduler_address, progress=False)
        return ready - start, time.perf_counter() - ready


def main() -> None:
    tune_runtime()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.toml"
        path.write_text(SWEEP)
        _, runs = load_sweep(path)
        simulate = 0.0
        for run in runs:
            model = MarketModel(Config.model_validate_json(run.config_json))
            start = time.perf_counter()
            model.run()
            simulate += time.perf_counter() - start
        start1, one = timed_sweep(path, Path(tmp) / "one", 1)
        start2, two = timed_sweep(path, Path(tmp) / "two", 2)
    n = len(runs)
    print(f"sweep: {n} runs, simulation alone {simulate:.1f} s ({simulate / n:.2f} s/run)")
    print(
        f"sweep, 1 worker: cluster start {start1:.1f} s (once), sweep {one:.1f} s "
        f"-> overhead {(one - simulate) / n:.2f} s per run"
    )
    print(
        f"sweep, 2 workers: cluster start {start2:.1f} s (once), sweep {two:.1f} s "
        f"-> speed-up {one / two:.2f}x with 2 workers on 2 cores"
    )


if __name__ == "__main__":
    main()

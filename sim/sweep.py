"""`cascadelab sweep`: a grid of runs over seeds, on all local cores or a Dask cluster.

A sweep file (TOML):

```toml
base = "../baseline.toml"      # the config every run starts from (relative to this file)
seeds = 3                      # runs per grid point
master_seed = 0                # the per-run seeds are spawned from it
set = { steps = 300 }          # fixed overrides for every run (optional)
reports = true                 # a report.html per run (self-contained, ~5 MB each) and the sweep's

[grid]                         # key path -> values; the grid is their product
"liquidation.mode" = ["partial", "full"]

[[zip]]                        # optional: keys that vary together (one axis)
"populations.0.params.order_notional" = [20000.0, 80000.0]
"populations.0.params.levels" = [2, 4]
```

Seeds: ``SeedSequence(master_seed).spawn(seeds)`` gives one seed per seed index, the
same at every grid point (common random numbers: settings are compared on the same
price paths), and nothing depends on which worker runs what, or when.

Output folder (default ``results/sweeps/<sweep-stem>``): ``sweep.toml`` (a copy),
``runs/<config-hash8>-s<seed>/`` (one result folder per run, as ``cascadelab run``
writes it), ``runs.parquet`` (one row per run: run id, grid values, seed, status,
wall seconds, error), ``summary.parquet`` (one row per finished run: its grid values,
headline metrics and headline facts, aggregated with lazy scans over the run folders),
and ``report.html``.

Headline facts in ``summary.parquet`` (see `sim.facts`; log returns at 60 s; one column
per instrument, suffixed ``_<INSTRUMENT>``, for series ``mark`` and ``last``):
``kurtosis_<series>_60s`` (Pearson, Gaussian 3), ``hill_<series>_60s`` (tail index of
|r|), ``acf_<series>_60s_lag1`` (ACF of r at lag 1), ``acf_abs_<series>_60s_lag10``
(ACF of |r| at lag 10), ``volume_volatility_<series>_60s`` (corr of volume and |r|),
``depth_drop`` (fraction of the 1 % depth gone in the mark's worst drawdown); and, run
wide, ``cascade_powerlaw_alpha``, ``cascade_powerlaw_vs_lognormal_ratio`` and
``cascade_powerlaw_vs_lognormal_p``. NaN where the run is too short to measure the fact.
`sweep_facts` averages every fact over the seeds of each grid point.

Resuming: a run folder only appears once complete (it is renamed into place), so
re-running the sweep skips runs whose folder exists and runs the others again (those
that failed or never finished). A run that raises is recorded with its error and the
sweep goes on.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import os
import shutil
import time
import traceback
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sim.config import Config, ConfigError, describe, read_toml, set_value, validate
from sim.facts import FACTS_SCHEMA, KEYS, headline
from sim.progress import Progress
from sim.results import read_table

RUN_SCHEMA = {
    "run_id": pl.String,
    "point": pl.Int64,
    "seed_index": pl.Int64,
    "seed": pl.Int64,
    "config_hash": pl.String,
    "status": pl.String,
    "wall_seconds": pl.Float64,
    "error": pl.String,
}


class SweepFile(BaseModel):
    """A validated sweep file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: str
    seeds: Annotated[int, Field(ge=1)] = 1
    master_seed: Annotated[int, Field(ge=0)] = 0
    set: dict[str, Any] = Field(default_factory=dict)
    reports: bool = True
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    zip: list[dict[str, list[Any]]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> SweepFile:
        for key, values in self.grid.items():
            if not values:
                raise ValueError(f"grid.{key}: needs at least one value")
        for i, group in enumerate(self.zip):
            lengths = {len(v) for v in group.values()}
            if len(lengths) != 1 or 0 in lengths:
                raise ValueError(f"zip[{i}]: its lists must have the same, non-zero length")
        keys = list(self.grid) + [k for group in self.zip for k in group]
        if len(keys) != len(set(keys)):
            raise ValueError("a key appears twice in grid and zip")
        return self

    def axes(self) -> list[str]:
        """Every varied key, grid keys first."""
        return list(self.grid) + [k for group in self.zip for k in group]

    def points(self) -> list[dict[str, Any]]:
        """The grid points, in a fixed order: key path -> value."""
        dims: list[list[dict[str, Any]]] = [[{key: v} for v in values] for key, values in self.grid.items()]
        for group in self.zip:
            n = len(next(iter(group.values())))
            dims.append([{key: values[i] for key, values in group.items()} for i in range(n)])
        return [dict(kv for part in combo for kv in part.items()) for combo in itertools.product(*dims)]

    def run_seeds(self) -> list[int]:
        """One seed per seed index, spawned from the master seed."""
        children = np.random.SeedSequence(self.master_seed).spawn(self.seeds)
        return [int(child.generate_state(1, dtype=np.uint32)[0]) for child in children]


class PlannedRun(BaseModel):
    """One run of a sweep: where it goes and the config it runs."""

    run_id: str
    point: int
    seed_index: int
    seed: int
    values: dict[str, Any]
    config_json: str
    config_hash: str


def load_sweep(path: Path) -> tuple[SweepFile, list[PlannedRun]]:
    """Read a sweep file and plan (and validate) all of its runs.

    Raises:
        ConfigError: a bad sweep file, base config, or a grid value that makes the
            config invalid (the message names the key and value).
    """
    raw = read_toml(path)
    try:
        sweep = SweepFile.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{path}: {describe(err)}") from None
    base_path = (path.parent / sweep.base).resolve()
    base = read_toml(base_path)
    for key, value in sweep.set.items():
        set_value(base, key, value, f"{path}: set.{key}", base_path)
    runs = []
    seeds = sweep.run_seeds()
    for point, values in enumerate(sweep.points()):
        data = copy.deepcopy(base)
        for key, value in values.items():
            set_value(data, key, value, f"{path}: grid {key}", base_path)
        for seed_index, seed in enumerate(seeds):
            data["seed"] = seed
            try:
                config = validate(copy.deepcopy(data), base_path)  # validate resolves paths in place
            except ConfigError as err:
                raise ConfigError(f"{path}: grid point {values}: {err}") from None
            digest = config.hash()
            runs.append(
                PlannedRun(
                    run_id=f"{digest[:8]}-s{seed}",
                    point=point,
                    seed_index=seed_index,
                    seed=seed,
                    values=values,
                    config_json=config.model_dump_json(),
                    config_hash=digest,
                )
            )
    return sweep, runs


def execute_run(config_json: str, folder: str, report: bool) -> dict[str, Any]:
    """Worker task: run one config into ``folder``; never raises.

    Returns:
        ``{"status": "done" | "failed", "wall_seconds": float, "error": str | None}``.
    """
    from sim.run import run_to_folder
    from sim.runtime import tune_runtime

    tune_runtime()
    start = time.perf_counter()
    try:
        config = Config.model_validate_json(config_json)
        run_to_folder(config, Path(folder), progress=False, report=report)
    except Exception as err:  # a failing run is recorded, and the sweep goes on
        last = traceback.extract_tb(err.__traceback__)[-1]
        where = f" ({Path(last.filename).name}:{last.lineno})"
        return {
            "status": "failed",
            "wall_seconds": time.perf_counter() - start,
            "error": f"{type(err).__name__}: {err}{where}",
        }
    return {"status": "done", "wall_seconds": time.perf_counter() - start, "error": None}


def default_sweep_dir(path: Path, root: Path = Path("results/sweeps")) -> Path:
    return root / path.stem


def run_sweep(
    path: Path,
    out: Path | None = None,
    address: str | None = None,
    workers: int | None = None,
    progress: bool | None = None,
) -> Path:
    """Run (or resume) a sweep and write its tables and report; return the folder.

    Args:
        path: The sweep file.
        out: Output folder (default ``results/sweeps/<stem>``).
        address: A Dask scheduler (``tcp://host:port``); None starts a local cluster.
        workers: Local worker processes (default: all cores); ignored with ``address``.
        progress: Show a progress bar; by default only on a terminal.
    """
    from dask.distributed import Client, LocalCluster, as_completed

    from sim.report import write_plotly_js, write_sweep_report

    sweep, runs = load_sweep(path)
    out = out or default_sweep_dir(path)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, out / "sweep.toml")
    if sweep.reports:
        write_plotly_js(out)
    status: dict[str, dict[str, Any]] = {}
    todo = []
    earlier = _earlier_walls(out)
    for run in runs:
        if (out / "runs" / run.run_id).is_dir():
            status[run.run_id] = {"status": "done", "wall_seconds": earlier.get(run.run_id), "error": None}
        else:
            todo.append(run)
    bar = Progress(len(runs), "runs", enabled=progress)
    _draw(bar, status, len(runs))
    try:
        if todo:
            cluster = None
            if address is None:
                cluster = LocalCluster(
                    n_workers=workers or os.cpu_count() or 1,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            with Client(address or cluster) as client:
                futures = {
                    client.submit(
                        execute_run,
                        run.config_json,
                        str(out / "runs" / run.run_id),
                        sweep.reports,
                        key=f"run-{run.run_id}",
                        pure=False,
                    ): run.run_id
                    for run in todo
                }
                for future in as_completed(futures):
                    status[futures[future]] = future.result()
                    _draw(bar, status, len(runs))
            if cluster is not None:
                cluster.close()
    finally:
        bar.close()
        write_tables(out, sweep, runs, status)
    if sweep.reports:
        write_sweep_report(out)
    return out


def _earlier_walls(out: Path) -> dict[str, float]:
    """Wall seconds of runs a previous invocation of this sweep recorded."""
    path = out / "runs.parquet"
    if not path.is_file():
        return {}
    done = pl.read_parquet(path).filter(pl.col("status") == "done")
    return dict(zip(done["run_id"].to_list(), done["wall_seconds"].to_list(), strict=True))


def _draw(bar: Progress, status: dict[str, dict[str, Any]], total: int) -> None:
    failed = sum(s["status"] == "failed" for s in status.values())
    done = len(status) - failed
    bar.update(len(status), f"done {done}  failed {failed}  remaining {total - len(status)}")


def write_tables(out: Path, sweep: SweepFile, runs: list[PlannedRun], status: dict[str, dict[str, Any]]) -> None:
    """``runs.parquet`` (every planned run) and ``summary.parquet`` (finished runs)."""
    axes = sweep.axes()
    rows = []
    for run in runs:
        state = status.get(run.run_id, {"status": "pending", "wall_seconds": None, "error": None})
        rows.append(
            {
                "run_id": run.run_id,
                "point": run.point,
                "seed_index": run.seed_index,
                "seed": run.seed,
                "config_hash": run.config_hash,
                "status": state["status"],
                "wall_seconds": state["wall_seconds"],
                "error": state["error"],
            }
        )
    frame = pl.DataFrame(rows, schema=RUN_SCHEMA)
    values = pl.DataFrame([{key: _cell(run.values[key]) for key in axes} for run in runs])
    frame = pl.concat([frame, values], how="horizontal") if axes else frame
    frame.sort("point", "seed_index").write_parquet(out / "runs.parquet")
    summarize(out).write_parquet(out / "summary.parquet")


def _cell(value: Any) -> Any:
    """Grid values as table cells: scalars as they are, anything else as JSON text."""
    return value if isinstance(value, bool | int | float | str) else json.dumps(value)


def scan_runs(out: Path, table: str) -> pl.LazyFrame | None:
    """A lazy scan of one table over all run folders of a sweep, with each row's
    ``run_id``; None when no run has the table."""
    if not list((out / "runs").glob(f"*/{table}.parquet")):
        return None
    return (
        pl.scan_parquet(out / "runs" / "*" / f"{table}.parquet", include_file_paths="path")
        .with_columns(pl.col("path").str.split("/").list.get(-2).alias("run_id"))
        .drop("path")
    )


def summarize(out: Path) -> pl.DataFrame:
    """Headline metrics and facts of every finished run joined with its grid values
    (lazy scans; a run without ``facts.parquet`` gets nulls)."""
    runs = pl.read_parquet(out / "runs.parquet")
    metrics = scan_runs(out, "metrics")
    if metrics is None:
        return runs.head(0)
    summary = runs.lazy().filter(pl.col("status") == "done").join(metrics, on="run_id", how="inner")
    facts = scan_runs(out, "facts")
    if facts is not None:
        wide = headline(facts).select("run_id", "column", "value").collect().pivot("column", index="run_id")
        summary = summary.join(wide.lazy(), on="run_id", how="left")
    return summary.sort("point", "seed_index").collect()


def sweep_facts(out: Path) -> pl.DataFrame:
    """Every stylized fact of a sweep, averaged over the finished runs of each grid point.

    Returns:
        One row per grid point and fact: ``point``, the grid keys, the fact keys
        (`sim.facts.KEYS`), ``value`` (the mean over the runs that measured it; NaN if
        none did) and ``runs`` (how many did). Runs without ``facts.parquet`` have
        theirs computed from their tables.

    Raises:
        ResultError: a table is missing or unreadable.
    """
    from sim.run import read_facts

    runs = read_table(out, "runs").filter(pl.col("status") == "done")
    axes = [c for c in runs.columns if c not in RUN_SCHEMA]
    per_run = [read_facts(out / "runs" / run_id).with_columns(run_id=pl.lit(run_id)) for run_id in runs["run_id"]]
    facts = pl.concat(per_run) if per_run else pl.DataFrame(schema={**FACTS_SCHEMA, "run_id": pl.String})
    measured = pl.col("value").fill_nan(None)
    return (
        facts.join(runs.select("run_id", "point", *axes), on="run_id")
        .group_by("point", *axes, *KEYS)
        .agg(measured.mean().fill_null(float("nan")).alias("value"), measured.count().cast(pl.Int64).alias("runs"))
        .sort("point", *KEYS, nulls_last=True)
    )

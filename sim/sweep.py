"""`cascadelab sweep`: a grid or design of runs over seeds, on all local cores or a Dask cluster.

A sweep file (TOML):

```toml
base = "../baseline.toml"      # the config every run starts from (relative to this file)
seeds = 3                      # runs per grid point
master_seed = 0                # the per-run seeds are spawned from it
set = { steps = 300 }          # fixed overrides for every run (optional)
reports = true                 # a report.html per run (plotly.js written once, shared)

[grid]                         # key path -> values; the grid is their product
"liquidation.mode" = ["partial", "full"]

[[zip]]                        # optional: keys that vary together (one axis)
"populations.0.params.order_notional" = [20000.0, 80000.0]
"populations.0.params.levels" = [2, 4]
```

Instead of ``[grid]`` and ``[[zip]]``, a ``[design]`` samples ranges of parameters
(Sobol' or Latin hypercube) and yields variance-based sensitivity indices (`sim.design`).

Seeds: ``SeedSequence(master_seed).spawn(seeds)`` gives one seed per seed index, the
same at every grid point (common random numbers: settings are compared on the same
price paths), and nothing depends on which worker runs what, or when.

Output folder (default ``results/sweeps/<sweep-stem>``, layout and output safety in
`sim.results`; everything is written by the client, workers send each run's files
back, so no shared file system is needed): ``sweep.toml`` (a copy),
``runs/<config-hash8>-s<seed>/`` (one result folder per run, as ``cascadelab run``
writes it), ``runs.parquet`` (one row per run: run id, point, seed, status, wall
seconds, error, then the grid values as typed columns, see `value_columns`),
``summary.parquet`` (one row per finished run: its grid values, headline metrics and
headline facts, aggregated with lazy scans over the run folders),
``summary_by_point.parquet`` (per point and metric: runs, mean, standard deviation and
95 % confidence interval over seeds, `summarize_points`), ``sensitivity.parquet`` (with
a design: `sim.design.sensitivity`), and ``report.html``.

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

import contextlib
import copy
import itertools
import logging
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sim.config import Config, ConfigError, describe, read_toml, set_value, validate
from sim.design import Design, sensitivity
from sim.facts import FACTS_SCHEMA, KEYS, headline
from sim.metrics import ci95_half_width
from sim.progress import Progress
from sim.results import (
    PLOTLY_JS,
    RUN_SCHEMA,
    RUNS,
    SENSITIVITY,
    SUMMARY,
    SUMMARY_BY_POINT,
    SWEEP_FILE,
    check_output,
    folder_files,
    read_table,
    remove_leftovers,
    run_folders,
    scan_runs,
    write_files,
)


class SweepFile(BaseModel):
    """A validated sweep file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    base: str
    seeds: Annotated[int, Field(ge=1)] = 1
    master_seed: Annotated[int, Field(ge=0)] = 0
    set: dict[str, Any] = Field(default_factory=dict)
    reports: bool = True
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    zip: list[dict[str, list[Any]]] = Field(default_factory=list)
    design: Design | None = None

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
        if self.design is not None and keys:
            raise ValueError("design: a sweep has a [design] or a [grid] / [[zip]], not both")
        return self

    def axes(self) -> list[str]:
        """Every varied key: the design's, or grid keys then zip keys."""
        if self.design is not None:
            return list(self.design.ranges)
        return list(self.grid) + [k for group in self.zip for k in group]

    def points(self) -> list[dict[str, Any]]:
        """The grid or design points, in a fixed order: key path -> value."""
        if self.design is not None:
            return self.design.points(self.master_seed)
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


def execute_run(config_json: str, name: str, report: bool) -> dict[str, Any]:
    """Worker task: run one config in a private temporary folder and return its files,
    so the client writes them (no file system shared with the client needed); never raises.

    Returns:
        ``{"status": "done" | "failed", "wall_seconds": float, "error": str | None,
        "files": {file name: bytes} | None}``.
    """
    from sim.run import write_run
    from sim.runtime import tune_runtime

    tune_runtime()
    start = time.perf_counter()
    try:
        config = Config.model_validate_json(config_json)
        with tempfile.TemporaryDirectory(prefix="cascadelab-") as tmp:
            write_run(config, Path(tmp), name, progress=False, report=report, plotly_js=f"../../{PLOTLY_JS}")
            files = folder_files(Path(tmp))
    except Exception as err:  # a failing run is recorded, and the sweep goes on
        return _failed(err, time.perf_counter() - start)
    return {"status": "done", "wall_seconds": time.perf_counter() - start, "error": None, "files": files}


def _failed(err: Exception, wall_seconds: float) -> dict[str, Any]:
    """A failed run's status, its error located at the line that raised."""
    last = traceback.extract_tb(err.__traceback__)[-1]
    where = f" ({Path(last.filename).name}:{last.lineno})"
    return {
        "status": "failed",
        "wall_seconds": wall_seconds,
        "error": f"{type(err).__name__}: {err}{where}",
        "files": None,
    }


class ClusterError(ValueError):
    """A Dask scheduler that cannot be reached; the message is one line."""


#: How long the client waits for a scheduler given by ``--address``.
CONNECT_TIMEOUT_SECONDS = 5


def default_sweep_dir(path: Path, root: Path = Path("results/sweeps")) -> Path:
    return root / path.stem


def run_sweep(
    path: Path,
    out: Path | None = None,
    address: str | None = None,
    workers: int | None = None,
    progress: bool | None = None,
) -> Path:
    """Run (or resume) a sweep and write its tables and report; return the folder
    (absolute).

    Every file is written by this process (the client): workers send each finished
    run's files back, so workers need no access to the client's file system.

    Args:
        path: The sweep file.
        out: Output folder (default ``results/sweeps/<stem>``, relative to the client's
            working directory).
        address: A Dask scheduler (``tcp://host:port``); None starts a local cluster.
        workers: Local worker processes (default: all cores); ignored with ``address``.
        progress: Show a progress bar; by default only on a terminal.

    Raises:
        ConfigError: a bad sweep file or config.
        ResultError: ``out`` may not be written (`sim.results.check_output`).
        ClusterError: ``address`` cannot be reached (nothing is written then).
    """
    from sim.report import write_plotly_js, write_sweep_report

    sweep, runs = load_sweep(path)
    out = check_output(out or default_sweep_dir(path), "sweep")
    remove_leftovers(out / RUNS)
    done = {folder.name for folder in run_folders(out)} & {run.run_id for run in runs}
    todo = list({run.run_id: run for run in runs if run.run_id not in done}.values())  # a design may repeat a point
    earlier = _earlier_walls(out)
    status = {run_id: {"status": "done", "wall_seconds": earlier.get(run_id), "error": None} for run_id in done}
    with _client(address, workers, bool(todo)) as client:
        (out / RUNS).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out / SWEEP_FILE)
        if sweep.reports:
            write_plotly_js(out)
        bar = Progress(len(runs), "runs", enabled=progress)
        _draw(bar, status, len(runs))
        try:
            if todo:
                _execute(client, todo, sweep.reports, out, status, lambda: _draw(bar, status, len(runs)))
        finally:
            bar.close()
            write_tables(out, sweep, runs, status)
    if sweep.reports:
        write_sweep_report(out)
    return out


@contextlib.contextmanager
def _client(address: str | None, workers: int | None, needed: bool) -> Iterator[Any]:
    """A Dask client of the scheduler at ``address`` or of a new local cluster; None
    when no run is left to do."""
    from dask.distributed import Client, LocalCluster

    if not needed:
        yield None
        return
    if address is not None:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_SECONDS)
        except Exception as err:  # whatever answered (or did not) is no scheduler we can use
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ClusterError(f"--address {address}: cannot reach a Dask scheduler: {reason}") from None
        with client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _execute(
    client: Any,
    todo: list[PlannedRun],
    reports: bool,
    out: Path,
    status: dict[str, dict[str, Any]],
    drawn: Callable[[], None],
) -> None:
    """Submit ``todo``, write each run's files as they come back, record its status and
    call ``drawn`` (the progress bar)."""
    from dask.distributed import as_completed

    futures = {
        client.submit(execute_run, run.config_json, run.run_id, reports, key=f"run-{run.run_id}", pure=False): run
        for run in todo
    }
    for future in as_completed(futures):
        run = futures[future]
        result = future.result()
        files = result.pop("files")
        if files is not None:
            try:
                write_files(out / RUNS / run.run_id, files)
            except OSError as err:
                result = _failed(err, result["wall_seconds"])
                result.pop("files")
        status[run.run_id] = result
        future.release()
        drawn()


def _earlier_walls(out: Path) -> dict[str, float]:
    """Wall seconds of runs a previous invocation of this sweep recorded."""
    path = out / f"{RUNS}.parquet"
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
    cells = [dict(kv for key in axes for kv in value_columns(key, run.values[key])) for run in runs]
    values = pl.DataFrame(cells, infer_schema_length=None, strict=False)
    frame = pl.concat([frame, values], how="horizontal") if axes else frame
    frame.sort("point", "seed_index").write_parquet(out / f"{RUNS}.parquet")
    summary = summarize(out)
    summary.write_parquet(out / f"{SUMMARY}.parquet")
    by_point = summarize_points(summary, [c for c in frame.columns if c not in RUN_SCHEMA])
    by_point.write_parquet(out / f"{SUMMARY_BY_POINT}.parquet")
    if sweep.design is not None:
        means = by_point.pivot("metric", index="point", values="mean")
        points = pl.DataFrame({"point": range(len(sweep.points()))}, schema={"point": pl.Int64})
        table = sensitivity(sweep.design, sweep.master_seed, points.join(means, on="point", how="left"))
        table.write_parquet(out / f"{SENSITIVITY}.parquet")


def value_columns(key: str, value: Any) -> list[tuple[str, Any]]:
    """A grid value as typed table cells: a scalar is one column ``key``; a list one
    column per element (``key[0]``, ``key[1]``, ...); a table one column per entry
    (``key.name``), recursively."""
    if isinstance(value, list):
        return [cell for i, item in enumerate(value) for cell in value_columns(f"{key}[{i}]", item)]
    if isinstance(value, dict):
        return [cell for name, item in value.items() for cell in value_columns(f"{key}.{name}", item)]
    return [(key, value)]


def summarize_points(summary: pl.DataFrame, axes: list[str]) -> pl.DataFrame:
    """Every metric and headline fact of ``summary`` over the seeds of each point.

    Returns:
        One row per point and metric: ``point``, the grid columns, ``metric``, ``runs``
        (finished runs that measured it), ``mean``, ``std`` and the two-sided 95 %
        Student-t confidence interval of the mean, ``ci95_low`` and ``ci95_high`` (NaN
        with fewer than two runs).
    """
    schema = {"point": pl.Int64, "metric": pl.String, "runs": pl.Int64}
    stats = ["mean", "std", "ci95_low", "ci95_high"]
    metrics = [c for c in summary.columns if c not in RUN_SCHEMA and c not in axes]
    if summary.height == 0 or not metrics:
        return pl.DataFrame(schema={**schema, **dict.fromkeys(stats, pl.Float64)})
    value = pl.col("value").cast(pl.Float64).fill_nan(None)
    long = (
        summary.select("point", *[pl.col(m).cast(pl.Float64) for m in metrics])
        .unpivot(index="point", variable_name="metric")
        .group_by("point", "metric", maintain_order=True)
        .agg(value.count().cast(pl.Int64).alias("runs"), value.mean().alias("mean"), value.std().alias("std"))
    )
    half = ci95_half_width(long["std"].fill_null(np.nan).to_numpy(), long["runs"].to_numpy())
    long = long.with_columns(
        pl.col("mean").fill_null(np.nan),
        pl.col("std").fill_null(np.nan),
        ci95_low=pl.col("mean").fill_null(np.nan) - half,
        ci95_high=pl.col("mean").fill_null(np.nan) + half,
    )
    values = summary.select("point", *axes).unique("point", keep="first")
    return long.join(values, on="point", how="left").select("point", *axes, "metric", "runs", *stats)


def summarize(out: Path) -> pl.DataFrame:
    """Headline metrics and facts of every finished run joined with its grid values
    (lazy scans; a run without ``facts.parquet`` gets nulls)."""
    runs = read_table(out, RUNS)
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

    runs = read_table(out, RUNS).filter(pl.col("status") == "done")
    axes = [c for c in runs.columns if c not in RUN_SCHEMA]
    per_run = [read_facts(out / RUNS / run_id).with_columns(run_id=pl.lit(run_id)) for run_id in runs["run_id"]]
    facts = pl.concat(per_run) if per_run else pl.DataFrame(schema={**FACTS_SCHEMA, "run_id": pl.String})
    measured = pl.col("value").fill_nan(None)
    return (
        facts.join(runs.select("run_id", "point", *axes), on="run_id")
        .group_by("point", *axes, *KEYS)
        .agg(measured.mean().fill_null(float("nan")).alias("value"), measured.count().cast(pl.Int64).alias("runs"))
        .sort("point", *KEYS, nulls_last=True)
    )

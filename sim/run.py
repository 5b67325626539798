"""`cascadelab run`: simulate one config and write its result folder atomically.

A result folder holds ``config.toml`` (the fully resolved config: loading it again
reproduces the run), ``manifest.json``, the tables of `sim.recorder` as parquet, the
run's headline metrics (``metrics.parquet``, one row, see `sim.metrics`), cascades
(``cascades.parquet``, see `sim.cascades`) and stylized facts (``facts.parquet``, see
`sim.facts`), and ``report.html``. `sim.results` owns the layout and the output
safety: everything is written into a hidden temporary folder beside the target and
renamed into place at the end, so an interrupted run leaves nothing; re-running into an
existing run folder replaces it, and any other existing path is refused before simulating.

Determinism: the same config and seed give byte-identical parquet files (the manifest
differs only by its times).
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import polars as pl
import tomli_w

from sim import __version__, interrupt
from sim.cascades import cascade_summary_frame
from sim.config import Config, read_toml
from sim.facts import stylized_facts
from sim.metrics import run_metrics
from sim.model import MarketModel
from sim.progress import Progress
from sim.report import write_run_report
from sim.results import CONFIG, MANIFEST, RECORDED_TABLES, RUN_TABLES, check_output, read_table, staged

DEPENDENCIES = ("mesa", "numpy", "polars", "plotly", "pydantic", "scipy", "statsmodels", "powerlaw")


def default_out_dir(config_path: Path, config: Config, root: Path = Path("results")) -> Path:
    """``results/<config-stem>-<hash8>-s<seed>``."""
    return root / f"{config_path.stem}-{config.hash()[:8]}-s{config.seed}"


def run_to_folder(config: Config, out: Path, progress: bool | None = None, report: bool = True) -> Path:
    """Simulate ``config`` and write its result folder to ``out`` atomically; return ``out``.

    ``out`` is checked (`sim.results.check_output`) before anything is simulated.

    Args:
        config: A validated config.
        out: The result folder to create (an earlier run folder there is replaced).
        progress: Show a progress bar; by default only on a terminal.
        report: Also write ``report.html`` (self-contained: plotly.js embedded).

    Raises:
        ResultError: ``out`` may not be written (see `sim.results`).
    """
    out = check_output(out, "run")
    with staged(out) as tmp:
        write_run(config, tmp, out.name, progress, report)
    return out


def write_run(
    config: Config,
    folder: Path,
    name: str,
    progress: bool | None = False,
    report: bool = True,
) -> None:
    """Simulate ``config`` and write its files into the existing empty ``folder``;
    ``name`` titles the report (other arguments as `run_to_folder`; nothing here is
    atomic)."""
    started = datetime.now(UTC)
    clock = time.perf_counter()
    bar = Progress(config.steps, "steps", enabled=progress)
    model = MarketModel(config)

    def step_done(step: int) -> None:
        interrupt.check()  # an interruption that a library swallowed stops the run here
        bar.update(step)

    model.run(step_done)
    bar.close()
    tables = model.recorder.tables()
    (folder / CONFIG).write_text(tomli_w.dumps(config.model_dump(mode="json", exclude_none=True)))
    for table in RECORDED_TABLES:  # not `name`: that titles the report
        tables[table].write_parquet(folder / f"{table}.parquet")
    cascades = cascade_summary_frame(tables["liquidations"])
    metrics = run_metrics(tables, cascades)
    facts = stylized_facts(tables["market"], cascades, config.step_seconds)
    cascades.write_parquet(folder / "cascades.parquet")
    pl.DataFrame([metrics]).write_parquet(folder / "metrics.parquet")
    facts.write_parquet(folder / "facts.parquet")
    if report:
        write_run_report(folder, tables, config, name, metrics, facts)
    manifest = build_manifest(config, started, time.perf_counter() - clock)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_facts(folder: Path) -> pl.DataFrame:
    """A run folder's stylized facts: its ``facts.parquet``, or, in a folder written
    before runs had one, computed from its market and cascade tables.

    Raises:
        ResultError: a table it needs is missing or unreadable.
        ConfigError: its ``config.toml`` is (when the facts are computed).
    """
    if (folder / "facts.parquet").is_file():
        return read_table(folder, "facts")
    if (folder / "cascades.parquet").is_file():
        cascades = read_table(folder, "cascades")
    else:
        cascades = cascade_summary_frame(read_table(folder, "liquidations"))
    step_seconds = read_toml(folder / CONFIG).get("step_seconds", 1.0)  # older configs lack it
    return stylized_facts(read_table(folder, "market"), cascades, step_seconds)


def build_manifest(config: Config, started: datetime, wall_seconds: float) -> dict:
    """Everything needed to reproduce and identify a run."""
    commit, dirty = git_state()
    return {
        "cascadelab": __version__,
        "config_hash": config.hash(),
        "seed": config.seed,
        "steps": config.steps,
        "python": platform.python_version(),
        "dependencies": {name: _version(name) for name in DEPENDENCIES},
        "git_commit": commit,
        "git_dirty": dirty,
        "started_utc": started.isoformat(timespec="seconds"),
        "wall_seconds": round(wall_seconds, 3),
        "tables": [f"{name}.parquet" for name in RUN_TABLES],
    }


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_state() -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the checkout cascadelab runs from, or ``(None, None)``."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, bool(status.strip())

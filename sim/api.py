"""The Python API for notebooks: simulate a config, load result folders, as polars frames.

```python
from sim import load, simulate

crash = simulate("configs/flash_crash.toml", seed=8, impact__venue_share=0.01)
crash.metrics["liquidated_notional"]        # USD
crash.liquidations.group_by("cascade_id").len()
crash.report()                              # writes report.html, returns its path
sweep = load("results/sweeps/leverage_vs_depth")
sweep.summary                               # one row per finished run
```

Overrides are keyword arguments with ``__`` for the dots of a key path
(``populations__5__count=150`` is ``populations.5.count``) or a dict of key paths; values
are Python values, checked like the config file's. A run without ``out`` lives in a
temporary folder removed with its `Run` (`Run.save` keeps it); with ``out`` it is a
result folder like ``cascadelab run`` writes (report written on demand by `Run.report`).
The same config and seed give the same tables as the command line, byte for byte.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl

from sim.config import Config, load_config, read_toml, set_value, validate
from sim.results import RECORDED_TABLES, RUNS, SUMMARY, ResultError, is_run_folder, is_sweep_folder, read_table


class _Table:
    """A `Run` attribute reading the run folder's ``<name>.parquet`` on first use."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, run: Run, owner: type) -> pl.DataFrame:
        return run.table(self.name)


class Run:
    """A run's result folder: its config, manifest, headline metrics and tables (polars
    frames, read on first use). Units as in the README's result-folder table."""

    def __init__(self, folder: Path, keep: tempfile.TemporaryDirectory | None = None) -> None:
        if not is_run_folder(folder):
            raise ResultError(f"{folder}: not a run folder (no manifest.json)")
        self.folder = folder
        self._keep = keep  # the temporary folder lives as long as this object
        self._tables: dict[str, pl.DataFrame] = {}

    market = _Table()
    trades = _Table()
    liquidations = _Table()
    ledger = _Table()
    accounts = _Table()
    unresolved = _Table()
    cascades = _Table()

    @cached_property
    def facts(self) -> pl.DataFrame:
        """The stylized facts (``facts.parquet``, or computed from the tables in folders
        written before runs had one; `sim.run.read_facts`)."""
        from sim.run import read_facts

        return read_facts(self.folder)

    def __repr__(self) -> str:
        return f"Run({str(self.folder)!r})"

    @property
    def name(self) -> str:
        return self.folder.name

    @cached_property
    def config(self) -> Config:
        """The fully resolved config the run used."""
        return load_config(self.folder / "config.toml")

    @cached_property
    def manifest(self) -> dict:
        return json.loads((self.folder / "manifest.json").read_text())

    @cached_property
    def metrics(self) -> dict[str, float]:
        """The headline metrics (`sim.metrics.run_metrics`)."""
        return read_table(self.folder, "metrics").row(0, named=True)

    def table(self, name: str) -> pl.DataFrame:
        """``<folder>/<name>.parquet`` (cached); a `ResultError` if missing or unreadable."""
        if name not in self._tables:
            self._tables[name] = read_table(self.folder, name)
        return self._tables[name]

    def report(self) -> Path:
        """Write the interactive report, ``report.html`` in the run folder, and return its path."""
        from sim.report import write_run_report

        tables = {name: self.table(name) for name in RECORDED_TABLES}
        return write_run_report(self.folder, tables, self.config, self.name, self.metrics, self.facts)

    def save(self, folder: Path | str) -> Run:
        """Copy the run folder to ``folder`` (which must not exist) and return that run."""
        folder = Path(folder)
        if folder.exists():
            raise ResultError(f"{folder}: exists already")
        shutil.copytree(self.folder, folder)
        return Run(folder)


class Sweep:
    """A sweep folder: ``runs`` (every planned run), ``summary`` (one row per finished
    run: grid values, headline metrics and facts) and each finished `Run`."""

    def __init__(self, folder: Path) -> None:
        if not is_sweep_folder(folder):
            raise ResultError(f"{folder}: not a sweep folder (no sweep.toml)")
        self.folder = folder

    def __repr__(self) -> str:
        return f"Sweep({str(self.folder)!r})"

    @cached_property
    def runs(self) -> pl.DataFrame:
        return read_table(self.folder, RUNS)

    @cached_property
    def summary(self) -> pl.DataFrame:
        return read_table(self.folder, SUMMARY)

    def run(self, run_id: str) -> Run:
        """The finished run ``run_id`` (a value of ``runs["run_id"]``)."""
        return Run(self.folder / RUNS / run_id)

    def facts(self) -> pl.DataFrame:
        """Every stylized fact averaged over the seeds of each grid point (`sim.sweep.sweep_facts`)."""
        from sim.sweep import sweep_facts

        return sweep_facts(self.folder)


def load(folder: Path | str) -> Run | Sweep:
    """A run folder as a `Run`, a sweep folder as a `Sweep`; a `ResultError` otherwise."""
    folder = Path(folder)
    if not folder.exists():
        raise ResultError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise ResultError(f"{folder}: not a folder")
    if is_sweep_folder(folder):
        return Sweep(folder)
    if is_run_folder(folder):
        return Run(folder)
    raise ResultError(f"{folder}: not a run folder (no manifest.json) or a sweep folder (no sweep.toml)")


def simulate(
    config: Config | Path | str,
    seed: int | None = None,
    out: Path | str | None = None,
    overrides: dict[str, Any] | None = None,
    **settings: Any,
) -> Run:
    """Simulate a config (a `Config` or a TOML path) and return its `Run`.

    Args:
        config: The experiment.
        seed: Replaces the config's seed.
        out: The result folder to write (as ``cascadelab run --out``); by default a
            temporary folder that lives as long as the returned `Run`.
        overrides: Key path -> value, e.g. ``{"impact.venue_share": 0.01}``.
        **settings: More overrides, ``__`` standing for the dots of a key path.

    Raises:
        ConfigError: a bad config, key path or value (one line naming them).
    """
    from sim.run import run_to_folder

    resolved = _resolve(config, seed, {**(overrides or {}), **{k.replace("__", "."): v for k, v in settings.items()}})
    if out is not None:
        return Run(run_to_folder(resolved, Path(out), report=False))
    keep = tempfile.TemporaryDirectory(prefix="cascadelab-")
    return Run(run_to_folder(resolved, Path(keep.name) / f"run-s{resolved.seed}", report=False), keep)


def _resolve(config: Config | Path | str, seed: int | None, overrides: dict[str, Any]) -> Config:
    if isinstance(config, Config):
        path, data = Path.cwd() / "<Config>", config.model_dump(mode="json", exclude_none=True)
    else:
        path = Path(config)
        data = read_toml(path)
    for key, value in overrides.items():
        set_value(data, key, value, f"{path}: {key}", path)
    if seed is not None:
        data["seed"] = seed
    return validate(data, path)

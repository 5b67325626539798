"""The layout of result folders, and the only code that creates, replaces or reads them.

A **run folder** (``cascadelab run``) holds ``config.toml``, ``manifest.json``, the
tables (``<name>.parquet``, `RUN_TABLES`) and optionally ``report.html``. A **sweep
folder** (``cascadelab sweep``) holds ``sweep.toml``, ``runs.parquet``,
``summary.parquet``, ``report.html``, ``plotly.min.js`` and ``runs/<run-id>/``, one run
folder per finished run.

Output safety (what ``--out`` may name):

- a path that does not exist, or an empty folder: written;
- an existing result folder of the same kind: a run folder is replaced (only once the
  new one is complete), a sweep folder is resumed;
- anything else (a folder holding other files, a folder of the other kind, a file):
  refused with `ResultError` before anything is simulated, so no user file is ever
  replaced or deleted.

Atomic writes: a run folder is written into a hidden ``.<name>.tmp-<pid>`` beside its
target and renamed into place when complete; an interrupted write removes it, and one
left by a killed process (its pid no longer running) is removed the next time a result
is written beside it. Hidden entries are never read as results (`run_folders`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import polars as pl

from sim import interrupt

CONFIG = "config.toml"
MANIFEST = "manifest.json"
REPORT = "report.html"
PLOTLY_JS = "plotly.min.js"
#: The simulation's tables (`sim.recorder`) and the analyses derived from them.
RECORDED_TABLES = ("market", "trades", "liquidations", "ledger", "accounts", "unresolved")
RUN_TABLES = (*RECORDED_TABLES, "metrics", "cascades", "facts")

SWEEP_FILE = "sweep.toml"
RUNS = "runs"  # the sweep's folder of run folders, and its table runs.parquet
SUMMARY = "summary"
SUMMARY_BY_POINT = "summary_by_point"
SENSITIVITY = "sensitivity"
#: Columns of ``runs.parquet`` besides the grid values.
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

_LEFTOVER = re.compile(r"^\..+\.(tmp|old)-(\d+)$")


class ResultError(ValueError):
    """A result folder that is missing, unreadable or not writable, or an output path
    that is not allowed; the message is one line naming the path."""


def is_run_folder(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def is_sweep_folder(path: Path) -> bool:
    return (path / SWEEP_FILE).is_file()


def check_output(out: Path, kind: str) -> Path:
    """Refuse an output path that is not allowed (module docstring), check that it can
    be written (creating nothing), remove leftovers of interrupted writes beside it and
    return it as an absolute path.

    Args:
        out: The ``--out`` folder.
        kind: ``"run"`` or ``"sweep"``.

    Raises:
        ResultError: a file, a non-empty folder that is not a ``kind`` result folder, or
            a parent that cannot be created or written.
    """
    out = Path(out).absolute()
    mine, other = (is_run_folder, is_sweep_folder) if kind == "run" else (is_sweep_folder, is_run_folder)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise ResultError(f"{out}: exists and is not a folder; give --out a new or result folder")
        if other(out) or not (mine(out) or not any(out.iterdir())):
            raise ResultError(
                f"{out}: exists and is not a cascadelab {kind} folder; refusing to write into it "
                f"(give --out a new folder)"
            )
    existing = next(folder for folder in out.parents if folder.exists())
    if not existing.is_dir():
        raise ResultError(f"{out}: cannot create: {existing} is not a folder")
    _probe(out if out.is_dir() else existing)
    remove_leftovers(out.parent)
    return out


def _probe(folder: Path) -> None:
    """Create and remove a hidden folder in ``folder``, or raise `ResultError`."""
    probe = folder / f".cascadelab.tmp-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as err:
        raise ResultError(f"{folder}: not writable: {err.strerror}") from None


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove the hidden ``.<name>.tmp-<pid>`` / ``.<name>.old-<pid>`` folders in
    ``folder`` whose process is no longer running; return them."""
    removed = []
    for entry in folder.iterdir() if folder.is_dir() else ():
        match = _LEFTOVER.match(entry.name)
        if match and entry.is_dir() and not _running(int(match.group(2))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def staged(out: Path) -> Iterator[Path]:
    """Yield a hidden empty folder beside ``out``; when the block ends normally it
    becomes ``out`` (replacing an earlier result there only then), otherwise (an
    exception, Ctrl-C, SIGTERM, even one swallowed on the way: `sim.interrupt`) it is
    removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        interrupt.check()  # an interruption that a library swallowed
        _replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace(tmp: Path, out: Path) -> None:
    """Move ``tmp`` to ``out``; an existing ``out`` is removed only once ``tmp`` is ready."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def folder_files(folder: Path) -> dict[str, bytes]:
    """Every file of a (flat) run folder: name -> content, to ship it to another machine."""
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def write_files(out: Path, files: Mapping[str, bytes]) -> Path:
    """Write a run folder shipped by `folder_files` to ``out``, atomically (`staged`)."""
    with staged(out) as tmp:
        for name, content in files.items():
            if Path(name).name != name or name.startswith("."):
                raise ResultError(f"{out}: refusing a file named {name!r}")
            (tmp / name).write_bytes(content)
    return out


def read_table(folder: Path, name: str) -> pl.DataFrame:
    """``<folder>/<name>.parquet``, or a `ResultError`."""
    path = folder / f"{name}.parquet"
    if not path.is_file():
        raise ResultError(f"{path}: no such table")
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise ResultError(f"{path}: unreadable: {str(err).splitlines()[0]}") from None


def run_folders(sweep: Path) -> list[Path]:
    """The run folders of a sweep folder, sorted (hidden leftovers never count)."""
    runs = sweep / RUNS
    if not runs.is_dir():
        return []
    return sorted(p for p in runs.iterdir() if not p.name.startswith(".") and p.is_dir())


def scan_runs(sweep: Path, table: str) -> pl.LazyFrame | None:
    """A lazy scan of one table over all run folders of a sweep, with each row's
    ``run_id``; None when no run has the table."""
    paths = [folder / f"{table}.parquet" for folder in run_folders(sweep)]
    paths = [path for path in paths if path.is_file()]
    if not paths:
        return None
    return (
        pl.scan_parquet(paths, include_file_paths="path")
        .with_columns(pl.col("path").str.split("/").list.get(-2).alias("run_id"))
        .drop("path")
    )

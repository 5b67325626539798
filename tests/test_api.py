"""The Python API (`from sim import simulate, load`) and the notebook in docs/, executed."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest

from sim import load, simulate
from sim.api import Run, Sweep
from sim.config import ConfigError
from sim.results import ResultError
from sim.sweep import run_sweep
from tests.conftest import CRASH_SETTINGS, ROOT

CRASH = ROOT / "configs" / "flash_crash.toml"


def test_simulate_gives_the_command_lines_tables(crash_run):
    """Same config, seed and overrides as ``cascadelab run --set ...``: identical tables;
    the temporary folder goes with the result."""
    overrides = dict(setting.split("=") for setting in CRASH_SETTINGS)
    run = simulate(CRASH, overrides={key: int(value) for key, value in overrides.items()})
    assert isinstance(run, Run) and run.config.seed == 7
    for name in ("market", "liquidations", "accounts", "ledger", "cascades", "facts"):
        assert (run.folder / f"{name}.parquet").read_bytes() == (crash_run / f"{name}.parquet").read_bytes(), name
    assert isinstance(run.liquidations, pl.DataFrame) and run.liquidations.height > 0
    assert run.metrics == pytest.approx(pl.read_parquet(crash_run / "metrics.parquet").row(0, named=True))
    report = run.report()
    assert report == run.folder / "report.html" and "cascade-tree" in report.read_text()
    folder = run.folder
    del run
    assert not folder.exists()


def test_keyword_overrides_seed_out_and_save(tmp_path):
    run = simulate(CRASH, seed=3, out=tmp_path / "r", steps=20, impact__venue_share=0.01)
    assert run.folder == tmp_path / "r" and (run.folder / "manifest.json").is_file()
    assert (run.config.seed, run.config.steps, run.config.impact.venue_share) == (3, 20, 0.01)
    assert run.market["step"].max() == 20
    copy = run.save(tmp_path / "kept")
    assert load(copy.folder).market.equals(run.market)
    with pytest.raises(ResultError, match="exists already"):
        run.save(tmp_path / "kept")
    again = simulate(run.config, steps=10)  # a Config works as well as a path
    assert (again.config.seed, again.config.steps) == (3, 10)


def test_bad_overrides_and_folders_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"steps") as err:
        simulate(CRASH, steps=-1)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="no list item 9"):
        simulate(CRASH, populations__9__count=1)
    with pytest.raises(ResultError, match="no such folder"):
        load(tmp_path / "nothing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ResultError, match="not a run folder"):
        load(tmp_path / "plain")


def test_load_reads_a_sweep(tmp_path):
    sweep_file = tmp_path / "s.toml"
    sweep_file.write_text(
        f'base = "{ROOT / "configs" / "replay.toml"}"\nseeds = 2\nreports = false\nset = {{ steps = 20 }}\n'
        '[grid]\n"liquidation.mode" = ["partial", "full"]\n'
    )
    out = run_sweep(sweep_file, tmp_path / "sweep", workers=1, progress=False)
    sweep = load(out)
    assert isinstance(sweep, Sweep) and sweep.runs.height == 4 and sweep.summary.height == 4
    run = sweep.run(sweep.runs["run_id"][0])
    assert run.market.height > 0 and run.config.liquidation.mode == "partial"
    assert set(sweep.facts()["liquidation.mode"]) == {"partial", "full"}


def test_notebook_in_docs_runs_top_to_bottom():
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "notebook.py")], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = result.stdout.split("report: ", 1)[1].split("\n", 1)[0]
    assert report.endswith("report.html")
    assert "liquidated notional without the venue's impact:" in result.stdout

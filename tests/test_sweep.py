"""Sweeps through a real Dask LocalCluster: tables, resume, failures, seeds, CLI errors."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from dask.distributed import LocalCluster

from sim.config import ConfigError
from sim.facts import headline
from sim.sweep import load_sweep, run_sweep, sweep_facts
from tests.browser import render

ROOT = Path(__file__).resolve().parent.parent
FLASH = ROOT / "configs" / "flash_crash.toml"
SMALL = f"""
base = "{FLASH}"
seeds = 2
master_seed = 5
set = {{ steps = 40, step_seconds = 60, "shocks.0.step" = 20, "populations.5.count" = 40, "populations.2.count" = 5 }}
[grid]
"liquidation.mode" = ["partial", "full"]
[[zip]]
"populations.0.params.order_notional" = [20000.0, 80000.0]
"populations.0.params.levels" = [2, 4]
"""


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    ) as local:
        yield local


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_plan_expands_grid_zip_and_seeds(tmp_path):
    sweep, runs = load_sweep(write(tmp_path, SMALL))
    assert len(runs) == 2 * 2 * 2
    assert sweep.axes() == ["liquidation.mode", "populations.0.params.order_notional", "populations.0.params.levels"]
    assert {
        (r.values["populations.0.params.order_notional"], r.values["populations.0.params.levels"]) for r in runs
    } == {(20000.0, 2), (80000.0, 4)}
    expected = [int(c.generate_state(1, dtype=np.uint32)[0]) for c in np.random.SeedSequence(5).spawn(2)]
    assert sweep.run_seeds() == expected
    assert sorted({r.seed for r in runs}) == sorted(expected)  # the same seeds at every grid point
    assert len({r.run_id for r in runs}) == 8


def test_sweep_on_a_cluster_writes_tables_and_resumes(tmp_path, cluster):
    path = write(tmp_path, SMALL)
    out = run_sweep(path, tmp_path / "out", address=cluster.scheduler_address, progress=False)
    runs = pl.read_parquet(out / "runs.parquet")
    assert runs.height == 8 and runs["status"].to_list() == ["done"] * 8
    assert {"run_id", "seed", "status", "wall_seconds", "error", "liquidation.mode"} <= set(runs.columns)
    summary = pl.read_parquet(out / "summary.parquet")
    assert summary.height == 8
    for metric in (
        "max_drawdown",
        "liquidated_notional",
        "n_liquidations",
        "largest_cascade_accounts",
        "largest_cascade_depth",
        "insurance_fund_low",
        "bad_debt",
        "adl_count",
    ):
        assert metric in summary.columns
    assert (out / "report.html").is_file() and (out / "plotly.min.js").is_file()
    # each run's headline facts, as its facts.parquet has them (60 s steps: 40 one-minute returns)
    run_id = summary["run_id"][1]
    first = headline(pl.read_parquet(out / "runs" / run_id / "facts.parquet"))
    columns = first["column"].to_list()
    assert columns == summary.columns[-len(columns) :]
    assert {"kurtosis_mark_60s_BTC", "acf_abs_last_60s_lag10_BTC", "cascade_powerlaw_alpha"} <= set(columns)
    stored = pl.DataFrame([first["value"].to_list()], schema=columns, orient="row")
    assert summary.filter(pl.col("run_id") == run_id).select(columns).equals(stored)
    assert summary["kurtosis_mark_60s_BTC"].is_finite().all()
    # cascadelab facts of a sweep: each grid point's mean over its seeds
    means = sweep_facts(out).filter(
        pl.col("fact") == "kurtosis", pl.col("series") == "mark", pl.col("horizon_seconds") == 60
    )
    per_point = summary.group_by("point").agg(pl.col("kurtosis_mark_60s_BTC").mean()).sort("point")
    assert means["point"].to_list() == per_point["point"].to_list() and means["runs"].to_list() == [2] * 4
    assert means["value"].to_list() == pytest.approx(per_point["kurtosis_mark_60s_BTC"].to_list())
    assert "liquidation.mode" in means.columns
    for run_id in runs["run_id"]:
        assert (out / "runs" / run_id / "manifest.json").is_file()
        assert "<script src=" not in (out / "runs" / run_id / "report.html").read_text()  # renders when copied out
    # resume: remove one finished run, re-run: only that one is simulated again
    victim = out / "runs" / runs["run_id"][3]
    kept = out / "runs" / runs["run_id"][0]
    stamp = (kept / "manifest.json").stat().st_mtime_ns
    for file in victim.iterdir():
        file.unlink()
    victim.rmdir()
    run_sweep(path, out, address=cluster.scheduler_address, progress=False)
    assert (victim / "manifest.json").is_file()
    assert (kept / "manifest.json").stat().st_mtime_ns == stamp
    again = pl.read_parquet(out / "summary.parquet")
    assert again.drop("wall_seconds").equals(summary.drop("wall_seconds"))  # same seeds, same results


def test_a_failing_run_is_recorded_and_retried(tmp_path, cluster):
    good = tmp_path / "good.csv"
    good.write_text("step,BTC\n" + "".join(f"{i},{50000 + i}\n" for i in range(41)))
    text = f"""
base = "{FLASH}"
set = {{ steps = 40, "populations.4.count" = 10, "instruments.BTC.price.process" = "replay" }}
[grid]
"instruments.BTC.price.file" = ["{good}", "{tmp_path / "later.csv"}"]
"""
    path = write(tmp_path, text)
    out = run_sweep(path, tmp_path / "out", address=cluster.scheduler_address, progress=False)
    runs = pl.read_parquet(out / "runs.parquet").sort("point")
    assert runs["status"].to_list() == ["done", "failed"]
    assert "PriceDataError" in runs["error"][1] and "later.csv: no such file" in runs["error"][1]
    assert pl.read_parquet(out / "summary.parquet").height == 1
    (tmp_path / "later.csv").write_text(good.read_text())
    run_sweep(path, out, address=cluster.scheduler_address, progress=False)
    assert pl.read_parquet(out / "runs.parquet")["status"].to_list() == ["done", "done"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f'base = "{FLASH}"\nseedz = 2', "seedz: Extra inputs are not permitted"),
        (
            f'base = "{FLASH}"\n[grid]\n"liquidation.mode" = ["partial", "half"]',
            "grid point {'liquidation.mode': 'half'}: .*liquidation.mode: Input should be 'partial' or 'full'",
        ),
        (f'base = "{FLASH}"\n[[zip]]\na = [1, 2]\nb = [1]', "zip\\[0\\]: its lists must have the same"),
        ('base = "nowhere.toml"', "nowhere.toml: no such config file"),
    ],
)
def test_bad_sweep_files(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep(write(tmp_path, text))


def test_cli_sweep_on_local_cores_and_errors(tmp_path):
    path = write(tmp_path, SMALL.replace('"liquidation.mode" = ["partial", "full"]', '"liquidation.mode" = ["full"]'))
    result = subprocess.run(
        [sys.executable, "-m", "sim.cli", "sweep", str(path), "--workers", "2", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert pl.read_parquet(tmp_path / "o" / "runs.parquet")["status"].to_list() == ["done"] * 4
    failing = write(
        tmp_path,
        f'base = "{FLASH}"\nseeds = 2\n'
        'set = { steps = 20, "instruments.BTC.price.process" = "replay", "instruments.BTC.price.file" = "no.csv" }\n',
        "failing.toml",
    )
    result = subprocess.run(
        [sys.executable, "-m", "sim.cli", "sweep", str(failing), "--workers", "1", "--out", str(tmp_path / "f")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1 and "2 run(s) failed" in result.stderr and "Traceback" not in result.stderr
    bad = write(tmp_path, "base = 3", "bad.toml")
    result = subprocess.run([sys.executable, "-m", "sim.cli", "sweep", str(bad)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("cascadelab: error: ") and "base: Input should be a valid string" in result.stderr
    report = subprocess.run(
        [sys.executable, "-m", "sim.cli", "report", str(tmp_path / "o"), "--metric", "nope"],
        capture_output=True,
        text=True,
    )
    assert report.returncode == 2 and "unknown metric 'nope'" in report.stderr
    assert "'kurtosis_mark_60s_BTC'" in report.stderr  # headline facts are metrics too


def test_sweep_report_renders_in_headless_chromium(tmp_path, cluster):
    out = run_sweep(write(tmp_path, SMALL), tmp_path / "out", address=cluster.scheduler_address, progress=False)
    shot = tmp_path / "sweep_report.png"
    page = render(out / "report.html", shot, tmp_path / "profile")
    assert page.plots == 3 and page.drawn_svgs >= 3 and page.traces > 5
    assert page.console == [], page.console
    assert shot.stat().st_size > 30_000

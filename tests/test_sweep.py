"""Sweeps through a real Dask LocalCluster: tables, resume, failures, seeds, CLI errors."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.stats
from dask.distributed import LocalCluster

from sim.cli import main
from sim.config import ConfigError
from sim.facts import headline
from sim.report import _axis_label, write_sweep_report
from sim.results import ResultError, run_folders
from sim.sweep import load_sweep, run_sweep, sweep_facts, write_tables
from tests.browser import render

ROOT = Path(__file__).resolve().parent.parent
FLASH = ROOT / "configs" / "flash_crash.toml"
#: The flash crash in 40 one-minute steps with fewer agents (a few seconds a run).
SHORT_FLASH = f"""
base = "{FLASH}"
set = {{ steps = 40, step_seconds = 60, "shocks.0.step" = 20, "populations.5.count" = 40, "populations.2.count" = 5 }}
"""
SMALL = (
    SHORT_FLASH
    + """seeds = 2
master_seed = 5
[grid]
"liquidation.mode" = ["partial", "full"]
[[zip]]
"populations.0.params.order_notional" = [20000.0, 80000.0]
"populations.0.params.levels" = [2, 4]
"""
)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    ) as local:
        yield local


def cascadelab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


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
    for leftover in (".dead.tmp-999999999", f".alive.tmp-{os.getpid()}"):  # a half-written run: never read
        (out / "runs" / leftover).mkdir()
        (out / "runs" / leftover / "metrics.parquet").write_text("half-written")
    run_sweep(path, out, address=cluster.scheduler_address, progress=False)
    assert not (out / "runs" / ".dead.tmp-999999999").exists()
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
    report = (out / "report.html").read_text()
    assert "<h2>Failed runs</h2>" in report and "later.csv: no such file" in report.split("<h2>Failed runs</h2>")[1]
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
        (f'base = "{FLASH}"\nseeds = true', r"seeds: Input should be a valid integer \(got True\)"),
        (f'base = "{FLASH}"\nseeds = "2"', r"seeds: Input should be a valid integer \(got '2'\)"),
        (f'base = "{FLASH}"\nreports = "yes"', r"reports: Input should be a valid boolean \(got 'yes'\)"),
        (f'base = "{FLASH}"\n[grid]\n"steps" = [10, true]', r"grid point \{'steps': True\}: .*steps: .*valid integer"),
    ],
)
def test_bad_sweep_files(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep(write(tmp_path, text))


# the failing sweep's own LocalCluster finds the module cluster's dashboard port taken
@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")
def test_cli_sweep_on_local_cores_and_errors(tmp_path, capsys):
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
    # the rest in this process: the command's own main(), without 3 s of start-up each
    assert main(["sweep", str(failing), "--workers", "1", "--out", str(tmp_path / "f")]) == 1
    err = capsys.readouterr().err
    assert "2 run(s) failed" in err and "Traceback" not in err
    bad = write(tmp_path, "base = 3", "bad.toml")
    assert main(["sweep", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cascadelab: error: ") and "base: Input should be a valid string" in err
    assert main(["report", str(tmp_path / "o"), "--metric", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown metric 'nope'" in err
    assert "'kurtosis_mark_60s_BTC'" in err  # headline facts are metrics too
    key = "populations.0.params.levels"
    assert main(["report", str(tmp_path / "o"), "--x", key, "--y", key]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"cascadelab: error: {tmp_path / 'o'}: --x and --y must be different grid keys (got '{key}' twice)"
    )


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory, cluster) -> Path:
    """The SMALL sweep, run once for the tests that only read it."""
    tmp = tmp_path_factory.mktemp("small")
    return run_sweep(write(tmp, SMALL), tmp / "out", address=cluster.scheduler_address, progress=False)


def test_sweep_report_renders_in_headless_chromium(tmp_path, small_sweep):
    out = small_sweep
    shot = tmp_path / "sweep_report.png"
    page = render(out / "report.html", shot, tmp_path / "profile")
    assert page.plots == 3 and page.drawn_svgs >= 3 and page.traces > 5
    assert page.console == [], page.console
    assert shot.stat().st_size > 30_000
    for run in run_folders(out):  # each run's report embeds plotly.js: a run folder copied out renders
        text = (run / "report.html").read_text()
        assert "<script src=" not in text and "cascade-tree" in text


@pytest.fixture
def dask_pair(tmp_path):
    """A real ``dask scheduler`` and ``dask worker`` on loopback, the worker in its own
    working directory (as on another machine); yields (address, worker directory)."""
    bin_dir = Path(sys.executable).parent
    info = tmp_path / "scheduler.json"
    worker_dir = tmp_path / "worker-home"
    worker_dir.mkdir()
    common = ["--scheduler-file", str(info), "--no-dashboard"]
    scheduler = subprocess.Popen(
        [bin_dir / "dask", "scheduler", "--host", "127.0.0.1", "--port", "0", *common],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not info.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(info.read_text())["address"]
        worker = subprocess.Popen(
            [bin_dir / "dask", "worker", "--nworkers", "1", "--nthreads", "1", *common],
            cwd=worker_dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        yield address, worker_dir
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)


def test_sweep_on_a_remote_worker_writes_everything_on_the_client(tmp_path, dask_pair):
    address, worker_dir = dask_pair
    client_dir = tmp_path / "client-home"
    client_dir.mkdir()
    text = SMALL.replace("seeds = 2", "seeds = 1").replace('["partial", "full"]', '["full"]')
    write(client_dir, text, "remote.toml")
    result = cascadelab("sweep", "remote.toml", "--address", address, cwd=client_dir)
    assert result.returncode == 0, result.stderr
    out = client_dir / "results" / "sweeps" / "remote"
    assert result.stdout.strip() == str(out)  # resolved on the client, printed absolute
    runs = pl.read_parquet(out / "runs.parquet")
    assert runs["status"].to_list() == ["done", "done"]
    assert pl.read_parquet(out / "summary.parquet").height == 2
    for run_id in runs["run_id"]:
        names = {p.name for p in (out / "runs" / run_id).iterdir()}
        assert {"manifest.json", "config.toml", "metrics.parquet", "report.html"} <= names
    assert list(worker_dir.iterdir()) == []  # the worker wrote nothing where it runs


def test_unreachable_scheduler_is_one_line_within_seconds_and_leaves_nothing(tmp_path):
    write(tmp_path, SMALL, "s.toml")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # nobody listens once the socket is closed
    for address, message in (
        (f"tcp://127.0.0.1:{closed}", f"--address tcp://127.0.0.1:{closed}: cannot reach a Dask scheduler"),
        ("banana", "--address banana: cannot reach a Dask scheduler"),
    ):
        start = time.perf_counter()
        result = cascadelab("sweep", "s.toml", "--address", address, cwd=tmp_path)
        assert time.perf_counter() - start < 20
        assert result.returncode == 2 and "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"cascadelab: error: {message}"), result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]


def test_sweep_out_refuses_user_files_and_run_folders(tmp_path):
    path = write(tmp_path, SMALL)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.csv").write_text("keep")
    (tmp_path / "a_run").mkdir()
    (tmp_path / "a_run" / "manifest.json").write_text("{}")
    (tmp_path / "afile").write_text("keep")
    for out, message in (
        ("mine", "not a cascadelab sweep"),
        ("a_run", "not a cascadelab sweep"),
        ("afile", "not a folder"),
    ):
        with pytest.raises(ResultError, match=message):
            run_sweep(path, tmp_path / out, progress=False)
    assert (tmp_path / "mine" / "precious.csv").read_text() == "keep" and (tmp_path / "afile").read_text() == "keep"
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["precious.csv"]


def test_list_grid_values_are_typed_columns(tmp_path):
    text = f"""
base = "{FLASH}"
seeds = 2
[grid]
"populations.5.leverage.lognormal" = [[16.0, 0.5], [4.0, 0.5]]
"populations.5.collateral" = [{{ USD = {{ uniform = [1000.0, 2000.0] }} }}]
"""
    sweep, runs = load_sweep(write(tmp_path, text))
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    write_tables(out, sweep, runs, {})  # nothing ran yet: every run pending
    table = pl.read_parquet(out / "runs.parquet")
    assert table.schema["populations.5.leverage.lognormal[0]"] == pl.Float64
    assert table.schema["populations.5.collateral.USD.uniform[1]"] == pl.Float64
    assert table.sort("populations.5.leverage.lognormal[0]")["populations.5.leverage.lognormal[0]"].to_list() == [
        4.0,
        4.0,
        16.0,
        16.0,
    ]  # numeric order, not '[16.0, 0.5]' < '[4.0, 0.5]'
    assert table["status"].to_list() == ["pending"] * 4


def test_summary_by_point_has_mean_and_95_ci_over_seeds(small_sweep):
    out = small_sweep
    summary = pl.read_parquet(out / "summary.parquet")
    by_point = pl.read_parquet(out / "summary_by_point.parquet")
    assert {"point", "metric", "runs", "mean", "std", "ci95_low", "ci95_high", "liquidation.mode"} <= set(
        by_point.columns
    )
    row = by_point.filter(pl.col("point") == 1, pl.col("metric") == "max_drawdown").row(0, named=True)
    values = summary.filter(pl.col("point") == 1)["max_drawdown"].to_numpy()
    half = scipy.stats.t.ppf(0.975, 1) * values.std(ddof=1) / np.sqrt(2)
    assert row["runs"] == 2 and row["mean"] == pytest.approx(values.mean())
    assert (row["ci95_low"], row["ci95_high"]) == pytest.approx((values.mean() - half, values.mean() + half))
    html = (out / "report.html").read_text()
    assert (
        "95 % confidence interval" in html
        and "market_maker order notional" in html
        and "populations.0.params" not in html.split("<h2>")[2]
    )


SOBOL = (
    SHORT_FLASH
    + """seeds = 1
master_seed = 3
[design]
method = "sobol"
samples = 2
[design.ranges]
"impact.venue_share" = [0.05, 0.4]
"populations.0.params.levels" = [1, 4]
"""
)


def test_sobol_design_gives_sensitivity_indices(tmp_path, cluster):
    _, runs = load_sweep(write(tmp_path, SOBOL))
    assert len(runs) == 2 * (2 + 2)  # Saltelli without second order: N (D + 2)
    assert all(isinstance(r.values["populations.0.params.levels"], int) for r in runs)
    assert all(0.05 <= r.values["impact.venue_share"] <= 0.4 for r in runs)
    out = run_sweep(write(tmp_path, SOBOL), tmp_path / "out", address=cluster.scheduler_address, progress=False)
    indices = pl.read_parquet(out / "sensitivity.parquet")
    assert set(indices.columns) == {"metric", "parameter", "method", "S1", "S1_conf", "ST", "ST_conf"}
    drawdown = indices.filter(pl.col("metric") == "max_drawdown")
    assert drawdown["parameter"].to_list() == ["impact.venue_share", "populations.0.params.levels"]
    assert drawdown["ST"].is_finite().all() and drawdown["S1"].is_finite().all()
    assert "Which parameters matter" in (out / "report.html").read_text()
    (out / "plotly.min.js").unlink()  # as after a sweep with reports = false
    write_sweep_report(out, "liquidated_notional")
    assert (out / "plotly.min.js").is_file()


@pytest.mark.parametrize(
    ("design", "message"),
    [
        (
            'method = "sobol"\nsamples = 3\n[design.ranges]\na = [0.0, 1.0]',
            r"samples: sobol needs a power of 2 \(got 3\)",
        ),
        ('method = "morris"\nsamples = 4\n[design.ranges]\na = [0.0, 1.0]', "design.method: Input should be"),
        (
            'method = "latin"\nsamples = 4\n[design.ranges]\na = [1.0, 0.0]',
            r"ranges.a: needs low < high \(got \[1.0, 0.0\]\)",
        ),
        (
            'method = "latin"\nsamples = true\n[design.ranges]\na = [0.0, 1.0]',
            r"design.samples: .*valid integer \(got True\)",
        ),
        ('method = "latin"\nsamples = 4\n[design.ranges]', "design.ranges: Dictionary should have at least 1 item"),
    ],
)
def test_bad_designs(tmp_path, design, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep(write(tmp_path, f'base = "{FLASH}"\n[design]\n{design}\n'))
    with pytest.raises(ConfigError, match="a sweep has a \\[design\\] or a \\[grid\\]"):
        load_sweep(
            write(
                tmp_path,
                f'base = "{FLASH}"\n[grid]\nsteps = [5]\n[design]\nmethod = "latin"\nsamples = 4\n'
                '[design.ranges]\n"impact.y" = [0.5, 1.5]\n',
            )
        )


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "sweeps").glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_sweeps_plan(path):
    _, runs = load_sweep(path)
    assert runs and len({r.run_id for r in runs}) == len(runs)


def test_axis_labels_are_readable():
    types = ["market_maker", "momentum", "arbitrageur", "noise", "fcn", "leveraged_holder"]
    assert _axis_label("populations.5.leverage.lognormal[0]", types) == "leveraged_holder leverage (lognormal median)"
    assert _axis_label("populations.5.leverage.lognormal.1", types) == "leveraged_holder leverage (lognormal sigma)"
    assert _axis_label("populations.0.params.order_notional", types) == "market_maker order notional"
    assert _axis_label("impact.venue_share", types) == "impact venue share"
    assert _axis_label("populations.9.count", types) == "population 9 count"

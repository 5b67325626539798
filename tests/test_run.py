"""`cascadelab run` end to end, in real subprocesses: result folder, reproducibility
across processes, one-line errors with exit status 2, and interrupted runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from sim.cli import main
from sim.config import load_config
from sim.facts import FACTS_SCHEMA
from tests.browser import render

ROOT = Path(__file__).resolve().parent.parent
REPLAY = ROOT / "configs" / "replay.toml"
RESULT_TABLES = ("market", "trades", "liquidations", "ledger", "accounts", "unresolved", "metrics", "cascades", "facts")
TABLE_COLUMNS = {
    "market": [
        "step",
        "instrument",
        "time_seconds",
        "exogenous_price",
        "index_price",
        "impact_bps",
        "mark_price",
        "last_price",
        "best_bid",
        "best_ask",
        "volume",
        "open_interest",
        "funding_rate",
        "depth_bid_1pct",
        "depth_ask_1pct",
        "traders_flow",
        "liquidation_flow",
        "unwind_flow",
    ],
    "trades": ["step", "instrument", "price", "qty", "buyer", "seller", "aggressor", "liquidation"],
    "ledger": [
        "step",
        "total_equity",
        "insurance_fund",
        "fees_collected",
        "deposits",
        "bad_debt",
        "n_liquidatable",
        "n_liquidated",
        "fund_draws",
        "fund_fees",
        "insurance_fund_equity",
        "insurance_fund_pnl",
        "backstop_equity",
        "backstop_pnl",
        "takeover_notional",
        "adl_notional",
        "socialized",
        "system_loss",
    ],
}


def cascadelab(*args: str, cwd: Path = ROOT, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600, **kw
    )


@pytest.fixture
def here(monkeypatch, capsys):
    """``here(*args, cwd=...)``: the command's own main() in this process, as a
    CompletedProcess (the error paths need no 3 s of interpreter start-up each)."""

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        code = main(list(args))
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return run


@pytest.fixture(scope="module")
def replay_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "replay"
    result = cascadelab("run", str(REPLAY), "--set", "steps=40", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    return out


def test_result_folder_is_complete(replay_run):
    names = sorted(p.name for p in replay_run.iterdir())
    assert names == sorted(["config.toml", "manifest.json", "report.html"] + [f"{t}.parquet" for t in RESULT_TABLES])
    for table, columns in TABLE_COLUMNS.items():
        assert pl.read_parquet(replay_run / f"{table}.parquet").columns == columns
    liq = pl.read_parquet(replay_run / "liquidations.parquet")
    for column in (
        "step",
        "round",
        "account",
        "instrument",
        "side",
        "qty",
        "price",
        "mark_price",
        "bankruptcy_price",
        "kind",
        "insurance_fund_delta",
        "cascade_id",
        "trigger",
    ):
        assert column in liq.columns
    accounts = pl.read_parquet(replay_run / "accounts.parquet")
    assert {"step", "account", "agent_type", "equity", "maint_margin", "init_margin", "margin_ratio", "pos_BTC"} <= set(
        accounts.columns
    )
    market = pl.read_parquet(replay_run / "market.parquet")
    assert market.height == 41
    metrics = pl.read_parquet(replay_run / "metrics.parquet")
    assert metrics.height == 1 and "largest_cascade_depth" in metrics.columns
    facts = pl.read_parquet(replay_run / "facts.parquet")
    assert facts.schema == pl.Schema(FACTS_SCHEMA)
    assert facts.filter(pl.col("fact") == "kurtosis", pl.col("horizon_seconds") == 1.0)["value"].is_finite().all()


def test_manifest_and_resolved_config_reproduce_the_run(replay_run):
    manifest = json.loads((replay_run / "manifest.json").read_text())
    for key in (
        "config_hash",
        "seed",
        "cascadelab",
        "dependencies",
        "git_commit",
        "git_dirty",
        "python",
        "started_utc",
        "wall_seconds",
    ):
        assert key in manifest
    resolved = load_config(replay_run / "config.toml")
    assert resolved.hash() == manifest["config_hash"]
    assert sorted(manifest["tables"]) == sorted(p.name for p in replay_run.glob("*.parquet"))
    assert resolved.steps == 40


def test_same_seed_is_byte_identical_across_processes(replay_run, tmp_path):
    again = tmp_path / "again"
    assert cascadelab("run", str(REPLAY), "--set", "steps=40", "--out", str(again)).returncode == 0
    for table in RESULT_TABLES:
        assert (again / f"{table}.parquet").read_bytes() == (replay_run / f"{table}.parquet").read_bytes(), table
    other = tmp_path / "other"
    assert cascadelab("run", str(REPLAY), "--set", "steps=40", "--seed", "12", "--out", str(other)).returncode == 0
    assert (other / "trades.parquet").read_bytes() != (replay_run / "trades.parquet").read_bytes()


def test_default_folder_name(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text("steps = 3\n[instruments.BTC]\ntick = 0.1\nlot = 0.001\ninitial_price = 50000.0\n")
    result = cascadelab("run", str(config), "--no-report", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = f"results/tiny-{load_config(config).hash()[:8]}-s0"
    assert result.stdout.strip() == expected
    assert (tmp_path / expected / "manifest.json").is_file()
    assert not (tmp_path / expected / "report.html").exists()


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["missing.toml"], "missing.toml: no such config file"),
        ("steps = = 1", ["bad.toml"], "bad.toml: invalid TOML"),
        (
            "steps = 3\nspeed = 1\n[instruments.BTC]\ntick = 0.1\nlot = 0.001\ninitial_price = 1.0",
            ["bad.toml"],
            "bad.toml: speed: Extra inputs are not permitted",
        ),
        (
            "steps = 3\n[instruments.BTC]\ntick = 0.1\nlot = 0.001\ninitial_price = 1.0",
            ["bad.toml", "--set", "margin.mode=portfolio"],
            "margin.mode: Input should be 'cross' or 'isolated'",
        ),
        (
            "steps = 3\n[instruments.BTC]\ntick = 0.1\nlot = 0.001\ninitial_price = 100.0\n"
            "[instruments.BTC.price]\nprocess = 'replay'\nfile = 'p.csv'",
            ["bad.toml"],
            r"p.csv: row 3 \(step 2\): bad BTC price -1",
        ),
        (
            "steps = 3\n[instruments.BTC]\ntick = 0.1\nlot = 0.001\ninitial_price = 1.0",
            ["bad.toml", "--seed", "-4"],
            "--seed must be >= 0",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_folder(tmp_path, monkeypatch, capsys, setup, args, message):
    if setup is not None:
        (tmp_path / "bad.toml").write_text(setup)
    (tmp_path / "p.csv").write_text("step,BTC\n0,100\n1,101\n2,-1\n3,99\n")
    monkeypatch.chdir(tmp_path)
    # in this process: the command's own main(), without 3 s of interpreter start-up each
    assert main(["run", *args, "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cascadelab: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "out").exists()


def test_bad_input_exits_2_from_the_command_line(tmp_path):
    result = cascadelab("run", "missing.toml", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == "cascadelab: error: missing.toml: no such config file\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_leaves_no_complete_folder(tmp_path, sig):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim.cli", "run", str(ROOT / "configs" / "baseline.toml"), "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in err
    assert not out.exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_run_report_renders_in_headless_chromium(replay_run, tmp_path):
    shot = tmp_path / "run_report.png"
    page = render(replay_run / "report.html", shot, tmp_path / "profile")
    html = (replay_run / "report.html").read_text()
    assert "<script src=" not in html  # plotly.js is embedded: nothing loaded from elsewhere
    assert page.plots == 10 and page.drawn_svgs >= 10  # 8 figures, the cascade overview, an account
    assert "Stylized facts" in page.dom and "time (min)" in page.dom
    assert "no liquidations: nothing to explore" in page.dom  # 40 calm steps
    assert page.traces > 10
    assert page.console == [], page.console
    assert shot.stat().st_size > 50_000


TINY = "steps = 3\n[instruments.BTC]\ntick = 0.1\nlot = 0.001\ninitial_price = 50000.0\n"


def one_line_error(result: subprocess.CompletedProcess, pattern: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cascadelab: error: ") and "Traceback" not in result.stderr
    assert re.search(pattern, lines[0]), lines[0]


def test_out_refuses_a_folder_of_user_files_and_a_file(tmp_path, here):
    (tmp_path / "tiny.toml").write_text(TINY)
    mydata = tmp_path / "mydata"
    mydata.mkdir()
    (mydata / "precious.csv").write_text("keep me")
    one_line_error(here("run", "tiny.toml", "--out", "mydata", cwd=tmp_path), "mydata: .*not a cascadelab run")
    assert (mydata / "precious.csv").read_text() == "keep me" and len(list(mydata.iterdir())) == 1
    (tmp_path / "afile.txt").write_text("keep me too")
    one_line_error(here("run", "tiny.toml", "--out", "afile.txt", cwd=tmp_path), "afile.txt: .*not a folder")
    assert (tmp_path / "afile.txt").read_text() == "keep me too"
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.toml").write_text("base = 'tiny.toml'\n")  # a sweep folder is not a run folder
    one_line_error(here("run", "tiny.toml", "--out", "sweep", cwd=tmp_path), "sweep: .*not a cascadelab run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile.txt", "mydata", "sweep", "tiny.toml"]


def test_out_may_be_empty_or_an_earlier_run_which_is_replaced(tmp_path, here):
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "empty").mkdir()
    assert here("run", "tiny.toml", "--no-report", "--out", "empty", cwd=tmp_path).returncode == 0
    assert (tmp_path / "empty" / "manifest.json").is_file()
    (tmp_path / "empty" / "stale.txt").write_text("from an earlier version")
    result = here("run", "tiny.toml", "--no-report", "--out", "empty", "--seed", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "empty" / "stale.txt").exists()
    assert load_config(tmp_path / "empty" / "config.toml").seed == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_unwritable_out_fails_before_simulating(tmp_path, here):
    (tmp_path / "tiny.toml").write_text(TINY)
    start = time.perf_counter()
    # a million steps would take many minutes: the error must come before the simulation
    result = here("run", "tiny.toml", "--set", "steps=1000000", "--out", "/sys/cascadelab-out", cwd=tmp_path)
    one_line_error(result, "/sys: not writable")
    assert time.perf_counter() - start < 30
    (tmp_path / "file").write_text("")
    result = here("run", "tiny.toml", "--out", "file/out", cwd=tmp_path)
    one_line_error(result, "file/out: cannot create: .*file is not a folder")


def test_leftovers_of_killed_writes_are_removed_at_the_next_start(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    for name in (f".old.tmp-{dead_pid}", f".other.old-{dead_pid}", f".busy.tmp-{os.getpid()}", ".notes"):
        (tmp_path / "results" / name).mkdir(parents=True)
        (tmp_path / "results" / name / "metrics.parquet").write_text("half-written")
    result = cascadelab("run", "tiny.toml", "--no-report", "--out", "results/new", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # the dead process's leftovers are gone; a live process's write and the user's own folder stay
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [f".busy.tmp-{os.getpid()}", ".notes", "new"]


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, OSError])
def test_an_interrupted_write_leaves_nothing(tmp_path, interruption):
    from sim.results import staged

    out = tmp_path / "out"
    with pytest.raises(interruption), staged(out) as tmp:
        (tmp / "metrics.parquet").write_text("half")
        raise interruption
    assert list(tmp_path.iterdir()) == []


def test_an_interruption_python_drops_is_remembered_quietly():
    """A Ctrl-C whose KeyboardInterrupt is raised inside a weakref callback (as during
    importlib's imports) is dropped by Python: the flag keeps it, and no traceback is
    printed."""
    script = (
        "import os, signal, weakref\n"
        "from sim import interrupt\n"
        "interrupt.install()\n"
        "class Thing: pass\n"
        "def dropped(ref):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    sum(range(100_000))  # the handler runs here, inside the callback\n"
        "thing = Thing()\n"
        "ref = weakref.ref(thing, dropped)\n"
        "del thing\n"
        "print(interrupt.INTERRUPTED.is_set())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "True\n", "")


def test_an_interruption_a_library_swallowed_still_stops_the_run(tmp_path):
    """Python drops an exception raised in a weakref callback (the handler can run in
    one during imports): the interruption's flag alone must stop the run at its next
    step and leave no folder, as a delivered Ctrl-C does."""
    from sim import interrupt
    from sim.run import run_to_folder

    (tmp_path / "tiny.toml").write_text(TINY)
    config = load_config(tmp_path / "tiny.toml", [])
    out = tmp_path / "out"
    interrupt.INTERRUPTED.set()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_to_folder(config, out, report=False)
    finally:
        interrupt.INTERRUPTED.clear()
    assert list(tmp_path.iterdir()) == [tmp_path / "tiny.toml"]


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(flag):
    from sim import __version__

    result = cascadelab(flag)
    assert result.returncode == 0 and result.stdout.strip() == f"cascadelab {__version__}"


def test_pandas_reads_every_table(replay_run):
    import pandas as pd

    for name in RESULT_TABLES:
        frame = pd.read_parquet(replay_run / f"{name}.parquet")
        assert list(frame.columns) == pl.read_parquet(replay_run / f"{name}.parquet").columns


def test_license_is_an_spdx_string():
    """A TOML table makes setuptools >= 77 warn at every install."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    assert any(req.startswith("setuptools>=77") for req in project["build-system"]["requires"])


def test_repeated_replay_steps_are_refused_before_anything_is_written(tmp_path):
    (tmp_path / "p.csv").write_text("step,BTC\n0,100\n1,101\n1,102\n2,99\n3,98\n")
    (tmp_path / "c.toml").write_text(
        "steps = 3\n[instruments.BTC]\ntick = 0.1\nlot = 0.001\ninitial_price = 100.0\n"
        "[instruments.BTC.price]\nprocess = 'replay'\nfile = 'p.csv'\n"
    )
    one_line_error(cascadelab("run", "c.toml", "--out", "out", cwd=tmp_path), r"p.csv: step 1 appears 2 times")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml", "p.csv"]

"""`cascadelab compare`: one report overlaying runs, drawn in headless Chromium, and its errors."""

from __future__ import annotations

import shutil
import subprocess
import sys

from sim import simulate
from sim.cli import main
from sim.compare import GENERATOR
from tests.browser import render
from tests.conftest import ROOT


def cascadelab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *args], capture_output=True, text=True, timeout=600, cwd=ROOT
    )


def test_compare_overlays_runs_in_headless_chromium(crash_run, tmp_path):
    muted = simulate(crash_run / "config.toml", out=tmp_path / "muted", impact__venue_share=0.01)
    out = tmp_path / "cmp" / "feedback.html"
    result = cascadelab("compare", str(crash_run), str(muted.folder), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    text = out.read_text()
    assert GENERATOR in text and "<script src=" not in text
    # what differs between the runs is named, with both values
    differs = text.split("<h2>What differs</h2>", 1)[1].split("<h2>", 1)[0]
    assert "impact.venue_share" in differs and "0.2" in differs and "0.01" in differs
    assert "liquidated_notional" in text
    page = render(out, tmp_path / "cmp.png", tmp_path / "profile")
    assert page.console == [], page.console
    assert page.plots == 4 and page.drawn_svgs >= 4
    assert page.traces >= 4 * 2  # every figure has a line per run
    assert "crash" in page.dom and "muted" in page.dom  # the legend names the runs
    # comparing again replaces the report it wrote
    assert main(["compare", str(crash_run), str(muted.folder), "--out", str(out)]) == 0


def test_compare_errors_are_one_line_and_touch_nothing(crash_run, tmp_path, capsys):
    mine = tmp_path / "mine.html"
    mine.write_text("my notes")
    broken = tmp_path / "broken"
    shutil.copytree(crash_run, broken)
    (broken / "ledger.parquet").unlink()
    cases = [
        ((str(crash_run),), "compare needs at least two run folders"),
        ((str(crash_run), str(tmp_path / "nope")), "nope: no such run folder"),
        ((str(crash_run), str(tmp_path)), "not a run folder (no manifest.json)"),
        ((str(crash_run), str(broken)), "ledger.parquet: no such table"),
        ((str(crash_run), str(crash_run), "--out", str(mine)), "exists and is not a compare report"),
        ((str(crash_run), str(crash_run), "--out", str(tmp_path / "x.txt")), "must be an .html file"),
    ]
    for args, message in cases:  # in this process: the same main() as the command, without its start-up
        assert main(["compare", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (args, err)
    assert mine.read_text() == "my notes"
    assert not list(tmp_path.glob(".*tmp*"))

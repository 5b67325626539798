"""The progress bar draws on a terminal and stays quiet elsewhere."""

from __future__ import annotations

import io

from sim.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_draws_on_a_terminal():
    out = Terminal()
    bar = Progress(4, "runs", stream=out)
    bar.update(4, "done 3  failed 1  remaining 0")
    bar.close()
    text = out.getvalue()
    assert "[##############################] 4/4 runs" in text and "failed 1" in text and "eta" in text


def test_quiet_when_not_a_terminal():
    out = io.StringIO()
    bar = Progress(10, "steps", stream=out)
    for i in range(10):
        bar.update(i + 1)
    bar.close()
    assert out.getvalue() == ""


def test_no_eta_before_anything_is_done():
    out = Terminal()
    bar = Progress(4, "runs", stream=out)
    bar.update(0, "done 0  failed 0  remaining 4")
    assert "nan" not in out.getvalue() and "eta -" in out.getvalue()

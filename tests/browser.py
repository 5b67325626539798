"""Open an HTML report in real headless Chromium (Debian's ``chromium``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=15000",
    "--hide-scrollbars",
]


@dataclass
class Rendered:
    dom: str
    console: list[str]

    @property
    def plots(self) -> int:
        return self.dom.count('class="plot-container plotly"')

    @property
    def drawn_svgs(self) -> int:
        """Plotly main SVGs with a non-zero size."""
        sizes = re.findall(r'<svg class="main-svg"[^>]*width="(\d+)" height="(\d+)"', self.dom)
        return sum(int(w) > 0 and int(h) > 0 for w, h in sizes)

    @property
    def traces(self) -> int:
        return len(re.findall(r'class="(?:trace|hm|boxlayer)', self.dom))


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (Debian package 'chromium'; `make test` installs it)")
        pytest.skip("headless Chromium not installed (apt-get install chromium)")
    return path


def render(page: Path, screenshot: Path, profile: Path, fragment: str = "") -> Rendered:
    """Load ``page`` (with ``#fragment`` when given), return its DOM and console lines,
    and save a screenshot."""
    url = page.resolve().as_uri() + (f"#{fragment}" if fragment else "")
    common = [chromium(), *FLAGS, f"--user-data-dir={profile}", "--window-size=1280,3000"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    shot = subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True, text=True, timeout=180)
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    return Rendered(dom.stdout, console)

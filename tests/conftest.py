"""Shared test helpers: the instruments of MARGIN-SPEC's worked examples, a short flash-crash run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sim.instruments import Instrument, MarginTiers

#: MARGIN-SPEC E0 brackets (USD notional floors and maintenance rates).
E0_TIERS = MarginTiers(
    floors=(0.0, 50_000.0, 250_000.0, 1_000_000.0),
    mmr=(0.004, 0.005, 0.01, 0.025),
    max_leverage=(125.0, 100.0, 50.0, 20.0),
)


ROOT = Path(__file__).resolve().parent.parent


def btc(mmr: float = 0.005, max_leverage: float = 20.0) -> Instrument:
    return Instrument("BTC", tick_size=0.1, lot_size=0.001, tiers=MarginTiers.flat(mmr, max_leverage))


def eth(mmr: float = 0.01, max_leverage: float = 20.0) -> Instrument:
    return Instrument("ETH", tick_size=0.01, lot_size=0.01, tiers=MarginTiers.flat(mmr, max_leverage))


# A short flash crash with cascades (~10 s): the shock at step 200, 150 leveraged holders.
CRASH_SETTINGS = ("steps=225", "populations.5.count=150", "populations.3.count=30")


@pytest.fixture(scope="session")
def crash_run(tmp_path_factory) -> Path:
    """A run folder of a short flash crash written by ``cascadelab run``."""
    out = tmp_path_factory.mktemp("crash") / "crash"
    overrides = [arg for setting in CRASH_SETTINGS for arg in ("--set", setting)]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sim.cli",
            "run",
            str(ROOT / "configs" / "flash_crash.toml"),
            *overrides,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return out

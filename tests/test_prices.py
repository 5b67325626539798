"""Price paths: process statistics, correlation, shocks, replay and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sim.prices import PriceDataError, ProcessSpec, Shock, load_replay, shock_factors, simulate_paths

N = 20_000


def returns(paths: np.ndarray) -> np.ndarray:
    return np.diff(np.log(paths), axis=0)


def test_gbm_moments():
    spec = ProcessSpec("gbm", 100.0, drift=0.0002, volatility=0.01)
    r = returns(simulate_paths([spec], N, np.random.default_rng(1)))[:, 0]
    assert r.std() == pytest.approx(0.01, rel=0.03)
    assert r.mean() == pytest.approx(0.0002 - 0.5 * 0.01**2, abs=3 * 0.01 / np.sqrt(N))


def test_paths_start_at_the_initial_price_and_are_reproducible():
    spec = ProcessSpec("gbm", 123.0)
    a = simulate_paths([spec], 50, np.random.default_rng(5))
    b = simulate_paths([spec], 50, np.random.default_rng(5))
    c = simulate_paths([spec], 50, np.random.default_rng(6))
    assert a.shape == (51, 1) and a[0, 0] == 123.0
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_correlated_instruments():
    corr = np.array([[1.0, 0.8], [0.8, 1.0]])
    specs = [ProcessSpec("gbm", 100.0, volatility=0.01), ProcessSpec("gbm", 50.0, volatility=0.02)]
    r = returns(simulate_paths(specs, N, np.random.default_rng(2), corr))
    assert np.corrcoef(r.T)[0, 1] == pytest.approx(0.8, abs=0.02)


def test_jumps_are_compensated_and_fatten_tails():
    spec = ProcessSpec("jump", 100.0, volatility=0.005, jump_intensity=0.05, jump_mean=-0.02, jump_std=0.03)
    r = returns(simulate_paths([spec], N, np.random.default_rng(3)))[:, 0]
    kurtosis = ((r - r.mean()) ** 4).mean() / r.var() ** 2
    assert kurtosis > 5  # a normal has 3
    growth = np.exp(r).mean() - 1  # compensated: expected gross return ~ exp(drift) = 1
    assert growth == pytest.approx(0.0, abs=5e-4)


def test_garch_clusters_volatility():
    spec = ProcessSpec("garch", 100.0, garch_omega=2e-6, garch_alpha=0.1, garch_beta=0.85)
    r = returns(simulate_paths([spec], N, np.random.default_rng(4)))[:, 0]
    sq = r**2 - (r**2).mean()
    autocorr = (sq[1:] * sq[:-1]).mean() / sq.var()
    assert autocorr > 0.1
    assert r.std() == pytest.approx(np.sqrt(2e-6 / 0.05), rel=0.15)  # long-run level


def test_shock_moves_the_path_over_its_duration():
    factors = shock_factors(Shock(step=3, instrument=0, size=-0.19, duration=2), steps=6)
    assert factors == pytest.approx([1, 1, 1, 0.9, 0.81, 0.81, 0.81])
    flat = ProcessSpec("gbm", 100.0, volatility=0.0)
    path = simulate_paths([flat], 6, np.random.default_rng(0), shocks=[Shock(3, 0, -0.19, 2)])
    assert path[:, 0] == pytest.approx(100 * factors)


def write_csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.csv"
    path.write_text(text)
    return path


def test_replay_reads_csv_and_parquet_in_step_order(tmp_path):
    csv = write_csv(tmp_path, "step,BTC\n2,102\n0,100\n1,101\n3,103\n")
    assert load_replay(csv, "BTC", 2).tolist() == [100.0, 101.0, 102.0]
    parquet = tmp_path / "prices.parquet"
    pl.DataFrame({"timestamp": [3, 1, 2], "ETH": [3.0, 1.0, 2.0]}).write_parquet(parquet)
    assert load_replay(parquet, "ETH", 2).tolist() == [1.0, 2.0, 3.0]
    spec = ProcessSpec("replay", 100.0, file=csv, column="BTC")
    assert simulate_paths([spec], 3, np.random.default_rng(0))[:, 0].tolist() == [100, 101, 102, 103]


@pytest.mark.parametrize(
    ("text", "column", "steps", "message"),
    [
        ("step,BTC\n0,100\n1,\n2,102\n", "BTC", 2, r"row 2 \(step 1\): bad BTC price None"),
        ("step,BTC\n0,100\n1,nan\n2,102\n", "BTC", 2, "row 2 .*bad BTC price"),
        ("step,BTC\n0,100\n1,-5\n", "BTC", 1, r"row 2 \(step 1\): bad BTC price -5"),
        ("step,BTC\n0,100\n1,abc\n", "BTC", 1, "row 2 .*bad BTC price 'abc'"),
        ("step,BTC\n0,100\n", "BTC", 5, "1 rows, the run needs 6"),
        ("step,BTC\n0,100\n1,101\n", "ETH", 1, "no price column 'ETH'"),
        ("time,BTC\n0,100\n1,101\n", "BTC", 1, "needs a 'step' or 'timestamp' column"),
    ],
)
def test_replay_errors_name_file_and_row(tmp_path, text, column, steps, message):
    path = write_csv(tmp_path, text)
    with pytest.raises(PriceDataError, match=message) as info:
        load_replay(path, column, steps)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_replay_missing_file(tmp_path):
    with pytest.raises(PriceDataError, match="no such file"):
        load_replay(tmp_path / "nope.csv", "BTC", 3)

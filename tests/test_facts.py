"""Stylized facts on synthetic series with known answers; ``cascadelab facts`` on a
real run folder, and its errors."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sim import facts
from sim.cli import main
from sim.config import load_config
from sim.facts import FACTS_SCHEMA, KEYS, stylized_facts
from sim.run import read_facts, run_to_folder

ROOT = Path(__file__).resolve().parent.parent


def market_frame(prices: np.ndarray, volume: np.ndarray | None = None, **extra: np.ndarray) -> pl.DataFrame:
    """A one-instrument market table around a mark path (shape (T,)); last = mark."""
    n = len(prices)
    return pl.DataFrame(
        {
            "step": np.arange(n),
            "instrument": ["BTC"] * n,
            "mark_price": prices,
            "last_price": prices,
            "volume": np.ones(n) if volume is None else volume,
            "depth_bid_1pct": np.full(n, 5.0),
            "depth_ask_1pct": np.full(n, 5.0),
            **extra,
        }
    )


def path(returns: np.ndarray) -> np.ndarray:
    """Prices (shape (n + 1,)) from log returns (shape (n,)), starting at 100."""
    return 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))


NO_CASCADES = pl.DataFrame({"accounts": []}, schema={"accounts": pl.Int64})


def value(frame: pl.DataFrame, fact: str, series: str = "mark", horizon: float | None = None, lag: int | None = None):
    """The one value of a fact (NaN-safe lookup by its keys)."""
    rows = frame.filter(
        (pl.col("fact") == fact)
        & (pl.col("series") == series)
        & (pl.col("horizon_seconds").eq_missing(horizon))
        & (pl.col("lag").eq_missing(lag))
    )
    assert rows.height == 1, rows
    return rows["value"].item()


def garch(n: int, rng: np.random.Generator) -> np.ndarray:
    """GARCH(1,1) returns (omega 1e-6, alpha 0.1, beta 0.85), shape (n,)."""
    omega, alpha, beta = 1e-6, 0.1, 0.85
    var, out = omega / (1 - alpha - beta), np.empty(n)
    for i, z in enumerate(rng.standard_normal(n)):
        out[i] = np.sqrt(var) * z
        var = omega + alpha * out[i] ** 2 + beta * var
    return out


def test_gaussian_returns_have_kurtosis_3_at_every_horizon_and_no_autocorrelation():
    rng = np.random.default_rng(0)
    frame = stylized_facts(market_frame(path(rng.normal(0, 1e-3, 36_000))), NO_CASCADES, step_seconds=1.0)
    assert value(frame, "kurtosis", horizon=1.0) == pytest.approx(3.0, abs=0.15)
    assert value(frame, "kurtosis", horizon=60.0) == pytest.approx(3.0, abs=0.8)  # 600 returns
    assert np.isnan(value(frame, "kurtosis", horizon=3600.0))  # 10 returns: too few
    assert abs(value(frame, "acf", horizon=60.0, lag=1)) < 0.15
    assert abs(value(frame, "acf_abs", horizon=60.0, lag=10)) < 0.15
    assert "exogenous" not in frame["series"].to_list()


def test_heavy_tails_show_in_kurtosis_and_hill_and_fade_with_aggregation():
    rng = np.random.default_rng(1)
    # step_seconds = 60: every step is a minute return, so the 60 s facts see 40,000 of them
    t3 = stylized_facts(market_frame(path(1e-3 * rng.standard_t(3, 40_000))), NO_CASCADES, step_seconds=60.0)
    gauss = stylized_facts(market_frame(path(rng.normal(0, 1e-3, 40_000))), NO_CASCADES, step_seconds=60.0)
    assert 2.4 < value(t3, "hill_tail_index", horizon=60.0) < 3.6  # the cubic law
    assert value(gauss, "hill_tail_index", horizon=60.0) > 4.5
    ticks = np.concatenate([np.full(100, 1e-3), np.full(20, 1e-2)])  # the whole tail at the threshold
    assert np.isnan(facts.hill_tail_index(ticks))
    assert value(t3, "kurtosis", horizon=60.0) > 6
    assert value(t3, "kurtosis", horizon=60.0) > value(t3, "kurtosis", horizon=3600.0)
    assert sorted(t3.filter(pl.col("fact") == "kurtosis")["horizon_seconds"].unique()) == [60.0, 300.0, 3600.0]


def test_volatility_clustering_and_linear_autocorrelation():
    rng = np.random.default_rng(2)
    clustered = stylized_facts(market_frame(path(garch(20_000, rng))), NO_CASCADES, step_seconds=60.0)
    assert value(clustered, "acf_abs", horizon=60.0, lag=1) > 0.05
    assert value(clustered, "acf_abs", horizon=60.0, lag=10) > 0.03
    assert 0 < value(clustered, "acf_abs_decay_exponent", horizon=60.0) < 2
    iid = stylized_facts(market_frame(path(rng.normal(0, 1e-3, 20_000))), NO_CASCADES, step_seconds=60.0)
    assert np.isnan(value(iid, "acf_abs_decay_exponent", horizon=60.0))  # ACF(|r|) is not positive for long
    ar = np.empty(20_000)
    ar[0] = 0.0
    for i, z in enumerate(rng.normal(0, 1e-3, 19_999), start=1):
        ar[i] = 0.5 * ar[i - 1] + z
    linear = stylized_facts(market_frame(path(ar)), NO_CASCADES, step_seconds=60.0)
    assert value(linear, "acf", horizon=60.0, lag=1) == pytest.approx(0.5, abs=0.03)
    assert value(linear, "acf", horizon=60.0, lag=2) == pytest.approx(0.25, abs=0.03)


def test_volume_volatility_correlation():
    rng = np.random.default_rng(3)
    r = rng.normal(0, 1e-3, 5_000)
    busy = np.concatenate([[0.0], 1e4 * np.abs(r) + rng.uniform(0, 1, 5_000)])  # step i+1 trades r[i]
    frame = stylized_facts(market_frame(path(r), volume=busy), NO_CASCADES, step_seconds=60.0)
    assert value(frame, "volume_volatility_corr", horizon=60.0) > 0.9
    unrelated = stylized_facts(market_frame(path(r), volume=rng.uniform(0, 1, 5_001)), NO_CASCADES, step_seconds=60.0)
    assert abs(value(unrelated, "volume_volatility_corr", horizon=60.0)) < 0.1


def test_window_volume_sums_the_steps_of_each_return():
    volume = np.arange(10.0)  # step s traded s
    assert facts.window_volume(volume, 3, 3).tolist() == [1 + 2 + 3, 4 + 5 + 6, 7 + 8 + 9]


def test_depth_drop_in_the_worst_drawdown():
    mark = np.concatenate([np.full(50, 100.0), np.linspace(100, 110, 11), np.linspace(110, 88, 20), np.full(20, 95.0)])
    depth = np.full(len(mark), 10.0)
    depth[30] = 1.0  # before the peak (step 60): not in the window
    depth[70] = 2.0  # in the window
    depth[95] = 0.5  # after the trough (step 80): not in the window
    assert facts.depth_drop(mark, depth) == pytest.approx(0.8)
    assert np.isnan(facts.depth_drop(np.linspace(100, 120, 50), np.full(50, 10.0)))  # no drawdown
    assert np.isnan(facts.depth_drop(np.linspace(120, 100, 50), np.full(50, 10.0)))  # peak at step 0


def test_cascade_sizes_from_a_zipf_law(capfd):
    rng = np.random.default_rng(4)
    fit = facts.cascade_size_fit(rng.zipf(2.5, 2_000))
    assert fit["alpha"] == pytest.approx(2.5, abs=0.1)
    assert fit["xmin"] >= 1
    assert np.isfinite(fit["vs_lognormal_ratio"]) and 0 <= fit["vs_lognormal_p"] <= 1
    assert all(np.isnan(v) for v in facts.cascade_size_fit(rng.zipf(2.5, 9)).values())  # too few
    assert all(np.isnan(v) for v in facts.cascade_size_fit(np.ones(50, dtype=int)).values())  # one size
    # no tail above powerlaw's xmin (it raises): sizes seen in a 40-step run, a lone 2 among 1s
    for sizes in ([1] * 27 + [2, 3], [1] * 200 + [2]):
        assert all(np.isnan(v) for v in facts.cascade_size_fit(np.array(sizes)).values())
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # powerlaw's chatter is silenced


def test_last_price_is_forward_filled_from_the_first_trade():
    market = pl.DataFrame(
        {"last_price": [None, None, 10.0, None, 12.0], "volume": [0.0, 1.0, 2.0, 3.0, 4.0]},
        schema={"last_price": pl.Float64, "volume": pl.Float64},
    )
    prices, volume = facts.price_path(market, "last_price")
    assert prices.tolist() == [10.0, 10.0, 12.0] and volume.tolist() == [2.0, 3.0, 4.0]


def test_impact_series_and_its_share_of_the_index_variance():
    """Index = exogenous path x exp(impact): a Gaussian path with variance 3 parts and
    a fat-tailed (Student t) impact with 1 part give a share of 1/4, and the impact
    series carries the tails the index shows diluted by s² (module docstring)."""
    rng = np.random.default_rng(7)
    n = 60_000
    exo = rng.normal(0, np.sqrt(3e-6), n)
    impact = 1e-3 * rng.standard_t(5, n) / np.sqrt(5 / 3)  # variance 1e-6, kurtosis 9
    log_impact = np.concatenate([[0.0], np.cumsum(impact)])
    exogenous = path(exo)
    index = exogenous * np.exp(log_impact)
    frame = stylized_facts(
        market_frame(index, exogenous_price=exogenous, index_price=index, impact_bps=log_impact * 1e4),
        NO_CASCADES,
        step_seconds=60.0,
    )
    assert value(frame, "impact_variance_share", "impact", 60.0) == pytest.approx(0.25, abs=0.02)
    assert value(frame, "kurtosis", "impact", 60.0) > 6
    excess = value(frame, "kurtosis", "mark", 60.0) - 3  # (1/4)² x 6 = 0.375
    assert 0.1 < excess < 0.8
    plain = stylized_facts(market_frame(index), NO_CASCADES, step_seconds=60.0)
    assert not {"impact", "exogenous"} & set(plain["series"])


def test_horizons_round_to_whole_steps_once_each():
    assert facts.horizon_steps([60.0, 60.0, 300.0, 3600.0], 60.0) == {60.0: 1, 300.0: 5, 3600.0: 60}
    assert facts.horizon_steps([5.0, 1.0, 60.0], 5.0) == {5.0: 1, 60.0: 12}


def test_table_shape_exogenous_series_and_determinism():
    rng = np.random.default_rng(5)
    prices = path(rng.normal(0, 1e-3, 3_000))
    market = market_frame(prices, exogenous_price=prices * 1.01).with_columns(
        pl.when(pl.col("step") < 5).then(None).otherwise(pl.col("last_price")).alias("last_price")
    )
    market = pl.concat([market, market.with_columns(pl.lit("ETH").alias("instrument"))]).sample(fraction=1.0, seed=1)
    cascades = pl.DataFrame({"accounts": rng.zipf(2.0, 40)})
    frame = stylized_facts(market, cascades, step_seconds=1.0)
    assert frame.schema == pl.Schema(FACTS_SCHEMA)
    assert frame.equals(frame.sort(KEYS, nulls_last=True))
    assert set(frame["series"]) == {"mark", "last", "exogenous", ""}
    assert set(frame["instrument"]) == {"BTC", "ETH", ""}
    assert frame.filter(pl.col("fact").str.starts_with("cascade_"))["instrument"].to_list() == [""] * 4
    # the exogenous path is the mark times a constant: the same returns
    assert value(frame.filter(pl.col("instrument") == "BTC"), "kurtosis", "exogenous", 1.0) == pytest.approx(
        value(frame.filter(pl.col("instrument") == "BTC"), "kurtosis", "mark", 1.0)
    )
    again = stylized_facts(market.sample(fraction=1.0, seed=2), cascades, step_seconds=1.0)
    first, second = io.BytesIO(), io.BytesIO()
    frame.write_parquet(first)
    again.write_parquet(second)
    assert first.getvalue() == second.getvalue()


def test_headline_names_one_column_per_fact_and_instrument():
    rng = np.random.default_rng(6)
    market = market_frame(path(rng.normal(0, 1e-3, 4_000)))
    market = pl.concat([market, market.with_columns(pl.lit("ETH").alias("instrument"))])
    frame = stylized_facts(market, NO_CASCADES, step_seconds=1.0)
    named = facts.headline(frame)
    columns = named["column"].to_list()
    assert columns[:2] == ["kurtosis_mark_60s_BTC", "kurtosis_mark_60s_ETH"]
    assert {"acf_abs_last_60s_lag10_ETH", "depth_drop_BTC", "cascade_powerlaw_alpha"} <= set(columns)
    assert len(columns) == len(set(columns)) == 2 * (2 * 5 + 1) + 3
    assert named.filter(pl.col("column") == "kurtosis_mark_60s_BTC")["value"].item() == value(
        frame.filter(pl.col("instrument") == "BTC"), "kurtosis", "mark", 60.0
    )
    assert facts.headline(frame.lazy()).collect().equals(named)


def test_decay_exponent_fits_the_leading_positive_lags():
    lags = np.arange(1, 51)
    assert facts.decay_exponent(lags**-0.3) == pytest.approx(0.3)
    noisy = lags**-0.3
    noisy[4] = -0.01  # lag 5 crosses zero: only lags 1-4 count, whatever comes after
    noisy[5:] = 0.9
    assert facts.decay_exponent(noisy) == pytest.approx(0.3)
    assert np.isnan(facts.decay_exponent(np.array([0.2, 0.1, np.nan, 0.05])))


# ------------------------------------------------------------- result folders, CLI
@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """The replay config, 300 steps of 10 s: 50 one-minute returns (holders at 3x: these
    tests read prices and facts, and a replayed crash's liquidations cost most of a run)."""
    overrides = ["steps=300", "step_seconds=10", "populations.3.leverage.lognormal=[3.0, 0.4]"]
    config = load_config(ROOT / "configs" / "replay.toml", overrides)
    return run_to_folder(config, tmp_path_factory.mktemp("runs") / "replay", progress=False, report=False)


def test_cli_prints_and_writes_a_runs_facts(run_folder, tmp_path, capsys):
    out = tmp_path / "facts.csv"
    assert main(["facts", str(run_folder), "--out", str(out)]) == 0  # in process: a subprocess costs 5 s of imports
    result = capsys.readouterr()
    assert result.err == ""
    stored = pl.read_parquet(run_folder / "facts.parquet")
    assert value(stored, "kurtosis", horizon=60.0) > 0  # measured: 50 returns
    header, _, *rows = result.out.strip().splitlines()
    assert [cell.strip() for cell in header.strip("|").split("|")] == [*KEYS, "value"]
    assert len(rows) == stored.height
    assert pl.read_csv(out, schema=FACTS_SCHEMA).equals(stored)


def test_facts_of_an_older_run_folder_are_computed_from_its_tables(run_folder, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(run_folder, old)
    (old / "facts.parquet").unlink()
    (old / "cascades.parquet").unlink()
    config = (old / "config.toml").read_text()
    (old / "config.toml").write_text(config.replace("step_seconds = 10.0\n", ""))  # before configs had it
    stored = pl.read_parquet(run_folder / "facts.parquet")
    assert read_facts(old).equals(stylized_facts(pl.read_parquet(old / "market.parquet"), _cascades(old), 1.0))
    (old / "config.toml").write_text(config)
    assert read_facts(old).equals(stored)


def _cascades(folder: Path) -> pl.DataFrame:
    from sim.cascades import cascade_summary_frame

    return cascade_summary_frame(pl.read_parquet(folder / "liquidations.parquet"))


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "{target}: no such folder"),
        ("file", "{target}: not a folder"),
        ("empty", "{target}: not a run folder"),
        ("corrupt", "{target}/facts.parquet: unreadable: parquet: File out of specification"),
        ("old_without_market", "{target}/market.parquet: no such table"),
        ("bad_out", "out.txt: --out must end in .parquet or .csv"),
    ],
)
def test_cli_facts_errors_are_one_line_exit_2(run_folder, tmp_path, capsys, setup, message):
    target, args = tmp_path / "result", []
    if setup == "file":
        target.write_text("x")
    elif setup == "empty":
        target.mkdir()
    elif setup in ("corrupt", "old_without_market", "bad_out"):
        shutil.copytree(run_folder, target)
        if setup == "corrupt":
            (target / "facts.parquet").write_bytes(b"not parquet")
        elif setup == "old_without_market":
            (target / "facts.parquet").unlink()
            (target / "market.parquet").unlink()
        else:
            args = ["--out", str(tmp_path / "out.txt")]
    assert main(["facts", str(target), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cascadelab: error: "), err
    assert message.format(target=target) in err[0]

"""Config loading: validation messages name file, key and value; overrides; hashing."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.config import ConfigError, load_config

CONFIGS = sorted(Path("configs").glob("*.toml"))

MINIMAL = """
steps = 10
[instruments.BTC]
tick = 0.1
lot = 0.001
initial_price = 50000.0
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_validate(path):
    config = load_config(path)
    assert config.steps > 0 and config.instruments


def test_minimal_config_gets_defaults(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.margin.mode == "cross" and config.mark.method == "median"
    assert config.liquidation.fallback == ["insurance_fund", "backstop", "adl"] and list(config.collateral) == ["USD"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "[instruments.ETH]\ntick = 0.01\nlot = 0.01\ninitial_price = 3000.0\ncolour = 3",
            "instruments.ETH.colour: Extra inputs are not permitted",
        ),
        ("[margin]\nmode = 'portfolio'", "margin.mode: Input should be 'cross' or 'isolated' .*'portfolio'"),
        ("[liquidation]\nstep_cap = 0", r"liquidation.step_cap: Input should be greater than 0 \(got 0\)"),
        ("[liquidation]\nfallback = ['pray']", r"liquidation.fallback\[0\]: Input should be"),
        (
            "[[shocks]]\nstep = 5\ninstrument = 'DOGE'\nsize = -0.1",
            "shocks\\[0\\].instrument: unknown instrument 'DOGE'",
        ),
        ("[[shocks]]\nstep = 5\ninstrument = 'BTC'\nsize = -1.5", r"shocks\[0\].size: Input should be greater than -1"),
        ("[[populations]]\ntype = 'whale'\ncount = 1", "unknown agent type 'whale'"),
        (
            "[[populations]]\ntype = 'noise'\ncount = 1\nparams = { activty = 0.5 }",
            "populations\\[0\\]: params.activty: Extra inputs are not permitted",
        ),
        (
            "[[populations]]\ntype = 'noise'\ncount = -1",
            r"populations\[0\].count: Input should be greater than or equal",
        ),
        ("[collateral.USD]\n[collateral.SOL]\nhaircut = 0.2", "collateral SOL: no instrument has it as base asset"),
        ("[collateral.BTC]\nhaircut = 0.05", "collateral: collateral must include the settlement asset USD"),
        ("[market]\nindex_feedback = 0.5", r"market.index_feedback: removed; .*\[impact\] \(venue_share, y, beta"),
        ("[funding]\ninterval = 480", "funding.interval: removed; use funding.interval_seconds"),
        ("[mark]\nbasis_window = 30", "mark.basis_window: removed; use mark.basis_window_seconds"),
        ("[mark]\nmethod = 'vwap'", "mark.method: unknown mark method 'vwap', choose from"),
        ("[instruments.BTC.price]\nprocess = 'heston'", "unknown process 'heston', choose from"),
        ("[impact]\nventure_share = 0.3", "impact.venture_share: Extra inputs are not permitted"),
        ("[impact]\nvenue_share = 0", "impact.venue_share: Input should be greater than 0"),
        ("[impact.daily_volatility]\nDOGE = 0.05", "impact.daily_volatility: unknown instrument 'DOGE'"),
        (
            "[liquidation]\nclearance = 'binance'",
            r"liquidation.clearance: 'binance' .* needs mode = 'full' \(got 'binance'\)",
        ),
        # issue 9 case 5: configs that validated and then crashed mid-run
        ("[liquidation]\npenalty = 0.02", r"liquidation.penalty: penalty \+ fee must stay below .*\(got 0.02\)"),
        (
            "[[instruments.BTC.tiers]]\nfloor = 0\nmmr = 0.01\nmax_leverage = 20\n"
            "[liquidation]\nbuffer = 0\npenalty = 0.006\nfee = 0.004",
            r"liquidation.penalty: .*instruments.BTC.tiers\[0\]: 0.01 \+ 0 - 0.006 - 0.004 = 0\) \(got 0.006\)",
        ),
        (
            "[[instruments.BTC.tiers]]\nfloor = 0\nmmr = 0.01\nmax_leverage = 20\n"
            "[[instruments.BTC.tiers]]\nfloor = 0\nmmr = 0.02\nmax_leverage = 10",
            r"instruments.BTC.tiers\[1\].floor: tier floors must increase \(got 0.0 after 0.0\)",
        ),
        (
            "[[instruments.BTC.tiers]]\nfloor = 0\nmmr = 0.06\nmax_leverage = 20",
            r"instruments.BTC.tiers\[0\].mmr: must be below the initial rate 1/max_leverage = 0.05 \(got 0.06\)",
        ),
        (
            "[[instruments.BTC.tiers]]\nfloor = 10\nmmr = 0.01\nmax_leverage = 20",
            r"instruments.BTC.tiers\[0\].floor: the first tier must start at notional 0 \(got 10.0\)",
        ),
    ],
)
def test_validation_errors_name_the_key(tmp_path, extra, message):
    path = write(tmp_path, MINIMAL + "\n" + extra + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("top", "message"),
    [
        ("colour = 3", "colour: Extra inputs are not permitted"),
        ("correlation = [[1.0, 0.5], [0.5, 1.0]]", "correlation must be a symmetric 1x1 matrix"),
        ("steps = 0", r"steps: Input should be greater than or equal to 1 \(got 0\)"),
    ],
)
def test_top_level_errors(tmp_path, top, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, top + "\n" + MINIMAL.replace("steps = 10", "" if "steps" in top else "steps = 10")))


def test_instrument_field_errors_name_the_instrument(tmp_path):
    path = write(tmp_path, MINIMAL.replace("tick = 0.1", "tick = -1"))
    with pytest.raises(ConfigError, match=r"instruments.BTC.tick: Input should be greater than 0 \(got -1\)"):
        load_config(path)


def test_missing_file_and_invalid_toml(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "none.toml")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write(tmp_path, "steps = = 3"))


def test_overrides_and_seed(tmp_path):
    base = MINIMAL + "[[populations]]\ntype = 'noise'\ncount = 2\n"
    path = write(tmp_path, base)
    config = load_config(path, ["liquidation.mode=full", "populations.0.count=5", "mark.method=last"], seed=9)
    assert config.liquidation.mode == "full" and config.populations[0].count == 5
    assert config.mark.method == "last" and config.seed == 9
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_config(path, ["liquidation.mode"])
    with pytest.raises(ConfigError, match="no list item 3"):
        load_config(path, ["populations.3.count=1"])
    with pytest.raises(ConfigError, match="liquidation.mode: Input should be 'partial' or 'full'"):
        load_config(path, ["liquidation.mode=half"])


def test_hash_follows_content(tmp_path):
    path = write(tmp_path, MINIMAL)
    a, b = load_config(path), load_config(path)
    assert a.hash() == b.hash()
    assert load_config(path, ["steps=11"]).hash() != a.hash()
    assert load_config(path, seed=1).hash() != a.hash()

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
            "[[instruments.BTC.tiers]]\nfloor = 0\nmmr = 0.004\nmax_leverage = 10\n"
            "[[instruments.BTC.tiers]]\nfloor = 100000\nmmr = 0.005\nmax_leverage = 50",
            r"instruments.BTC.tiers\[1\].max_leverage: leverage must not rise with the tier \(got 50.0 after 10.0\)",
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


# ------------------------------------------------------------------ bad inputs
#: A config with one of everything the bad inputs below change.
FULL = """
steps = 10
[instruments.BTC]
tick = 0.1
lot = 0.001
initial_price = 50000.0
[[populations]]
type = "leveraged_holder"
count = 2
collateral = { USD = 1000.0 }
leverage = 2.0
[[populations]]
type = "market_maker"
count = 1
[[accounts]]
name = "a"
collateral = { USD = 1000.0 }
positions = { BTC = { qty = 0.1, entry = 50000.0 } }
[[shocks]]
step = 5
instrument = "BTC"
size = -0.05
"""

#: (``--set`` overrides, the key the message starts with, a fragment of the message).
BAD_INPUTS = [
    # numbers and booleans are taken as written (pydantic strict mode)
    ("steps=true", "steps", "valid integer (got True)"),
    ('steps="30"', "steps", "valid integer (got '30')"),
    ("steps=30.5", "steps", "valid integer (got 30.5)"),
    ("seed=true", "seed", "valid integer (got True)"),
    ('seed="1"', "seed", "valid integer (got '1')"),
    ("seed=-1", "seed", "greater than or equal to 0 (got -1)"),
    ("record_every=false", "record_every", "valid integer (got False)"),
    ("record_every=0", "record_every", "greater than or equal to 1 (got 0)"),
    ("step_seconds=true", "step_seconds", "valid number (got True)"),
    ('step_seconds="1"', "step_seconds", "valid number (got '1')"),
    ("step_seconds=0", "step_seconds", "greater than 0 (got 0)"),
    ("step_seconds=inf", "step_seconds", "finite number (got inf)"),
    ("step_seconds=nan", "step_seconds", "finite number (got nan)"),
    ("colour=3", "colour", "Extra inputs are not permitted (got 3)"),
    # instruments
    ("instruments.BTC.tick=true", "instruments.BTC.tick", "valid number (got True)"),
    ('instruments.BTC.tick="0.1"', "instruments.BTC.tick", "valid number (got '0.1')"),
    ("instruments.BTC.tick=0", "instruments.BTC.tick", "greater than 0 (got 0)"),
    ("instruments.BTC.tick=-0.1", "instruments.BTC.tick", "greater than 0 (got -0.1)"),
    ("instruments.BTC.tick=inf", "instruments.BTC.tick", "finite number (got inf)"),
    ("instruments.BTC.tick=60000.0", "instruments.BTC", "tick must be smaller than initial_price 50000 (got 60000)"),
    ("instruments.BTC.tick=50000.0", "instruments.BTC", "tick must be smaller than initial_price 50000 (got 50000)"),
    ("instruments.BTC.lot=0", "instruments.BTC.lot", "greater than 0 (got 0)"),
    ("instruments.BTC.lot=nan", "instruments.BTC.lot", "finite number (got nan)"),
    ("instruments.BTC.lot=true", "instruments.BTC.lot", "valid number (got True)"),
    ("instruments.BTC.initial_price=inf", "instruments.BTC.initial_price", "finite number (got inf)"),
    ("instruments.BTC.initial_price=-1.0", "instruments.BTC.initial_price", "greater than 0 (got -1.0)"),
    ("instruments.BTC.initial_price=0", "instruments.BTC.initial_price", "greater than 0 (got 0)"),
    ('instruments.BTC.initial_price="50000"', "instruments.BTC.initial_price", "valid number (got '50000')"),
    ("instruments.BTC.base_asset=1", "instruments.BTC.base_asset", "valid string (got 1)"),
    ("instruments.BTC.colour=3", "instruments.BTC.colour", "Extra inputs are not permitted (got 3)"),
    ('instruments.BTC.tiers="flat"', "instruments.BTC.tiers", "valid list (got 'flat')"),
    ("instruments.BTC.tiers=[{floor=0.0,mmr=1.5,max_leverage=20.0}]", "instruments.BTC.tiers[0].mmr", "less than 1"),
    ("instruments.BTC.tiers=[{floor=-1.0,mmr=0.01,max_leverage=20.0}]", "instruments.BTC.tiers[0].floor", "(got -1.0)"),
    ("instruments.BTC.tiers=[{floor=0.0,mmr=0.01,max_leverage=0.5}]", "instruments.BTC.tiers[0].max_leverage", "0.5"),
    ("instruments.BTC.tiers=[{floor=0.0,mmr=true,max_leverage=20.0}]", "instruments.BTC.tiers[0].mmr", "(got True)"),
    ("instruments.BTC.price.volatility=inf", "instruments.BTC.price.volatility", "finite number (got inf)"),
    ("instruments.BTC.price.volatility=nan", "instruments.BTC.price.volatility", "finite number (got nan)"),
    ("instruments.BTC.price.volatility=-0.1", "instruments.BTC.price.volatility", "greater than or equal to 0"),
    ("instruments.BTC.price.drift=inf", "instruments.BTC.price.drift", "finite number (got inf)"),
    ("instruments.BTC.price.drift=true", "instruments.BTC.price.drift", "valid number (got True)"),
    ("instruments.BTC.price.jump_intensity=-1.0", "instruments.BTC.price.jump_intensity", "(got -1.0)"),
    ("instruments.BTC.price.jump_std=-0.1", "instruments.BTC.price.jump_std", "(got -0.1)"),
    ("instruments.BTC.price.garch_omega=0", "instruments.BTC.price.garch_omega", "greater than 0 (got 0)"),
    ("instruments.BTC.price.garch_alpha=1.0", "instruments.BTC.price.garch_alpha", "less than 1 (got 1.0)"),
    ('instruments.BTC.price.process="heston"', "instruments.BTC.price", "unknown process 'heston'"),
    ('instruments.BTC.price.process="replay"', "instruments.BTC.price", "needs file"),
    (
        ('instruments.BTC.price.process="garch"', "instruments.BTC.price.garch_alpha=0.5"),
        "instruments.BTC.price",
        "garch_alpha + garch_beta must be < 1",
    ),
    ("instruments=[1,2]", "instruments", "valid dictionary"),
    ("instruments={}", "instruments", "at least 1 item"),
    ("correlation=[[1.0,0.5],[0.5,1.0]]", "correlation", "symmetric 1x1 matrix"),
    ("correlation=[[inf]]", "correlation[0][0]", "finite number (got inf)"),
    ('correlation="identity"', "correlation", "valid list (got 'identity')"),
    # collateral, margin, mark, funding, market, impact
    ("collateral.USD.haircut=1.0", "collateral.USD.haircut", "less than 1 (got 1.0)"),
    ("collateral.USD.haircut=-0.1", "collateral.USD.haircut", "(got -0.1)"),
    ("collateral.USD.haircut=nan", "collateral.USD.haircut", "finite number (got nan)"),
    ("collateral.USD.haircut=true", "collateral.USD.haircut", "valid number (got True)"),
    ("collateral.USD.liability_weight=0.5", "collateral.USD.liability_weight", "(got 0.5)"),
    ("collateral.USD.liability_weight=inf", "collateral.USD.liability_weight", "finite number (got inf)"),
    (("collateral.USD.haircut=0.0", "collateral.SOL.haircut=0.1"), "collateral SOL", "no instrument has it as base"),
    ('margin.mode="portfolio"', "margin.mode", "'cross' or 'isolated' (got 'portfolio')"),
    ("margin.mode=true", "margin.mode", "(got True)"),
    ('mark.method="vwap"', "mark.method", "unknown mark method 'vwap'"),
    ("mark.basis_window_seconds=0", "mark.basis_window_seconds", "greater than 0 (got 0)"),
    ("mark.stale_seconds=-5.0", "mark.stale_seconds", "greater than 0 (got -5.0)"),
    ("mark.stale_seconds=inf", "mark.stale_seconds", "finite number (got inf)"),
    ("funding.interval_seconds=-1.0", "funding.interval_seconds", "(got -1.0)"),
    ('funding.interval_seconds="8h"', "funding.interval_seconds", "valid number (got '8h')"),
    ("funding.interest=inf", "funding.interest", "finite number (got inf)"),
    ("funding.clamp=-0.1", "funding.clamp", "(got -0.1)"),
    ("funding.impact_notional=0", "funding.impact_notional", "greater than 0 (got 0)"),
    ("market.taker_fee=-0.001", "market.taker_fee", "(got -0.001)"),
    ("market.maker_fee=nan", "market.maker_fee", "finite number (got nan)"),
    ("market.price_band=1.0", "market.price_band", "less than 1 (got 1.0)"),
    ("market.price_band=-0.1", "market.price_band", "(got -0.1)"),
    ("market.price_band=true", "market.price_band", "valid number (got True)"),
    ("market.index_feedback=0.5", "market.index_feedback", "removed"),
    ("impact.venue_share=0", "impact.venue_share", "greater than 0 (got 0)"),
    ("impact.venue_share=1.5", "impact.venue_share", "less than or equal to 1 (got 1.5)"),
    ("impact.venue_share=inf", "impact.venue_share", "finite number (got inf)"),
    ("impact.y=-1.0", "impact.y", "(got -1.0)"),
    ("impact.beta=0", "impact.beta", "greater than 0 (got 0)"),
    ("impact.decay_seconds=0", "impact.decay_seconds", "greater than 0 (got 0)"),
    ("impact.daily_volatility.BTC=-0.1", "impact.daily_volatility.BTC", "(got -0.1)"),
    ("impact.daily_volatility.DOGE=0.1", "impact.daily_volatility", "unknown instrument 'DOGE'"),
    # liquidation
    ('liquidation.mode="half"', "liquidation.mode", "'partial' or 'full' (got 'half')"),
    ("liquidation.buffer=-0.1", "liquidation.buffer", "(got -0.1)"),
    ("liquidation.penalty=inf", "liquidation.penalty", "finite number (got inf)"),
    ("liquidation.fee=-0.01", "liquidation.fee", "(got -0.01)"),
    ("liquidation.step_cap=0", "liquidation.step_cap", "greater than 0 (got 0)"),
    ("liquidation.step_cap=1.5", "liquidation.step_cap", "(got 1.5)"),
    ("liquidation.rounds=0", "liquidation.rounds", "(got 0)"),
    ("liquidation.rounds=2.5", "liquidation.rounds", "valid integer (got 2.5)"),
    ("liquidation.rounds=true", "liquidation.rounds", "valid integer (got True)"),
    ('liquidation.fallback="adl"', "liquidation.fallback", "valid list (got 'adl')"),
    ('liquidation.fallback=["pray"]', "liquidation.fallback[0]", "(got 'pray')"),
    ("liquidation.insurance_fund=-1.0", "liquidation.insurance_fund", "(got -1.0)"),
    ("liquidation.insurance_fund=inf", "liquidation.insurance_fund", "finite number (got inf)"),
    ("liquidation.backstop_capital=-1.0", "liquidation.backstop_capital", "(got -1.0)"),
    ("liquidation.unwind_half_life_seconds=-1.0", "liquidation.unwind_half_life_seconds", "(got -1.0)"),
    # populations: counts, signs and distributions
    ('populations.0.type="whale"', "populations[0]", "unknown agent type 'whale'"),
    ("populations.0.count=-1", "populations[0].count", "(got -1)"),
    ("populations.0.count=true", "populations[0].count", "valid integer (got True)"),
    ('populations.0.count="2"', "populations[0].count", "valid integer (got '2')"),
    ("populations.0.count=2.5", "populations[0].count", "valid integer (got 2.5)"),
    ("populations.0.leverage=-2.0", "populations[0].leverage", "draws must lie in (0.0, inf]"),
    ("populations.0.leverage=0.0", "populations[0].leverage", "draws must lie in (0.0, inf]"),
    ("populations.0.leverage=true", "populations[0].leverage", "valid number (got True)"),
    ("populations.0.leverage=inf", "populations[0].leverage", "finite number (got inf)"),
    ('populations.0.leverage="high"', "populations[0].leverage", "valid number (got 'high')"),
    ("populations.0.leverage={uniform=[5.0,1.0]}", "populations[0].leverage", "low <= high, got [5.0, 1.0]"),
    ("populations.0.leverage={uniform=[1.0,inf]}", "populations[0].leverage.uniform[1]", "finite number (got inf)"),
    ("populations.0.leverage={uniform=[1.0]}", "populations[0].leverage.uniform[1]", "Field required"),
    ("populations.0.leverage={uniform=[-1.0,2.0]}", "populations[0].leverage", "draws must lie in (0.0, inf]"),
    ("populations.0.leverage={lognormal=[-2.0,0.5]}", "populations[0].leverage.lognormal[0]", "(got -2.0)"),
    ("populations.0.leverage={lognormal=[2.0,-0.5]}", "populations[0].leverage.lognormal[1]", "(got -0.5)"),
    ("populations.0.leverage={exponential=0.0}", "populations[0].leverage.exponential", "greater than 0 (got 0.0)"),
    ("populations.0.leverage={choice=[]}", "populations[0].leverage.choice", "at least 1 item"),
    ("populations.0.leverage={choice=[1.0,true]}", "populations[0].leverage.choice[1]", "(got True)"),
    ("populations.0.leverage={normal=[1.0,2.0]}", "populations[0].leverage", "expected a number or a table"),
    ("populations.0.collateral.USD=-5.0", "populations[0].collateral.USD", "draws must lie in [0.0, inf]"),
    ("populations.0.collateral.USD={uniform=[-1.0,5.0]}", "populations[0].collateral.USD", "draws must lie in [0.0"),
    ("populations.0.collateral.USD=nan", "populations[0].collateral.USD", "finite number (got nan)"),
    ("populations.0.collateral.DOGE=5.0", "populations[0].collateral", "DOGE is not a [collateral] asset"),
    ('populations.0.instruments="BTC"', "populations[0].instruments", "valid list (got 'BTC')"),
    ('populations.0.instruments=["DOGE"]', "populations[0].instruments", "unknown instrument 'DOGE'"),
    ('populations.0.params.side="sideways"', "populations[0]: params.side", "(got 'sideways')"),
    ("populations.0.params.long_share=1.5", "populations[0]: params.long_share", "(got 1.5)"),
    ("populations.0.params.stop_share=true", "populations[0]: params.stop_share", "valid number (got True)"),
    ("populations.0.params.stop_loss={uniform=[0.5,2.0]}", "populations[0]: params.stop_loss", "draws must lie in"),
    ("populations.0.params.wallet=-1.0", "populations[0]: params.wallet", "draws must lie in [0.0, inf]"),
    ("populations.1.params.levels=0", "populations[1]: params.levels", "(got 0)"),
    ("populations.1.params.levels=true", "populations[1]: params.levels", "valid integer (got True)"),
    ("populations.1.params.levels=2.5", "populations[1]: params.levels", "valid integer (got 2.5)"),
    ("populations.1.params.index_weight={uniform=[0.5,2.0]}", "populations[1]: params.index_weight", "[0.0, 1.0]"),
    ('populations.1.params.reference="last"', "populations[1]: params.reference", "(got 'last')"),
    ("populations.1.params.order_notional=inf", "populations[1]: params.order_notional", "finite number (got inf)"),
    ("populations.1.params.vol_seconds=0", "populations[1]: params.vol_seconds", "greater than 0 (got 0)"),
    ("populations.1.params.colour=1", "populations[1]: params.colour", "Extra inputs are not permitted"),
    # accounts and shocks
    ("accounts.0.collateral.USD=-1.0", "accounts[0].collateral.USD", "(got -1.0)"),
    ("accounts.0.collateral.USD=inf", "accounts[0].collateral.USD", "finite number (got inf)"),
    ("accounts.0.positions.BTC.entry=0", "accounts[0].positions.BTC.entry", "greater than 0 (got 0)"),
    ("accounts.0.positions.BTC.qty=nan", "accounts[0].positions.BTC.qty", "finite number (got nan)"),
    ("accounts.0.positions.BTC.qty=true", "accounts[0].positions.BTC.qty", "valid number (got True)"),
    ("accounts.0.positions.DOGE={qty=1.0,entry=1.0}", "accounts[0].positions", "unknown instrument 'DOGE'"),
    ("accounts.0.name=1", "accounts[0].name", "valid string (got 1)"),
    ("shocks.0.step=0", "shocks[0].step", "(got 0)"),
    ("shocks.0.step=true", "shocks[0].step", "valid integer (got True)"),
    ("shocks.0.size=-1.0", "shocks[0].size", "greater than -1 (got -1.0)"),
    ("shocks.0.size=inf", "shocks[0].size", "finite number (got inf)"),
    ("shocks.0.duration=0", "shocks[0].duration", "(got 0)"),
    ('shocks.0.instrument="DOGE"', "shocks[0].instrument", "unknown instrument 'DOGE'"),
]


@pytest.mark.parametrize(("overrides", "key", "fragment"), BAD_INPUTS, ids=lambda v: v if isinstance(v, str) else None)
def test_bad_inputs_are_one_line_naming_file_key_and_value(tmp_path, overrides, key, fragment):
    path = write(tmp_path, FULL)
    with pytest.raises(ConfigError) as info:
        load_config(path, [overrides] if isinstance(overrides, str) else list(overrides))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}: ") or message.startswith(f"{path}: {key} "), message
    assert fragment in message, message


def test_the_bad_input_table_is_large_and_the_full_config_valid(tmp_path):
    assert len(BAD_INPUTS) >= 100
    assert load_config(write(tmp_path, FULL)).populations[0].leverage == 2.0

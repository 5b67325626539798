"""Experiment configs: TOML files validated by pydantic.

Every table forbids unknown keys; a bad value or key is reported as one line naming the
file, the key path and the value (`ConfigError`). `load_config` also applies
``--set key.path=value`` overrides (the value is parsed as TOML, so ``1e-3``, ``true``,
``"text"`` and ``[1, 2]`` work; a bare word is taken as a string).

Units: prices USD, sizes base units, rates fractions (0.005 = 0.5 %). Time: ``steps``,
``record_every`` and shocks count steps; every other duration (funding interval, mark
windows, impact decay, unwinding, agents' windows) is in seconds, converted with
``step_seconds``.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agents import AGENT_TYPES
from agents.base import NonNegativeDist, PositiveDist
from sim.distributions import DISTRIBUTION_NAMES
from sim.marks import MARK_RULES
from sim.prices import PROCESSES, load_replay

Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


class ConfigError(ValueError):
    """An unusable config; the message is one line naming file, key and value."""


class _Strict(BaseModel):
    """Unknown keys are errors; numbers and booleans are taken as they are written (no
    ``true`` for 1, no ``"30"`` for 30; an integer is a valid float); no inf or nan."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# --------------------------------------------------------------------- market
class PriceConfig(_Strict):
    """The exogenous reference path X (the rest of the market); parameters per step."""

    process: str = "gbm"
    drift: float = 0.0
    volatility: Annotated[float, Field(ge=0)] = 0.001
    jump_intensity: Annotated[float, Field(ge=0)] = 0.0
    jump_mean: float = 0.0
    jump_std: Annotated[float, Field(ge=0)] = 0.0
    garch_omega: Positive = 1e-7
    garch_alpha: Fraction = 0.05
    garch_beta: Fraction = 0.9
    file: str | None = None
    column: str | None = None

    @model_validator(mode="after")
    def _check(self) -> PriceConfig:
        if self.process not in PROCESSES:
            raise ValueError(f"unknown process {self.process!r}, choose from {sorted(PROCESSES)}")
        if self.process == "garch" and self.garch_alpha + self.garch_beta >= 1:
            raise ValueError("garch_alpha + garch_beta must be < 1")
        if self.process == "replay" and not self.file:
            raise ValueError("process 'replay' needs file = 'path/to/prices.csv'")
        return self


class TierConfig(_Strict):
    floor: Annotated[float, Field(ge=0)]
    mmr: Annotated[float, Field(gt=0, lt=1)]
    max_leverage: Annotated[float, Field(ge=1)]


class InstrumentConfig(_Strict):
    tick: Positive
    lot: Positive
    initial_price: Positive
    base_asset: str | None = None
    tiers: list[TierConfig] = Field(
        default_factory=lambda: [TierConfig(floor=0, mmr=0.005, max_leverage=20)], min_length=1
    )
    price: PriceConfig = PriceConfig()

    @model_validator(mode="after")
    def _tick_below_price(self) -> InstrumentConfig:
        if self.tick >= self.initial_price:
            raise ValueError(f"tick must be smaller than initial_price {self.initial_price:g} (got {self.tick:g})")
        return self

    def tier_problem(self) -> str | None:
        """``"tiers[k].key: what (got value)"`` for the first tier the brackets cannot
        use (`sim.instruments.MarginTiers` rules), or None."""
        previous = None
        for k, tier in enumerate(self.tiers):
            if k == 0 and tier.floor != 0:
                return f"tiers[0].floor: the first tier must start at notional 0 (got {tier.floor})"
            if previous is not None and tier.floor <= previous.floor:
                return f"tiers[{k}].floor: tier floors must increase (got {tier.floor} after {previous.floor})"
            if previous is not None and tier.mmr < previous.mmr:
                return f"tiers[{k}].mmr: maintenance rates must not decrease (got {tier.mmr} after {previous.mmr})"
            if previous is not None and tier.max_leverage > previous.max_leverage:
                return (
                    f"tiers[{k}].max_leverage: leverage must not rise with the tier "
                    f"(got {tier.max_leverage} after {previous.max_leverage})"
                )
            if tier.mmr >= 1 / tier.max_leverage:
                return (
                    f"tiers[{k}].mmr: must be below the initial rate 1/max_leverage = {1 / tier.max_leverage:g} "
                    f"(got {tier.mmr})"
                )
            previous = tier
        return None


class CollateralConfig(_Strict):
    haircut: Fraction = 0.0
    liability_weight: Annotated[float, Field(ge=1)] = 1.0
    #: Maintenance margin on a debt in this asset (a negative balance), so that an account
    #: with debt and only collateral is liquidated: Binance's cross margin liquidates at a
    #: margin level (assets / debt) of 1.1, a tenth of the debt.
    liability_mmr: Annotated[float, Field(ge=0, lt=1)] = 0.1


class MarginConfig(_Strict):
    mode: Literal["cross", "isolated"] = "cross"


class MarkConfig(_Strict):
    """The mark rule (`sim.marks`). Default: Binance's median of three."""

    method: str = "median"
    #: Binance COIN-M perpetuals: 30 basis samples, one every 5 s (2.5 minutes).
    basis_window_seconds: Positive = 150.0
    #: A last trade older than this falls back to the index (cascadelab's rule).
    stale_seconds: Positive = 60.0

    @field_validator("method")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in MARK_RULES:
            raise ValueError(f"unknown mark method {value!r}, choose from {sorted(MARK_RULES)}")
        return value


class FundingConfig(_Strict):
    #: Binance, Bybit and OKX pay every 8 h (Hyperliquid and dYdX every hour); 0 = off.
    interval_seconds: Annotated[float, Field(ge=0)] = 28_800.0
    #: Binance's interest rate component: 0.01 % per 8 h interval.
    interest: float = 0.0001
    #: Binance's clamp on (interest - premium): 0.05 %.
    clamp: Annotated[float, Field(ge=0)] = 0.0005
    impact_notional: Positive = 10_000.0
    #: Cap and floor of the rate per interval (0 = none): Binance USDⓈ-M caps at 75 % of
    #: the maintenance rate, +-0.3 % per interval for BTCUSDT's 0.4 %.
    cap: Annotated[float, Field(ge=0)] = 0.003


class MarketConfig(_Strict):
    taker_fee: Annotated[float, Field(ge=0)] = 0.0005
    maker_fee: float = 0.0002
    #: Orders must be priced within this fraction of the mark (0 = no band): Binance's
    #: PERCENT_PRICE filter keeps BTCUSDT orders within 0.95-1.05 of the mark.
    price_band: Annotated[float, Field(ge=0, lt=1)] = 0.05


class ImpactConfig(_Strict):
    """How this venue's aggressive flow moves the index (`sim.impact`)."""

    #: Share of the instruments' global volume traded on this venue. A top-three
    #: derivatives venue (Bybit, OKX) trades roughly a fifth of crypto perpetual volume.
    venue_share: Annotated[float, Field(gt=0, le=1)] = 0.2
    #: Y of the square-root law: order 1 (Tóth et al. 2011; Donier & Bonart 2015 for BTC).
    y: Annotated[float, Field(ge=0)] = 1.0
    #: Decay exponent of the propagator G(l) = (1 + l/l0)^-beta (Bouchaud et al. 2004).
    beta: Annotated[float, Field(gt=0)] = 0.5
    #: l0, seconds: how long impact holds before it decays, the resilience time of the
    #: market's books (Obizhaeva & Wang 2013), seconds on liquid crypto venues; with
    #: beta = 1/2 a step's impact is halved after 15 s and a tenth of it stays after 8 min.
    decay_seconds: Positive = 5.0
    #: sigma_D per instrument (fraction per day); default: the exogenous path's realized
    #: daily volatility before scheduled shocks.
    daily_volatility: dict[str, Positive] = Field(default_factory=dict)


class LiquidationConfig(_Strict):
    mode: Literal["partial", "full"] = "partial"
    buffer: Annotated[float, Field(ge=0)] = 0.005
    penalty: Annotated[float, Field(ge=0)] = 0.0025
    fee: Annotated[float, Field(ge=0)] = 0.001
    step_cap: Annotated[float, Field(gt=0, le=1)] = 1.0
    rounds: Annotated[int, Field(ge=1)] = 5
    #: The loss waterfall after the book (`sim.waterfall`); default as Binance and
    #: BitMEX run it: fund takeover, then ADL (the backstop acts once it has capital).
    fallback: list[Literal["insurance_fund", "backstop", "adl", "socialize", "none"]] = Field(
        default_factory=lambda: ["insurance_fund", "backstop", "adl"]
    )
    #: Who keeps a fill better than the bankruptcy price: "dydx" (the trader, minus the
    #: fund's capped fee) or "binance" (the fund, as Binance and BitMEX).
    clearance: Literal["dydx", "binance"] = "dydx"
    insurance_fund: Annotated[float, Field(ge=0)] = 100_000.0
    #: The backstop vault's capital (Hyperliquid's HLP); 0 = it takes over nothing at a loss.
    backstop_capital: Annotated[float, Field(ge=0)] = 0.0
    #: Half-life, seconds, of the fund's and backstop's selling of positions they took
    #: over (into the rest of the market, with impact; 0 = all in the step they took them).
    unwind_half_life_seconds: Annotated[float, Field(ge=0)] = 60.0
    #: USD debt (a negative USD balance) above which other collateral is converted to
    #: repay it every step, liquidatable or not (Binance multi-assets mode's
    #: auto-exchange); None = only when the account is liquidated.
    auto_convert_debt: Annotated[float, Field(ge=0)] | None = None

    def problem(self) -> str | None:
        """``"key: what (got value)"`` for switches that do not fit together, or None."""
        if self.clearance == "binance" and self.mode != "full":
            return (
                "liquidation.clearance: 'binance' gives the fund everything above the bankruptcy price, "
                "so partial fills never lift the margin ratio: it needs mode = 'full' (got 'binance')"
            )
        return None

    def tier_problem(self, name: str, tier: int, mmr: float) -> str | None:
        """``"key: what (got value)"`` when partial sizing cannot use instrument ``name``'s
        tier ``tier``: it divides by ``mmr + buffer - penalty - fee`` (MARGIN-SPEC 4)."""
        rate = mmr + self.buffer - self.penalty - self.fee
        if self.mode == "partial" and rate <= 0:
            return (
                f"liquidation.penalty: penalty + fee must stay below mmr + buffer of every tier "
                f"(instruments.{name}.tiers[{tier}]: {mmr:g} + {self.buffer:g} - {self.penalty:g} - {self.fee:g} "
                f"= {rate:.6g}) (got {self.penalty})"
            )
        return None


# ---------------------------------------------------------------------- agents
class PopulationConfig(_Strict):
    type: str
    count: Annotated[int, Field(ge=0)]
    #: Each agent's deposit per asset (>= 0; a negative deposit is no deposit).
    collateral: dict[str, NonNegativeDist] = Field(default_factory=lambda: {"USD": 10_000.0})
    #: Position size / equity (> 0: the side is the agent's, e.g. a holder's ``side``).
    leverage: PositiveDist = 1.0
    instruments: list[str] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    #: This population's margin mode (default: ``margin.mode``).
    margin_mode: Literal["cross", "isolated"] | None = None

    @model_validator(mode="after")
    def _check(self) -> PopulationConfig:
        agent = AGENT_TYPES.get(self.type)
        if agent is None:
            raise ValueError(f"unknown agent type {self.type!r}, choose from {sorted(AGENT_TYPES)}")
        try:
            agent.Params.model_validate(self.params)
        except ValidationError as err:
            raise ValueError(f"params.{describe(err)}") from None
        return self


class PositionConfig(_Strict):
    qty: float
    entry: Positive


class AccountConfig(_Strict):
    name: str
    collateral: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    positions: dict[str, PositionConfig] = Field(default_factory=dict)
    #: This account's margin mode (default: ``margin.mode``).
    margin_mode: Literal["cross", "isolated"] | None = None


class ShockConfig(_Strict):
    """A scheduled index move; one after the last step has no effect (handy with
    ``--set steps=...`` for a short look at a long config)."""

    step: Annotated[int, Field(ge=1)]
    instrument: str
    size: Annotated[float, Field(gt=-1)]
    duration: Annotated[int, Field(ge=1)] = 1


# ---------------------------------------------------------------------- config
class Config(_Strict):
    """A whole experiment. See the README's configuration reference."""

    seed: Annotated[int, Field(ge=0)] = 0
    steps: Annotated[int, Field(ge=1)]
    #: Simulated seconds per step: every window, lifetime and half-life in the config is
    #: in seconds and converted with it. 1 s by default: venues update index and mark
    #: prices every 1-5 s (MARKET-MODEL section 4).
    step_seconds: Positive = 1.0
    record_every: Annotated[int, Field(ge=1)] = 10
    correlation: list[list[float]] | None = None
    instruments: dict[str, InstrumentConfig] = Field(min_length=1)
    collateral: dict[str, CollateralConfig] = Field(default_factory=lambda: {"USD": CollateralConfig()})
    margin: MarginConfig = MarginConfig()
    mark: MarkConfig = MarkConfig()
    funding: FundingConfig = FundingConfig()
    market: MarketConfig = MarketConfig()
    impact: ImpactConfig = ImpactConfig()
    liquidation: LiquidationConfig = LiquidationConfig()
    populations: list[PopulationConfig] = Field(default_factory=list)
    accounts: list[AccountConfig] = Field(default_factory=list)
    shocks: list[ShockConfig] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        """Keys of older configs get a line that names their replacement."""
        if not isinstance(data, dict):
            return data
        for table, key, instead in RENAMED_KEYS:
            section = data.get(table)
            if isinstance(section, dict) and key in section:
                raise ValueError(f"{table}.{key}: removed; {instead}")
        return data

    @field_validator("collateral")
    @classmethod
    def _usd_first(cls, value: dict[str, CollateralConfig]) -> dict[str, CollateralConfig]:
        if "USD" not in value:
            raise ValueError("collateral must include the settlement asset USD")
        return {"USD": value["USD"], **{k: v for k, v in value.items() if k != "USD"}}

    @model_validator(mode="after")
    def _cross_references(self) -> Config:
        names = list(self.instruments)
        assets = {inst.base_asset or name for name, inst in self.instruments.items()}
        for asset in self.collateral:
            if asset != "USD" and asset not in assets:
                raise ValueError(f"collateral {asset}: no instrument has it as base asset")
        if self.correlation is not None:
            corr = np.array(self.correlation, dtype=float)
            if corr.shape != (len(names), len(names)) or not np.allclose(corr, corr.T):
                raise ValueError(f"correlation must be a symmetric {len(names)}x{len(names)} matrix (order: {names})")
            if np.any(np.linalg.eigvalsh(corr) <= 0) or not np.allclose(np.diag(corr), 1):
                raise ValueError("correlation must be positive definite with ones on the diagonal")
        for name in self.impact.daily_volatility:
            if name not in self.instruments:
                raise ValueError(f"impact.daily_volatility: unknown instrument {name!r}")
        for i, shock in enumerate(self.shocks):
            if shock.instrument not in self.instruments:
                raise ValueError(f"shocks[{i}].instrument: unknown instrument {shock.instrument!r}")
        for i, pop in enumerate(self.populations):
            for name in pop.instruments or ():
                if name not in self.instruments:
                    raise ValueError(f"populations[{i}].instruments: unknown instrument {name!r}")
            for asset in pop.collateral:
                if asset not in self.collateral:
                    raise ValueError(f"populations[{i}].collateral: {asset} is not a [collateral] asset")
        for i, acc in enumerate(self.accounts):
            for name in acc.positions:
                if name not in self.instruments:
                    raise ValueError(f"accounts[{i}].positions: unknown instrument {name!r}")
            for asset in acc.collateral:
                if asset not in self.collateral:
                    raise ValueError(f"accounts[{i}].collateral: {asset} is not a [collateral] asset")
        return self

    @model_validator(mode="after")
    def _margin_rules_fit(self) -> Config:
        """Tiers every instrument can use, and liquidation rules that fit them, so that a
        config that loads never fails mid-run."""
        problem = self.liquidation.problem()
        if problem is not None:
            raise ValueError(problem)
        for name, inst in self.instruments.items():
            problem = inst.tier_problem()
            if problem is not None:
                raise ValueError(f"instruments.{name}.{problem}")
            for k, tier in enumerate(inst.tiers):
                problem = self.liquidation.tier_problem(name, k, tier.mmr)
                if problem is not None:
                    raise ValueError(problem)
        return self

    def canonical_json(self) -> str:
        """The resolved config as sorted JSON: what the hash and the manifest use."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def hash(self) -> str:
        """SHA-256 of the canonical JSON, hex."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


#: (table, key, what to use instead) of keys that older configs may still carry.
RENAMED_KEYS = (
    (
        "market",
        "index_feedback",
        "the venue's aggressive flow now moves the index through [impact] "
        "(venue_share, y, beta, decay_seconds, daily_volatility)",
    ),
    ("funding", "interval", "use funding.interval_seconds (time is in seconds now)"),
    ("mark", "basis_window", "use mark.basis_window_seconds (time is in seconds now)"),
)


# ----------------------------------------------------------------------- loading
def load_config(path: str | Path, overrides: list[str] = (), seed: int | None = None) -> Config:
    """Read, override and validate a config file.

    Args:
        path: The TOML file.
        overrides: ``key.path=value`` strings applied in order.
        seed: Replaces ``seed`` when given.

    Raises:
        ConfigError: missing file, invalid TOML, bad override or failed validation.
    """
    path = Path(path)
    data = read_toml(path)
    for item in overrides:
        apply_override(data, item, path)
    if seed is not None:
        data["seed"] = seed
    return validate(data, path)


def check_replay_files(config: Config) -> None:
    """Read every replay file of ``config`` as the run will, so a bad one fails before
    anything is simulated or written (sweeps read them in the run instead: a file may
    appear before its run does).

    Raises:
        PriceDataError: naming the file and row.
    """
    for name, inst in config.instruments.items():
        if inst.price.process == "replay":
            load_replay(Path(inst.price.file), inst.price.column or name, config.steps)


def read_toml(path: Path) -> dict:
    """The raw TOML of a file, or a `ConfigError` naming it."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from err


def validate(data: dict, path: Path) -> Config:
    """Validate raw TOML read from ``path`` (replay files resolve relative to it)."""
    _resolve_paths(data, path.parent)
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{path}: {describe(err)}") from None


def apply_override(data: dict, item: str, path: Path) -> None:
    """Apply one ``key.path=value`` string (the value in TOML syntax, else a string)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected key.path=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    set_value(data, key.strip(), value, f"--set {item!r}", path)


def set_value(data: dict, key: str, value: Any, origin: str, path: Path) -> None:
    """Set ``key`` (dotted; list items by index: ``populations.0.count``) in raw TOML.

    Args:
        data: The raw TOML dict, changed in place.
        key: The dotted key path.
        value: The new value.
        origin: What asked for it, for error messages (e.g. ``--set 'a=1'``).
        path: The config file, for error messages.
    """
    node: Any = data
    parts = key.split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{origin}: no list item {part} in {path}")
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, dict | list):
            raise ConfigError(f"{origin}: {part} is not a table in {path}")
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ConfigError(f"{origin}: no list item {last} in {path}")
        node[int(last)] = value
    else:
        node[last] = value


def _resolve_paths(data: dict, base: Path) -> None:
    """Make replay file paths relative to the config file absolute."""
    instruments = data.get("instruments")
    for inst in instruments.values() if isinstance(instruments, dict) else ():  # else: validation says so
        price = inst.get("price") if isinstance(inst, dict) else None
        if isinstance(price, dict) and isinstance(price.get("file"), str):
            file = Path(price["file"])
            price["file"] = str(file if file.is_absolute() else (base / file).resolve())


def describe(err: ValidationError) -> str:
    """The first validation error as ``key.path: message (got value)``."""
    errors = err.errors()
    first = _distribution_error(errors) or errors[0]
    loc = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in first["loc"]).replace(".[", "[")
    # pydantic names the union member it tried ("float", "Uniform", ...): drop those parts
    loc = ".".join(p for p in loc.split(".") if p not in DISTRIBUTION_NAMES and not p.startswith("function-"))
    message = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    return f"{loc}: {message}{shown}" if loc else f"{message}{shown}"


def _distribution_error(errors: list[dict]) -> dict | None:
    """For a table given where a distribution goes, the error of the distribution it
    names (pydantic lists the number branch's error first); None otherwise."""
    first = errors[0]
    if not (first["loc"] and first["loc"][-1] == "float" and isinstance(first.get("input"), dict)):
        return None
    at = len(first["loc"]) - 1
    branches = [error for error in errors[1:] if error["loc"][:at] == first["loc"][:at] and len(error["loc"]) > at]
    wrong = {e["loc"][at] for e in branches if e["type"] == "extra_forbidden" and len(e["loc"]) == at + 2}
    named = next((error for error in branches if error["loc"][at] not in wrong), None)
    if named is not None:
        return named
    return {
        "loc": first["loc"][:at],
        "msg": "expected a number or a table: uniform, lognormal, exponential or choice",
        "input": ", ".join(f"{key} = ..." for key in first["input"]) or "{}",
    }

"""Exogenous index price paths, one column per instrument, drawn up front.

Processes (per instrument, parameters per step):

- ``gbm``: log-returns ``drift - vol^2 / 2 + vol * z``.
- ``jump``: GBM plus Merton jumps: a Poisson(``jump_intensity``) number of jumps per
  step, each a normal log-jump (``jump_mean``, ``jump_std``); the drift is compensated
  so the expected price growth is ``drift``.
- ``garch``: GARCH(1,1) variance ``s2_t = omega + alpha * r_{t-1}^2 + beta * s2_{t-1}``
  started at its long-run level ``omega / (1 - alpha - beta)``.
- ``replay``: prices read from a CSV or parquet file (see `load_replay`).

The Gaussian shocks ``z`` of all non-replay instruments are correlated through the
Cholesky factor of the configured correlation matrix. Scheduled shocks then multiply
a path from their step on by ``(1 + size)``, reached gradually over ``duration`` steps.

Units: prices USD; ``paths[t, m]`` is instrument m's index at step t, row 0 the
initial price, so a run of N steps uses rows 0..N.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl


class PriceDataError(ValueError):
    """A replay file that cannot be used; the message names the file and row."""


@dataclass(frozen=True)
class ProcessSpec:
    """One instrument's process (see the module docstring for the parameters' roles)."""

    process: str = "gbm"
    initial_price: float = 100.0
    drift: float = 0.0
    volatility: float = 0.001
    jump_intensity: float = 0.0
    jump_mean: float = 0.0
    jump_std: float = 0.0
    garch_omega: float = 1e-7
    garch_alpha: float = 0.05
    garch_beta: float = 0.9
    file: Path | None = None
    column: str | None = None


@dataclass(frozen=True)
class Shock:
    """Move instrument ``instrument`` by ``size`` (e.g. -0.15) starting at ``step``."""

    step: int
    instrument: int
    size: float
    duration: int = 1


def simulate_paths(
    specs: Sequence[ProcessSpec],
    steps: int,
    rng: np.random.Generator,
    correlation: np.ndarray | None = None,
    shocks: Sequence[Shock] = (),
) -> np.ndarray:
    """Draw all index paths.

    Args:
        specs: One process per instrument (I of them), ``process`` a key of `PROCESSES`.
        steps: Number of steps N.
        rng: The price stream's generator.
        correlation: (I, I) correlation of the Gaussian shocks; identity if None.
        shocks: Scheduled moves.

    Returns:
        (N + 1, I) index prices, USD.
    """
    n_inst = len(specs)
    corr = np.eye(n_inst) if correlation is None else np.asarray(correlation, dtype=float)
    z = rng.standard_normal((steps, n_inst)) @ np.linalg.cholesky(corr).T
    paths = np.empty((steps + 1, n_inst))
    for m, spec in enumerate(specs):
        paths[:, m] = PROCESSES[spec.process](spec, z[:, m], rng)
    return apply_shocks(paths, shocks)


def apply_shocks(paths: np.ndarray, shocks: Sequence[Shock]) -> np.ndarray:
    """(N + 1, I) paths with scheduled shocks applied (a new array)."""
    out = paths.copy()
    for shock in shocks:
        out[:, shock.instrument] *= shock_factors(shock, paths.shape[0] - 1)
    return out


def daily_volatility(paths: np.ndarray, step_seconds: float) -> np.ndarray:
    """(I,) realized volatility per day of (N + 1, I) paths: std of the log returns per
    step times sqrt(steps per day). Give it the paths *before* scheduled shocks."""
    if paths.shape[0] < 3:
        return np.zeros(paths.shape[1])
    return np.diff(np.log(paths), axis=0).std(axis=0) * np.sqrt(86_400.0 / step_seconds)


def _from_log_returns(spec: ProcessSpec, log_returns: np.ndarray) -> np.ndarray:
    return spec.initial_price * np.exp(np.concatenate([[0.0], np.cumsum(log_returns)]))


def _gbm(spec: ProcessSpec, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    vol = spec.volatility
    return _from_log_returns(spec, spec.drift - 0.5 * vol * vol + vol * z)


def _jump(spec: ProcessSpec, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    vol = spec.volatility
    return _from_log_returns(spec, spec.drift - 0.5 * vol * vol + vol * z + _jumps(spec, z.size, rng))


def _garch(spec: ProcessSpec, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _from_log_returns(spec, _garch_returns(spec, z))


def _replay(spec: ProcessSpec, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return load_replay(spec.file, spec.column, z.size)


def _garch_returns(spec: ProcessSpec, z: np.ndarray) -> np.ndarray:
    """GARCH(1,1) log returns started at the long-run variance."""
    persistence = spec.garch_alpha + spec.garch_beta
    variance = spec.garch_omega / (1.0 - persistence)
    returns = np.empty_like(z)
    for t, shock in enumerate(z):  # a recursion: sequential by nature, N is small
        returns[t] = spec.drift + np.sqrt(variance) * shock
        variance = spec.garch_omega + spec.garch_alpha * returns[t] ** 2 + spec.garch_beta * variance
    return returns


def _jumps(spec: ProcessSpec, steps: int, rng: np.random.Generator) -> np.ndarray:
    """Merton jumps per step, compensated so the expected growth is the drift's."""
    counts = rng.poisson(spec.jump_intensity, steps)
    sizes = spec.jump_mean * counts + spec.jump_std * np.sqrt(counts) * rng.standard_normal(steps)
    compensation = spec.jump_intensity * (np.exp(spec.jump_mean + 0.5 * spec.jump_std**2) - 1.0)
    return sizes - compensation


#: ``price.process`` in configs -> ``(spec, (N,) correlated standard normals, rng) -> (N + 1,) path``.
PROCESSES = {"gbm": _gbm, "jump": _jump, "garch": _garch, "replay": _replay}


def shock_factors(shock: Shock, steps: int) -> np.ndarray:
    """(N + 1,) multipliers: 1 before ``step``, ``(1 + size)^(j / duration)`` while the
    shock unfolds (j = 1..duration), ``1 + size`` after."""
    t = np.arange(steps + 1)
    progress = np.clip((t - shock.step + 1) / shock.duration, 0.0, 1.0)
    return (1.0 + shock.size) ** progress


def load_replay(file: Path | None, column: str | None, steps: int) -> np.ndarray:
    """Read N + 1 prices from a CSV or parquet file.

    The file has a ``step`` or a ``timestamp`` column (rows are taken in that order)
    and one price column per instrument. Rows beyond N + 1 are ignored.

    Raises:
        PriceDataError: missing file or column, a repeated step or timestamp, too few
            rows, or a missing, non-numeric, NaN or non-positive price (naming file and row).
    """
    if file is None or column is None:
        raise PriceDataError("replay needs a file and a column")
    if not file.is_file():
        raise PriceDataError(f"{file}: no such file")
    try:
        frame = pl.read_parquet(file) if file.suffix == ".parquet" else pl.read_csv(file, infer_schema_length=None)
    except Exception as err:  # polars raises several error types for unreadable files
        raise PriceDataError(f"{file}: cannot read: {err}") from err
    order = next((c for c in ("step", "timestamp") if c in frame.columns), None)
    if order is None:
        raise PriceDataError(f"{file}: needs a 'step' or 'timestamp' column")
    if column not in frame.columns:
        raise PriceDataError(f"{file}: no price column {column!r} (columns: {', '.join(frame.columns)})")
    repeated = frame.filter(frame[order].is_duplicated())
    if repeated.height:
        raise PriceDataError(f"{file}: {order} {repeated[order][0]} appears {repeated.height} times")
    frame = frame.sort(order)
    if frame.height < steps + 1:
        raise PriceDataError(f"{file}: {frame.height} rows, the run needs {steps + 1} (steps + 1)")
    prices = frame[column].head(steps + 1).cast(pl.Float64, strict=False).to_numpy()
    bad = np.flatnonzero(~(np.isfinite(prices) & (prices > 0)))
    if bad.size:
        row = int(bad[0])
        raw = frame[column][row]
        raise PriceDataError(f"{file}: row {row + 1} ({order} {frame[order][row]}): bad {column} price {raw!r}")
    return prices

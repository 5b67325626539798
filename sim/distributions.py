"""Distributions a config can give instead of a number, for per-agent draws.

A value is a number (fixed), ``{ uniform = [low, high] }``, ``{ lognormal = [median,
sigma] }`` (sigma in log space), ``{ exponential = mean }`` or ``{ choice = [a, b, ...] }``.
Agent parameters and population settings (collateral, leverage) accept them; each agent
gets its own value (one element of its population's `sample` array), so populations are
heterogeneous.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _as_tuple(value: object) -> object:
    """TOML has arrays, not tuples: strict validation takes a list for a pair."""
    return tuple(value) if isinstance(value, list) else value


class Uniform(_Dist):
    uniform: Annotated[tuple[float, float], BeforeValidator(_as_tuple)]

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        low, high = self.uniform
        if not (np.isfinite(low) and np.isfinite(high) and low <= high):
            raise ValueError(f"uniform needs finite [low, high] with low <= high, got {list(self.uniform)}")
        return self


class LogNormal(_Dist):
    """Log-normal with the given median and log-space standard deviation."""

    lognormal: Annotated[
        tuple[Annotated[float, Field(gt=0, allow_inf_nan=False)], Annotated[float, Field(ge=0, allow_inf_nan=False)]],
        BeforeValidator(_as_tuple),
    ]


class Exponential(_Dist):
    """Exponential with the given mean (PAMS draws its FCN weights this way)."""

    exponential: Annotated[float, Field(gt=0)]


class Choice(_Dist):
    choice: list[float] = Field(min_length=1)


Distribution = float | Uniform | LogNormal | Exponential | Choice
#: Names pydantic puts in error locations for the union's members (dropped from messages).
DISTRIBUTION_NAMES = frozenset({"float", "Uniform", "LogNormal", "Exponential", "Choice"})


def sample(dist: Distribution, rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw n values: a number is fixed, a table names a distribution."""
    if isinstance(dist, Uniform):
        return rng.uniform(*dist.uniform, n)
    if isinstance(dist, LogNormal):
        median, sigma = dist.lognormal
        return median * np.exp(sigma * rng.standard_normal(n))
    if isinstance(dist, Exponential):
        return rng.exponential(dist.exponential, n)
    if isinstance(dist, Choice):
        return rng.choice(np.array(dist.choice), n)
    return np.full(n, float(dist))

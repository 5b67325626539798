"""Space-filling sweep designs and variance-based sensitivity indices (SALib).

A sweep's ``[design]`` replaces the grid: instead of every combination of a few values,
it samples a box of parameter ranges, and afterwards says how much of each metric's
variance each parameter explains.

```toml
[design]
method = "sobol"               # "sobol" (Saltelli/Sobol' sequence) or "latin" (Latin hypercube)
samples = 16                   # sobol: base sample N, a power of 2 -> N * (D + 2) points
                               # latin: the number of points
[design.ranges]                # key path -> [low, high]; two integers sample integers
"impact.venue_share" = [0.05, 0.4]
"populations.0.params.levels" = [2, 5]
```

Indices (`sensitivity`, over each point's mean across seeds): ``sobol``: first-order
``S1`` (the share of the metric's variance explained by the parameter alone) and total
``ST`` (including its interactions), with 95 % bootstrap confidence half-widths (Sobol
2001; Saltelli et al. 2010; SALib's ``sobol.analyze`` without second order). ``latin``:
``S1`` by RBD-FAST (Tarantola et al. 2006; Plischke 2010), no ``ST``. Indices are NaN for
a metric with a missing value (a failed run, an unmeasured fact) or no variance.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Annotated, Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

Bound = int | float

SENSITIVITY_SCHEMA = {
    "metric": pl.String,
    "parameter": pl.String,
    "method": pl.String,
    "S1": pl.Float64,
    "S1_conf": pl.Float64,
    "ST": pl.Float64,
    "ST_conf": pl.Float64,
}


def _pair(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


class Design(BaseModel):
    """A sweep's ``[design]`` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    method: Literal["sobol", "latin"]
    samples: Annotated[int, Field(ge=2)]
    ranges: Annotated[dict[str, Annotated[tuple[Bound, Bound], BeforeValidator(_pair)]], Field(min_length=1)]

    @model_validator(mode="after")
    def _check(self) -> Design:
        for key, (low, high) in self.ranges.items():
            if not low < high:
                raise ValueError(f"ranges.{key}: needs low < high (got [{low}, {high}])")
        if self.method == "sobol" and self.samples & (self.samples - 1):
            raise ValueError(f"samples: sobol needs a power of 2 (got {self.samples})")
        return self

    def problem(self) -> dict[str, Any]:
        """SALib's problem definition."""
        return {
            "num_vars": len(self.ranges),
            "names": list(self.ranges),
            "bounds": [[float(low), float(high)] for low, high in self.ranges.values()],
        }

    def matrix(self, seed: int) -> np.ndarray:
        """The design's points, shape ``(points, parameters)``, in SALib's order (the
        analysis relies on it); integer ranges rounded."""
        from SALib.sample import latin, sobol

        if self.method == "sobol":
            x = sobol.sample(self.problem(), self.samples, calc_second_order=False, seed=seed)
        else:
            x = latin.sample(self.problem(), self.samples, seed=seed)
        for j, (low, high) in enumerate(self.ranges.values()):
            if isinstance(low, int) and isinstance(high, int):
                x[:, j] = np.clip(np.round(x[:, j]), low, high)
        return x

    def points(self, seed: int) -> list[dict[str, Bound]]:
        """The design's points as key path -> value (ints for integer ranges)."""
        integer = [isinstance(lo, int) and isinstance(hi, int) for lo, hi in self.ranges.values()]
        return [
            {key: int(v) if is_int else float(v) for key, v, is_int in zip(self.ranges, row, integer, strict=True)}
            for row in self.matrix(seed)
        ]


def sensitivity(design: Design, seed: int, means: pl.DataFrame) -> pl.DataFrame:
    """Sensitivity indices of every metric to every parameter.

    Args:
        design: The sweep's design.
        seed: The seed the design was sampled with (the sweep's master seed).
        means: One row per design point, in design order (``point`` 0..P-1), with one
            column per metric: its mean over seeds (null or NaN where unknown).

    Returns:
        One row per metric and parameter (`SENSITIVITY_SCHEMA`).
    """
    from SALib.analyze import rbd_fast, sobol

    problem, x = design.problem(), design.matrix(seed)
    metrics = [c for c in means.columns if c != "point"]
    ordered = means.sort("point")
    rows = []
    for metric in metrics:
        y = ordered[metric].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        indices: dict[str, Any] = {}
        if len(y) == len(x) and np.isfinite(y).all() and np.ptp(y) > 0:
            with (
                warnings.catch_warnings(),
                np.errstate(all="ignore"),
                contextlib.suppress(ValueError, ZeroDivisionError),
            ):
                warnings.simplefilter("ignore")  # too few points for the bootstrap: NaN, not a failed sweep
                if design.method == "sobol":
                    indices = sobol.analyze(problem, y, calc_second_order=False, seed=seed)
                else:
                    # M harmonics: SALib's 10 needs hundreds of points; its bootstrap resamples a fifth
                    indices = rbd_fast.analyze(problem, x, y, M=max(1, min(10, len(y) // 20)), seed=seed)
        for j, name in enumerate(problem["names"]):
            rows.append(
                {
                    "metric": metric,
                    "parameter": name,
                    "method": "sobol" if design.method == "sobol" else "rbd_fast",
                    **{key: _index(indices, key, j) for key in ("S1", "S1_conf", "ST", "ST_conf")},
                }
            )
    return pl.DataFrame(rows, schema=SENSITIVITY_SCHEMA)


def _index(indices: dict[str, Any], key: str, j: int) -> float:
    values = indices.get(key)
    return float(values[j]) if values is not None and not math.isnan(float(values[j])) else float("nan")

"""Stylized facts of a run (Cont 2001), measured on the run's own tables.

Every fact is measured per instrument on the venue's mark price (``mark``), its
last-trade price (``last``: forward-filled, leading nulls dropped) and, when the market
table has the columns, the exogenous reference path (``exogenous``), for comparison
with what was put in, and the venue's impact on the index alone (``impact``: the factor
``index / exogenous = exp(impact_bps / 1e4)``, so its "returns" are the changes of the
log impact). Returns are log returns over non-overlapping windows; a horizon
``h`` seconds is ``max(1, round(h / step_seconds))`` steps (rows keep the nominal ``h``)
and a fact is NaN when the run has fewer than `MIN_RETURNS` returns at its horizon.
Facts (the ``fact`` column of `stylized_facts`):

- ``kurtosis``: Pearson kurtosis of r at each horizon (Gaussian: 3), from
  `scipy.stats.kurtosis`; it falls toward 3 as the horizon grows (aggregational
  Gaussianity).
- ``hill_tail_index``: the Hill estimator of the tail index of |r| over its top
  ``tail`` fraction: the maximum-likelihood Pareto exponent of the |r| above the
  quantile, ``scipy.stats.pareto.fit(tail, floc=0, fscale=quantile)`` (the exponent of
  P(|r| > x)); NaN with fewer than `MIN_TAIL` returns in the tail. Cubic law: ≈ 3.
- ``acf`` (lags 1..k) and ``acf_abs`` (lags 1, 10, 50): autocorrelation of r and of
  |r|, from `statsmodels.tsa.stattools.acf`; NaN at lags the returns do not reach.
- ``acf_abs_decay_exponent``: ``-slope`` of log ACF(|r|) against log lag (by
  `scipy.stats.linregress`) over lags 1, 2, ... up to max(acf_abs lags), stopping
  before the first lag where the ACF is not positive (at least 3 lags, else NaN):
  ACF(|r|)(ℓ) ∝ ℓ^(-exponent). Typically 0.2-0.4.
- ``volume_volatility_corr``: Pearson correlation (`scipy.stats.pearsonr`) of the
  traded volume in each return window (base units) with |r| of that window.
- ``impact_variance_share`` (series ``impact``, at the fact horizon): the variance of
  the impact's returns over the variance of the index's, ``var(Δ log impact) /
  var(Δ log index)``: how much of the index's variance the venue's own flow makes.
  It bounds what the venue can do to the tails: for independent parts, the index's
  excess kurtosis is ``(1 - s)² e_X + s² e_I`` (``s`` this share, ``e`` the parts'
  excess kurtosis), so a Gaussian path X needs ``e_I >= 3 / s²`` for a kurtosis of 6
  (the validation prints it; the parts are not quite independent, as traders follow X).
- ``depth_drop`` (series ""): in the mark's worst drawdown window (its running peak to
  its trough), ``1 - min depth / median depth before the peak``, with depth
  ``depth_bid_1pct + depth_ask_1pct`` (base units); NaN without a drawdown or without
  steps before the peak.
- ``cascade_powerlaw_alpha``, ``cascade_powerlaw_xmin``,
  ``cascade_powerlaw_vs_lognormal_ratio`` and ``cascade_powerlaw_vs_lognormal_p``
  (instrument and series ""): ``powerlaw.Fit(accounts, discrete=True)`` of the
  cascade sizes (Clauset, Shalizi & Newman 2009: xmin by minimum KS distance) and its
  normalized log-likelihood ratio R of power law against lognormal (R > 0 favours the
  power law) with its p-value; NaN with fewer than `MIN_CASCADES` cascades, or when
  there is no tail to fit (see `cascade_size_fit`).

``hill_tail_index``, ``acf``, ``acf_abs``, ``acf_abs_decay_exponent`` and
``volume_volatility_corr`` are measured at one horizon, ``fact_horizon`` seconds (60 by
default: minute returns, as in the literature).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import stats
from statsmodels.tsa.stattools import acf

#: Price series measured: name in the facts table -> market column.
SERIES = {
    "mark": "mark_price",
    "last": "last_price",
    "exogenous": "exogenous_price",
    "impact": "impact_factor",  # derived from impact_bps (see `with_impact_factor`)
}
#: Default return horizons in seconds, besides one step.
HORIZONS = (60.0, 300.0, 3600.0)
#: Horizon (s) of the tail, ACF and volume facts: minute returns, as in the literature.
FACT_HORIZON = 60.0
#: Fraction of the largest |r| the Hill estimator uses.
TAIL = 0.05
#: ACF of r at lags 1..ACF_LAGS; of |r| at ABS_ACF_LAGS (in returns).
ACF_LAGS = 10
ABS_ACF_LAGS = (1, 10, 50)
#: Fewest non-overlapping returns a horizon needs.
MIN_RETURNS = 30
#: Fewest returns in the tail the Hill estimator needs.
MIN_TAIL = 10
#: Fewest cascades the cascade-size fit needs.
MIN_CASCADES = 10
#: Bounds of the cascade-size exponent the fit searches (powerlaw's default, [0, 3],
#: would clip steeper laws to 3).
ALPHA_RANGE = {"alpha": [1.0, 20.0]}

FACTS_SCHEMA = {
    "fact": pl.String,
    "instrument": pl.String,
    "series": pl.String,
    "horizon_seconds": pl.Float64,
    "lag": pl.Int64,
    "value": pl.Float64,
}
KEYS = ["fact", "instrument", "series", "horizon_seconds", "lag"]


def stylized_facts(
    market: pl.DataFrame,
    cascades: pl.DataFrame,
    step_seconds: float,
    horizons: Sequence[float] = HORIZONS,
    fact_horizon: float = FACT_HORIZON,
    tail: float = TAIL,
    acf_lags: int = ACF_LAGS,
    abs_acf_lags: Sequence[int] = ABS_ACF_LAGS,
) -> pl.DataFrame:
    """All facts of one run, in long format (see the module docstring).

    Args:
        market: The run's ``market`` table (``exogenous_price`` optional).
        cascades: The run's cascade summary (``accounts`` per cascade).
        step_seconds: Simulated seconds per step.
        horizons: Return horizons for the kurtosis, in seconds (one step is always
            included).
        fact_horizon: The horizon of the tail, ACF and volume facts, in seconds.
        tail: Fraction of the largest |r| the Hill estimator uses.
        acf_lags: ACF of r at lags 1..acf_lags.
        abs_acf_lags: Lags of the ACF of |r| that are reported.

    Returns:
        A frame with `FACTS_SCHEMA`, sorted by `KEYS`: the same inputs give the same
        rows, in the same order.
    """
    rows: list[tuple] = []
    kurtosis_steps = horizon_steps([step_seconds, *horizons], step_seconds)
    every = horizon_steps([fact_horizon], step_seconds)[fact_horizon]
    for instrument in sorted(market.get_column("instrument").unique().to_list()):
        m = with_impact_factor(market.filter(pl.col("instrument") == instrument).sort("step"))
        for series, column in SERIES.items():
            if column not in m.columns:
                continue
            prices, volume = price_path(m, column)
            key = (instrument, series)
            rows += [("kurtosis", *key, h, None, kurtosis(log_returns(prices, k))) for h, k in kurtosis_steps.items()]
            rows += _horizon_rows(key, prices, volume, every, fact_horizon, tail, acf_lags, abs_acf_lags)
        if "impact_factor" in m.columns:
            share = impact_variance_share(m, every)
            rows.append(("impact_variance_share", instrument, "impact", fact_horizon, None, share))
        depth = (m.get_column("depth_bid_1pct") + m.get_column("depth_ask_1pct")).to_numpy()
        drop = depth_drop(m.get_column("mark_price").to_numpy(), depth)
        rows.append(("depth_drop", instrument, "", None, None, drop))
    fit = cascade_size_fit(cascades.get_column("accounts").to_numpy())
    rows += [(f"cascade_powerlaw_{name}", "", "", None, None, value) for name, value in fit.items()]
    frame = pl.DataFrame(rows, schema=FACTS_SCHEMA, orient="row")
    return frame.sort(KEYS, nulls_last=True)


def horizon_steps(horizons: Sequence[float], step_seconds: float) -> dict[float, int]:
    """Horizon (s) -> whole steps, at least one; a number of steps that an earlier
    horizon already gave is left out."""
    out: dict[float, int] = {}
    for h in horizons:
        k = max(1, round(h / step_seconds))
        if k not in out.values():
            out[h] = k
    return out


def with_impact_factor(market: pl.DataFrame) -> pl.DataFrame:
    """The market rows with ``impact_factor = exp(impact_bps / 1e4)`` (index over
    exogenous path) when they have ``impact_bps``; unchanged otherwise."""
    if "impact_bps" not in market.columns:
        return market
    return market.with_columns((pl.col("impact_bps") / 1e4).exp().alias("impact_factor"))


def impact_variance_share(market: pl.DataFrame, every: int) -> float:
    """``var(Δ log impact) / var(Δ log index)`` over non-overlapping windows of
    ``every`` steps, for one instrument's rows (sorted by step, with
    ``impact_factor``); NaN below `MIN_RETURNS` returns or for a constant index."""
    impact = log_returns(price_path(market, "impact_factor")[0], every)
    index = log_returns(price_path(market, "index_price")[0], every)
    if len(index) < MIN_RETURNS or not index.var() > 0:
        return float("nan")
    return float(impact.var() / index.var())


def price_path(market: pl.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """One instrument's prices and volume from its first valid price on.

    Args:
        market: One instrument's market rows, sorted by step.
        column: The price column; nulls are forward-filled, leading nulls dropped.

    Returns:
        ``(prices, volume)``, both of shape (T,): USD and base units per step.
    """
    prices = market.get_column(column).fill_nan(None).forward_fill()
    first = prices.null_count()
    return prices.to_numpy()[first:], market.get_column("volume").to_numpy()[first:]


def log_returns(prices: np.ndarray, every: int) -> np.ndarray:
    """Non-overlapping log returns over ``every`` steps: shape ((T - 1) // every,)."""
    return np.diff(np.log(prices[::every]))


def window_volume(volume: np.ndarray, every: int, n: int) -> np.ndarray:
    """Volume traded in each of the first ``n`` return windows of ``every`` steps.

    A step's volume is what traded during it, so window j (steps j·every to
    (j+1)·every) holds steps j·every + 1 .. (j+1)·every. Shape (n,).
    """
    return volume[1 : 1 + n * every].reshape(n, every).sum(axis=1)


def _horizon_rows(
    key: tuple[str, str],
    prices: np.ndarray,
    volume: np.ndarray,
    every: int,
    horizon: float,
    tail: float,
    lags: int,
    abs_lags: Sequence[int],
) -> list[tuple]:
    """The facts at the fact horizon for one (instrument, series): Hill index, ACF of r
    at lags 1..lags, of |r| at ``abs_lags`` and its decay exponent, volume-volatility."""
    r = log_returns(prices, every)
    linear = autocorrelation(r, lags)
    absolute = autocorrelation(np.abs(r), max(abs_lags))
    return [
        ("hill_tail_index", *key, horizon, None, hill_tail_index(r, tail)),
        *[("acf", *key, horizon, lag, float(linear[lag - 1])) for lag in range(1, lags + 1)],
        *[("acf_abs", *key, horizon, lag, float(absolute[lag - 1])) for lag in abs_lags],
        ("acf_abs_decay_exponent", *key, horizon, None, decay_exponent(absolute)),
        ("volume_volatility_corr", *key, horizon, None, volume_volatility(window_volume(volume, every, len(r)), r)),
    ]


def kurtosis(r: np.ndarray) -> float:
    """Pearson kurtosis (Gaussian: 3) of returns, shape (n,); NaN below `MIN_RETURNS`."""
    if len(r) < MIN_RETURNS:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant returns: NaN
        return float(stats.kurtosis(r, fisher=False))


def hill_tail_index(r: np.ndarray, tail: float = TAIL) -> float:
    """Hill estimate of the tail index of |r| over its top ``tail`` fraction.

    The maximum-likelihood exponent b of P(|r| > x) = (x / xmin)^(-b) over the |r| at
    or above xmin, the (1 - tail) quantile: ``scipy.stats.pareto.fit`` with location 0
    and scale xmin, i.e. ``n / Σ log(|r| / xmin)``.

    Args:
        r: Returns, shape (n,).
        tail: The fraction of the largest |r| used.

    Returns:
        The index, or NaN with fewer than `MIN_RETURNS` returns or `MIN_TAIL` in the
        tail, a zero threshold, or a tail all at the threshold.
    """
    x = np.abs(r)
    if len(x) < MIN_RETURNS:
        return float("nan")
    xmin = float(np.quantile(x, 1.0 - tail))
    top = x[x >= xmin]
    if xmin <= 0 or len(top) < MIN_TAIL or top.max() == xmin:
        return float("nan")
    return float(stats.pareto.fit(top, floc=0, fscale=xmin)[0])


def autocorrelation(x: np.ndarray, lags: int) -> np.ndarray:
    """ACF of ``x`` (shape (n,)) at lags 1..lags, shape (lags,); NaN at lags >= n,
    everywhere below `MIN_RETURNS` values or for a constant series."""
    out = np.full(lags, np.nan)
    if len(x) < MIN_RETURNS:
        return out
    reach = min(lags, len(x) - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant series: NaN
        out[:reach] = acf(x, nlags=reach, fft=True)[1:]
    return out


def decay_exponent(acf_values: np.ndarray) -> float:
    """``-slope`` of log ACF against log lag, over the lags from 1 up to the last one
    before the ACF first stops being positive.

    Args:
        acf_values: ACF at lags 1..L, shape (L,).

    Returns:
        The exponent of ACF(ℓ) ∝ ℓ^(-exponent), or NaN with fewer than 3 such lags
        (no clustering to speak of).
    """
    bad = ~(np.isfinite(acf_values) & (acf_values > 0))
    reach = int(np.argmax(bad)) if bad.any() else len(acf_values)
    if reach < 3:
        return float("nan")
    lags = np.arange(1, reach + 1)
    return float(-stats.linregress(np.log(lags), np.log(acf_values[:reach])).slope)


def volume_volatility(volume: np.ndarray, r: np.ndarray) -> float:
    """Pearson correlation of volume per window with |r| per window (both shape (n,));
    NaN below `MIN_RETURNS` windows or when either is constant."""
    if len(r) < MIN_RETURNS or np.ptp(volume) == 0 or np.ptp(np.abs(r)) == 0:
        return float("nan")
    return float(stats.pearsonr(volume, np.abs(r)).statistic)


def depth_drop(mark: np.ndarray, depth: np.ndarray) -> float:
    """Fraction of book depth gone in the worst drawdown of the mark.

    Args:
        mark: Mark price per step, shape (T,).
        depth: Depth within 1 % of mid per step (bid + ask, base units), shape (T,).

    Returns:
        ``1 - min(depth[peak..trough]) / median(depth[:peak])`` for the window from the
        running peak to the trough of the largest drawdown; NaN if the mark never
        falls, the peak is the first step, or the depth before it is zero.
    """
    drawdown = 1.0 - mark / np.maximum.accumulate(mark)
    trough = int(np.argmax(drawdown))
    peak = int(np.argmax(mark[: trough + 1]))
    if drawdown[trough] <= 0 or peak == 0:
        return float("nan")
    before = float(np.median(depth[:peak]))
    if before <= 0:
        return float("nan")
    return float(1.0 - depth[peak : trough + 1].min() / before)


def cascade_size_fit(sizes: np.ndarray) -> dict[str, float]:
    """Discrete power-law fit of cascade sizes and its comparison with a lognormal.

    Args:
        sizes: Accounts per cascade, shape (n,).

    Returns:
        ``{"alpha", "xmin", "vs_lognormal_ratio", "vs_lognormal_p"}``: the exponent of
        P(s) ∝ s^(-alpha) above xmin, and the normalized log-likelihood ratio R of
        power law against lognormal with its p-value. All NaN with fewer than
        `MIN_CASCADES` cascades or two distinct sizes, or when there is no tail to
        fit (powerlaw finds no sizes in range above its xmin).
    """
    out = dict.fromkeys(("alpha", "xmin", "vs_lognormal_ratio", "vs_lognormal_p"), float("nan"))
    if len(sizes) < MIN_CASCADES or len(np.unique(sizes)) < 2:
        return out
    import powerlaw  # imports matplotlib (~1 s here): only when there is something to fit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = powerlaw.Fit(sizes, discrete=True, parameter_ranges=ALPHA_RANGE, verbose=0)
            ratio, p = fit.distribution_compare("power_law", "lognormal", normalized_ratio=True)
            alpha = fit.power_law.alpha
        except ValueError:  # "No data points in defined range of the distribution."
            return out
    out.update(alpha=alpha, xmin=fit.xmin, vs_lognormal_ratio=ratio, vs_lognormal_p=p)
    return {name: float(value) for name, value in out.items()}


# ------------------------------------------------------------------ headline facts
#: The headline facts, per instrument and series in `HEADLINE_SERIES`, at the fact
#: horizon: (fact, lag, column stem).
HEADLINE_AT_HORIZON = (
    ("kurtosis", None, "kurtosis"),
    ("hill_tail_index", None, "hill"),
    ("acf", 1, "acf"),
    ("acf_abs", 10, "acf_abs"),
    ("volume_volatility_corr", None, "volume_volatility"),
)
HEADLINE_SERIES = ("mark", "last")
#: Headline facts without a series, under their own names.
HEADLINE_PLAIN = (
    "depth_drop",
    "cascade_powerlaw_alpha",
    "cascade_powerlaw_vs_lognormal_ratio",
    "cascade_powerlaw_vs_lognormal_p",
)


def headline_keys(horizon: float = FACT_HORIZON) -> pl.DataFrame:
    """The headline facts' keys and column stems, e.g. ``kurtosis_mark_60s``,
    ``acf_abs_last_60s_lag10``, ``depth_drop``, in display order (``order``)."""
    rows = [
        (fact, series, horizon, lag, f"{stem}_{series}_{horizon:g}s" + (f"_lag{lag}" if lag else ""))
        for series in HEADLINE_SERIES
        for fact, lag, stem in HEADLINE_AT_HORIZON
    ]
    rows += [(fact, "", None, None, fact) for fact in HEADLINE_PLAIN]
    schema = {**{k: FACTS_SCHEMA[k] for k in ("fact", "series", "horizon_seconds", "lag")}, "stem": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row").with_row_index("order")


def headline[F: (pl.DataFrame, pl.LazyFrame)](facts: F) -> F:
    """The headline rows of a facts table, named: the input's columns plus ``column``
    (the stem, then ``_<instrument>`` for per-instrument facts), sorted by display
    order then instrument. Works on eager and lazy frames alike."""
    keys = headline_keys()
    on = ["fact", "series", "horizon_seconds", "lag"]
    suffix = pl.when(pl.col("instrument") != "").then(pl.lit("_") + pl.col("instrument")).otherwise(pl.lit(""))
    return (
        facts.join(keys.lazy() if isinstance(facts, pl.LazyFrame) else keys, on=on, nulls_equal=True)
        .with_columns((pl.col("stem") + suffix).alias("column"))
        .sort("order", "instrument", maintain_order=True)
        .drop("stem", "order")
    )

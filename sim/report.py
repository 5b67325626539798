"""Interactive HTML reports (plotly), fully offline.

plotly's JavaScript is embedded in a run's report (a run folder renders wherever it is
copied) and loaded from ``plotly.min.js`` beside a sweep's report (written once per
sweep by `write_plotly_js`); never from a CDN. The modebar's logo and cloud buttons
are off.
"""

from __future__ import annotations

import contextlib
import html
import math
import re
from functools import cache
from itertools import pairwise
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import polars as pl
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from sim.cascades import cascade_summary_frame
from sim.config import Config, ConfigError, read_toml
from sim.explorer import explorer_sections
from sim.facts import FACT_HORIZON, headline, stylized_facts
from sim.metrics import METRICS, ci95_half_width, run_metrics
from sim.results import (
    CONFIG,
    PLOTLY_JS,
    REPORT,
    RUN_SCHEMA,
    RUNS,
    SENSITIVITY,
    SUMMARY,
    read_table,
    run_folders,
    scan_runs,
)
from sim.timeline import minutes, step_minutes, time_axis

PLOT_CONFIG = {"displaylogo": False, "showSendToCloud": False, "responsive": True}
#: Colours of the liquidation kinds (`sim.liquidation`, `sim.waterfall`), in drawing order;
#: a kind not listed is drawn after them in `OTHER_KIND_COLOR` (see `liquidation_kinds`).
KIND_COLORS = {
    "partial": "#d62728",
    "full": "#8c0000",
    "insurance_fund": "#17becf",
    "backstop": "#9467bd",
    "adl": "#ff7f0e",
    "socialized": "#7f7f7f",
    "deficit": "#bcbd22",
    "conversion": "#8c564b",
}
OTHER_KIND_COLOR = "#333333"
#: Margin-ratio bin edges; the last bin (>= 1: liquidatable) is open-ended.
RATIO_EDGES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: Liquidation rows up to which the price panels draw one marker per row; above, one per
#: step, instrument and kind (notional summed, price notional-weighted), so a run of
#: 100,000 accounts keeps a bounded page.
MARKER_ROWS = 2_000
#: Quantiles of the equity distribution figure (a band from the first to the last, a
#: line at the middle one).
EQUITY_QUANTILES = (0.1, 0.5, 0.9)
SERIES_COLORS = {"exogenous": "#1f77b4", "mark": "#2ca02c", "last": "#aaaaaa", "impact": "#d62728"}


def write_plotly_js(folder: Path) -> Path:
    """Write ``plotly.min.js`` into ``folder`` (once per sweep) and return its path."""
    path = folder / PLOTLY_JS
    if not path.exists():
        path.write_text(get_plotlyjs())
    return path


def page(title: str, sections: list[str], plotly_js: str = "embed") -> str:
    """A complete HTML page from section snippets."""
    script = f"<script>{get_plotlyjs()}</script>" if plotly_js == "embed" else f'<script src="{plotly_js}"></script>'
    body = "\n".join(sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
{script}
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1200px; color: #222; }}
h1 {{ font-size: 1.5rem; }} h2 {{ font-size: 1.15rem; margin-top: 2rem; }}
table.summary {{ border-collapse: collapse; }} table.summary td, table.summary th {{ padding: 2px 10px;
border-bottom: 1px solid #ddd; text-align: right; }} table.summary th {{ text-align: left; }}
p.note {{ color: #555; font-size: 0.9rem; }}
</style></head>
<body><h1>{html.escape(title)}</h1>
{body}
</body></html>
"""


@cache
def _template() -> dict:
    return pio.templates["plotly_white"].to_plotly_json()


def figure(fig: go.Figure | dict, title: str, note: str = "") -> str:
    """One section: heading, optional note, and the plot (plotly.js loaded by `page`).

    ``fig`` is a plotly figure or a plain ``{"data", "layout"}`` dict (not validated).
    """
    if isinstance(fig, go.Figure):
        fig = fig.to_plotly_json()
        fig["layout"].pop("template", None)  # use ours, below
    fig["layout"] = {"template": _template(), "margin": {"l": 60, "r": 20, "t": 30, "b": 40}, **fig["layout"]}
    div = pio.to_html(fig, include_plotlyjs=False, full_html=False, config=PLOT_CONFIG, validate=False)
    extra = f'<p class="note">{html.escape(note)}</p>' if note else ""
    return f"<h2>{html.escape(title)}</h2>{extra}\n{div}"


def table(rows: dict[str, object]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows.items())
    return f'<table class="summary">{cells}</table>'


def _fmt(value: object) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    return html.escape(str(value))


# ---------------------------------------------------------------------- run report
def write_run_report(
    folder: Path,
    tables: dict[str, pl.DataFrame],
    config: Config,
    name: str | None = None,
    metrics: dict[str, float] | None = None,
    facts: pl.DataFrame | None = None,
) -> Path:
    """Write ``report.html`` for one run's tables into ``folder`` (titled ``name``);
    ``metrics`` are the run's `run_metrics` and ``facts`` its `stylized_facts`, computed
    here when not given. plotly.js is embedded, so the folder renders wherever it is
    copied. Time axes are in simulated minutes (`step_minutes`)."""
    metrics = metrics if metrics is not None else run_metrics(tables)
    if facts is None:
        facts = stylized_facts(tables["market"], cascade_summary_frame(tables["liquidations"]), config.step_seconds)
    secs = config.step_seconds
    clock = step_minutes(tables["market"], secs)
    sections = [
        f'<p class="note">seed {config.seed}, {config.steps} steps of {secs:g} s, margin {config.margin.mode}, '
        f"mark {config.mark.method}, liquidation {config.liquidation.mode} "
        f"(fallback {' > '.join(config.liquidation.fallback)}). Prices and money in USD, positions and open "
        "interest in base units of each instrument, time in simulated minutes.</p>",
        "<h2>Summary</h2>" + table(metrics),
        figure(prices_figure(tables, clock), "Prices and liquidations", prices_note(tables["liquidations"])),
        figure(liquidated_figure(tables["liquidations"], clock), "Liquidated notional per step, by kind"),
        figure(fund_figure(tables["ledger"], clock), "Insurance fund and bad debt"),
        figure(open_interest_figure(tables["market"], clock), "Open interest"),
        figure(depth_figure(tables["market"], clock), "Book depth within 1 % of mid"),
        figure(margin_ratio_figure(tables["accounts"], clock), "Margin ratio distribution of trader accounts"),
        figure(
            equity_figure(tables["accounts"], clock),
            "Equity of trader accounts by agent type",
            "Median (line) and 10-90 % band (shaded) at each snapshot of accounts.parquet; log scale (negative "
            "equity is off the scale: see bad debt above).",
        ),
        "<h2>Stylized facts</h2>"
        f'<p class="note">Log returns of the mark and last-trade price at {FACT_HORIZON:g} s: kurtosis (Gaussian: 3), '
        "Hill tail index of |r| (cubic law: 3), ACF of r at lag 1 and of |r| at lag 10, corr(volume, |r|); "
        "the depth lost in the mark's worst drawdown; the cascade-size power law (alpha) and its log-likelihood "
        "ratio against a lognormal (R > 0 favours the power law) with its p-value. n/a: too few returns at the "
        "horizon or too few cascades. All facts: facts.parquet.</p>" + table(_headline_rows(facts)),
        figure(
            facts_figure(facts),
            "Aggregational Gaussianity and volatility clustering",
            "Kurtosis of log returns by horizon (left; dashed: Gaussian); autocorrelation of |r| by lag at "
            f"{FACT_HORIZON:g} s (right). Missing points: too few returns.",
        ),
        *explorer_sections(tables, clock, _template()),
    ]
    path = folder / REPORT
    path.write_text(page(f"cascadelab run: {name or folder.name}", sections))
    return path


def _col(frame: pl.DataFrame, column: str) -> list:
    return frame.get_column(column).to_list()


def _nan_to_none(values: list) -> list:
    """Plot values with NaN as None (a gap: JSON has no NaN)."""
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]


def _plot(traces: list[dict], height: int, **layout: object) -> dict:
    """A figure as a plain dict: built without plotly's per-property validation, which
    costs more than the rest of a small run's output put together."""
    return {"data": traces, "layout": {"height": height, **layout}}


def _line(x: list, y: list, name: str, **extra: object) -> dict:
    return {"type": "scatter", "mode": "lines", "x": x, "y": y, "name": name, **extra}


def instrument_rows(names: list[str], y_title: str, clock: dict[int, float]) -> tuple[list[str], dict]:
    """Layout of one panel per instrument, stacked, sharing a time axis drawn under the
    bottom panel: returns each panel's y-axis reference (``"y"``, ``"y2"``, ...) and the
    layout. ``y_title`` is formatted with ``{name}`` per panel; each panel is titled by
    its instrument when there are several."""
    n = len(names)
    gap = 0.1 if n > 1 else 0.0
    refs = ["y" if row == 0 else f"y{row + 1}" for row in range(n)]
    layout: dict = {"xaxis": time_axis(clock, anchor=refs[-1]), "annotations": []}
    for row, name in enumerate(names):
        top = 1 - row / n
        layout[f"yaxis{'' if row == 0 else row + 1}"] = {
            "domain": [top - 1 / n + gap, top],
            "anchor": "x",
            "title": {"text": y_title.format(name=name)},
        }
        if n > 1:
            layout["annotations"].append(
                {
                    "text": f"<b>{name}</b>",
                    "x": 0,
                    "y": top,
                    "xref": "paper",
                    "yref": "paper",
                    "showarrow": False,
                    "xanchor": "left",
                    "yanchor": "bottom",
                }
            )
    return refs, layout


def _instruments(market: pl.DataFrame) -> list[str]:
    return market.get_column("instrument").unique(maintain_order=True).to_list()


#: Price columns of the prices panel and their line styles.
PRICE_LINES = {
    "exogenous_price": {"color": "#9467bd", "dash": "dot"},
    "index_price": {"color": "#1f77b4"},
    "mark_price": {"color": "#2ca02c"},
    "last_price": {"color": "#aaaaaa"},
}


def prices_figure(tables: dict[str, pl.DataFrame], clock: dict[int, float]) -> dict:
    """One panel per instrument (USD): the exogenous path (the rest of the market,
    dotted), index, mark, last, and liquidation markers sized by notional."""
    market, liq = tables["market"], tables["liquidations"]
    aggregate = liq.height > MARKER_ROWS
    if aggregate:
        liq = (
            liq.filter(pl.col("qty") > 0)
            .group_by("step", "instrument", "kind")
            .agg(pl.col("notional").sum(), pl.col("qty").sum(), pl.len().alias("rows"))
            .with_columns(price=pl.col("notional") / pl.col("qty"))
            .sort("step", "instrument", "kind")
        )
    names = _instruments(market)
    scale = max(float(liq.get_column("notional").max() or 1.0), 1.0)
    refs, layout = instrument_rows(names, "{name} price (USD)", clock)
    traces = []
    for row, (name, axis) in enumerate(zip(names, refs, strict=True)):
        m = market.filter(pl.col("instrument") == name)
        for column, line in PRICE_LINES.items():
            if column in m.columns:
                traces.append(
                    _line(
                        minutes(m, clock),
                        _col(m, column),
                        column.removesuffix("_price"),
                        yaxis=axis,
                        line=line,
                        legendgroup=column,
                        showlegend=row == 0,
                    )
                )
        for kind, color in liquidation_kinds(liq):
            hits = liq.filter((pl.col("instrument") == name) & (pl.col("kind") == kind))
            if hits.height:
                size = 6 + 30 * np.sqrt(hits.get_column("notional").to_numpy() / scale)
                who = "rows" if aggregate else "account"
                traces.append(
                    {
                        "type": "scatter",
                        "mode": "markers",
                        "x": minutes(hits, clock),
                        "y": _col(hits, "price"),
                        "yaxis": axis,
                        "name": f"liquidation: {kind}",
                        "legendgroup": kind,
                        "showlegend": row == 0,
                        "marker": {"color": color, "size": size.round(1).tolist(), "opacity": 0.6},
                        "customdata": np.stack(
                            [hits[who].to_numpy(), hits["notional"].to_numpy().round(0)], axis=1
                        ).tolist(),
                        "hovertemplate": f"%{{x:.2f}} min<br>%{{y:,.2f}} USD<br>{who} %{{customdata[0]}}"
                        "<br>notional %{customdata[1]:,.0f} USD",
                    }
                )
    return _plot(traces, 300 * len(names), **layout)


def prices_note(liq: pl.DataFrame) -> str:
    """The price panels' note: what a liquidation marker is (see `MARKER_ROWS`)."""
    if liq.height > MARKER_ROWS:
        return (
            f"{liq.height:,} liquidation rows (more than {MARKER_ROWS:,}): one marker per step, instrument and kind, "
            "at the notional-weighted price; marker area is proportional to the notional."
        )
    return "Marker area is proportional to notional."


def liquidation_kinds(liq: pl.DataFrame) -> list[tuple[str, str]]:
    """``(kind, colour)`` of every kind in the liquidations table: the known kinds in
    `KIND_COLORS` order, then any other, sorted, so no row goes undrawn."""
    present = set(liq.get_column("kind").unique().to_list())
    known = [(kind, color) for kind, color in KIND_COLORS.items() if kind in present]
    return known + [(kind, OTHER_KIND_COLOR) for kind in sorted(present - set(KIND_COLORS))]


def liquidated_figure(liq: pl.DataFrame, clock: dict[int, float]) -> dict:
    per_step = liq.group_by("step", "kind").agg(pl.col("notional").sum()).sort("step", "kind")
    traces = []
    for kind, color in liquidation_kinds(liq):
        part = per_step.filter(pl.col("kind") == kind)
        if part.height:
            traces.append(
                {
                    "type": "bar",
                    "x": minutes(part, clock),
                    "y": _col(part, "notional"),
                    "name": kind,
                    "marker": {"color": color},
                    "hovertemplate": "%{x:.2f} min<br>%{y:,.0f} USD",
                }
            )
    empty = [] if traces else [{"text": "no liquidations", "showarrow": False, "xref": "paper", "yref": "paper"}]
    return _plot(
        traces,
        320,
        barmode="stack",
        xaxis=time_axis(clock),
        yaxis={"title": {"text": "liquidated notional (USD)"}, "rangemode": "tozero"},
        annotations=empty,
    )


def fund_figure(ledger: pl.DataFrame, clock: dict[int, float]) -> dict:
    steps = minutes(ledger, clock)
    traces = [
        _line(steps, _col(ledger, "insurance_fund"), "insurance fund"),
        _line(steps, _col(ledger, "bad_debt"), "bad debt"),
    ]
    return _plot(traces, 320, xaxis=time_axis(clock), yaxis={"title": {"text": "USD"}})


def open_interest_figure(market: pl.DataFrame, clock: dict[int, float]) -> dict:
    """One panel per instrument: its open interest in its own base units."""
    names = _instruments(market)
    refs, layout = instrument_rows(names, "open interest ({name})", clock)
    traces = []
    for name, axis in zip(names, refs, strict=True):
        m = market.filter(pl.col("instrument") == name)
        traces.append(_line(minutes(m, clock), _col(m, "open_interest"), name, yaxis=axis))
    return _plot(traces, 240 * len(names), showlegend=False, **layout)


def depth_figure(market: pl.DataFrame, clock: dict[int, float]) -> dict:
    """Depth within 1 % of mid in USD (base units × index price), bids up, asks down."""
    traces = []
    for name in _instruments(market):
        m = market.filter(pl.col("instrument") == name)
        bids = (m["depth_bid_1pct"] * m["index_price"]).to_list()
        asks = (-m["depth_ask_1pct"] * m["index_price"]).to_list()
        traces += [
            _line(minutes(m, clock), bids, f"{name} bids"),
            _line(minutes(m, clock), asks, f"{name} asks (negative)"),
        ]
    return _plot(traces, 320, xaxis=time_axis(clock), yaxis={"title": {"text": "depth within 1 % of mid (USD)"}})


def margin_ratio_figure(accounts: pl.DataFrame, clock: dict[int, float]) -> dict:
    """Heatmap: share of trader accounts with a position per margin-ratio bin, per snapshot."""
    traders = accounts.filter(~pl.col("agent_type").str.starts_with("system:") & (pl.col("maint_margin") > 0))
    steps = sorted(traders.get_column("step").unique().to_list())
    labels = [f"{lo:.1f}-{hi:.1f}" for lo, hi in pairwise(RATIO_EDGES)] + [">= 1 (liq.)"]
    edges = np.array([*RATIO_EDGES, np.inf])
    z = np.zeros((len(labels), len(steps)))
    for j, step in enumerate(steps):
        ratios = traders.filter(pl.col("step") == step).get_column("margin_ratio").to_numpy()
        counts, _ = np.histogram(np.nan_to_num(ratios, posinf=1e300), bins=edges)
        z[:, j] = counts / max(len(ratios), 1)
    heatmap = {
        "type": "heatmap",
        "x": [clock[step] for step in steps],
        "y": labels,
        "z": z.round(4).tolist(),
        "colorscale": "Viridis",
        "colorbar": {"title": {"text": "share of accounts"}},
        "hovertemplate": "%{x:.2f} min<br>ratio %{y}<br>%{z:.1%} of accounts<extra></extra>",
    }
    return _plot(
        [heatmap], 360, xaxis=time_axis(clock), yaxis={"title": {"text": "margin ratio (maintenance / equity)"}}
    )


def equity_figure(accounts: pl.DataFrame, clock: dict[int, float]) -> dict:
    """Per trader agent type, its accounts' equity (USD, log axis: types differ by orders
    of magnitude) at each snapshot: the `EQUITY_QUANTILES` as a band and a median line.
    Its size depends on snapshots and agent types, not on accounts."""
    low, mid, high = EQUITY_QUANTILES
    quantiles = (
        accounts.filter(~pl.col("agent_type").str.starts_with("system:"))
        .group_by("agent_type", "step")
        .agg(*(pl.col("equity").quantile(q, "linear").alias(str(q)) for q in EQUITY_QUANTILES))
        .sort("agent_type", "step")
    )
    traces = []
    colors = pio.templates["plotly"].layout.colorway
    for k, ((agent_type,), part) in enumerate(quantiles.group_by("agent_type", maintain_order=True)):
        color, t = colors[k % len(colors)], minutes(part, clock)
        traces += [
            _line(
                t,
                _col(part, str(high)),
                agent_type,
                line={"width": 0, "color": color},
                showlegend=False,
                legendgroup=agent_type,
                hoverinfo="skip",
            ),
            _line(
                t,
                _col(part, str(low)),
                agent_type,
                line={"width": 0, "color": color},
                fill="tonexty",
                opacity=0.2,
                showlegend=False,
                legendgroup=agent_type,
                hoverinfo="skip",
            ),
            _line(t, _col(part, str(mid)), agent_type, line={"color": color}, legendgroup=agent_type),
        ]
    return _plot(traces, 360, xaxis=time_axis(clock), yaxis={"title": {"text": "equity (USD, log)"}, "type": "log"})


def _headline_rows(facts: pl.DataFrame) -> dict[str, float]:
    """Headline facts as table rows: summary column name -> value."""
    named = headline(facts)
    return dict(zip(_col(named, "column"), _col(named, "value"), strict=True))


def facts_figure(facts: pl.DataFrame) -> dict:
    """Two panels, one line per instrument and price series: kurtosis against the
    return horizon (s, log axis) and ACF of |r| against the lag (log axis)."""
    traces = []
    for (instrument, series), part in facts.filter(pl.col("series") != "").group_by(
        "instrument", "series", maintain_order=True
    ):
        style = {"line": {"color": SERIES_COLORS[series]}, "mode": "lines+markers", "legendgroup": series}
        name = f"{instrument} {series}"
        kurt = part.filter(pl.col("fact") == "kurtosis").sort("horizon_seconds")
        acf_abs = part.filter(pl.col("fact") == "acf_abs").sort("lag")
        traces += [
            _line(_col(kurt, "horizon_seconds"), _nan_to_none(_col(kurt, "value")), name, **style),
            _line(
                _col(acf_abs, "lag"),
                _nan_to_none(_col(acf_abs, "value")),
                name,
                xaxis="x2",
                yaxis="y2",
                showlegend=False,
                **style,
            ),
        ]
    gaussian = {"type": "line", "xref": "x domain", "yref": "y", "x0": 0, "x1": 1, "y0": 3, "y1": 3}
    return _plot(
        traces,
        340,
        xaxis={"domain": [0, 0.45], "type": "log", "title": {"text": "horizon (s)"}},
        yaxis={"title": {"text": "kurtosis"}},
        xaxis2={"domain": [0.55, 1], "type": "log", "anchor": "y2", "title": {"text": "lag (returns)"}},
        yaxis2={"anchor": "x2", "title": {"text": f"ACF of |r| ({FACT_HORIZON:g} s)"}},
        shapes=[{**gaussian, "line": {"dash": "dash", "color": "#888"}}],
    )


# -------------------------------------------------------------------- sweep report
def write_sweep_report(
    folder: Path, metric: str = "liquidated_notional", x: str | None = None, y: str | None = None
) -> Path:
    """Write ``report.html`` for a sweep folder (plotly.js from ``plotly.min.js`` beside it).

    Args:
        folder: The sweep's output folder (with ``runs.parquet`` and ``summary.parquet``).
        metric: The heatmaps' metric: a headline metric or fact (a column of
            ``summary.parquet``).
        x, y: Grid columns for the heatmap axes (default: the first two that vary).
    """
    runs = read_table(folder, RUNS)
    summary = read_table(folder, SUMMARY)
    axes = [c for c in runs.columns if c not in RUN_SCHEMA]
    choices = [*METRICS, *(c for c in summary.columns if c not in runs.columns and c not in METRICS)]
    if metric not in choices:
        raise ValueError(f"unknown metric {metric!r}, choose from {choices}")
    for key in (x, y):
        if key is not None and key not in axes:
            raise ValueError(f"unknown grid key {key!r}, choose from {axes}")
    if x is not None and x == y:
        raise ValueError(f"--x and --y must be different grid keys (got {x!r} twice)")
    varied = [a for a in axes if runs[a].n_unique() > 1] or axes
    x = x or (varied[0] if varied else None)
    y = y or next((a for a in varied if a != x), None)
    labels = axis_labels(folder, axes)
    counts = runs.group_by("status").len().sort("status")
    sensitivity = folder / f"{SENSITIVITY}.parquet"
    if sensitivity.is_file():
        explained = figure(
            sensitivity_figure(read_table(folder, SENSITIVITY), summary, metric, axes, labels),
            f"Which parameters matter for {metric}",
            "Variance-based sensitivity indices over the design's points (mean over seeds): first-order S1 "
            "(the parameter alone) and total ST (with its interactions), with 95 % bootstrap intervals; "
            "below, the metric against each parameter, one dot per run.",
        )
    else:
        explained = figure(
            heatmap_figure(summary, runs, metric, x, y, labels),
            f"{metric}: mean over seeds with its 95 % confidence interval",
            "Each cell: the mean over the seeds of that setting and, below it, ± the half-width of the two-sided "
            "95 % Student-t interval (right panel: that half-width). Hover for the runs behind it; "
            "failed runs are counted in the cell and listed below.",
        )
    sections = [
        "<h2>Runs</h2>" + table({row["status"]: row["len"] for row in counts.iter_rows(named=True)}),
        explained,
        "<h2>Grid points</h2>" + points_table(runs, axes, labels),
        figure(distributions_figure(summary), "Metric distributions per grid point", "One dot per seed."),
        figure(
            cascade_size_figure(folder, runs, axes),
            "Cascade size distribution per setting",
            "P(a cascade has at least s accounts), over all seeds of a grid point.",
        ),
    ]
    failed = runs.filter(pl.col("status") == "failed")
    if failed.height:
        sections.append("<h2>Failed runs</h2>" + failed_table(failed, axes, labels))
    if not (folder / PLOTLY_JS).is_file():  # a sweep run with reports = false
        write_plotly_js(folder)
    path = folder / REPORT
    path.write_text(page(f"cascadelab sweep: {folder.name}", sections, PLOTLY_JS))
    return path


#: Readable names of a distribution's parameters (grid columns like ``leverage.lognormal[0]``).
DISTRIBUTION_PARTS = {
    "uniform[0]": "uniform low",
    "uniform[1]": "uniform high",
    "lognormal[0]": "lognormal median",
    "lognormal[1]": "lognormal sigma",
    "exponential": "exponential mean",
}


def axis_labels(folder: Path, axes: list[str]) -> dict[str, str]:
    """A readable name for each grid column: ``populations.5.leverage.lognormal[0]`` ->
    ``leveraged_holder leverage (lognormal median)`` (population types from a finished
    run's config; the raw key when there is none)."""
    types: list[str] = []
    for run in run_folders(folder):
        if (run / CONFIG).is_file():
            with contextlib.suppress(ConfigError):
                types = [pop.get("type", "?") for pop in read_toml(run / CONFIG).get("populations", [])]
            break
    return {axis: _axis_label(axis, types) for axis in axes}


def _axis_label(axis: str, types: list[str]) -> str:
    match = re.fullmatch(r"populations\.(\d+)\.(?:params\.)?(.+)", axis)
    who, rest = ("", axis) if match is None else (_population(int(match[1]), types) + " ", match[2])
    rest = re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", rest)  # list items as [i]
    for raw, readable in DISTRIBUTION_PARTS.items():
        if rest.endswith("." + raw):
            return f"{who}{_words(rest.removesuffix('.' + raw))} ({readable})"
    return who + _words(rest)


def _population(index: int, types: list[str]) -> str:
    return types[index] if index < len(types) else f"population {index}"


def _words(key: str) -> str:
    return key.replace(".", " ").replace("_", " ")


def point_label(row: dict, axes: list[str]) -> str:
    """A grid point's values, in axis order (the axes are named in the section note)."""
    return " / ".join(f"{row[key]:.4g}" if isinstance(row[key], float) else str(row[key]) for key in axes) or "all runs"


def points_table(runs: pl.DataFrame, axes: list[str], labels: dict[str, str]) -> str:
    """HTML table: grid point number -> its values."""
    points = runs.sort("point").unique("point", maintain_order=True)
    head = "".join(f"<th>{html.escape(labels[a])}</th>" for a in axes)
    body = "".join(
        f"<tr><td>#{row['point']}</td>" + "".join(f"<td>{_fmt(row[a])}</td>" for a in axes) + "</tr>"
        for row in points.iter_rows(named=True)
    )
    return f'<table class="summary"><tr><th>point</th>{head}</tr>{body}</table>'


def failed_table(failed: pl.DataFrame, axes: list[str], labels: dict[str, str]) -> str:
    """HTML table of failed runs: run id, seed, grid values and the error."""
    head = "".join(f"<th>{html.escape(labels[a])}</th>" for a in axes)
    body = "".join(
        f"<tr><td>{html.escape(row['run_id'])}</td><td>{row['seed']}</td>"
        + "".join(f"<td>{_fmt(row[a])}</td>" for a in axes)
        + f"<td class='error'>{html.escape(str(row['error']))}</td></tr>"
        for row in failed.sort("point", "seed_index").iter_rows(named=True)
    )
    return f'<table class="summary"><tr><th>run</th><th>seed</th>{head}<th>error</th></tr>{body}</table>'


def heatmap_figure(
    summary: pl.DataFrame, runs: pl.DataFrame, metric: str, x: str | None, y: str | None, labels: dict[str, str]
) -> go.Figure:
    """Mean of ``metric`` over the runs of each (x, y) cell with its 95 % CI (text and
    right panel); hover lists finished and failed runs."""
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("mean ± 95 % CI", "95 % CI half-width"), horizontal_spacing=0.14
    )
    if summary.height == 0:
        fig.add_annotation(text="no finished runs", showarrow=False)
        return fig
    keys = [k for k in (x, y) if k is not None]
    stats = summary.group_by(keys or pl.lit(0)).agg(
        pl.col(metric).cast(pl.Float64).fill_nan(None).mean().alias("mean"),
        pl.col(metric).cast(pl.Float64).fill_nan(None).std().alias("std"),
        pl.col(metric).cast(pl.Float64).fill_nan(None).count().alias("n"),
    )
    failures = runs.filter(pl.col("status") == "failed").group_by(keys or pl.lit(0)).len()
    ordered = runs.sort("point")  # axis values in the sweep file's order
    xs = ordered[x].unique(maintain_order=True).to_list() if x else [""]
    ys = ordered[y].unique(maintain_order=True).to_list() if y else [""]
    mean, half, n, failed = (np.full((len(ys), len(xs)), np.nan) for _ in range(4))
    for row in stats.iter_rows(named=True):
        i, j = ys.index(row[y]) if y else 0, xs.index(row[x]) if x else 0
        mean[i, j] = row["mean"] if row["mean"] is not None else np.nan
        half[i, j] = ci95_half_width(np.array(row["std"] if row["std"] is not None else np.nan), np.array(row["n"]))
        n[i, j] = row["n"]
    failed[:] = 0
    for row in failures.iter_rows(named=True):
        failed[ys.index(row[y]) if y else 0, xs.index(row[x]) if x else 0] = row["len"]
    text = [[_cell_text(mean[i, j], half[i, j], int(failed[i, j])) for j in range(len(xs))] for i in range(len(ys))]
    custom = np.dstack([n, failed])
    labels_x, labels_y = [_fmt(v) for v in xs], [_fmt(v) for v in ys]
    x_title, y_title = labels.get(x, x or ""), labels.get(y, y or "")
    hover = f"{x_title} %{{x}}<br>{y_title} %{{y}}<br>%{{z:,.4g}}<br>runs %{{customdata[0]}}, failed %{{customdata[1]}}"
    fig.add_trace(
        go.Heatmap(
            x=labels_x,
            y=labels_y,
            z=mean,
            text=text,
            texttemplate="%{text}",
            customdata=custom,
            hovertemplate=hover + "<extra>mean</extra>",
            colorscale="Viridis",
            colorbar={"x": 0.43, "title": {"text": "mean", "side": "right"}},
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Heatmap(
            x=labels_x,
            y=labels_y,
            z=half,
            customdata=custom,
            hovertemplate=hover + "<extra>CI half-width</extra>",
            colorscale="Magma",
            colorbar={"title": {"text": "± CI", "side": "right"}},
        ),
        row=1,
        col=2,
    )
    for col in (1, 2):
        fig.update_xaxes(title_text=x_title, type="category", row=1, col=col)
        fig.update_yaxes(title_text=y_title if col == 1 else "", type="category", row=1, col=col)
    fig.update_layout(height=460)
    return fig


def _cell_text(mean: float, half: float, failed: int) -> str:
    if math.isnan(mean):
        return f"{failed} failed" if failed else ""
    text = _compact(mean) + (f"<br>± {_compact(half)}" if not math.isnan(half) else "<br>(1 run)")
    return text + (f"<br>{failed} failed" if failed else "")


def _compact(value: float) -> str:
    """3 significant digits with k/M/B suffixes: 734,512 -> ``735k``."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def sensitivity_figure(
    indices: pl.DataFrame, summary: pl.DataFrame, metric: str, axes: list[str], labels: dict[str, str]
) -> go.Figure:
    """Top: S1 and ST of ``metric`` per parameter with their 95 % intervals; bottom:
    ``metric`` against each parameter, one dot per finished run."""
    cols = max(len(axes), 1)
    fig = make_subplots(rows=2, cols=cols, specs=[[{"colspan": cols}, *[None] * (cols - 1)], [{}] * cols])
    part = indices.filter(pl.col("metric") == metric)
    names = [labels.get(p, p) for p in part["parameter"].to_list()]
    for index, colour in (("S1", "#1f77b4"), ("ST", "#d62728")):
        conf = _nan_to_none(part[f"{index}_conf"].to_list())
        fig.add_trace(
            go.Bar(
                x=names, y=_nan_to_none(part[index].to_list()), name=index, marker_color=colour, error_y={"array": conf}
            ),
            row=1,
            col=1,
        )
    fig.update_yaxes(title_text="share of variance", row=1, col=1)
    for k, axis in enumerate(axes):
        fig.add_trace(
            go.Scatter(
                x=summary[axis].to_list(),
                y=_nan_to_none(summary[metric].cast(pl.Float64).to_list()),
                mode="markers",
                marker={"size": 5, "opacity": 0.6},
                showlegend=False,
            ),
            row=2,
            col=k + 1,
        )
        fig.update_xaxes(title_text=labels.get(axis, axis), row=2, col=k + 1)
    fig.update_yaxes(title_text=metric, row=2, col=1)
    fig.update_layout(height=720, barmode="group")
    if part.height and part["S1"].is_nan().all():
        fig.add_annotation(text="indices unavailable: a run failed or the metric did not vary", showarrow=False)
    return fig


def distributions_figure(summary: pl.DataFrame) -> go.Figure:
    if summary.height == 0:
        fig = go.Figure()
        fig.add_annotation(text="no finished runs", showarrow=False)
        return fig
    cols = 3
    rows = -(-len(METRICS) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=METRICS, vertical_spacing=0.12)
    labels = [f"#{point}" for point in summary["point"].to_list()]
    for k, name in enumerate(METRICS):
        fig.add_trace(
            go.Box(x=labels, y=summary[name].to_list(), name=name, showlegend=False, boxpoints="all"),
            row=k // cols + 1,
            col=k % cols + 1,
        )
    fig.update_layout(height=320 * rows)
    fig.update_xaxes(tickangle=0, tickfont={"size": 9})
    return fig


def cascade_size_figure(folder: Path, runs: pl.DataFrame, axes: list[str]) -> go.Figure:
    fig = go.Figure()
    scan = scan_runs(folder, "cascades")
    if scan is None:
        fig.add_annotation(text="no finished runs", showarrow=False)
        return fig
    cascades = scan.join(runs.lazy().select("run_id", "point", *axes), on="run_id").collect()
    for point in sorted(cascades["point"].unique().to_list()):
        part = cascades.filter(pl.col("point") == point)
        sizes = np.sort(part["accounts"].to_numpy())
        survival = 1.0 - np.arange(len(sizes)) / len(sizes)  # P(size >= s)
        fig.add_trace(
            go.Scatter(
                x=sizes,
                y=survival,
                mode="lines+markers",
                line_shape="hv",
                name=point_label(part.row(0, named=True), axes),
            )
        )
    fig.update_xaxes(type="log", title_text="cascade size s (accounts)")
    fig.update_yaxes(type="log", title_text="P(size >= s)")
    fig.update_layout(height=420)
    return fig

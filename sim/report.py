"""Interactive HTML reports (plotly), fully offline.

plotly's JavaScript is embedded in the page (``plotly_js="embed"``) or loaded from a
path relative to the report (e.g. ``"../plotly.min.js"``, written once beside a sweep's
reports by `write_plotly_js`); never from a CDN. The modebar's logo and cloud buttons
are off.
"""

from __future__ import annotations

import html
from itertools import pairwise
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import polars as pl
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from sim.config import Config
from sim.metrics import run_metrics

PLOT_CONFIG = {"displaylogo": False, "showSendToCloud": False, "responsive": True}
KIND_COLORS = {
    "partial": "#d62728",
    "full": "#8c0000",
    "backstop": "#9467bd",
    "adl": "#ff7f0e",
    "socialized": "#7f7f7f",
}
#: Margin-ratio bin edges; the last bin (>= 1: liquidatable) is open-ended.
RATIO_EDGES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def write_plotly_js(folder: Path) -> Path:
    """Write ``plotly.min.js`` into ``folder`` (once per sweep) and return its path."""
    path = folder / "plotly.min.js"
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


def figure(fig: go.Figure, title: str, note: str = "") -> str:
    """One section: heading, optional note, and the plot (plotly.js loaded by `page`)."""
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 30, "b": 40})
    div = pio.to_html(fig, include_plotlyjs=False, full_html=False, config=PLOT_CONFIG)
    extra = f'<p class="note">{html.escape(note)}</p>' if note else ""
    return f"<h2>{html.escape(title)}</h2>{extra}\n{div}"


def table(rows: dict[str, object]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows.items())
    return f'<table class="summary">{cells}</table>'


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    return html.escape(str(value))


# ---------------------------------------------------------------------- run report
def write_run_report(
    folder: Path, tables: dict[str, pl.DataFrame], config: Config, name: str | None = None, plotly_js: str = "embed"
) -> Path:
    """Write ``report.html`` for one run's tables into ``folder`` (titled ``name``)."""
    metrics = run_metrics(tables)
    sections = [
        f'<p class="note">seed {config.seed}, {config.steps} steps, margin {config.margin.mode}, '
        f"mark {config.mark.method}, liquidation {config.liquidation.mode} "
        f"(fallback {' > '.join(config.liquidation.fallback)})</p>",
        "<h2>Summary</h2>" + table(metrics),
        figure(prices_figure(tables), "Prices and liquidations", "Marker area is proportional to notional."),
        figure(liquidated_figure(tables["liquidations"]), "Liquidated notional per step, by kind"),
        figure(fund_figure(tables["ledger"]), "Insurance fund and bad debt"),
        figure(per_instrument_figure(tables["market"], "open_interest", "open interest"), "Open interest"),
        figure(depth_figure(tables["market"]), "Book depth within 1 % of mid"),
        figure(margin_ratio_figure(tables["accounts"]), "Margin ratio distribution of trader accounts"),
        figure(
            cascade_figure(tables["liquidations"]),
            "Cascade graph",
            "Each node is an account's liquidation; an edge links the liquidation whose price impact pushed it under.",
        ),
    ]
    path = folder / "report.html"
    path.write_text(page(f"cascadelab run: {name or folder.name}", sections, plotly_js))
    return path


def prices_figure(tables: dict[str, pl.DataFrame]) -> go.Figure:
    market, liq = tables["market"], tables["liquidations"]
    names = market.get_column("instrument").unique(maintain_order=True).to_list()
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, subplot_titles=names)
    scale = max(float(liq.get_column("notional").max() or 1.0), 1.0)
    for row, name in enumerate(names, start=1):
        m = market.filter(pl.col("instrument") == name)
        for column, color in (("index_price", "#1f77b4"), ("mark_price", "#2ca02c"), ("last_price", "#aaaaaa")):
            fig.add_trace(
                go.Scattergl(
                    x=m["step"],
                    y=m[column],
                    name=column.removesuffix("_price"),
                    line={"color": color},
                    legendgroup=column,
                    showlegend=row == 1,
                ),
                row=row,
                col=1,
            )
        for kind, color in KIND_COLORS.items():
            hits = liq.filter((pl.col("instrument") == name) & (pl.col("kind") == kind))
            if hits.height:
                size = 6 + 30 * np.sqrt(hits.get_column("notional").to_numpy() / scale)
                fig.add_trace(
                    go.Scattergl(
                        x=hits["step"],
                        y=hits["price"],
                        mode="markers",
                        name=f"liquidation: {kind}",
                        marker={"color": color, "size": size, "opacity": 0.6},
                        legendgroup=kind,
                        showlegend=row == 1,
                        customdata=hits["account"],
                        hovertemplate="step %{x}<br>price %{y}<br>account %{customdata}",
                    ),
                    row=row,
                    col=1,
                )
    fig.update_layout(height=260 * len(names))
    return fig


def liquidated_figure(liq: pl.DataFrame) -> go.Figure:
    fig = go.Figure()
    per_step = liq.group_by("step", "kind").agg(pl.col("notional").sum()).sort("step", "kind")
    for kind, color in KIND_COLORS.items():
        part = per_step.filter(pl.col("kind") == kind)
        if part.height:
            fig.add_trace(go.Bar(x=part["step"], y=part["notional"], name=kind, marker_color=color))
    fig.update_layout(barmode="stack", xaxis_title="step", yaxis_title="USD", height=320)
    return fig


def fund_figure(ledger: pl.DataFrame) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(go.Scattergl(x=ledger["step"], y=ledger["insurance_fund"], name="insurance fund"))
    fig.add_trace(go.Scattergl(x=ledger["step"], y=ledger["bad_debt"], name="bad debt"))
    fig.update_layout(xaxis_title="step", yaxis_title="USD", height=320)
    return fig


def per_instrument_figure(market: pl.DataFrame, column: str, label: str) -> go.Figure:
    fig = go.Figure()
    for name in market.get_column("instrument").unique(maintain_order=True):
        m = market.filter(pl.col("instrument") == name)
        fig.add_trace(go.Scattergl(x=m["step"], y=m[column], name=name))
    fig.update_layout(xaxis_title="step", yaxis_title=label, height=320)
    return fig


def depth_figure(market: pl.DataFrame) -> go.Figure:
    fig = go.Figure()
    for name in market.get_column("instrument").unique(maintain_order=True):
        m = market.filter(pl.col("instrument") == name)
        notional_bid = m["depth_bid_1pct"] * m["index_price"]
        notional_ask = m["depth_ask_1pct"] * m["index_price"]
        fig.add_trace(go.Scattergl(x=m["step"], y=notional_bid, name=f"{name} bids"))
        fig.add_trace(go.Scattergl(x=m["step"], y=-notional_ask, name=f"{name} asks (negative)"))
    fig.update_layout(xaxis_title="step", yaxis_title="USD within 1 % of mid", height=320)
    return fig


def margin_ratio_figure(accounts: pl.DataFrame) -> go.Figure:
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
    fig = go.Figure(go.Heatmap(x=steps, y=labels, z=z, colorscale="Viridis", colorbar={"title": "share"}))
    fig.update_layout(xaxis_title="step", yaxis_title="margin ratio (MM / equity)", height=360)
    return fig


def cascade_figure(liq: pl.DataFrame) -> go.Figure:
    """Nodes: each account's first row in a cascade; edges: trigger links; x = step."""
    fig = go.Figure()
    if liq.height == 0:
        fig.add_annotation(text="no liquidations", showarrow=False)
        return fig
    nodes = (
        liq.sort("row_id")
        .group_by("cascade_id", "account", maintain_order=True)
        .agg(
            pl.col("row_id").first(),
            pl.col("step").first(),
            pl.col("round").first(),
            pl.col("trigger").first(),
            pl.col("notional").sum(),
        )
    )
    rows_to_node = dict(zip(liq["row_id"].to_list(), liq["account"].to_list(), strict=True))
    position = {
        (n["cascade_id"], n["account"]): (n["step"] + n["round"] / 10, n["cascade_id"])
        for n in nodes.iter_rows(named=True)
    }
    xs, ys = [], []
    for node in nodes.iter_rows(named=True):
        if node["trigger"] is None:
            continue
        source = position.get((node["cascade_id"], rows_to_node[node["trigger"]]))
        if source is not None:
            target = position[(node["cascade_id"], node["account"])]
            xs += [source[0], target[0], None]
            ys += [source[1], target[1], None]
    fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", line={"color": "#999", "width": 1}, name="trigger"))
    x, y = zip(*position.values(), strict=True)
    fig.add_trace(
        go.Scattergl(
            x=x,
            y=y,
            mode="markers",
            name="liquidated account",
            marker={
                "size": 6 + 20 * np.sqrt(nodes["notional"].to_numpy() / max(nodes["notional"].max(), 1.0)),
                "color": "#d62728",
                "opacity": 0.7,
            },
            customdata=np.stack([nodes["account"].to_numpy(), nodes["notional"].to_numpy()], axis=1),
            hovertemplate="account %{customdata[0]}<br>notional %{customdata[1]:,.0f}<br>step %{x}",
        )
    )
    fig.update_layout(xaxis_title="step (+ round / 10)", yaxis_title="cascade id", height=420)
    return fig

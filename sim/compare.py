"""`cascadelab compare`: one HTML report overlaying several runs.

Prices (mark, and the exogenous path dotted, per instrument, USD), cumulative liquidated
notional (USD), the insurance fund (USD) and book depth within 1 % of mid (USD, bids +
asks, per instrument) against simulated minutes, one colour per run; the headline
metrics side by side; and the config keys whose values differ between the runs (what
the comparison is about). The page embeds plotly.js and is written atomically; an
existing file is replaced only if it is a compare report.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import polars as pl

from sim.api import Run
from sim.config import read_toml
from sim.metrics import METRICS
from sim.report import figure, instrument_rows, page
from sim.results import ResultError
from sim.timeline import minutes, step_minutes, time_axis

#: Marks a page as a compare report (an existing file without it is never replaced).
GENERATOR = '<meta name="generator" content="cascadelab compare">'
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def default_compare_path(folders: list[Path], root: Path = Path("results/compare")) -> Path:
    """``results/compare/<run-a>--<run-b>[--...].html``."""
    return root / ("--".join(folder.name for folder in folders) + ".html")


def write_compare_report(folders: list[Path], out: Path) -> Path:
    """Compare the run folders and write the report to ``out``; return ``out``.

    Raises:
        ResultError: fewer than two folders, a folder that is not a readable run, or an
            ``out`` that exists and is not a compare report.
    """
    if len(folders) < 2:
        raise ResultError("compare needs at least two run folders")
    if out.suffix != ".html":
        raise ResultError(f"{out}: the report must be an .html file")
    if out.exists() and (not out.is_file() or GENERATOR not in out.read_text(errors="replace")[:4000]):
        raise ResultError(f"{out}: exists and is not a compare report (not replaced)")
    runs = [_open(folder) for folder in folders]
    labels = _labels(folders)
    tables = [{name: run.table(name) for name in ("market", "liquidations", "ledger")} for run in runs]
    clocks = [step_minutes(t["market"], run.config.step_seconds) for run, t in zip(runs, tables, strict=True)]
    span = {step: m for clock in clocks for step, m in clock.items()}  # the longest run's span
    sections = [
        "<h2>Runs</h2>" + runs_table(runs, labels),
        "<h2>What differs</h2>" + differences_table(folders, labels),
        "<h2>Headline metrics</h2>" + metrics_table(runs, labels),
        figure(prices_overlay(tables, clocks, labels, span), "Mark price (exogenous path dotted)"),
        figure(
            _overlay(tables, clocks, labels, span, _cumulative_liquidated, "liquidated notional, cumulative (USD)"),
            "Liquidated notional",
        ),
        figure(
            _overlay(tables, clocks, labels, span, _insurance_fund, "insurance fund (USD)"),
            "Insurance fund",
        ),
        figure(depth_overlay(tables, clocks, labels, span), "Book depth within 1 % of mid (bids + asks)"),
    ]
    text = page(f"cascadelab compare: {' vs '.join(labels)}", sections).replace("<head>", "<head>" + GENERATOR, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        tmp.write_text(text)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _open(folder: Path) -> Run:
    if not folder.is_dir():
        raise ResultError(f"{folder}: no such run folder")
    return Run(folder)


def _labels(folders: list[Path]) -> list[str]:
    """Folder names, or full paths where names repeat."""
    names = [folder.name for folder in folders]
    return [name if names.count(name) == 1 else str(folder) for name, folder in zip(names, folders, strict=True)]


def _header(labels: list[str]) -> str:
    return "<tr><th></th>" + "".join(f"<th>{html.escape(label)}</th>" for label in labels) + "</tr>"


def _rows(rows: dict[str, list[object]], labels: list[str]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(key)}</th>" + "".join(f"<td>{_cell(v)}</td>" for v in values) + "</tr>"
        for key, values in rows.items()
    )
    return f'<table class="summary">{_header(labels)}{body}</table>'


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    return html.escape("" if value is None else str(value))


def runs_table(runs: list[Run], labels: list[str]) -> str:
    keys = ("seed", "steps", "config_hash", "git_commit", "started_utc")
    short = {"config_hash": 12, "git_commit": 10}  # enough to tell them apart
    return _rows({key: [str(run.manifest.get(key))[: short.get(key)] for run in runs] for key in keys}, labels)


def metrics_table(runs: list[Run], labels: list[str]) -> str:
    return _rows({name: [run.metrics.get(name) for run in runs] for name in METRICS}, labels)


def differences_table(folders: list[Path], labels: list[str]) -> str:
    """Config keys (dotted paths) whose values differ between the runs' ``config.toml``."""
    flat = [_flatten(read_toml(folder / "config.toml")) for folder in folders]
    keys = sorted({key for config in flat for key in config}, key=lambda k: (k != "seed", k))
    differ = {key: [config.get(key) for config in flat] for key in keys if len({repr(c.get(key)) for c in flat}) > 1}
    if not differ:
        return '<p class="note">The runs have the same config.</p>'
    return _rows(differ, labels)


def _flatten(node: object, prefix: str = "") -> dict[str, object]:
    """Nested TOML as ``{"a.b.0.c": value}`` (list items by index, like ``--set``)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else None
    if items is None:
        return {prefix: node}
    flat: dict[str, object] = {}
    for key, value in items:
        flat |= _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return flat


def _cumulative_liquidated(t: dict[str, pl.DataFrame]) -> pl.DataFrame:
    per_step = t["liquidations"].group_by("step").agg(pl.col("notional").sum())
    steps = t["ledger"].select("step")
    return (
        steps.join(per_step, on="step", how="left")
        .sort("step")
        .select("step", pl.col("notional").fill_null(0.0).cum_sum().alias("value"))
    )


def _insurance_fund(t: dict[str, pl.DataFrame]) -> pl.DataFrame:
    return t["ledger"].select("step", pl.col("insurance_fund").alias("value"))


def _overlay(tables, clocks, labels, span, series, y_title: str) -> dict:
    """One line per run of ``series(tables)`` (a frame of ``step, value``)."""
    traces = []
    for k, (t, clock, label) in enumerate(zip(tables, clocks, labels, strict=True)):
        frame = series(t)
        traces.append(_trace(minutes(frame, clock), frame["value"].to_list(), label, k))
    return {"data": traces, "layout": {"height": 340, "xaxis": time_axis(span), "yaxis": {"title": {"text": y_title}}}}


def _trace(x: list, y: list, label: str, k: int, **extra: object) -> dict:
    line = {"color": COLORS[k % len(COLORS)], **extra.pop("line", {})}
    return {
        "type": "scatter",
        "mode": "lines",
        "x": x,
        "y": y,
        "name": label,
        "legendgroup": label,
        "line": line,
        **extra,
    }


def _instrument_panels(tables, clocks, labels, span, y_title: str, lines) -> dict:
    """One panel per instrument (of any run); ``lines(market_rows)`` -> [(y, style)]."""
    names = list(dict.fromkeys(n for t in tables for n in t["market"]["instrument"].unique(maintain_order=True)))
    refs, layout = instrument_rows(names, y_title, span)
    traces = []
    for row, (name, ref) in enumerate(zip(names, refs, strict=True)):
        for k, (t, clock, label) in enumerate(zip(tables, clocks, labels, strict=True)):
            m = t["market"].filter(pl.col("instrument") == name)
            for i, (y, style) in enumerate(lines(m)):
                traces.append(
                    _trace(minutes(m, clock), y, label, k, yaxis=ref, showlegend=row == 0 and i == 0, line=style)
                )
    return {"data": traces, "layout": {"height": 320 * len(names), **layout}}


def prices_overlay(tables, clocks, labels, span) -> dict:
    def lines(m: pl.DataFrame) -> list[tuple[list, dict]]:
        out = [(m["mark_price"].to_list(), {})]
        if "exogenous_price" in m.columns:
            out.append((m["exogenous_price"].to_list(), {"dash": "dot", "width": 1}))
        return out

    return _instrument_panels(tables, clocks, labels, span, "{name} price (USD)", lines)


def depth_overlay(tables, clocks, labels, span) -> dict:
    def lines(m: pl.DataFrame) -> list[tuple[list, dict]]:
        return [(((m["depth_bid_1pct"] + m["depth_ask_1pct"]) * m["index_price"]).to_list(), {})]

    return _instrument_panels(tables, clocks, labels, span, "{name} depth (USD)", lines)

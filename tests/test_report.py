"""The run report: time axes in minutes from the market table, every axis titled with
units, one panel per instrument where units differ, the cascade and account explorer
(laid out and drawn in headless Chromium), and a copied run folder that renders alone."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import time

import polars as pl
import pytest

from sim.config import load_config
from sim.explorer import EXPLORED_ACCOUNTS, NODE_BUDGET, cascade_trees, explorer_data
from sim.recorder import LIQUIDATION_SCHEMA
from sim.report import (
    KIND_COLORS,
    MARKER_ROWS,
    liquidated_figure,
    margin_ratio_figure,
    open_interest_figure,
    prices_figure,
    write_run_report,
)
from sim.timeline import step_minutes
from tests.browser import render

#: The liquidation table's columns the explorer reads (types from the recorder).
LIQ_SCHEMA = {
    name: LIQUIDATION_SCHEMA[name]
    for name in ("row_id", "step", "round", "account", "agent_type", "instrument", "notional", "cascade_id", "trigger")
}


def liquidations(rows: list[tuple]) -> pl.DataFrame:
    """Rows of (row_id, step, account, cascade_id, trigger, notional)."""
    return pl.DataFrame(
        [
            {
                "row_id": r,
                "step": s,
                "round": 0,
                "account": a,
                "agent_type": "leveraged_holder",
                "instrument": "BTC",
                "notional": n,
                "cascade_id": c,
                "trigger": t,
            }
            for r, s, a, c, t, n in rows
        ],
        schema=LIQ_SCHEMA,
    )


def test_cascade_tree_links_layout_and_order():
    # cascade 0: 10 -> (11 -> 13, 12); account 11 liquidated twice; cascade 1: a lone 20
    liq = liquidations(
        [
            (0, 5, 10, 0, None, 100.0),
            (1, 5, 20, 1, None, 5.0),
            (2, 6, 11, 0, 0, 50.0),
            (3, 6, 12, 0, 0, 30.0),
            (4, 7, 11, 0, 2, 20.0),  # its own earlier row: not an edge
            (5, 7, 13, 0, 2, 10.0),
        ]
    )
    clock = {s: s * 0.5 for s in range(10)}
    trees = cascade_trees(liq, clock)
    assert [t["id"] for t in trees] == [0, 1]  # largest first
    big = trees[0]
    assert (big["accounts"], big["depth"], big["t0"], big["t1"], big["notional"]) == (4, 3, 2.5, 3.5, 210.0)
    nodes = big["nodes"]
    assert nodes["account"] == [10, 11, 12, 13]
    assert nodes["parent"] == [None, 10, 10, 11]
    assert nodes["generation"] == [1, 2, 2, 3]
    assert nodes["notional"] == [100.0, 70.0, 30.0, 10.0] and nodes["rows"] == [1, 2, 1, 1]
    assert nodes["t"] == [2.5, 3.0, 3.0, 3.5]
    # leaves 13 and 12 on rows 0 and 1, 11 on its only child's row, the root between
    assert dict(zip(nodes["account"], nodes["y"], strict=True)) == {13: 0.0, 11: 0.0, 12: 1.0, 10: 0.5}


def test_a_crash_of_hundreds_of_accounts_in_one_step_gets_one_row_per_leaf():
    """600 accounts pushed under in one step by one root, and a 3,000-generation chain."""
    star = [(0, 1, 0, 0, None, 1e6)] + [(k, 1, k, 0, 0, 1e3) for k in range(1, 601)]
    chain = [(1000 + k, 2, 1000 + k, 1, None if k == 0 else 999 + k, 1.0) for k in range(3000)]
    trees = cascade_trees(liquidations(star + chain), {1: 1.0, 2: 2.0})
    by_id = {t["id"]: t for t in trees}
    rows = by_id[0]["nodes"]["y"]
    assert sorted(rows[1:]) == [float(k) for k in range(600)]  # every leaf on a row of its own
    assert rows[0] == pytest.approx(299.5)
    assert by_id[1]["depth"] == 3000 and by_id[1]["nodes"]["generation"][-1] == 3000


def test_time_axes_use_the_market_tables_seconds():
    market = pl.DataFrame({"step": [0, 1, 2], "time_seconds": [0.0, 90.0, 180.0]})
    assert step_minutes(market, step_seconds=5.0) == {0: 0.0, 1: 1.5, 2: 3.0}
    assert step_minutes(market.drop("time_seconds"), step_seconds=30.0) == {0: 0.0, 1: 0.5, 2: 1.0}


def axes_of(fig: dict) -> dict[str, dict]:
    return {k: v for k, v in fig["layout"].items() if re.fullmatch(r"[xy]axis\d*", k)}


def test_every_axis_is_titled_with_units_and_time_panels_line_up(crash_run):
    tables = {name: pl.read_parquet(crash_run / f"{name}.parquet") for name in ("market", "liquidations", "accounts")}
    three = pl.concat([tables["market"].with_columns(instrument=pl.lit(name)) for name in ("BTC", "ETH", "SOL")]).sort(
        "step", maintain_order=True
    )
    clock = step_minutes(three, 5.0)
    prices = prices_figure({"market": three, "liquidations": tables["liquidations"]}, clock)
    interest = open_interest_figure(three, clock)
    figures = [prices, interest, liquidated_figure(tables["liquidations"], clock)]
    figures.append(margin_ratio_figure(tables["accounts"], clock))
    for fig in figures:
        for name, axis in axes_of(fig).items():
            assert axis["title"]["text"], name
        assert fig["layout"]["xaxis"]["title"]["text"] == "time (min)"
        assert fig["layout"]["xaxis"]["range"] == [0.0, 225 * 5 / 60]  # the same span on every time panel
    # one panel per instrument, each in its own units, the time axis under the bottom one
    assert [prices["layout"][k]["title"]["text"] for k in ("yaxis", "yaxis2", "yaxis3")] == [
        "BTC price (USD)",
        "ETH price (USD)",
        "SOL price (USD)",
    ]
    assert [interest["layout"][k]["title"]["text"] for k in ("yaxis", "yaxis2", "yaxis3")] == [
        "open interest (BTC)",
        "open interest (ETH)",
        "open interest (SOL)",
    ]
    for fig in (prices, interest):
        assert fig["layout"]["xaxis"]["anchor"] == "y3"
        domains = [fig["layout"][k]["domain"] for k in ("yaxis", "yaxis2", "yaxis3")]
        assert all(lower[1] < upper[0] for upper, lower in itertools.pairwise(domains))  # gaps
    assert {t["yaxis"] for t in interest["data"]} == {"y", "y2", "y3"}


def test_explorer_data_has_every_cascade_and_account(crash_run):
    tables = {
        name: pl.read_parquet(crash_run / f"{name}.parquet")
        for name in ("market", "liquidations", "accounts", "unresolved")
    }
    clock = step_minutes(tables["market"], 5.0)
    data = json.loads(json.dumps(explorer_data(tables, clock)))  # JSON-clean (no NaN)
    cascades = pl.read_parquet(crash_run / "cascades.parquet")
    assert sorted(c["id"] for c in data["cascades"]) == sorted(cascades["cascade_id"].to_list())
    assert sum(c["accounts"] for c in data["cascades"]) == cascades["accounts"].sum()
    assert len(data["liquidations"]["row_id"]) == tables["liquidations"].height
    assert len(data["accounts"]) == tables["accounts"]["account"].n_unique()
    first = tables["liquidations"].sort("row_id").row(0, named=True)
    account = data["accounts"][str(first["account"])]
    assert account["t"][0] == 0.0 and set(account["positions"]) == {"BTC"}
    assert data["prices"]["BTC"]["t"][-1] == pytest.approx(225 * 5 / 60)


def test_copied_run_folder_renders_its_explorer_in_headless_chromium(crash_run, tmp_path):
    """The report of a run folder copied elsewhere draws every figure, the explorer's
    included, with nothing loaded from outside the file."""
    copy = tmp_path / "elsewhere" / "my-run"
    shutil.copytree(crash_run, copy)
    text = (copy / "report.html").read_text()
    assert "<title>cascadelab run: crash</title>" in text  # titled by the folder it was written to
    assert "<script src=" not in text
    page = render(copy / "report.html", tmp_path / "report.png", tmp_path / "profile")
    assert page.console == [], page.console
    assert page.plots == 12 and page.drawn_svgs >= 12
    order = ("cascade-overview", "cascade-tree", "cascade-prices", "cascade-accounts", "account-series")
    for section, following in itertools.pairwise(order):
        block = page.dom.split(f'id="{section}"', 1)[1].split(f'id="{following}"', 1)[0]
        if section != "cascade-accounts":
            assert 'class="main-svg"' in block and re.search(r'class="(?:trace|point)', block), section
    largest = pl.read_parquet(crash_run / "cascades.parquet").sort("accounts", "notional", descending=True).row(0)
    assert f'<option value="{largest[0]}" selected' in page.dom or f"cascade {largest[0]}:" in page.dom
    assert page.dom.count('data-account="') >= largest[2]  # its accounts table links every account


def test_explorer_keeps_liquidated_accounts_when_the_accounts_table_is_large(crash_run, monkeypatch):
    tables = {
        name: pl.read_parquet(crash_run / f"{name}.parquet")
        for name in ("market", "liquidations", "accounts", "unresolved")
    }
    monkeypatch.setattr("sim.explorer.ACCOUNT_ROWS_BUDGET", tables["accounts"].height - 1)
    data = explorer_data(tables, step_minutes(tables["market"], 5.0))
    involved = set(tables["liquidations"]["account"]) | set(tables["unresolved"]["account"])
    assert {int(a) for a in data["accounts"]} == involved
    assert 0 < len(involved) < tables["accounts"]["account"].n_unique()


def test_the_address_selects_a_cascade_and_an_account(crash_run, tmp_path):
    """``report.html#cascade=ID&account=ID`` opens the explorer on them (and picking
    one writes the address, so a selection can be bookmarked)."""
    liq = pl.read_parquet(crash_run / "liquidations.parquet")
    cascades = pl.read_parquet(crash_run / "cascades.parquet").sort("accounts", "notional", descending=True)
    cascade = cascades.row(1, named=True)  # not the one shown by default
    account = liq.filter(pl.col("cascade_id") == cascade["cascade_id"])["account"][-1]
    rows = liq.filter(pl.col("account") == account).height
    fragment = f"cascade={cascade['cascade_id']}&account={account}"
    page = render(crash_run / "report.html", tmp_path / "shot.png", tmp_path / "profile", fragment)
    assert page.console == [], page.console
    assert f"cascade {cascade['cascade_id']}: {cascade['accounts']} accounts" in page.dom
    assert f"account {account} (" in page.dom and f"{rows} liquidation row(s)" in page.dom


def test_every_liquidation_kind_is_drawn(crash_run):
    """The waterfall's kinds (an insurance-fund takeover, a deficit, ...) and any kind the
    colour table does not know yet all get a trace: the notional bars add up to the table."""
    liq = pl.read_parquet(crash_run / "liquidations.parquet")
    unknown = liq.head(1).with_columns(kind=pl.lit("future_kind"), notional=pl.lit(1.0))
    liq = pl.concat([liq, unknown])
    fig = liquidated_figure(liq, {s: s / 12 for s in range(liq["step"].max() + 1)})
    drawn = {trace["name"]: sum(trace["y"]) for trace in fig["data"]}
    assert set(drawn) == set(liq["kind"].unique())
    assert sum(drawn.values()) == pytest.approx(liq["notional"].sum())


def large_run(crash_run, folder, copies: int = 60, accounts: int = 100_000):
    """The crash run's tables as if its venue had ``accounts`` accounts: the accounts
    table repeated over new ids (~2.3 M rows), the liquidations ``copies`` times over
    new accounts, cascades and rows (~16,000 rows, ~6,000 accounts); written as a run folder."""
    tables = {name: pl.read_parquet(crash_run / f"{name}.parquet") for name in RECORDED}
    snapshot = tables["accounts"]
    n = snapshot["account"].n_unique()
    tables["accounts"] = pl.concat(
        [snapshot.with_columns(pl.col("account") + k * n) for k in range(accounts // n + 1)]
    ).filter(pl.col("account") < accounts)
    liq = tables["liquidations"]
    rows, cascades = liq["row_id"].max() + 1, liq["cascade_id"].max() + 1
    tables["liquidations"] = pl.concat(
        [
            liq.with_columns(
                pl.col("row_id") + k * rows,
                pl.col("trigger") + k * rows,
                pl.col("cascade_id") + k * cascades,
                pl.col("account") + k * n,
            )
            for k in range(copies)
        ]
    )
    shutil.copytree(crash_run, folder)
    for name, frame in tables.items():
        frame.write_parquet(folder / f"{name}.parquet")
    return folder, tables


RECORDED = ("market", "trades", "liquidations", "ledger", "accounts", "unresolved")


def test_a_100000_account_report_stays_bounded_and_renders(crash_run, tmp_path):
    """At 100,000 accounts the report draws distributions, not every account: the
    explorer embeds at most EXPLORED_ACCOUNTS series and NODE_BUDGET tree nodes, the price
    panels one marker per step and kind; the file stays small, is written in seconds
    and renders in headless Chromium."""
    folder, tables = large_run(crash_run, tmp_path / "large")
    assert tables["accounts"]["account"].n_unique() == 100_000 and tables["accounts"].height > 2_000_000
    assert tables["liquidations"].height > MARKER_ROWS
    start = time.perf_counter()
    write_run_report(folder, tables, load_config(folder / "config.toml"), "large")
    seconds = time.perf_counter() - start
    size = (folder / "report.html").stat().st_size
    assert seconds < 60, seconds
    assert size < 10e6, size  # plotly.js is ~4.7 MB of it
    data = explorer_data(tables, step_minutes(tables["market"], 5.0))
    assert 0 < len(data["accounts"]) <= EXPLORED_ACCOUNTS
    assert sum(len(c["nodes"]["account"]) for c in data["cascades"]) <= NODE_BUDGET
    nodes = {(c["id"], a) for c in data["cascades"] for a in c["nodes"]["account"]}
    embedded = list(zip(data["liquidations"]["cascade"], data["liquidations"]["account"], strict=True))
    assert embedded and all(pair in nodes or str(pair[1]) in data["accounts"] for pair in embedded)
    prices = prices_figure(tables, step_minutes(tables["market"], 5.0))
    markers = sum(len(t["x"]) for t in prices["data"] if t["mode"] == "markers")
    assert markers <= tables["liquidations"]["step"].n_unique() * len(KIND_COLORS)
    page = render(folder / "report.html", tmp_path / "large.png", tmp_path / "profile")
    assert page.console == [], page.console
    assert page.plots == 12 and page.drawn_svgs >= 12
    assert "The explorer has the" in page.dom and f"at most {EXPLORED_ACCOUNTS:,} of them" in page.dom

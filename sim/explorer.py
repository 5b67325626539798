"""The cascade and account explorer of the run report.

Pick a cascade (from the list, or by clicking one of the largest in the overview) and
see its tree (who pushed whom under, with notional and time), its accounts and the
price path around it; pick an account (from the list, or by clicking it in a tree or a
table) and see its equity, margin ratio, positions and liquidation rows over time.

The run's data is embedded in the page as JSON (`explorer_data`) and drawn by
``explorer.js`` with the page's plotly.js, so the report stays one offline file.
Readable at any size: a tree is laid out with one row per leaf (a tidy tree, x = the
generation), the overview shows the largest cascades however many happen in one step,
and account series are embedded for every account when the accounts table has at most
`ACCOUNT_ROWS_BUDGET` rows, else for at most `EXPLORED_ACCOUNTS` of the accounts that
were liquidated or left unresolved, largest liquidated notional first (the page says
which).

Bounded at any size (a 100,000-account crash liquidates tens of thousands): the trees
embed at most `NODE_BUDGET` accounts in all, the largest cascades first (the first
truncated to its earliest accounts if it alone is larger; every parent comes before its
children, so a truncated tree is still a tree), and the liquidation rows embedded are
those of the embedded tree nodes and explored accounts. The run's aggregate
distributions are the report's other figures; every row stays in the parquet tables.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import polars as pl

from sim.cascades import cascade_summary_frame
from sim.timeline import minutes

#: Accounts-table rows up to which every account's series is embedded (~60 bytes each).
ACCOUNT_ROWS_BUDGET = 200_000
#: Account series embedded at most when the accounts table is larger than that.
EXPLORED_ACCOUNTS = 1_000
#: Cascade-tree nodes (accounts) embedded at most over all cascades (~100 bytes each,
#: with their liquidation rows a few hundred).
NODE_BUDGET = 5_000
#: Minutes of price path shown before a cascade's first and after its last liquidation.
PRICE_WINDOW_MINUTES = 2.0
SCRIPT = Path(__file__).with_name("explorer.js")
STYLE = (
    "<style>div.explorer-table { max-height: 320px; overflow-y: auto; margin: 0.5rem 0 1rem; }"
    " div.explorer-table td { text-align: right; } label { font-size: 0.95rem; }"
    " select { max-width: 100%; font-size: 0.9rem; }</style>"
)


def cascade_trees(liq: pl.DataFrame, clock: dict[int, float], node_budget: int | None = None) -> list[dict]:
    """One dict per cascade, largest (accounts, then notional) first; with a
    ``node_budget``, only the largest cascades whose nodes fit in it (the first one cut
    to its first ``node_budget`` accounts if it alone does not; ``shown`` says how many
    of its accounts are in ``nodes``).

    Each has the cascade summary (``id``, ``root``, ``accounts``, ``rows``, ``notional``
    USD, ``depth``, ``t0``/``t1`` minutes of its first/last row, ``instruments``) and
    ``nodes``: columns of equal length, one entry per account in the cascade (its first
    row there): ``account``, ``agent_type``, ``parent`` (the account whose liquidation
    pushed it under; None for the root or an account the market's move put under),
    ``generation`` (1 for roots), ``t`` (minutes), ``step``, ``round``, ``notional``
    (USD over all its rows in the cascade), ``rows``, and ``y``, its row in a tidy tree
    (leaves in depth-first order, a parent centred on its children; x is the generation).
    """
    liq = liq.sort("row_id")
    account_of_row = dict(zip(liq["row_id"].to_list(), liq["account"].to_list(), strict=True))
    nodes = (
        liq.group_by("cascade_id", "account", maintain_order=True)
        .agg(
            pl.col("row_id").first(),
            pl.col("agent_type").first(),
            pl.col("step").first(),
            pl.col("round").first(),
            pl.col("trigger").first(),
            pl.col("notional").sum(),
            pl.len().alias("rows"),
        )
        .sort("row_id")
    )
    summaries = cascade_summary_frame(liq).sort(
        pl.col("accounts"), pl.col("notional"), pl.col("cascade_id"), descending=[True, True, False]
    )
    instruments = dict(liq.group_by("cascade_id").agg(pl.col("instrument").unique(maintain_order=True)).iter_rows())
    parts = {key[0]: part for key, part in nodes.group_by("cascade_id")}
    left = math.inf if node_budget is None else node_budget
    trees = []
    for s in summaries.iter_rows(named=True):
        if left <= 0 or (trees and s["accounts"] > left):
            break
        cascade_id = s["cascade_id"]
        part = parts[cascade_id].head(int(min(left, s["accounts"])))
        left -= part.height
        members = set(part["account"].to_list())
        parents = [
            None
            if trigger is None or account_of_row[trigger] not in members or account_of_row[trigger] == account
            else account_of_row[trigger]
            for trigger, account in zip(part["trigger"].to_list(), part["account"].to_list(), strict=True)
        ]
        accounts = part["account"].to_list()
        ys = _tidy_rows(accounts, parents)
        trees.append(
            {
                "id": cascade_id,
                "root": s["root_account"],
                "accounts": s["accounts"],
                "shown": part.height,
                "rows": s["rows"],
                "notional": round(s["notional"], 2),
                "depth": s["depth"],
                "t0": clock[s["first_step"]],
                "t1": clock[s["last_step"]],
                "instruments": instruments[cascade_id],
                "nodes": {
                    "account": accounts,
                    "agent_type": part["agent_type"].to_list(),
                    "parent": parents,
                    "generation": _depths(accounts, parents),
                    "t": minutes(part, clock),
                    "step": part["step"].to_list(),
                    "round": part["round"].to_list(),
                    "notional": part["notional"].round(2).to_list(),
                    "rows": part["rows"].to_list(),
                    "y": [ys[a] for a in accounts],
                },
            }
        )
    return trees


def _depths(accounts: list[int], parents: list[int | None]) -> list[int]:
    """Tree depth of each node (1 for a root); parents come before their children."""
    depth: dict[int, int] = {}
    for account, parent in zip(accounts, parents, strict=True):
        depth[account] = 1 if parent is None else depth[parent] + 1
    return [depth[a] for a in accounts]


def _tidy_rows(accounts: list[int], parents: list[int | None]) -> dict[int, float]:
    """Row of each node in a tidy tree: leaves on consecutive rows in depth-first order,
    a parent at the mean of its children's rows."""
    children: dict[int | None, list[int]] = {}
    for account, parent in zip(accounts, parents, strict=True):
        children.setdefault(parent, []).append(account)
    rows: dict[int, float] = {}
    next_leaf = 0
    stack: list[tuple[int, bool]] = [(root, False) for root in reversed(children.get(None, []))]
    while stack:  # iterative post-order: a cascade may be thousands of generations deep
        node, expanded = stack.pop()
        kids = children.get(node, [])
        if not kids:
            rows[node] = float(next_leaf)
            next_leaf += 1
        elif expanded:
            rows[node] = sum(rows[k] for k in kids) / len(kids)
        else:
            stack.append((node, True))
            stack.extend((k, False) for k in reversed(kids))
    return rows


def explorer_data(tables: dict[str, pl.DataFrame], clock: dict[int, float]) -> dict:
    """Everything the explorer draws, as JSON-ready columns (see the module docstring):
    ``cascades`` (`cascade_trees` within `NODE_BUDGET`), ``liquidations`` (the rows of
    their nodes and of the explored accounts, with ``t`` in minutes),
    ``prices`` (per instrument: ``t``, ``mark``, ``index``, ``exogenous`` in USD),
    ``accounts`` (account id -> ``agent_type``, ``t``, ``equity`` USD, ``margin_ratio``,
    ``positions`` per instrument in base units)."""
    market, liq, accounts = tables["market"], tables["liquidations"], tables["accounts"]
    prices = {}
    for (name,), m in market.group_by("instrument", maintain_order=True):
        prices[name] = {"t": minutes(m, clock)} | {
            key: _floats(m[f"{key}_price"]) for key in ("mark", "index", "exogenous") if f"{key}_price" in m.columns
        }
    if accounts.height > ACCOUNT_ROWS_BUDGET:
        accounts = accounts.filter(pl.col("account").is_in(explored_accounts(liq, tables["unresolved"])))
    positions = [c for c in accounts.columns if c.startswith("pos_")]
    series = {}
    for (account,), a in accounts.sort("step").group_by("account", maintain_order=True):
        series[str(account)] = {
            "agent_type": a["agent_type"][0],
            "t": minutes(a, clock),
            "equity": _floats(a["equity"]),
            "margin_ratio": _floats(a["margin_ratio"]),
            "positions": {c.removeprefix("pos_"): _floats(a[c]) for c in positions},
        }
    trees = cascade_trees(liq, clock, NODE_BUDGET)
    shown = pl.DataFrame(
        [(t["id"], a) for t in trees for a in t["nodes"]["account"]],
        schema={"cascade_id": pl.Int64, "account": pl.Int64},
        orient="row",
    )
    rows = (
        liq.sort("row_id")
        .with_columns(
            pl.col("trigger").replace_strict(liq["row_id"], liq["account"], default=None).alias("trigger_account")
        )
        .join(shown.with_columns(in_tree=pl.lit(True)), on=["cascade_id", "account"], how="left", maintain_order="left")
        .filter(pl.col("in_tree").is_not_null() | pl.col("account").is_in([int(a) for a in series]))
    )
    columns = ("row_id", "step", "round", "account", "instrument", "side", "qty", "price", "notional", "kind")
    return {
        "cascades": trees,
        "liquidations": {c: _floats(rows[c]) if rows[c].dtype == pl.Float64 else rows[c].to_list() for c in columns}
        | {
            "cascade": rows["cascade_id"].to_list(),
            "trigger_account": rows["trigger_account"].to_list(),
            "t": minutes(rows, clock),
        },
        "prices": prices,
        "accounts": series,
        "window_minutes": PRICE_WINDOW_MINUTES,
    }


def explored_accounts(liq: pl.DataFrame, unresolved: pl.DataFrame) -> list[int]:
    """At most `EXPLORED_ACCOUNTS` of the accounts liquidated or left unresolved: largest
    liquidated notional first (ties: lower id), sorted by id."""
    involved = (
        pl.concat(
            [
                liq.select("account", "notional"),
                unresolved.select("account").with_columns(notional=pl.lit(0.0)),
            ]
        )
        .group_by("account")
        .agg(pl.col("notional").sum())
        .sort(pl.col("notional"), pl.col("account"), descending=[True, False])
        .head(EXPLORED_ACCOUNTS)
    )
    return sorted(involved["account"].to_list())


def _floats(column: pl.Series) -> list:
    """Floats at 6 significant digits (the page's size), NaN and inf as None (JSON has none)."""
    return [None if v is None or not math.isfinite(v) else float(f"{v:.6g}") for v in column.to_list()]


def explorer_sections(tables: dict[str, pl.DataFrame], clock: dict[int, float], template: dict) -> list[str]:
    """The report's cascade and account explorer: headings, controls, figure containers,
    the embedded data and the script that draws them (``template``: the plotly layout
    template of the page's other figures)."""
    payload = explorer_data(tables, clock) | {"template": template}
    data = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    n_cascades = tables["liquidations"]["cascade_id"].n_unique()
    return [
        STYLE + "<h2>Cascades</h2>"
        f'<p class="note">{html.escape(cascades_note(payload["cascades"], n_cascades))} '
        "The largest by accounts, with notional (USD), depth "
        "(generations) and start time; click a bar or pick any cascade below.</p>"
        '<div id="cascade-overview" class="explorer-plot"></div>',
        '<h2 id="cascade-explorer">Cascade explorer</h2>'
        '<p class="note">Its tree: one node per account, an edge from the liquidation whose price impact pushed '
        "it under (generation 1: put under by the market's move), colour = time, area = notional; the price "
        "path around it with its liquidations; its accounts. Click an account to explore it. An account sits at "
        "its first liquidation in the cascade, so the tree can be shallower than the cascade's depth, which "
        "(as in cascades.parquet) counts generations of liquidation rows.</p>"
        '<label>cascade <select id="cascade-pick"></select></label>'
        '<div id="cascade-tree" class="explorer-plot"></div>'
        '<div id="cascade-prices" class="explorer-plot"></div>'
        '<div id="cascade-accounts" class="explorer-table"></div>',
        '<h2 id="account-explorer">Account explorer</h2>'
        f'<p class="note">Equity, margin ratio (maintenance margin / equity; liquidatable at 1) and positions '
        f"at each snapshot of accounts.parquet, liquidations as vertical lines and rows below. "
        f"{html.escape(explorer_note(tables))}</p>"
        '<label>account <select id="account-pick"></select></label>'
        '<div id="account-series" class="explorer-plot"></div>'
        '<div id="account-liquidations" class="explorer-table"></div>',
        f'<script type="application/json" id="explorer-data">{data}</script>',
        f"<script>{SCRIPT.read_text()}</script>",
    ]


def explorer_note(tables: dict[str, pl.DataFrame]) -> str:
    """Which accounts the account explorer has (see `ACCOUNT_ROWS_BUDGET`)."""
    if tables["accounts"].height > ACCOUNT_ROWS_BUDGET:
        return (
            f"Only the accounts liquidated or left unresolved, at most {EXPLORED_ACCOUNTS:,} of them (largest "
            f"liquidated notional first): the accounts table has more than {ACCOUNT_ROWS_BUDGET:,} rows (every "
            "account is in accounts.parquet; the figures above show the distributions of all of them)."
        )
    return "Every account; liquidated accounts first."


def cascades_note(trees: list[dict], n_cascades: int) -> str:
    """How many cascades, and whether the explorer has all of them (see `NODE_BUDGET`)."""
    note = f"{n_cascades} cascade(s)."
    cut = [t for t in trees if t["shown"] < t["accounts"]]
    if len(trees) < n_cascades or cut:
        note += f" The explorer has the {len(trees):,} largest, {NODE_BUDGET:,} accounts at most"
        note += f" (cascade {cut[0]['id']}: its first {cut[0]['shown']:,} accounts)" if cut else ""
        note += "; every cascade is in cascades.parquet and liquidations.parquet."
    return note

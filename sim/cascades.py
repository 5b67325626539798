"""Cascade statistics from liquidation records (see `sim.liquidation` for the links).

A cascade is the set of liquidation rows sharing a ``cascade_id``: a root liquidation
that an exogenous move caused (``trigger`` null) and every liquidation linked to it
through ``trigger``. Its *depth* is the number of generations in its longest chain
(a lone liquidation has depth 1, root -> pushed-under account has depth 2).
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from sim.liquidation import LiquidationRow

SUMMARY_SCHEMA = {
    "cascade_id": pl.Int64,
    "root_account": pl.Int64,
    "accounts": pl.Int64,
    "rows": pl.Int64,
    "notional": pl.Float64,
    "depth": pl.Int64,
    "first_step": pl.Int64,
    "last_step": pl.Int64,
    "duration_steps": pl.Int64,
}


def generations(row_ids: Iterable[int], triggers: Iterable[int | None]) -> dict[int, int]:
    """Row id -> generation (1 for rows without a trigger). Rows must be in id order."""
    gen: dict[int, int] = {}
    for row_id, trigger in zip(row_ids, triggers, strict=True):
        gen[row_id] = 1 if trigger is None else gen[trigger] + 1
    return gen


def cascade_summary(rows: list[LiquidationRow]) -> pl.DataFrame:
    """One row per cascade from the engine's rows (see `cascade_summary_frame`)."""
    frame = pl.DataFrame(
        {
            "row_id": [r.row_id for r in rows],
            "step": [r.step for r in rows],
            "account": [r.account for r in rows],
            "notional": [r.qty * r.price for r in rows],
            "cascade_id": [r.cascade_id for r in rows],
            "trigger": [r.trigger for r in rows],
        },
        schema={k: pl.Float64 if k == "notional" else pl.Int64 for k in SOURCE_COLUMNS},
    )
    return cascade_summary_frame(frame)


SOURCE_COLUMNS = ("row_id", "step", "account", "notional", "cascade_id", "trigger")


def cascade_summary_frame(liquidations: pl.DataFrame) -> pl.DataFrame:
    """One row per cascade: size (accounts, notional USD), depth and duration (steps).

    Args:
        liquidations: A ``liquidations`` table (at least `SOURCE_COLUMNS`).

    Returns:
        A frame with `SUMMARY_SCHEMA`, sorted by ``cascade_id``.
    """
    liq = liquidations.sort("row_id")
    gen = generations(liq.get_column("row_id").to_list(), liq.get_column("trigger").to_list())
    stats: dict[int, dict] = {}
    for row in liq.select(SOURCE_COLUMNS).iter_rows(named=True):
        s = stats.setdefault(
            row["cascade_id"],
            {"root": row["account"], "accounts": set(), "rows": 0, "notional": 0.0, "depth": 0, "first": row["step"]},
        )
        s["accounts"].add(row["account"])
        s["rows"] += 1
        s["notional"] += row["notional"]
        s["depth"] = max(s["depth"], gen[row["row_id"]])
        s["last"] = row["step"]
    records = [
        {
            "cascade_id": cid,
            "root_account": s["root"],
            "accounts": len(s["accounts"]),
            "rows": s["rows"],
            "notional": s["notional"],
            "depth": s["depth"],
            "first_step": s["first"],
            "last_step": s["last"],
            "duration_steps": s["last"] - s["first"] + 1,
        }
        for cid, s in sorted(stats.items())
    ]
    return pl.DataFrame(records, schema=SUMMARY_SCHEMA)

"""Simulated time of result tables: steps as minutes, for every time axis of the reports."""

from __future__ import annotations

import polars as pl


def step_minutes(market: pl.DataFrame, step_seconds: float) -> dict[int, float]:
    """Step -> simulated minutes: the market table's ``time_seconds`` / 60 (or, in folders
    written before it had that column, step × ``step_seconds`` / 60)."""
    steps = market.get_column("step")
    seconds = market.get_column("time_seconds") if "time_seconds" in market.columns else steps * step_seconds
    return dict(zip(steps.to_list(), (seconds / 60.0).to_list(), strict=True))


def minutes(frame: pl.DataFrame, clock: dict[int, float]) -> list[float]:
    """The frame's ``step`` column as simulated minutes (``clock`` from `step_minutes`)."""
    return [clock[step] for step in frame.get_column("step").to_list()]


def time_axis(clock: dict[int, float], **extra: object) -> dict:
    """A plotly x axis in simulated minutes spanning the whole run, so time panels line up."""
    return {"title": {"text": "time (min)"}, "range": [min(clock.values()), max(clock.values())], **extra}

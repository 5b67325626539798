"""Reading the tables of result folders (run folders, sweep folders) written earlier."""

from __future__ import annotations

from pathlib import Path

import polars as pl


class ResultError(ValueError):
    """A result folder's table that is missing or unreadable; the message is one line
    naming the file."""


def read_table(folder: Path, name: str) -> pl.DataFrame:
    """``<folder>/<name>.parquet``, or a `ResultError`."""
    path = folder / f"{name}.parquet"
    if not path.is_file():
        raise ResultError(f"{path}: no such table")
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise ResultError(f"{path}: unreadable: {str(err).splitlines()[0]}") from None

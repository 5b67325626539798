"""The accounts table's preallocated columns give the table one frame per snapshot gave."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sim.exchange import Exchange
from sim.instruments import CollateralAsset
from sim.ledger import GENESIS, N_SYSTEM, USD
from sim.margin import liquidation_prices
from sim.recorder import AccountSnapshots
from tests.conftest import btc, eth


def snapshot_frame(step: int, ex: Exchange, types: list[str]) -> pl.DataFrame:
    """One snapshot as the recorder built it before its buffers: a frame per snapshot."""
    health, ledger = ex.health(), ex.ledger
    n = ledger.n_accounts
    columns = {
        "step": np.full(n, step, dtype=np.int64),
        "account": np.arange(n, dtype=np.int64),
        "agent_type": types,
        "equity": health.equity,
        "maint_margin": health.maint,
        "init_margin": health.init,
        "margin_ratio": health.margin_ratio,
    }
    liquidation = liquidation_prices(health)
    for m, inst in enumerate(ex.instruments):
        columns[f"pos_{inst.name}"] = ledger.positions[:, m] * ledger.lot_sizes[m]
    for m, inst in enumerate(ex.instruments):
        columns[f"liq_price_{inst.name}"] = liquidation[:, m]
    return pl.DataFrame(columns).with_columns(pl.selectors.starts_with("liq_price_").fill_nan(None))


def test_buffered_snapshots_are_the_table_of_per_snapshot_frames():
    ex = Exchange([btc(), eth()], [CollateralAsset("USD")], 3, [50_000.0, 3_000.0])
    types = [f"system:{k}" for k in range(N_SYSTEM)] + ["holder", "noise", "holder"]
    snaps = AccountSnapshots(["BTC", "ETH"], types, capacity=3)
    expected = []
    for step, (lots, price) in enumerate([(0, 50_000.0), (200, 50_000.0), (200, 46_000.0)]):
        if lots:
            ex.ledger.deposit(N_SYSTEM + step, USD, 2_000.0)
            ex.ledger.trade_between(N_SYSTEM + step, GENESIS, 0, lots, 50_000.0, 0.0)
        ex.set_prices([price, 3_000.0], [price, 3_000.0])
        snaps.add(step * 10, ex.health(), ex.ledger)
        expected.append(snapshot_frame(step * 10, ex, types))
    table = snaps.frame()
    assert table.equals(pl.concat(expected).sort("step", "account"))
    assert table.schema == pl.concat(expected).schema
    assert table["liq_price_BTC"].null_count() < table.height  # someone holds a position
    with pytest.raises(ValueError, match="more than 3 snapshots"):
        snaps.add(30, ex.health(), ex.ledger)

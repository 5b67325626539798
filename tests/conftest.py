"""Shared test helpers: the instruments of MARGIN-SPEC's worked examples."""

from __future__ import annotations

from sim.instruments import Instrument, MarginTiers

#: MARGIN-SPEC E0 brackets (USD notional floors and maintenance rates).
E0_TIERS = MarginTiers(
    floors=(0.0, 50_000.0, 250_000.0, 1_000_000.0),
    mmr=(0.004, 0.005, 0.01, 0.025),
    max_leverage=(125.0, 100.0, 50.0, 20.0),
)


def btc(mmr: float = 0.005, max_leverage: float = 20.0) -> Instrument:
    return Instrument("BTC", tick_size=0.1, lot_size=0.001, tiers=MarginTiers.flat(mmr, max_leverage))


def eth(mmr: float = 0.01, max_leverage: float = 20.0) -> Instrument:
    return Instrument("ETH", tick_size=0.01, lot_size=0.01, tiers=MarginTiers.flat(mmr, max_leverage))

"""All-accounts margin health: 10,000 accounts x 5 instruments x 3 collateral assets.

Times `Exchange.health()` plus reading its initial-margin health and margin ratio (both
computed on access), i.e. equity, tiered MM and IM with open orders at worst case,
health and margin ratio for every account, on a ledger of random but plausible state: every account holds a
position in every instrument, long or short, with a log-normal notional (median 5,000
USD, so about 1 % of positions reach the second margin tier), open orders of up to
half the position on each side, and balances in three assets.
The process tunes glibc's allocator first, as cascadelab's entry points do (see
`sim.runtime`). Run: ``python bench/bench_margin.py [--accounts N] [--mode cross|isolated]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sim.exchange import Exchange
from sim.instruments import CollateralAsset, Instrument, MarginTiers
from sim.runtime import tune_runtime

TIERS = MarginTiers(
    floors=(0.0, 50_000.0, 250_000.0, 1_000_000.0),
    mmr=(0.004, 0.005, 0.01, 0.025),
    max_leverage=(125.0, 100.0, 50.0, 20.0),
)
NAMES = ("BTC", "ETH", "SOL", "XRP", "DOGE")
PRICES = (50_000.0, 3_000.0, 150.0, 0.6, 0.15)


def build(n_accounts: int, mode: str, n_instruments: int = len(NAMES)) -> Exchange:
    """An exchange of the first ``n_instruments`` (>= 2: BTC and ETH are collateral)
    whose ledger holds random but plausible state."""
    names, prices = NAMES[:n_instruments], PRICES[:n_instruments]
    instruments = [Instrument(n, p / 10_000, 0.001, TIERS) for n, p in zip(names, prices, strict=True)]
    collateral = [CollateralAsset("USD"), CollateralAsset("BTC", 0.95), CollateralAsset("ETH", 0.9)]
    ex = Exchange(instruments, collateral, n_accounts, prices, mode=mode)
    rng = np.random.default_rng(1)
    ledger = ex.ledger
    shape = ledger.positions.shape
    ledger.balances[:] = rng.uniform(-100, 50_000, ledger.balances.shape)
    notional = rng.lognormal(np.log(5_000.0), 1.0, shape)
    lots = np.maximum(1, np.round(notional / np.array(prices) / 0.001)).astype(np.int64)
    ledger.positions[:] = lots * rng.choice([-1, 1], shape)
    ledger.entry[:] = np.array(prices) * rng.uniform(0.9, 1.1, shape)
    ledger.open_bids[:] = (lots * rng.uniform(0, 0.5, shape)).astype(np.int64)
    ledger.open_asks[:] = (lots * rng.uniform(0, 0.5, shape)).astype(np.int64)
    ledger.isolated_margin[:] = rng.uniform(0, 1_000, shape) if mode == "isolated" else 0.0
    return ex


def everything(ex: Exchange) -> None:
    """All margin numbers of all accounts, nothing left lazy."""
    health = ex.health()
    health.init_health  # noqa: B018  (computed on access)
    health.margin_ratio  # noqa: B018


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--mode", default="cross", choices=["cross", "isolated"])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    tune_runtime()  # as the cascadelab entry points do
    ex = build(args.accounts, args.mode)
    everything(ex)  # warm up
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        everything(ex)
        times.append(time.perf_counter() - start)
    times.sort()
    median, best = times[len(times) // 2], times[0]
    print(
        f"margin ({args.mode}): {args.accounts:,} accounts x {len(NAMES)} instruments: "
        f"median {median * 1e3:.3f} ms, best {best * 1e3:.3f} ms per all-accounts health"
    )


if __name__ == "__main__":
    main()

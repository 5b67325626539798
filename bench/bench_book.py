"""Order-book throughput: mixed add / cancel / market events on one core.

The event mix is 5 % market orders (1–10 lots) and 95 % limit adds (1–19 lots, a
geometric number of ticks behind the touch) or cancels of live orders: an add drawn
while more than ``--resting`` orders are live becomes a cancel, so the book holds a
realistic depth of about that many orders over ~100 levels a side (in practice about
47.5 % adds, 47.5 % cancels). On real crypto venues trades are a few percent of order
events (most orders are cancelled, not filled), so 5 % is on the heavy side. Events are
drawn up front and bound to the book's methods, so only the calls are timed.

Three ways through the same flow: the old pure-Python book (``bench/python_book.py``,
the simulator's book before the compiled one), the compiled `sim.book.OrderBook` with
one call per event, and the compiled book fed ``--batch`` events per `submit_batch`
call (cancels inline as ``KIND_CANCEL`` events).

Run: ``python bench/bench_book.py [--events N] [--batch N]``; prints events per second.
"""

from __future__ import annotations

import argparse
import gc
import time
from functools import partial

import numpy as np
from python_book import OrderBook as PythonOrderBook  # bench/: the book before sim.book

from sim.book import KIND_CANCEL, KIND_CODES, OrderBook
from sim.runtime import tune_runtime
from sim.types import OrderType


def make_events(n: int, resting: int = 2000, seed: int = 7) -> list[tuple]:
    """Pre-draw ``n`` events: ``(order_id,)`` cancels, longer tuples are ``submit`` arguments."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(3, size=n, p=[0.5, 0.45, 0.05])
    sides = rng.choice([1, -1], size=n)
    offsets = rng.geometric(0.08, size=n)  # ticks away from the touch
    sizes = rng.integers(1, 20, size=n)
    mkt_sizes = rng.integers(1, 11, size=n)
    picks = rng.random(n)
    mid = 100_000
    live: list[int] = []
    events: list[tuple] = []
    for i in range(n):
        side = int(sides[i])
        if (kinds[i] == 0 and len(live) <= resting) or not live:
            price = mid - side * int(offsets[i])
            events.append((i, i % 500, side, int(sizes[i]), price, OrderType.LIMIT))
            live.append(i)
        elif kinds[i] != 2:
            j = int(picks[i] * len(live))
            live[j], live[-1] = live[-1], live[j]
            events.append((live.pop(),))
        else:
            events.append((i, 10_000 + i % 50, side, int(mkt_sizes[i]), None, OrderType.MARKET))
    return events


def run_calls(book, events: list[tuple]) -> float:
    """Apply the events one call each to ``book``; return elapsed seconds.

    Each event is bound to its book method before the clock starts (``functools.partial``),
    so the timed loop is a bare call per event.
    """
    calls = [partial(book.cancel, *e) if len(e) == 1 else partial(book.submit, *e) for e in events]
    gc.freeze()  # the pre-built calls are input, not the book's working set: keep them out of GC passes
    try:
        start = time.perf_counter()
        for call in calls:
            call()
        return time.perf_counter() - start
    finally:
        gc.unfreeze()


def as_batches(events: list[tuple], size: int) -> list[tuple[np.ndarray, ...]]:
    """The events as `OrderBook.submit_batch` arrays, ``size`` events per batch (cancels
    are ``KIND_CANCEL`` events of the same batch, in their place in the flow)."""
    n = len(events)
    ids, accounts, sides, lots, prices = (np.zeros(n, np.int64) for _ in range(5))
    kinds = np.full(n, KIND_CANCEL, np.int64)
    for i, e in enumerate(events):
        ids[i] = e[0]
        if len(e) > 1:
            _, accounts[i], sides[i], lots[i], price, kind = e
            prices[i] = 0 if price is None else price
            kinds[i] = KIND_CODES[kind]
    columns = (ids, accounts, sides, lots, prices, kinds)
    return [tuple(c[i : i + size] for c in columns) for i in range(0, n, size)]


def run_batches(batches: list[tuple[np.ndarray, ...]]) -> float:
    """Apply the batches to a fresh compiled book; return elapsed seconds."""
    book = OrderBook()
    start = time.perf_counter()
    for batch in batches:
        book.submit_batch(*batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--resting", type=int, default=2000, help="cap on live orders")
    parser.add_argument("--batch", type=int, default=1000, help="events per submit_batch call")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the best of each way counts")
    args = parser.parse_args()
    tune_runtime()  # as cascadelab's entry points do
    events = make_events(args.events, args.resting)
    batches = as_batches(events, args.batch)
    run_batches(batches[:2])  # load the compiled kernels before timing
    runs = {
        "old (pure Python), one call per event": lambda: run_calls(PythonOrderBook(), events),
        "new (compiled), one call per event": lambda: run_calls(OrderBook(), events),
        f"new (compiled), submit_batch of {args.batch}": lambda: run_batches(batches),
    }
    # interleaved rounds: the VM's speed drifts, so each way gets the same conditions
    timings = dict.fromkeys(runs, float("inf"))
    for _ in range(args.rounds):
        for name, run in runs.items():
            timings[name] = min(timings[name], run())
    old = timings["old (pure Python), one call per event"]
    for name, best in timings.items():
        print(
            f"{name:<42} {args.events / best:>12,.0f} order events/s "
            f"({best * 1e9 / args.events:>6,.0f} ns/event, {old / best:4.1f}x old; best of {args.rounds})"
        )


if __name__ == "__main__":
    main()

"""The populations' compiled kernels against the numpy code they replaced.

Each reference below is the numpy expression a population used before its arithmetic
was compiled, with the order forms done by the scalar helpers (`sim.instruments._snap`);
on random inputs sprinkled with NaN, infinities, zeros and negatives, the kernel must
give the same rows, in the same order, to the bit (the run tables depend on it).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from agents.arbitrageur import _arbitrage_rows
from agents.fcn import _fcn_rows
from agents.holder import _positions_to_close, _reduce_rows
from agents.market_maker import MAX_HALF_SPREAD, _capacity_targets, _move_capacity, _quote_rows, _reservations
from agents.noise import _noise_rows
from sim.instruments import _snap

IOC, POST_ONLY, LIMIT = 2, 3, 0
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0]


def snap(values: np.ndarray, down: np.ndarray) -> np.ndarray:
    """The scalar rounding of each value (down where ``down``, else up; 0 when not finite)."""
    down = np.broadcast_to(down, np.shape(values))
    return np.array(
        [_snap(u, math.floor if d else math.ceil) if np.isfinite(u) else 0 for u, d in zip(values, down, strict=True)],
        np.int64,
    )


class Rows:
    """The old `Outbox.add` / `reduce` rounding, recording sent rows as tuples."""

    def __init__(self, lot_sizes, tick_sizes):
        self.lot_sizes, self.tick_sizes, self.rows = lot_sizes, tick_sizes, []

    def add(self, j, members, side, qty, price, kind):
        usable = np.isfinite(qty) & np.isfinite(price) & (qty > 0) & (price > 0)
        lots = snap(np.where(usable, qty, 0.0) / self.lot_sizes[j], np.array(True))
        ticks = snap(np.where(usable, price, 0.0) / self.tick_sizes[j], side > 0)
        sent = usable & (lots > 0) & (ticks > 0)
        self.rows += [(int(i), j, int(s), int(q), int(t), kind, False) for i, s, q, t in zip(
            members[sent], side[sent], lots[sent], ticks[sent], strict=True)]  # fmt: skip
        return sent

    def reduce(self, j, members, held, qty, limit):
        side = np.where(held > 0, -1, 1)
        lots = np.minimum(np.abs(held), snap(qty / self.lot_sizes[j], np.array(True)))
        ticks = np.maximum(snap(limit / self.tick_sizes[j], side > 0), 1)
        sent = lots > 0
        self.rows += [(int(i), j, int(s), int(q), int(t), IOC, True) for i, s, q, t in zip(
            members[sent], side[sent], lots[sent], ticks[sent], strict=True)]  # fmt: skip
        return sent


def sprinkle(rng, x, share=0.1, special=SPECIAL):
    x = np.array(x, float)
    mask = rng.random(x.shape) < share
    x[mask] = rng.choice(special, mask.sum())
    return x


def market_state(rng):
    n, n_cols = int(rng.integers(1, 7)), int(rng.integers(1, 4))
    lot_sizes, tick_sizes = rng.choice([0.001, 0.01, 1.0], n_cols), rng.choice([0.1, 0.01, 0.5], n_cols)
    held = (rng.integers(-50, 51, (n, n_cols)) * (rng.random((n, n_cols)) < 0.6)).astype(np.int64)
    leverage, equity = sprinkle(rng, rng.uniform(1, 10, n), 0.05), sprinkle(rng, rng.normal(5e3, 5e3, n))
    acting = np.sort(rng.choice(n, int(rng.integers(0, n + 1)), replace=False)).astype(np.int64)
    col = rng.integers(0, n_cols, len(acting)).astype(np.int64)
    return n, n_cols, lot_sizes, tick_sizes, held, leverage, equity, acting, col


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def test_noise_and_fcn_rows_equal_the_numpy_code():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n, n_cols, lot_sizes, tick_sizes, held, leverage, equity, acting, col = market_state(rng)
        k = len(acting)
        side = np.where(rng.random(k) < 0.5, 1, -1)
        mids = sprinkle(rng, rng.uniform(50, 5e4, n_cols), 0.15, [np.nan, np.inf, -1.0])
        size, market = sprinkle(rng, 1e3 * rng.lognormal(0, 1, k), 0.05), rng.random(k) < 0.4
        offset = rng.uniform(0, 30, k) / 1e4
        mid, h = mids[col], (held * lot_sizes)[acting, col]
        qty = np.minimum(size / mid, leverage[acting] * np.maximum(equity[acting], 0.0) / mid - side * h)
        price = np.where(market, mid * (1 + side * 50.0 / 1e4), mid * (1 - side * offset))
        old = Rows(lot_sizes, tick_sizes)
        for j in range(n_cols):
            for kind, chosen in ((IOC, market), (POST_ONLY, ~market)):
                pick = (col == j) & chosen & (qty > 0)
                old.add(j, acting[pick], side[pick], qty[pick], price[pick], kind)
        args = (acting, col, side, size, market, offset, mids, held, lot_sizes, tick_sizes, leverage, equity, 50.0)
        member, c, s, lots, ticks, kinds = _noise_rows(*args, IOC, POST_ONLY)
        sent = lots > 0
        assert old.rows == [
            (*map(int, row), False) for row in zip(*(a[sent] for a in (member, c, s, lots, ticks, kinds)), strict=True)
        ]

        p = mids[col]
        p_hat = sprinkle(rng, p * np.exp(rng.normal(0, 0.01, k)))
        margin, notional = rng.uniform(0, 0.01, n), sprinkle(rng, rng.uniform(100, 1e4, n), 0.05)
        fside = np.sign(p_hat - p).astype(np.int64)
        fside[np.isnan(p_hat - p)] = 0  # numpy's sign of NaN cast to int is no side a run can produce
        fprice = np.where(fside > 0, p_hat * (1 - margin[acting]), p_hat * (1 + margin[acting]))
        fqty = np.minimum(notional[acting] / p, leverage[acting] * equity[acting] / p - fside * h)
        old = Rows(lot_sizes, tick_sizes)
        for j in range(n_cols):
            pick = (col == j) & (fside != 0) & (fqty > 0)
            old.add(j, acting[pick], fside[pick], fqty[pick], fprice[pick], LIMIT)
        member, c, s, lots, ticks = _fcn_rows(acting, col, p, p_hat, margin, leverage, equity, notional, held,
                                              lot_sizes, tick_sizes)  # fmt: skip
        sent = lots > 0
        assert old.rows == [
            (*map(int, row), LIMIT, False) for row in zip(*(a[sent] for a in (member, c, s, lots, ticks)), strict=True)
        ]


def test_arbitrage_and_holder_rows_equal_the_numpy_code():
    rng = np.random.default_rng(2)
    for _ in range(200):
        n, n_cols, lot_sizes, tick_sizes, held, leverage, equity, _, _ = market_state(rng)
        basis = sprinkle(rng, rng.normal(0, 0.003, n_cols))
        index = sprinkle(rng, rng.uniform(50, 5e4, n_cols), 0.05, [np.nan, np.inf, -1.0])
        rate, cost, band = sprinkle(rng, rng.uniform(0, 1e4, n), 0.05), rng.uniform(0, 3e-3, n), rng.uniform(0, 2e-3, n)
        budget, old = rate.copy(), Rows(lot_sizes, tick_sizes)
        for j in range(n_cols):
            if np.isnan(basis[j]):
                continue
            px, b, position = float(index[j]), basis[j], held[:, j] * lot_sizes[j]
            has_budget, entering = budget > 0, (abs(basis[j]) > cost) & (equity > 0)
            enter, side = np.flatnonzero(has_budget & entering), 1 if b < 0 else -1
            qty = np.minimum(budget[enter] / px, leverage[enter] * equity[enter] / px - side * position[enter])
            sent = old.add(j, enter, np.full(len(enter), side), qty, np.full(len(enter), px), IOC)
            budget[enter[sent]] -= qty[sent] * px
            leave = np.flatnonzero(has_budget & ~entering & (abs(b) <= band) & (held[:, j] != 0))
            qty = np.minimum(budget[leave] / px, np.abs(position[leave]))
            sent = old.reduce(j, leave, held[leave, j], qty, px * (1 - np.sign(held[leave, j]) * band[leave]))
            budget[leave[sent]] -= qty[sent] * px
        got = _arbitrage_rows(basis, index, rate, cost, band, equity, leverage, held, lot_sizes, tick_sizes)
        assert [(i, j, s, q, t, r) for i, j, s, q, t, _, r in old.rows] == list(
            zip(*(a.tolist() for a in got), strict=True)
        )

        close, cut = (rng.random((n, n_cols)) < 0.3) & (held != 0), rng.random(n) < 0.3
        prices = sprinkle(rng, rng.uniform(50, 5e4, n_cols))
        fraction, slippage = rng.uniform(0, 1, n), rng.uniform(0, 0.01, n)
        old = Rows(lot_sizes, tick_sizes)
        for j in range(n_cols):
            members = np.flatnonzero(close[:, j] | (cut & (held[:, j] != 0)))
            signed = held[members, j]
            whole = np.abs(signed) * lot_sizes[j]
            qty = np.where(close[members, j], whole, np.maximum(fraction[members] * whole, lot_sizes[j]))
            old.reduce(j, members, signed, qty, prices[j] * (1 - np.sign(signed) * slippage[members]))
        member, c, s, lots, ticks, sent = _reduce_rows(held, close, cut, prices, fraction, slippage, lot_sizes,
                                                       tick_sizes)  # fmt: skip
        assert old.rows == [
            (*map(int, row), IOC, True) for row in zip(*(a[sent] for a in (member, c, s, lots, ticks)), strict=True)
        ]

        stop_sign, now = rng.choice([-1, 0, 1], (n, n_cols)), 5.0
        stop_price, exit_at = sprinkle(rng, rng.uniform(50, 5e4, (n, n_cols)), 0.3), rng.choice([0.0, 10.0, np.inf], n)
        old_stops, old_exit, is_held = stop_price.copy(), exit_at.copy(), held != 0
        crossed = stop_sign * (prices[None, :] - old_stops) <= 0
        old_stops[crossed & ~is_held] = np.nan
        old_close, holding = crossed & is_held, is_held.any(axis=1)
        due = np.flatnonzero(old_exit <= now)
        old_exit[due[~holding[due]]] = np.inf
        old_close[due[holding[due]]] |= is_held[due[holding[due]]]
        new_close, new_holding = _positions_to_close(held, prices, stop_sign, stop_price, exit_at, now, True, True)
        assert np.array_equal(new_close, old_close) and np.array_equal(new_holding, holding)
        assert old_stops.tobytes() == stop_price.tobytes() and old_exit.tobytes() == exit_at.tobytes()


def test_market_maker_arithmetic_equals_the_numpy_code():
    rng = np.random.default_rng(3)
    for _ in range(200):
        n, n_cols, lot_sizes, _, held, leverage, equity, _, _ = market_state(rng)
        fair = sprinkle(rng, rng.uniform(50, 5e4, (n, n_cols)), 0.05, [np.nan, np.inf, -1.0])
        sigma = sprinkle(rng, rng.uniform(0, 0.05, n_cols))
        gamma, kappa, horizon = rng.uniform(0.1, 20, n), rng.uniform(10, 3000, n), rng.uniform(1, 100, n)
        positions, notional = held * lot_sizes, rng.uniform(100, 1e4, n)
        risk = gamma[:, None] * sigma[None] * sigma[None] * horizon[:, None]
        half = 0.5 * risk + (np.log1p(gamma / kappa) / gamma)[:, None]
        out = ~(half <= MAX_HALF_SPREAD)
        shift = np.clip(np.where(out, 0.0, positions * fair / notional[:, None] * risk), -half, half)
        r, d = _reservations(fair, sigma, gamma, kappa, horizon, positions, notional)
        assert np.array_equal(r, np.where(out, fair, fair * np.exp(-shift)), equal_nan=True)  # NaN's sign aside
        assert np.array_equal(d, np.where(out, np.inf, half), equal_nan=True)

        peak, loss_limit, tolerance = (
            sprinkle(rng, rng.normal(5e3, 5e3, n)),
            rng.uniform(0.02, 0.1, n),
            rng.uniform(2, 4, n),
        )
        short, long = sprinkle(rng, rng.uniform(0, 1e-3, n_cols)), sprinkle(rng, rng.uniform(0, 1e-3, n_cols))
        top = np.maximum(peak, equity)
        f_loss = np.clip(1.0 - np.where(top > 0, 1.0 - equity / top, 1.0) / loss_limit, 0.0, 1.0)
        ratio = np.where(long > 0, short / long, 0.0)
        target = np.clip(2.0 - ratio[None, :] / tolerance[:, None], 0.0, 1.0) * f_loss[:, None]
        new_top, new_target = _capacity_targets(equity, peak, loss_limit, short, long, tolerance)
        assert new_top.tobytes() == top.tobytes() and new_target.tobytes() == target.tobytes()
        capacity, refill = sprinkle(rng, rng.uniform(0, 1, (n, n_cols))), rng.uniform(30, 300, n)
        elapsed = float(rng.choice([0.0, 5.0, np.inf]))
        moved = np.where(target <= capacity, target, target - (target - capacity) * np.exp(-elapsed / refill)[:, None])
        assert _move_capacity(target, capacity, refill, elapsed).tobytes() == moved.tobytes()

        fair = np.abs(fair) + 1.0  # a quote's fair value is a price
        r, d = _reservations(fair, sigma, gamma, kappa, horizon, positions, notional)
        limit, inventory = (leverage * equity)[:, None], positions * fair
        quoting = (equity > 0)[:, None] & (capacity > 0) & np.isfinite(d)
        levels, step = 3, 5 / 1e4
        sides, rows, sizes, prices = np.array([1, -1])[None, :, None], [], [np.zeros(0)], [np.zeros(0)]
        members = np.broadcast_to(np.arange(n)[None, None, :], (levels, 2, n))
        for j in range(n_cols):
            price = r[:, j] * np.exp(-sides * (d[:, j] + np.arange(levels)[:, None, None] * step))
            bids, asks = (
                quoting[:, j] & (inventory[:, j] < limit[:, 0]),
                quoting[:, j] & (inventory[:, j] > -limit[:, 0]),
            )
            quotes = np.broadcast_to(np.stack([bids, asks])[None], price.shape)
            rows += zip(
                members[quotes].tolist(),
                [j] * int(quotes.sum()),
                np.broadcast_to(sides, price.shape)[quotes].tolist(),
                strict=True,
            )
            sizes.append(np.broadcast_to(capacity[:, j] * notional / fair[:, j], price.shape)[quotes])
            prices.append(price[quotes])
        member, c, s, qty, price = _quote_rows(
            fair, r, d, positions, capacity, notional, leverage, equity, levels, step
        )
        assert rows == list(zip(member.tolist(), c.tolist(), s.tolist(), strict=True))
        assert np.concatenate(sizes).tobytes() == qty.tobytes() and np.concatenate(prices).tobytes() == price.tobytes()

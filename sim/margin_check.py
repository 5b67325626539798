"""The pre-trade margin check, compiled: the initial-margin health of accounts with some
orders counted as open and filled (the exchange's rule, `sim.exchange` docstring).

It is `sim.margin.mixed_health(...).init_health` of the accounts' rows with the orders
added, computed account by account in one numba pass straight from the ledger's arrays.
The numpy path picks rows, adds the orders with ``np.add.at`` and runs about forty array
calls whatever the number of accounts; a batch that re-checks one account at a time (an
order whose account traded earlier in the batch) paid that ~0.3 ms per re-check.

The result agrees with `sim.margin` to float rounding (sums run in a different order:
BLAS products there, left-to-right loops here); it feeds the accept/refuse decision,
against a tolerance (`sim.exchange.MARGIN_TOLERANCE`), and the budget a batch gives an
accepted order's maker fills (kept short of it by more than that rounding); nothing
records it.
Units: USD, base units, USD per unit, as `sim.margin`. Shapes: ``A`` ledger rows, ``I``
instruments, ``S`` collateral assets, ``K`` margin tiers, ``G`` checked accounts, ``N``
orders.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def pre_trade_init_health(
    accounts,
    groups,
    instruments,
    sides,
    lots,
    ticks,
    balances,
    positions,
    entry,
    funding_index,
    isolated_margin,
    open_bids,
    open_asks,
    isolated,
    lot_sizes,
    tick_sizes,
    marks,
    cum_funding,
    collateral_weights,
    debt_weights,
    floors,
    imr,
    taker_fee,
):
    """(G,) float64 ``init_health`` of accounts ``accounts`` after their orders.

    Args:
        accounts: (G,) int64 ledger row of each checked account (group).
        groups: (N,) int64 group (0..G-1) of each order; orders of a group are added in
            row order.
        instruments, sides, lots: (N,) int64 instrument, +1 / -1, size in lots.
        ticks: (N,) int64 worst fill price of each order in ticks (its limit, a market
            order's sweep), -1: none (it is valued at the mark).
        balances, positions, entry, funding_index, isolated_margin, open_bids,
            open_asks: the ledger's arrays (`sim.margin.Portfolio`; sizes in lots).
        isolated: (A,) bool, accounts in isolated mode.
        lot_sizes, tick_sizes, marks, cum_funding: (I,) float64.
        collateral_weights: (S,) asset price times collateral weight, USD per unit.
        debt_weights: (S,) asset price times (liability weight - collateral weight).
        floors, imr: (I, K) tier floors (USD notional, inf padding) and initial rates.
        taker_fee: fraction of notional the worst fill pays.

    Each order counts as open (its lots on its side's open orders) and as filled at its
    worst price: ``side * size * (price - mark) + taker_fee * size * price`` leaves the
    position's isolated margin (isolated accounts) or the USD balance (cross).
    """
    n_groups, n_inst = accounts.shape[0], marks.shape[0]
    bids = np.empty((n_groups, n_inst), open_bids.dtype)
    asks = np.empty((n_groups, n_inst), open_asks.dtype)
    margin = np.empty((n_groups, n_inst))
    usd = np.empty(n_groups)
    for g in range(n_groups):
        a = accounts[g]
        for m in range(n_inst):
            bids[g, m], asks[g, m], margin[g, m] = open_bids[a, m], open_asks[a, m], isolated_margin[a, m]
        usd[g] = balances[a, 0]
    for k in range(groups.shape[0]):
        g, m = groups[k], instruments[k]
        if sides[k] > 0:
            bids[g, m] += lots[k]
        else:
            asks[g, m] += lots[k]
        size = lots[k] * lot_sizes[m]
        price = ticks[k] * tick_sizes[m] if ticks[k] >= 0 else marks[m]
        cost = sides[k] * size * (price - marks[m]) + taker_fee * size * price
        if isolated[accounts[g]]:
            margin[g, m] -= cost
        else:
            usd[g] -= cost
    out = np.empty(n_groups)
    for g in range(n_groups):
        a = accounts[g]
        collateral = 0.0
        for s in range(balances.shape[1]):
            held = usd[g] if s == 0 else balances[a, s]
            collateral += held * collateral_weights[s]
            if held < 0:
                collateral += held * debt_weights[s]
        equity, initial, shortfall = collateral, 0.0, 0.0
        for m in range(n_inst):
            q = positions[a, m]
            unrealized = ((marks[m] - cum_funding[m]) - entry[a, m] + funding_index[a, m]) * (q * lot_sizes[m])
            worst = max(q + bids[g, m], asks[g, m] - q)
            notional = worst * (marks[m] * lot_sizes[m])
            tier = 0
            while tier + 1 < floors.shape[1] and notional >= floors[m, tier + 1]:
                tier += 1
            im = notional * imr[m, tier]
            equity += margin[g, m] + unrealized
            initial += im
            shortfall += max(im - (margin[g, m] + unrealized), 0.0)
        out[g] = collateral - shortfall if isolated[a] else equity - initial
    return out

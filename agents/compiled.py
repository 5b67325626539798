"""Helpers for the populations' compiled kernels that give numpy's results exactly:
elementwise rules (`minimum`, `maximum`, `clip`: NaN and signed-zero rules included)
and reductions (`column_sums`, `log_return_std`: numpy's summation order), so a kernel
computes what the numpy expression it replaces did, bit for bit (`tests/test_agents.py`
holds each to numpy).

Every kernel in `agents/` is compiled with ``error_model="numpy"``: a division by zero
gives inf or NaN as numpy's did, not a ZeroDivisionError.

Numba caches a kernel by its own file only: after editing a helper here, delete the
``agents/__pycache__`` folder so the kernels that call it are compiled again.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def minimum(a, b):
    """``np.minimum`` of two floats: NaN if either is, else ``a if a < b else b`` (on a
    tie of 0.0 and -0.0, the second, as numpy)."""
    return np.nan if np.isnan(a) or np.isnan(b) else a if a < b else b


@njit(cache=True, error_model="numpy")
def maximum(a, b):
    """``np.maximum`` of two floats: NaN if either is, else ``a if a > b else b`` (on a
    tie of 0.0 and -0.0, the second, as numpy)."""
    return np.nan if np.isnan(a) or np.isnan(b) else a if a > b else b


@njit(cache=True, error_model="numpy")
def clip(x, low, high):
    """``np.clip`` of one float between bounds ``low <= high`` that are not NaN (NaN
    stays NaN)."""
    return low if x < low else high if x > high else x


@njit(cache=True, error_model="numpy")
def _block_sum(x, start, n, j):
    """numpy's sum of a block of at most 128 entries ``x[start:start + n, j]``: below 8
    in order, else in 8 lanes added pairwise, then the remainder in order."""
    if n < 8:
        total = 0.0
        for i in range(n):
            total += x[start + i, j]
        return total
    lanes = np.empty(8)
    for u in range(8):
        lanes[u] = x[start + u, j]
    i = 8
    while i < n - n % 8:
        for u in range(8):
            lanes[u] += x[start + i + u, j]
        i += 8
    total = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
    while i < n:
        total += x[start + i, j]
        i += 1
    return total


@njit(cache=True, error_model="numpy")
def _pairwise_sum(x, j):
    """numpy's pairwise summation (``pairwise_sum`` in its loops) of column j of x:
    blocks of at most 128 by `_block_sum`, longer runs split in two halves (the first a
    multiple of 8) whose sums are added. Walked with an explicit stack: numba's cache
    does not load recursive functions safely."""
    frames = np.empty((128, 3), np.int64)  # start, length, 1: add the two sums on top
    values = np.empty(128)
    frames[0, 0], frames[0, 1], frames[0, 2] = 0, x.shape[0], 0
    top, n_values = 1, 0
    while top:
        top -= 1
        start, n, combine = frames[top, 0], frames[top, 1], frames[top, 2]
        if combine:
            n_values -= 1
            values[n_values - 1] = values[n_values - 1] + values[n_values]
        elif n <= 128:
            values[n_values] = _block_sum(x, start, n, j)
            n_values += 1
        else:
            half = n // 2
            half -= half % 8
            frames[top, 0], frames[top, 1], frames[top, 2] = start, n, 1
            frames[top + 1, 0], frames[top + 1, 1], frames[top + 1, 2] = start + half, n - half, 0
            frames[top + 2, 0], frames[top + 2, 1], frames[top + 2, 2] = start, half, 0
            top += 3
    return values[0]


@njit(cache=True, error_model="numpy")
def column_sums(x):
    """``x.sum(axis=0)`` of a C-ordered (k, m) float array, in numpy's order: one column
    is summed pairwise (it is contiguous) onto 0.0, several are accumulated row by row.
    (A Fortran-ordered array would be summed in another order by numpy.)"""
    k, m = x.shape
    out = np.zeros(m)
    if m == 1:
        out[0] = 0.0 + _pairwise_sum(x, 0)
        return out
    for t in range(k):
        for j in range(m):
            out[j] += x[t, j]
    return out


@njit(cache=True, error_model="numpy")
def log_return_std(prices):
    """``np.diff(np.log(prices), axis=0).std(axis=0)`` of (k, m) prices (k >= 2), bit
    for bit: (m,) the standard deviation of each column's log returns (numpy's two-pass
    variance: the mean, then the mean squared deviation, each by `column_sums`)."""
    k, m = prices.shape
    logs = np.log(prices)
    returns = np.empty((k - 1, m))
    for t in range(k - 1):
        for j in range(m):
            returns[t, j] = logs[t + 1, j] - logs[t, j]
    mean = column_sums(returns) / (k - 1)
    for t in range(k - 1):
        for j in range(m):
            deviation = returns[t, j] - mean[j]
            returns[t, j] = deviation * deviation
    return np.sqrt(column_sums(returns) / (k - 1))

"""Scalar helpers for the populations' compiled kernels that give numpy's elementwise
results exactly (NaN rules included), so a kernel computes what the numpy expression it
replaces did, bit for bit.

Numba caches a kernel by its own file only: after editing a helper here, delete the
``agents/__pycache__`` folder so the kernels that call it are compiled again.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def minimum(a, b):
    """``np.minimum`` of two floats (NaN if either is)."""
    return np.nan if np.isnan(a) or np.isnan(b) else min(a, b)


@njit(cache=True)
def maximum(a, b):
    """``np.maximum`` of two floats (NaN if either is)."""
    return np.nan if np.isnan(a) or np.isnan(b) else max(a, b)


@njit(cache=True)
def clip(x, low, high):
    """``np.clip`` of one float (NaN stays NaN)."""
    return low if x < low else high if x > high else x

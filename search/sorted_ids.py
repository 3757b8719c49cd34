"""Pure helpers over sorted id arrays (pks), used by the query path's in-memory maps."""

from __future__ import annotations

import numpy as np


def member(values: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_ids)`` for an already sorted ``sorted_ids`` (binary search, no sort)."""
    if not len(sorted_ids):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
    member: np.ndarray = sorted_ids[at] == values
    return member


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])`` without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, np.int64)
    first = np.cumsum(counts) - counts  # where each range begins in the output
    return (np.repeat(starts - first, counts) + np.arange(total)).astype(np.int64)

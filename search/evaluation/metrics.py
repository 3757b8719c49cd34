"""Pure ranking metrics over graded labels: no I/O, no models, only numpy.

Every function takes ``ranked``: the graded labels (0 = not relevant) of a system's results in rank order
(an unjudged result counts 0), and where the ideal matters ``judged``: every graded label the judgments hold
for the query (relevant products the system never returned included).  A label counts as relevant when it is
at least ``threshold`` (1 by default).

* ``recall_at_k``: relevant results in the top ``k`` / relevant judged products;
* ``precision_at_k``: relevant results in the top ``k`` / ``k``;
* ``dcg_at_k`` / ``ndcg_at_k``: exponential gain ``2**label - 1``, discount ``log2(rank + 1)``, divided by the
  DCG of the ideal ordering of ``judged``;
* ``reciprocal_rank``: ``1 / rank`` of the first relevant result (0 when none); ``mean`` of it is MRR;
* ``top1``: whether rank 1 holds a product of the query's highest judged label ("the product at rank 1").

A query without any relevant judged product scores 0 on recall and nDCG (it has nothing to find); callers
usually leave such queries out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike


def _labels(values: ArrayLike) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")


def recall_at_k(ranked: ArrayLike, judged: ArrayLike, k: int, *, threshold: float = 1) -> float:
    """Share of the relevant judged products that appear in the top ``k``."""
    _check_k(k)
    relevant = int((_labels(judged) >= threshold).sum())
    if relevant == 0:
        return 0.0
    found = int((_labels(ranked)[:k] >= threshold).sum())
    return min(found, relevant) / relevant


def precision_at_k(ranked: ArrayLike, k: int, *, threshold: float = 1) -> float:
    """Relevant results in the top ``k``, divided by ``k`` (missing results count as not relevant)."""
    _check_k(k)
    return float((_labels(ranked)[:k] >= threshold).sum()) / k


def dcg_at_k(ranked: ArrayLike, k: int) -> float:
    """Discounted cumulative gain of the top ``k``: ``sum((2**label - 1) / log2(rank + 1))``, rank from 1."""
    _check_k(k)
    labels = _labels(ranked)[:k]
    if labels.size == 0:
        return 0.0
    return float(((2.0 ** labels - 1.0) / np.log2(np.arange(2, labels.size + 2))).sum())


def ndcg_at_k(ranked: ArrayLike, judged: ArrayLike, k: int) -> float:
    """DCG of the top ``k`` over the DCG of the best possible ordering of the judged labels."""
    ideal = dcg_at_k(np.sort(_labels(judged))[::-1], k)
    return dcg_at_k(ranked, k) / ideal if ideal > 0 else 0.0


def reciprocal_rank(ranked: ArrayLike, *, threshold: float = 1) -> float:
    """``1 / rank`` of the first relevant result, 0 when no result is relevant."""
    hits = np.flatnonzero(_labels(ranked) >= threshold)
    return 1.0 / (hits[0] + 1) if hits.size else 0.0


def top1(ranked: ArrayLike, judged: ArrayLike) -> float:
    """1.0 when the first result has the highest label judged for the query (and that label is > 0)."""
    labels, best = _labels(ranked), _labels(judged)
    if labels.size == 0 or best.size == 0 or best.max() <= 0:
        return 0.0
    return float(labels[0] == best.max())


def recall_curve(ranked: ArrayLike, judged: ArrayLike, ks: Sequence[int], *, threshold: float = 1) -> np.ndarray:
    """``recall_at_k`` for each of ``ks`` (one pass)."""
    relevant = int((_labels(judged) >= threshold).sum())
    if relevant == 0:
        return np.zeros(len(ks))
    found = np.cumsum(_labels(ranked) >= threshold)
    out = []
    for k in ks:
        _check_k(k)
        out.append(min(found[min(k, found.size) - 1] if found.size else 0, relevant) / relevant)
    return np.asarray(out, dtype=np.float64)


def mean(values: ArrayLike) -> float:
    """The mean of per-query scores (0 for no queries)."""
    values = _labels(values)
    return float(values.mean()) if values.size else 0.0

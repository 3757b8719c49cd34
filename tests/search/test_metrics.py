"""Ranking metrics against hand-computed examples."""

import math

import numpy as np
import pytest

from search.evaluation import metrics

# A system returned four products with labels 3, 0, 1, 0; the judgments hold labels 3, 2, 1 (and a 0).
RANKED = [3, 0, 1, 0]
JUDGED = [3, 2, 1, 0]


def test_recall_counts_relevant_judged_products_found_in_the_top_k():
    assert metrics.recall_at_k(RANKED, JUDGED, 1) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(RANKED, JUDGED, 2) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(RANKED, JUDGED, 3) == pytest.approx(2 / 3)
    assert metrics.recall_at_k(RANKED, JUDGED, 50) == pytest.approx(2 / 3)  # the label-2 product was never returned
    assert metrics.recall_at_k(RANKED, JUDGED, 3, threshold=3) == 1.0
    assert metrics.recall_at_k([0, 0], [0, 0], 5) == 0.0  # nothing to find
    assert metrics.recall_at_k([], JUDGED, 5) == 0.0


def test_precision_divides_by_k_even_past_the_end_of_the_list():
    assert metrics.precision_at_k(RANKED, 1) == 1.0
    assert metrics.precision_at_k(RANKED, 2) == 0.5
    assert metrics.precision_at_k(RANKED, 10) == pytest.approx(2 / 10)


def test_dcg_and_ndcg_by_hand():
    # DCG@3 of [3, 0, 1]: (2^3-1)/log2(2) + 0 + (2^1-1)/log2(4) = 7 + 0.5
    assert metrics.dcg_at_k(RANKED, 3) == pytest.approx(7.5)
    # ideal [3, 2, 1]: 7 + 3/log2(3) + 1/2
    ideal = 7 + 3 / math.log2(3) + 0.5
    assert metrics.ndcg_at_k(RANKED, JUDGED, 3) == pytest.approx(7.5 / ideal)
    assert metrics.ndcg_at_k([3, 2, 1, 0], JUDGED, 10) == pytest.approx(1.0)
    assert metrics.ndcg_at_k([0, 0, 0], JUDGED, 10) == 0.0
    assert metrics.ndcg_at_k([1], [0, 0], 10) == 0.0  # no ideal gain: defined as 0
    assert metrics.dcg_at_k([], 10) == 0.0


def test_ndcg_matches_a_plain_numpy_formula_on_random_lists():
    rng = np.random.default_rng(0)
    for _ in range(20):
        judged = rng.integers(0, 4, size=15)
        ranked = rng.permutation(judged)[: rng.integers(1, 15)]
        k = int(rng.integers(1, 12))
        gains = lambda labels: sum((2.0 ** l - 1) / np.log2(i + 2) for i, l in enumerate(labels[:k]))  # noqa: E731
        ideal = gains(sorted(judged, reverse=True))
        expected = gains(list(ranked)) / ideal if ideal else 0.0
        assert metrics.ndcg_at_k(ranked, judged, k) == pytest.approx(expected)


def test_reciprocal_rank_top1_and_mean():
    assert metrics.reciprocal_rank(RANKED) == 1.0
    assert metrics.reciprocal_rank([0, 0, 2, 3]) == pytest.approx(1 / 3)
    assert metrics.reciprocal_rank([0, 0]) == 0.0
    assert metrics.reciprocal_rank([1, 3], threshold=3) == 0.5
    assert metrics.mean([metrics.reciprocal_rank(r) for r in ([1], [0, 1], [0, 0])]) == pytest.approx(0.5)
    assert metrics.mean([]) == 0.0
    assert metrics.top1([3, 1], JUDGED) == 1.0
    assert metrics.top1([2, 3], JUDGED) == 0.0
    assert metrics.top1([], JUDGED) == 0.0


def test_recall_curve_agrees_with_recall_at_k_and_k_is_checked():
    ks = [1, 2, 3, 4, 10]
    curve = metrics.recall_curve(RANKED, JUDGED, ks)
    assert curve.tolist() == pytest.approx([metrics.recall_at_k(RANKED, JUDGED, k) for k in ks])
    assert metrics.recall_curve([], JUDGED, [1, 5]).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="positive"):
        metrics.recall_at_k(RANKED, JUDGED, 0)

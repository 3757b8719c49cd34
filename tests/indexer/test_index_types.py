"""Index type choice by size and memory; search-parameter tuning against exact search."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from indexer.config import VectorIndexConfig
from indexer.store import vectors as vector_files
from indexer.store.index_types import (

    choose_index_type,
    hnsw_bytes,
    measure_recall,
    recall_at_k,
    sample_queries,
    tune_search,
    tune_search_params,
)
from indexer.store.vectors import SearchTuning


@pytest.fixture(autouse=True)
def one_faiss_thread():
    """One OpenMP thread: FAISS's spinning threads crawl on a loaded 2-core machine."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered(n, d, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 100), d)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_small_catalogs_get_exact_flat():
    choice = choose_index_type(10_000, 512)
    assert choice.index_type == "Flat" and choice.exact
    assert choice.estimated_bytes >= 10_000 * 512 * 4
    assert "exact scan" in choice.reason


def test_flat_limit_scales_with_dimension():
    limit_512 = VectorIndexConfig().flat_scan_bytes // (512 * 4)
    assert choose_index_type(limit_512, 512).index_type == "Flat"
    assert choose_index_type(limit_512 + 1, 512).index_type.startswith("HNSW")
    assert choose_index_type(limit_512 + 1, 128).index_type == "Flat"  # 4x fewer bytes per vector


def test_large_catalogs_get_hnsw_when_memory_allows():
    choice = choose_index_type(1_000_000, 512)
    assert choice.index_type == "HNSW32" and not choice.exact
    assert choice.estimated_bytes == hnsw_bytes(1_000_000, 512) > 2 * 2**30
    assert choice.tuning.ef_search >= 32


def test_tight_memory_gets_ivf_pq_with_opq_on_request():
    roomy = choose_index_type(1_000_000, 512, max_memory_bytes=1 * 2**30)
    assert roomy.index_type.startswith("IVF") and ",PQ256np" in roomy.index_type
    assert roomy.estimated_bytes <= 2**30
    tight = choose_index_type(1_000_000, 512, max_memory_bytes=110 * 2**20)
    assert tight.index_type.startswith("IVF") and tight.index_type.endswith(",PQ32np")
    assert tight.estimated_bytes <= 110 * 2**20 and tight.tuning.nprobe >= 8
    rotated = choose_index_type(1_000_000, 512, max_memory_bytes=110 * 2**20, opq=True)
    assert rotated.index_type.startswith("OPQ32,IVF") and rotated.estimated_bytes <= 110 * 2**20
    for choice in (roomy, tight, rotated):  # valid factory strings
        vector_files.make_index(choice.index_type, 512)


def test_too_few_vectors_for_ivf_pq_fall_back_to_scalar_quantisation():
    choice = choose_index_type(5000, 512, max_memory_bytes=4 * 2**20)
    assert choice.index_type == "SQ8" and "too few" in choice.reason


def test_bad_sizes_raise():
    with pytest.raises(ValueError):
        choose_index_type(-1, 512)
    with pytest.raises(ValueError):
        choose_index_type(10, 0)


def test_recall_at_k_counts_overlap_and_ignores_missing():
    truth = np.array([[1, 2, 3], [4, 5, 6]])
    found = np.array([[3, 2, 9], [-1, -1, -1]])
    assert recall_at_k(found, truth, 3) == pytest.approx(2 / 6)


def test_flat_has_perfect_recall():
    x = _unit(np.random.default_rng(1), 500, 16)
    index = vector_files.make_index("Flat", 16)
    vector_files.train_and_add(index, x, np.arange(100, 600))
    assert measure_recall(index, x, k=10, n_queries=50) == 1.0
    result = tune_search(index, sample_queries(x, 20), x)
    assert result.reached and result.recall == 1.0 and result.tuning == SearchTuning()


def test_hnsw_tuning_raises_ef_until_target():
    x = _clustered(4000, 32)
    index = vector_files.make_index("HNSW8", 32)
    faiss.downcast_index(index.index).hnsw.efConstruction = 16  # a deliberately weak graph
    vector_files.train_and_add(index, x, np.arange(4000) * 3 + 7)
    queries = sample_queries(x, 100, seed=2)
    result = tune_search(index, queries, x, target_recall=0.97)
    values = [v for v, _ in result.tried]
    assert values == sorted(values) and result.tried[-1][1] == result.recall
    assert result.reached and result.recall >= 0.97
    assert measure_recall(index, x, queries=queries, tuning=result.tuning) == pytest.approx(result.recall)
    assert tune_search_params(index, queries, x, 0.97) == result.tuning
    if len(result.tried) > 1:
        assert result.tried[-2][1] < 0.97


def test_tuning_is_bounded_when_the_target_is_out_of_reach():
    x = _unit(np.random.default_rng(3), 1000, 32)
    index = vector_files.make_index("HNSW4", 32)
    vector_files.train_and_add(index, x, np.arange(1000))
    result = tune_search(index, sample_queries(x, 30), x, target_recall=1.01, max_value=48)
    assert not result.reached and result.tuning.ef_search == 48


def test_ivf_pq_with_exact_rescoring_reaches_target_and_accepts_an_exact_index():
    x = _clustered(3000, 32, seed=4)
    index = vector_files.make_index("IVF32,PQ8np", 32)
    vector_files.train_and_add(index, x, np.arange(3000))
    queries = sample_queries(x, 60, seed=5)
    rescored = tune_search(index, queries, x, target_recall=0.95, rerank=100, time_queries=True)
    assert rescored.reached and rescored.tuning.nprobe <= 32 and rescored.ms_per_query is not None
    plain = measure_recall(index, x, queries=queries, tuning=rescored.tuning)
    assert plain < rescored.recall  # PQ's own top-10 is coarse; re-scoring recovers it
    exact = vector_files.make_index("Flat", 32)
    vector_files.train_and_add(exact, x, np.arange(3000))
    assert tune_search(index, queries, exact, target_recall=0.3).reached
    with pytest.raises(ValueError):
        tune_search(index, queries, exact, rerank=100)

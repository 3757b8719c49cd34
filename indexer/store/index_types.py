"""Choose a FAISS index type by catalog size and memory, and tune its search parameters.

In the spirit of autofaiss (which does not run with faiss 1.15 / numpy 2), with thresholds
measured on this project's machines (single-query, one OpenMP thread, 512-d float32):

* exact ``Flat`` while a full scan stays cheap: ~1.7 ms at 10k vectors, ~15 ms at 50k,
  ~30 ms at 100k, so up to ``VectorIndexConfig.flat_scan_bytes`` of vectors (32k vectors at 512-d, ~5 ms);
* ``HNSW32`` (graph over full vectors: ~0.2-0.5 ms, recall@10 ~0.96-0.98 at efSearch 64-128)
  while its memory (vectors + 64 links of level 0 per vector) fits ``max_memory_bytes``;
* ``IVF{nlist},PQ{m}np`` beyond, the largest ``m`` that fits; the engine re-scores candidates
  with the exact vectors SQLite keeps, so PQ's coarse scores only pick candidates.  ``np``
  skips polysemous training (two minutes for 3000 vectors here, and unused by our searches).
  OPQ is opt-in (``opq=True``): its rotation took 87 s per training iteration for 20k x 512
  vectors here, and FAISS runs 50 of them.

``tune_search_params`` raises efSearch / nprobe until recall@k against exact search reaches a
target; ``measure_recall`` gives the recall of one setting.  Both only read the index.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from indexer.config import VectorIndexConfig
from indexer.store import vectors as vector_files
from indexer.store.vectors import SearchTuning

if TYPE_CHECKING:
    import faiss

#: The fewest vectors an IVF-PQ index is trained on sensibly (256 PQ centroids, 39 points each).
MIN_IVFPQ_VECTORS = 256 * 39
#: Per-vector overhead of ``IndexIDMap2`` (id array + reverse hash map), measured roughly.
ID_MAP_BYTES = 8 + 48
DEFAULT_TUNING = SearchTuning()


@dataclass(frozen=True, kw_only=True)
class IndexChoice:
    """A FAISS factory string with the search settings to use it with, and why it was chosen."""

    index_type: str
    tuning: SearchTuning
    estimated_bytes: int
    reason: str
    exact: bool = False


@dataclass(frozen=True, kw_only=True)
class TuningResult:
    """What ``tune_search`` settled on and what it measured on the way."""

    tuning: SearchTuning
    recall: float
    reached: bool
    ms_per_query: float | None = None
    tried: tuple[tuple[int, float], ...] = field(default=())  # (efSearch or nprobe, recall@k)


def flat_bytes(n_vectors: int, dim: int) -> int:
    return n_vectors * (4 * dim + ID_MAP_BYTES)


def hnsw_bytes(n_vectors: int, dim: int, m: int = VectorIndexConfig().hnsw_m) -> int:
    """Full vectors, 2M level-0 links, ~M/(M-1) upper-level links on average, levels and offsets."""
    links = 4 * (2 * m + m / max(m - 1, 1))
    return int(n_vectors * (4 * dim + links + 8 + 4 + ID_MAP_BYTES))


def ivfpq_bytes(n_vectors: int, dim: int, *, nlist: int, m: int, opq: bool) -> int:
    """Codes and ids per vector, coarse centroids, PQ tables and the OPQ rotation."""
    per_vector = m + 8 + ID_MAP_BYTES
    fixed = 4 * nlist * dim + 4 * 256 * dim + (4 * dim * dim if opq else 0)
    return n_vectors * per_vector + fixed


def ivf_lists(n_vectors: int) -> int:
    """A power of two near 4 sqrt(n), between 64 and 4096, with >= 39 training points per list."""
    target = 4 * math.sqrt(max(n_vectors, 1))
    nlist: int = 2 ** round(math.log2(max(target, 1)))
    nlist = min(nlist, 4096, 2 ** int(math.log2(max(n_vectors // 39, 1))))
    return max(64, nlist)


def choose_index_type(n_vectors: int, dim: int, *, max_memory_bytes: int | None = None, opq: bool = False,
                      config: VectorIndexConfig = VectorIndexConfig()) -> IndexChoice:
    """The index for ``n_vectors`` of ``dim`` floats within ``max_memory_bytes`` (``None``: no limit).

    ``opq`` puts an OPQ rotation before IVF-PQ codes that cover 8 or more dimensions per byte (slow to train).
    """
    if n_vectors < 0 or dim <= 0:
        raise ValueError(f"need n_vectors >= 0 and dim > 0, got {n_vectors}, {dim}")
    budget = math.inf if max_memory_bytes is None else max_memory_bytes
    flat = flat_bytes(n_vectors, dim)
    scan = n_vectors * dim * 4
    m_links = config.hnsw_m
    if scan <= config.flat_scan_bytes and flat <= budget:
        return IndexChoice(index_type="Flat", tuning=SearchTuning(), estimated_bytes=flat, exact=True,
                           reason=f"{n_vectors} vectors x {dim}: an exact scan reads {_mib(scan)} (<= {_mib(config.flat_scan_bytes)}), a few ms")
    hnsw = hnsw_bytes(n_vectors, dim, m_links)
    if hnsw <= budget:
        why = "no memory limit" if max_memory_bytes is None else f"fits {_mib(max_memory_bytes)}"
        return IndexChoice(index_type=f"HNSW{m_links}", tuning=SearchTuning(ef_search=64), estimated_bytes=hnsw,
                           reason=f"{n_vectors} vectors x {dim}: an exact scan reads {_mib(scan)}; HNSW{m_links} needs ~{_mib(hnsw)} ({why})")
    if n_vectors < MIN_IVFPQ_VECTORS:
        sq8 = n_vectors * (dim + ID_MAP_BYTES)
        return IndexChoice(index_type="SQ8", tuning=SearchTuning(), estimated_bytes=sq8,
                           reason=f"{n_vectors} vectors: too few to train IVF-PQ and Flat/HNSW need {_mib(min(flat, hnsw))} "
                                  f"> {_mib(budget)}; 8-bit scalar quantisation, scanned in full (re-scored exactly)")
    nlist = ivf_lists(n_vectors)
    for m in _pq_sizes(dim):
        rotate = opq and dim // m >= 8
        size = ivfpq_bytes(n_vectors, dim, nlist=nlist, m=m, opq=rotate)
        if size <= budget or m == _pq_sizes(dim)[-1]:
            factory = f"{f'OPQ{m},' if rotate else ''}IVF{nlist},PQ{m}np"
            fits = "fits" if size <= budget else "the smallest code; still over"
            return IndexChoice(
                index_type=factory, tuning=SearchTuning(nprobe=max(8, nlist // 64)), estimated_bytes=size,
                reason=f"{n_vectors} vectors x {dim}: HNSW{m_links} needs ~{_mib(hnsw)} > {_mib(budget)}; "
                       f"{m}-byte PQ codes in {nlist} lists need ~{_mib(size)} ({fits} the limit); "
                       "candidates are re-scored with the exact vectors")
    raise AssertionError("unreachable")


def _pq_sizes(dim: int) -> list[int]:
    """PQ code sizes in bytes (2 to 32 dimensions per byte) that divide ``dim``, largest first."""
    sizes = [m for m in (dim // 2, dim // 4, dim // 8, dim // 16, dim // 32) if m >= 4 and dim % m == 0 and m <= 256]
    return sizes or [next(m for m in range(min(dim, 64), 0, -1) if dim % m == 0)]


def _mib(n: float) -> str:
    return "unlimited" if n == math.inf else f"{n / 2**20:.1f} MiB"


# -- recall and tuning -------------------------------------------------------------------------------


def sample_queries(vectors: np.ndarray, n_queries: int, *, noise: float = 0.3, seed: int = 0) -> np.ndarray:
    """Queries near the data: random rows of ``vectors`` moved by ``noise`` (a random unit vector times it)."""
    rng = np.random.default_rng(seed)
    rows = vectors[rng.choice(len(vectors), min(n_queries, len(vectors)), replace=False)]
    push = rng.standard_normal(rows.shape).astype(np.float32)
    push /= np.linalg.norm(push, axis=1, keepdims=True)
    q = rows + noise * push
    unit: np.ndarray = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    return unit


def exact_neighbours(exact: faiss.Index | np.ndarray, queries: np.ndarray, k: int, *, ids: np.ndarray | None = None) -> np.ndarray:
    """Ids of the exact top-``k`` of each query: ``exact`` is a FAISS index or the (n, d) vectors (ids = ``ids`` or rows)."""
    if isinstance(exact, np.ndarray):
        import faiss

        flat = faiss.IndexFlatIP(exact.shape[1])
        flat.add(np.ascontiguousarray(exact, dtype=np.float32))
        _, rows = flat.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return rows if ids is None else np.where(rows >= 0, np.asarray(ids)[rows], -1)
    _, found = vector_files.search(exact, queries, k)
    return found


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean over queries of |found[:k] ∩ truth[:k]| / |truth[:k]| (``-1`` ids ignored)."""
    hits, total = 0, 0
    for got, want in zip(found, truth):
        want = {int(i) for i in want[:k] if i >= 0}
        hits += len(want & {int(i) for i in got[:k] if i >= 0})
        total += len(want)
    return hits / total if total else 1.0


def approximate_neighbours(index: faiss.Index, queries: np.ndarray, k: int, *, tuning: SearchTuning = DEFAULT_TUNING,
                           rerank: int = 0, vectors: np.ndarray | None = None, ids: np.ndarray | None = None) -> np.ndarray:
    """Top-``k`` ids from ``index``; with ``rerank`` > k, the top ``rerank`` re-scored with the exact ``vectors``."""
    fetch = max(k, rerank)
    _, found = vector_files.search(index, queries, fetch, tuning=tuning)
    if rerank <= k:
        return found[:, :k]
    if vectors is None:
        raise ValueError("rerank needs the exact vectors")
    ids = np.arange(len(vectors)) if ids is None else np.asarray(ids)
    order = np.argsort(ids, kind="stable")
    out = np.full((len(queries), k), -1, dtype=np.int64)
    for row, (query, cand) in enumerate(zip(queries, found)):
        cand = cand[cand >= 0]
        rows = order[np.searchsorted(ids, cand, sorter=order)]
        best = np.argsort(-(vectors[rows] @ query), kind="stable")[:k]
        out[row, : len(best)] = cand[best]
    return out


def measure_recall(index: faiss.Index, vectors: np.ndarray, k: int = 10, n_queries: int = 200, *,
                   queries: np.ndarray | None = None, tuning: SearchTuning = DEFAULT_TUNING, rerank: int = 0,
                   ids: np.ndarray | None = None, seed: int = 0) -> float:
    """Recall@``k`` of ``index`` against exact search over ``vectors`` (the index's contents, ids = ``ids`` or
    the index's own ids in insertion order).  Queries default to ``sample_queries(vectors, n_queries)``."""
    ids = _ids_of(index, vectors) if ids is None else np.asarray(ids)
    queries = sample_queries(vectors, n_queries, seed=seed) if queries is None else queries
    truth = exact_neighbours(vectors, queries, k, ids=ids)
    found = approximate_neighbours(index, queries, k, tuning=tuning, rerank=rerank, vectors=vectors, ids=ids)
    return recall_at_k(found, truth, k)


def tune_search(index: faiss.Index, sample_queries: np.ndarray, exact_index_or_vectors: faiss.Index | np.ndarray, target_recall: float = 0.95, *,
                k: int = 10, rerank: int = 0, ids: np.ndarray | None = None, max_value: int = 1024,
                time_queries: bool = False, config: VectorIndexConfig = VectorIndexConfig()) -> TuningResult:
    """Raise efSearch (HNSW) or nprobe (IVF) along a ladder until recall@``k`` reaches ``target_recall``.

    Bounded by ``max_value`` (and by the number of IVF lists); when the target is out of reach the largest
    setting tried is returned with ``reached=False``.  Exact indexes return the defaults at recall 1.
    """
    import faiss

    queries = np.ascontiguousarray(sample_queries, dtype=np.float32)
    exact = exact_index_or_vectors
    vectors = exact if isinstance(exact, np.ndarray) else None
    if vectors is not None and ids is None:
        ids = _ids_of(index, vectors)
    if rerank > k and vectors is None:
        raise ValueError("rerank needs the exact vectors as exact_index_or_vectors")
    truth = exact_neighbours(exact, queries, k, ids=ids)
    inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    ivf = faiss.try_extract_index_ivf(inner) if not isinstance(inner, faiss.IndexHNSW) else None
    if isinstance(inner, faiss.IndexHNSW):
        ladder, field_name = [v for v in config.ef_ladder if v <= max_value], "ef_search"
    elif ivf is not None:
        top = min(max_value, ivf.nlist)
        ladder, field_name = [v for v in config.nprobe_ladder if v < top] + [top], "nprobe"
    else:
        found = approximate_neighbours(index, queries, k, rerank=rerank, vectors=vectors, ids=ids)
        recall = recall_at_k(found, truth, k)
        return TuningResult(tuning=SearchTuning(), recall=recall, reached=recall >= target_recall,
                            ms_per_query=_time(index, queries, k, SearchTuning()) if time_queries else None)
    tried: list[tuple[int, float]] = []
    for value in ladder:
        tuning = SearchTuning(**{field_name: value})
        recall = recall_at_k(approximate_neighbours(index, queries, k, tuning=tuning, rerank=rerank, vectors=vectors, ids=ids), truth, k)
        tried.append((value, recall))
        if recall >= target_recall or value == ladder[-1]:
            return TuningResult(tuning=tuning, recall=recall, reached=recall >= target_recall, tried=tuple(tried),
                                ms_per_query=_time(index, queries, max(k, rerank), tuning) if time_queries else None)
    raise AssertionError("unreachable")


def tune_search_params(index: faiss.Index, sample_queries: np.ndarray, exact_index_or_vectors: faiss.Index | np.ndarray,
                       target_recall: float = 0.95, **options: object) -> SearchTuning:
    """The smallest efSearch / nprobe on the ladder reaching ``target_recall`` (see ``tune_search``)."""
    return tune_search(index, sample_queries, exact_index_or_vectors, target_recall, **options).tuning  # type: ignore[arg-type]


def _ids_of(index: faiss.Index, vectors: np.ndarray) -> np.ndarray:
    """The index's ids in insertion order (an ``IndexIDMap``), else row numbers."""
    import faiss

    id_map = getattr(index, "id_map", None)
    if id_map is not None and index.ntotal == len(vectors):
        return faiss.vector_to_array(id_map).astype(np.int64)
    return np.arange(len(vectors), dtype=np.int64)


def _time(index: faiss.Index, queries: np.ndarray, k: int, tuning: SearchTuning, repeats: int = 1) -> float:
    """Median milliseconds of single-query searches (one query at a time, as the engine runs them)."""
    times: list[float] = []
    for _ in range(repeats):
        for query in queries:
            started = time.perf_counter()
            vector_files.search(index, query.reshape(1, -1), k, tuning=tuning)
            times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


"""Segments: the immutable FAISS files an index is made of, and how they are built and merged.

A commit writes at most one new segment per modality, holding the vectors staged since the last
commit, and records it in the same SQLite transaction as the rows (``index_meta``'s commit lists
every live segment with its size, checksum and vector count).  Deleting or replacing a product
removes its rows; its vectors stay in their segment file as tombstones, which readers exclude by id,
until a merge rewrites the segment without them.

Merges are tiered, as in Lucene: a segment's tier is the order of magnitude of its live vectors
(everything under ``merge_floor`` is tier 0); when a tier holds ``merge_factor`` segments they are
merged into one (at most ``max_merge_vectors`` of work per commit), and a segment that is mostly
tombstones is rewritten alone.  A merge re-chooses the index type for the merged size and re-tunes
its recall.  ``vitrina optimize`` merges everything into one segment per modality.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexer.config import AUTO_INDEX_TYPE, VectorIndexConfig
from indexer.store import index_types
from indexer.store import vectors as vector_files


def segment_name(modality: str, number: int) -> str:
    return f"{modality}.{number}.faiss"


@dataclass(frozen=True, kw_only=True)
class SegmentState:
    """What the merge policy knows of a segment: its number, vectors written and vectors still live."""

    number: int
    ntotal: int
    live: int

    @property
    def dead(self) -> int:
        return self.ntotal - self.live


def tier(live: int, config: VectorIndexConfig) -> int:
    """0 below ``merge_floor`` live vectors, then one tier per factor of ``merge_factor``."""
    if live < config.merge_floor:
        return 0
    return 1 + int(math.log(live / config.merge_floor, config.merge_factor) + 1e-9)


def plan_merge(states: Sequence[SegmentState], config: VectorIndexConfig) -> list[int]:
    """Numbers of the segments one commit merges into one (empty: none).

    Segments with no live vector are always dropped (no work); then the lowest tier holding
    ``merge_factor`` segments is merged, or else the smallest segment whose tombstones reach
    ``expunge_dead_fraction`` is rewritten alone; neither when it would read more than
    ``max_merge_vectors`` live vectors (``optimize`` does those)."""
    empty = [s.number for s in states if s.live == 0]
    alive = [s for s in states if s.live > 0]
    tiers: dict[int, list[SegmentState]] = {}
    for state in alive:
        tiers.setdefault(tier(state.live, config), []).append(state)
    for level in sorted(tiers):
        group = tiers[level]
        if len(group) >= config.merge_factor and sum(s.live for s in group) <= config.max_merge_vectors:
            return sorted(empty + [s.number for s in group])
    heavy = sorted((s for s in alive if s.dead >= config.expunge_dead_fraction * s.ntotal
                    and s.live <= config.max_merge_vectors), key=lambda s: s.live)
    if heavy:
        return sorted(empty + [heavy[0].number])
    return sorted(empty)


# -- choosing and building ---------------------------------------------------------------------------


def segment_type(store_type: str, n_vectors: int, dim: int, *, max_memory: int | None, flat_limit: int | None,
                 config: VectorIndexConfig) -> str:
    """The FAISS type of a new segment of ``n_vectors``.

    Small segments (under ``small_segment`` vectors) are exact Flat scans whatever the index type: a graph or
    trained codes for a handful of vectors cost more than they save.  A fixed type applies from there.  For
    "auto": an exact scan while the measured ``flat_limit`` says it is faster than HNSW at the target recall
    (the size rule of ``index_types.choose_index_type`` before the machine has been measured), within
    ``max_memory``."""
    if n_vectors < config.small_segment:
        return "Flat"
    if store_type != AUTO_INDEX_TYPE:
        return store_type
    choice = index_types.choose_index_type(n_vectors, dim, max_memory_bytes=max_memory, config=config)
    if flat_limit is None or choice.index_type not in ("Flat", f"HNSW{config.hnsw_m}"):
        return choice.index_type  # the memory budget decided (SQ8, IVF-PQ), or nothing measured yet
    fits = max_memory is None or index_types.flat_bytes(n_vectors, dim) <= max_memory
    return "Flat" if n_vectors <= flat_limit and fits else f"HNSW{config.hnsw_m}"


def build(ids: np.ndarray, vectors: np.ndarray, *, index_type: str, dim: int, config: VectorIndexConfig) -> tuple[faiss.Index, dict[str, Any]]:
    """A segment of ``vectors`` under ``ids`` and what to record of it: its type, and for an approximate
    type the efSearch / nprobe (and re-scoring depth) tuned to ``config.target_recall`` on sampled queries."""
    index = vector_files.make_index(index_type, dim, ef_construction=config.hnsw_ef_construction)
    vector_files.train_and_add(index, vectors, ids)
    return index, tune(index, ids, vectors, index_type=index_type, config=config)


def tune(index: faiss.Index, ids: np.ndarray, vectors: np.ndarray, *, index_type: str, config: VectorIndexConfig) -> dict[str, Any]:
    """What to record of a built segment (``build``'s second half, for builders that fill ``index`` otherwise):
    its type, and for an approximate type the search settings tuned on sampled queries."""
    info: dict[str, Any] = {"index_type": index_type, "ntotal": int(index.ntotal)}
    if vector_files.is_exact(index):
        info["recall"] = 1.0
        return info
    queries = index_types.sample_queries(vectors, config.tuning_queries)
    # compressed codes (PQ, SQ) only pick candidates, which are re-scored with the exact vectors: when
    # their ranking is too coarse for the target, re-score more of them rather than probe everything
    depths = (0,) if vector_files.stores_full_vectors(index) else config.rescore_depths
    for rescore in depths:
        result = index_types.tune_search(index, queries, vectors, config.target_recall, ids=ids, rerank=rescore,
                                         max_value=config.max_nprobe if rescore else 1024, config=config)
        if result.reached:
            break
    info["tuning"] = {"ef_search": result.tuning.ef_search, "nprobe": result.tuning.nprobe, "rescore": rescore}
    info["recall"] = round(result.recall, 4)
    return info


def retire(old: dict[str, Any], named: set[str], *, generation: int, now: float,
           config: VectorIndexConfig) -> list[dict[str, Any]]:
    """The segment files a commit keeps although it no longer names them: those the previous commit
    (``old``) named or kept, until they have been out of use for ``keep_generations`` commits and
    ``keep_seconds`` -- a reader elsewhere (another replica) may still be loading an earlier commit."""
    retired = [r for r in old.get("retired", []) if r["name"] not in named and
               (generation - int(r["generation"]) < config.keep_generations or now - float(r["at"]) < config.keep_seconds)]
    held = {r["name"] for r in retired}
    for infos in old.get("segments", {}).values():
        for info in infos:
            if info["name"] not in named and info["name"] not in held:
                retired.append({"name": info["name"], "generation": generation, "at": now})
    return retired


def write(index: faiss.Index, folder: Path, modality: str, number: int, info: dict[str, Any]) -> dict[str, Any]:
    """Write a segment file atomically; its full record for the commit."""
    path = folder / segment_name(modality, number)
    size, sha256 = vector_files.write_atomic(index, path)
    return {"number": number, "name": path.name, "size": size, "sha256": sha256, **info}


# -- measuring where an exact scan stops paying ------------------------------------------------------


def measure_flat_limit(vectors: np.ndarray, *, config: VectorIndexConfig, sample: int = 16_384,
                       n_queries: int = 64) -> dict[str, Any]:
    """The vector count up to which an exact scan answers one query faster than HNSW at the target recall,
    measured on this machine with a sample of the shop's own vectors.

    Single-query latency is timed for both on the sample (HNSW tuned to ``target_recall`` first); a scan
    grows linearly with the count, a graph search with its logarithm, so the two lines meet at the limit."""
    rng = np.random.default_rng(0)
    rows = vectors if len(vectors) <= sample else vectors[rng.choice(len(vectors), sample, replace=False)]
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    n, dim = rows.shape
    ids = np.arange(n, dtype=np.int64)
    queries = index_types.sample_queries(rows, n_queries)
    flat = vector_files.make_index("Flat", dim)
    flat.add_with_ids(rows, ids)
    flat_ms = _median_ms(flat, queries, vector_files.SearchTuning())
    hnsw, info = build(ids, rows, index_type=f"HNSW{config.hnsw_m}", dim=dim, config=config)
    hnsw_ms = _median_ms(hnsw, queries, vector_files.SearchTuning(**info["tuning"]))
    per_vector = flat_ms / n
    per_log = hnsw_ms / math.log2(max(n, 2))
    limit = n
    if per_vector * n < per_log * math.log2(n):  # the scan still wins at the sample's size: find where it stops
        while per_vector * limit < per_log * math.log2(limit) and limit < 1 << 40:
            limit *= 2
    else:
        while limit > 2 and per_vector * limit > per_log * math.log2(limit):
            limit //= 2
    return {"flat_limit": int(limit), "flat_ms": round(flat_ms, 4), "hnsw_ms": round(hnsw_ms, 4), "sample": n,
            "recall": info["recall"], "dim": dim, "measured_at": time.time()}


def _median_ms(index: faiss.Index, queries: np.ndarray, tuning: vector_files.SearchTuning) -> float:
    times = []
    with vector_files.threads(1):
        for _ in range(2):
            for query in queries:
                started = time.perf_counter()
                vector_files.search(index, query.reshape(1, -1), 10, tuning=tuning)
                times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))

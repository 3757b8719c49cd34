"""A large IVF segment built by several Ray workers: trained once here, filled in shards, merged, tuned.

``IvfShardBuilder`` has ``indexer.store.segments.build``'s signature, so it plugs into
``IndexWriter(store, segment_builder=...)``.  For an IVF segment (``IVF...`` or ``OPQ...,IVF...``: an
``IndexIDMap2`` over an IVF, maybe behind a rotation) of at least two shards' worth of vectors:

1. the empty index is trained here, once, on the sample ``vectors.train_and_add`` would train on;
2. each Ray task gets a copy of it (``faiss.serialize_index``) and adds its shard of vectors under their
   positions in the whole segment (0..n-1: the ids ``IndexIDMap2`` gives its inner index);
3. the shards' inverted lists are merged into the trained index in shard order (``IndexIVF.merge_from`` with
   no id shift: the positions are already global), and the ``IndexIDMap2``'s own id table is set to ``ids``.

The result is the index a single process builds (same lists, same codes, in the same order), so its search
settings are tuned by ``segments.tune`` as any segment's.  Merging the ``IndexIDMap2`` wrappers themselves
would be wrong: their ``merge_from`` passes no id offset to the inner index, and shards answer with colliding
ids.  Everything else (Flat, HNSW, small segments) is left to ``segments.build``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import faiss
import numpy as np

from indexer.config import VectorIndexConfig
from indexer.distributed import import_ray
from indexer.errors import IndexFormatError
from indexer.store import segments
from indexer.store import vectors as vector_files

#: Runs ``add_shard`` over (trained index bytes, positions, vectors) per shard; returns each shard's bytes, in order.
ShardRunner = Callable[[np.ndarray, Sequence[tuple[np.ndarray, np.ndarray]]], list[np.ndarray]]


@dataclass(frozen=True, kw_only=True)
class IvfShardBuilder:
    """``segments.build`` for IVF segments split into ``shards`` Ray tasks (see the module docstring)."""

    shards: int = 2
    #: Fewer vectors per shard than this are not worth a task: the segment is built here, in one piece.
    min_shard_vectors: int = 50_000
    #: Runs the shards; None: Ray tasks of one CPU each (Ray must be connected).
    runner: ShardRunner | None = None

    def __call__(self, ids: np.ndarray, vectors: np.ndarray, *, index_type: str, dim: int,
                 config: VectorIndexConfig) -> tuple[faiss.Index, dict[str, Any]]:
        parts = min(self.shards, len(ids) // max(1, self.min_shard_vectors))
        index = vector_files.make_index(index_type, dim, ef_construction=config.hnsw_ef_construction)
        if parts < 2 or not shardable(index):
            return segments.build(ids, vectors, index_type=index_type, dim=dim, config=config)
        train(index, vectors)
        add_in_shards(index, ids, vectors, shards=parts, runner=self.runner or ray_runner)
        return index, segments.tune(index, ids, vectors, index_type=index_type, config=config)


def shardable(index: faiss.Index) -> bool:
    """True for an ``IndexIDMap2`` over an IVF index, directly or behind a pre-transform (OPQ, PCA)."""
    if not isinstance(index, faiss.IndexIDMap2):
        return False
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexPreTransform):
        inner = faiss.downcast_index(inner.index)
    return isinstance(inner, faiss.IndexIVF)


def train(index: faiss.Index, vectors: np.ndarray) -> None:
    """Train ``index`` exactly as ``vectors.train_and_add`` does (same sample), adding nothing."""
    vector_files.train(index, vectors)


def add_in_shards(index: faiss.Index, ids: np.ndarray, vectors: np.ndarray, *, shards: int, runner: ShardRunner) -> None:
    """Fill the trained, empty ``index`` (``shardable``) with ``vectors`` under ``ids``, ``shards`` pieces added by
    ``runner`` and merged here in order."""
    if index.ntotal:
        raise ValueError("add_in_shards fills an empty index")
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    trained = faiss.serialize_index(index)
    pieces = [(part.astype(np.int64), np.ascontiguousarray(vectors[part], dtype=np.float32))
              for part in np.array_split(np.arange(len(ids)), shards) if len(part)]
    merge(index, runner(trained, pieces), ids)


def add_shard(trained: np.ndarray, positions: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """One shard's work: a copy of the trained index, with ``vectors`` added under ``positions``; the bytes of
    its inner index (the IVF, or the pre-transform holding it)."""
    index = cast(faiss.IndexIDMap2, faiss.deserialize_index(np.array(trained, dtype=np.uint8)))  # a copy: Ray's are read-only
    inner = faiss.downcast_index(index.index)
    inner.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(positions, dtype=np.int64))
    return faiss.serialize_index(inner)


def merge(index: faiss.Index, shards: Sequence[np.ndarray], ids: np.ndarray) -> None:
    """Append the shards' inverted lists to ``index``'s IVF (no id shift) and map positions 0..n-1 to ``ids``."""
    mapped = cast(faiss.IndexIDMap2, index)
    ivf = faiss.extract_index_ivf(index)
    for blob in shards:
        shard = faiss.deserialize_index(np.array(blob, dtype=np.uint8))
        ivf.merge_from(faiss.extract_index_ivf(shard), 0)  # ``shard`` stays referenced while its IVF is read
        del shard
    if ivf.ntotal != len(ids):
        raise IndexFormatError(f"merged IVF shards hold {ivf.ntotal} vectors, expected {len(ids)}")
    inner = faiss.downcast_index(mapped.index)
    inner.ntotal = ivf.ntotal  # a pre-transform counts its vectors too
    mapped.ntotal = ivf.ntotal
    faiss.copy_array_to_vector(ids, mapped.id_map)
    mapped.construct_rev_map()


def ray_runner(trained: np.ndarray, pieces: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """Each shard in a Ray task of one CPU; the trained index is put in the object store once."""
    ray = import_ray()
    if not ray.is_initialized():
        raise RuntimeError("IvfShardBuilder needs a connected Ray (indexer.distributed.connect)")
    task = ray.remote(num_cpus=1)(add_shard)
    shared = ray.put(trained)
    return list(ray.get([task.remote(shared, positions, part) for positions, part in pieces]))


def local_runner(trained: np.ndarray, pieces: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """The shards one after the other in this process (tests, and a check of the merge without Ray)."""
    return [add_shard(trained, positions, part) for positions, part in pieces]

"""FAISS vector indexes addressed by our own integer ids, written atomically.

``VectorIndex`` wraps any FAISS factory string (``Flat``, ``HNSW32``, ``IVF256,PQ32``...)
in an ``IndexIDMap2`` over inner product, so ids are the SQLite primary keys and scores
are cosines of unit vectors.  Trainable indexes (IVF, PQ) are trained on the data the
first time they are written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np

from indexer.config import VectorIndexConfig
from indexer.errors import IndexFormatError, IndexWriteError



@dataclass(frozen=True, kw_only=True)
class SearchTuning:
    ef_search: int = 128
    nprobe: int = 16
    #: On indexes without full vectors (PQ, SQ): how many hits to fetch for exact re-scoring (0: as many as asked).
    rescore: int = 0


def set_threads(n: int) -> None:
    """OpenMP threads FAISS uses in the calling thread from now on (benchmarks; the engine uses ``threads``)."""
    faiss.omp_set_num_threads(n)


@contextmanager
def threads(n: int | None) -> Iterator[None]:
    """FAISS's OpenMP threads set to ``n`` in the calling thread for the block, then restored, so a search
    setting leaks into nothing else that runs OpenMP in this thread (torch's encoder, say)."""
    if not n:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def make_index(index_type: str, dim: int, *, ef_construction: int = VectorIndexConfig().hnsw_ef_construction) -> faiss.Index:
    """A fresh, empty index for ``index_type`` over inner product, with id mapping."""
    try:
        inner = faiss.index_factory(dim, index_type, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise IndexFormatError(f"invalid FAISS index type {index_type!r}: {_faiss_message(exc)}") from None
    if isinstance(inner, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return inner
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efConstruction = max(inner.hnsw.efConstruction, ef_construction)
    return faiss.IndexIDMap2(inner)  # faiss's wrapper keeps ``inner`` alive


def is_exact(index: faiss.Index) -> bool:
    inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    return isinstance(inner, faiss.IndexFlat)


def stores_full_vectors(index: faiss.Index) -> bool:
    """True when ``reconstruct_batch`` gives back the exact vectors (Flat, HNSW over Flat)."""
    inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    if isinstance(inner, faiss.IndexHNSW):
        inner = faiss.downcast_index(inner.storage)
    return isinstance(inner, faiss.IndexFlat)


#: Vectors a trainable index (IVF, PQ) is trained on at most: a seeded sample of them beyond this.
MAX_TRAIN = 256 * 1024


def train(index: faiss.Index, vectors: np.ndarray, *, seed: int = 1234) -> None:
    """Train ``index`` (when it needs it) on ``vectors``, or on a seeded sample of ``MAX_TRAIN`` of them."""
    if index.is_trained:
        return
    train_on = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(train_on) > MAX_TRAIN:
        rng = np.random.default_rng(seed)
        train_on = train_on[rng.choice(len(train_on), MAX_TRAIN, replace=False)]
    try:
        index.train(train_on)
    except RuntimeError as exc:
        raise IndexFormatError(f"cannot train the FAISS index on {len(train_on)} vectors: {_faiss_message(exc)}") from None


def train_and_add(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray, *, seed: int = 1234) -> None:
    """Add ``vectors`` under ``ids``, training the index first if it needs it."""
    if len(ids) == 0:
        return
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    train(index, vectors, seed=seed)
    index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))


def search(
    index: faiss.Index,
    queries: np.ndarray,
    k: int,
    *,
    allowed: np.ndarray | None = None,
    selector: faiss.IDSelector | None = None,
    tuning: SearchTuning = SearchTuning(),
    omp_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores, ids) per query row; ``-1`` ids are dropped by the caller.

    ``allowed`` restricts the search to those ids through a FAISS ID selector (or give the ``selector``
    itself, built once for several searches); ``omp_threads`` sets FAISS's threads for this call only.
    """
    k = max(1, min(k, index.ntotal)) if index.ntotal else 0
    if k == 0:
        return np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64)
    if allowed is not None:
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
    params = _search_parameters(index, selector, tuning)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    with threads(omp_threads):
        if params is None:
            return index.search(queries, k)
        return index.search(queries, k, params=params)


def _search_parameters(index: faiss.Index, selector: faiss.IDSelector | None, tuning: SearchTuning) -> faiss.SearchParameters | None:
    inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    params: faiss.SearchParameters
    if isinstance(inner, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from faiss's bundled stubs
        params.efSearch = tuning.ef_search  # type: ignore[attr-defined]  # (same gap: no SearchParametersHNSW)
    elif isinstance(inner, faiss.IndexIVF) or _ivf_inside(inner):
        params = faiss.SearchParametersIVF()
        params.nprobe = tuning.nprobe
    elif selector is None:
        return None
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector
        params.__dict__["_selector"] = selector  # the params object must not outlive its selector
    return params


def _ivf_inside(index: faiss.Index) -> bool:
    try:
        return faiss.try_extract_index_ivf(index) is not None
    except Exception:
        return False


def write_atomic(index: faiss.Index, path: Path) -> tuple[int, str]:
    """Write ``index`` to ``path`` via a temporary file, fsync and rename; returns (size, sha256)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        faiss.write_index(index, str(tmp))
    except RuntimeError as exc:  # FAISS's C++ writer: a full disk shows as a failed fwrite
        tmp.unlink(missing_ok=True)
        free = shutil.disk_usage(path.parent).free
        raise IndexWriteError(f"{path}: cannot write the FAISS file ({_faiss_message(exc)}; {free // (1024 * 1024)} MiB free "
                              "on that disk); free some space and run again: the last commit is intact") from None
    with open(tmp, "rb") as handle:
        digest = file_sha256(handle)
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_folder(path.parent)
    return path.stat().st_size, digest


def file_sha256(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := handle.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path, *, expected_size: int | None = None, expected_sha256: str | None = None,
         expected_count: int | None = None) -> faiss.Index:
    """Read an index file, checking it against what the commit recorded (size, checksum, count)."""
    if not path.is_file():
        raise IndexFormatError(f"{path}: index file missing; rebuild it with `vitrina repair --index {path.parent}`")
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise IndexFormatError(
            f"{path}: {size} bytes, the commit recorded {expected_size} (torn write?); "
            f"rebuild it with `vitrina repair --index {path.parent}`"
        )
    if expected_sha256 is not None:
        with open(path, "rb") as handle:
            if file_sha256(handle) != expected_sha256:
                raise IndexFormatError(
                    f"{path}: checksum differs from the commit's (corrupted file); "
                    f"rebuild it with `vitrina repair --index {path.parent}`"
                )
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise IndexFormatError(f"{path}: unreadable FAISS file ({_faiss_message(exc)}); rebuild it with `vitrina repair --index {path.parent}`") from None
    if expected_count is not None and index.ntotal != expected_count:
        raise IndexFormatError(
            f"{path}: holds {index.ntotal} vectors, the database has {expected_count}; "
            f"rebuild it with `vitrina repair --index {path.parent}`"
        )
    return index


def _faiss_message(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    for line in text:
        if "Error" in line or "error" in line:
            return line.strip()
    return text[-1].strip() if text else type(exc).__name__

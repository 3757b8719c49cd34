"""``VectorView``: one commit's FAISS indexes plus in-memory id maps, for the query path.

Loaded once per commit, so a query needs no SQL to turn image hits into products or to
fetch candidate vectors: they come from FAISS itself (``reconstruct_batch``) where the
index stores full vectors (Flat, HNSW), and from SQLite's exact copies otherwise (IVF, PQ).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import faiss
import numpy as np

from indexer.store import vectors as vector_files
from indexer.store.reader import IndexStore
from indexer.store.records import MODALITIES

from search.field_table import FieldTable, LazyFieldTable


class VectorView:
    """Built inside a ``store.snapshot()``, for the commit that snapshot sees."""

    def __init__(self, store: IndexStore, commit: dict[str, Any] | None = None, *,
                 field_priors: Mapping[str, float] | None = None, synonyms: Mapping[str, tuple[str, str]] | None = None):
        self.store = store
        self.dim = store.identity.dim
        commit = commit if commit is not None else store.read_commit()
        self.commit = commit
        self.generation = int(commit.get("generation", 0))
        self.indexes = {m: store.load_vector_index(m, commit=commit) for m in MODALITIES}
        self.attribute_fields = frozenset(store.attribute_fields())
        image_pk, product_pk, position = store.image_owners()
        order = np.argsort(image_pk, kind="stable")
        self._image_pk, self._image_owner = image_pk[order], product_pk[order]
        grouped = np.lexsort((position, product_pk))
        self._grouped_product = product_pk[grouped]
        self._grouped_image = image_pk[grouped]
        self._grouped_position = position[grouped]
        text_index = self.indexes["text"]
        self._text_ids = np.sort(faiss.vector_to_array(cast(faiss.IndexIDMap, text_index).id_map)) if text_index.ntotal else np.empty(0, np.int64)
        self.exact = all(vector_files.is_exact(ix) for ix in self.indexes.values())
        self.tunings = {m: store.tuning(m, commit=commit) for m in MODALITIES}
        self._reconstruct = all(vector_files.stores_full_vectors(ix) for ix in self.indexes.values())
        self._reference: dict[str, Any] | None = None
        self._reference_size = 0
        #: Per-commit values derived on the query path (e.g. field values embedded by the engine's encoder).
        self.derived: dict[str, Any] = {}
        #: The catalog's nameable fields for this commit, built by the first query that needs them.
        self.fields = LazyFieldTable(lambda: FieldTable(store.field_rows(), priors=field_priors, synonyms=synonyms))

    def reference(self, size: int) -> dict[str, Any]:
        """The vectors of a fixed sample of this commit's products (every k-th by pk, at most ``size``): each
        query term's cosines to them put its scores on a common scale (``search.calibration``)."""
        if self._reference is None or self._reference_size != size:
            pks = self._text_ids if len(self._text_ids) else np.unique(self._grouped_product)
            step = max(1, len(pks) // size)
            self._reference = self.vectors_of(np.ascontiguousarray(pks[::step][:size]))
            self._reference_size = size
        return self._reference

    @property
    def products(self) -> int:
        """Products with a text vector in this commit (every stored product has one unless its text is empty)."""
        return len(self._text_ids)

    def owners_of(self, image_ids: np.ndarray) -> np.ndarray:
        """Product pk of each image pk (all must exist)."""
        return self._image_owner[np.searchsorted(self._image_pk, image_ids)]

    def tuning(self, modality: str, k: int, *, ef_search: int | None = None, nprobe: int | None = None) -> vector_files.SearchTuning:
        """Search settings for ``k`` hits: the given values, else the ones tuned at commit (efSearch >= k)."""
        tuned = self.tunings[modality]
        return vector_files.SearchTuning(ef_search=max(ef_search or tuned.ef_search, k), nprobe=nprobe or tuned.nprobe,
                                         rescore=tuned.rescore)

    def ann_candidates(self, query: np.ndarray, n: int, allowed: tuple[np.ndarray, np.ndarray] | None, *,
                       ef_search: int | None = None, nprobe: int | None = None, threads: int | None = None) -> np.ndarray:
        """Union of the top-``n`` text hits and the products of the top-``2n`` image hits (more where the
        index was tuned to re-score more of its compressed hits exactly)."""
        q = query.reshape(1, -1)
        text_tuning = self.tuning("text", n, ef_search=ef_search, nprobe=nprobe)
        image_tuning = self.tuning("image", 2 * n, ef_search=ef_search, nprobe=nprobe)
        _, text_ids = vector_files.search(self.indexes["text"], q, max(n, text_tuning.rescore),
                                          allowed=None if allowed is None else allowed[0], tuning=text_tuning,
                                          omp_threads=threads)
        _, image_ids = vector_files.search(self.indexes["image"], q, max(2 * n, image_tuning.rescore),
                                           allowed=None if allowed is None else allowed[1], tuning=image_tuning,
                                           omp_threads=threads)
        image_ids = image_ids[image_ids >= 0]
        return np.unique(np.concatenate([text_ids[text_ids >= 0], self.owners_of(image_ids)]))

    def images_of(self, product_pks: np.ndarray) -> np.ndarray:
        """The image pks of ``product_pks`` (sorted; in memory, no SQL)."""
        left = np.searchsorted(self._grouped_product, product_pks, side="left")
        right = np.searchsorted(self._grouped_product, product_pks, side="right")
        return np.sort(self._grouped_image[_ranges(left, right - left)])

    def vectors_of(self, product_pks: np.ndarray) -> dict[str, Any]:
        """Candidate vectors in the layout of ``IndexStore.vectors_of`` (exact copies either way)."""
        if not self._reconstruct:
            return self.store.vectors_of(product_pks.tolist())
        n = len(product_pks)
        has_text = member(product_pks, self._text_ids)
        text = np.zeros((n, self.dim), dtype=np.float32)
        if has_text.any():
            text[has_text] = self.indexes["text"].reconstruct_batch(product_pks[has_text])
        left = np.searchsorted(self._grouped_product, product_pks, side="left")
        right = np.searchsorted(self._grouped_product, product_pks, side="right")
        counts = right - left
        rows = _ranges(left, counts)
        image_ids = self._grouped_image[rows]
        images = self.indexes["image"].reconstruct_batch(image_ids) if len(image_ids) else np.empty((0, self.dim), np.float32)
        return {
            "text": text,
            "has_text": has_text,
            "images": images,
            "image_owner": np.repeat(np.arange(n), counts),
            "image_position": self._grouped_position[rows],
        }


def member(values: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_ids)`` for an already sorted ``sorted_ids`` (binary search, no sort)."""
    if not len(sorted_ids):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
    member: np.ndarray = sorted_ids[at] == values
    return member


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])`` without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, np.int64)
    first = np.cumsum(counts) - counts  # where each range begins in the output
    return (np.repeat(starts - first, counts) + np.arange(total)).astype(np.int64)

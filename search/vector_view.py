"""``VectorView``: one commit's FAISS segments plus in-memory id maps, for the query path.

Built once per commit, so a query needs no SQL to turn image hits into products or to fetch
candidate vectors: they come from FAISS itself (``reconstruct_batch``) where every segment stores
full vectors (Flat, HNSW), and from SQLite's exact copies otherwise (IVF, PQ).

A new commit's view reuses the segments the previous view had loaded (segment files are immutable)
and reads only the new ones; its field table is the previous one refreshed with the rows written
since.  Vectors in a segment whose rows are gone (deleted or replaced products) are tombstones: each
search excludes them through a FAISS id selector.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import faiss
import numpy as np

from indexer.store import vectors as vector_files
from indexer.store.reader import IndexStore
from indexer.store.records import MODALITIES

from search.field_table import FieldTable, LazyFieldTable
from search.sorted_ids import member, ranges as _ranges


@dataclass(frozen=True)
class LoadedSegment:
    """A segment file read into memory, with the sorted ids it holds (live and dead)."""

    info: dict[str, Any]
    index: faiss.Index
    ids: np.ndarray

    @property
    def key(self) -> tuple[str, str | None]:
        return self.info["name"], self.info.get("sha256")


class VectorView:
    """Built inside a ``store.snapshot()``, for the commit that snapshot sees."""

    def __init__(self, store: IndexStore, commit: dict[str, Any] | None = None, *, previous: VectorView | None = None,
                 field_priors: Mapping[str, float] | None = None, synonyms: Mapping[str, tuple[str, str]] | None = None):
        self.store = store
        self.dim = store.identity.dim
        commit = commit if commit is not None else store.read_commit()
        self.commit = commit
        self.generation = int(commit.get("generation", 0))
        loaded = {} if previous is None else {s.key: s for segs in previous.segments.values() for s in segs}
        self.segments: dict[str, list[LoadedSegment]] = {m: [loaded.get((info["name"], info.get("sha256"))) or _load(store, info)
                             for info in store.segments(m, commit=commit)] for m in MODALITIES}
        self.attribute_fields = frozenset(store.attribute_fields())
        rows = None if previous is None else _rows_since(store, previous, commit)
        removed: np.ndarray | None = None
        if rows is None:  # the first view, or too much has changed: every row
            text_ids, text_segments = store.vector_ids("text")
            image_pk, product_pk, position, image_segments = store.image_owners()
        else:
            (text_ids, text_segments), (image_pk, product_pk, position, image_segments), removed = rows
        #: The rows' own arrays, by id (a later commit's view starts from them).
        self._rows = {"text": (text_ids, text_segments), "image": (image_pk, product_pk, position, image_segments)}
        self._image_pk, self._image_owner = image_pk, product_pk
        grouped = np.lexsort((position, product_pk))
        self._grouped_product = product_pk[grouped]
        self._grouped_image = image_pk[grouped]
        self._grouped_position = position[grouped]
        self._text_ids = text_ids
        #: Per modality: the live ids (sorted) and the position in ``segments[m]`` of the segment holding each.
        self._live = {"text": (text_ids, self._slots("text", text_segments)),
                      "image": (image_pk, self._slots("image", image_segments))}
        self._dead = {m: [_dead_selector(s.ids, self._live[m][0][self._live[m][1] == i])
                          for i, s in enumerate(self.segments[m])] for m in MODALITIES}
        every = [s for segs in self.segments.values() for s in segs]
        self.exact = all(vector_files.is_exact(s.index) for s in every)
        self._reconstruct = all(vector_files.stores_full_vectors(s.index) for s in every)
        self._reference: dict[str, Any] | None = None
        self._reference_size = 0
        #: Per-commit values derived on the query path (e.g. field values embedded by the engine's encoder).
        self.derived: dict[str, Any] = {}
        #: The catalog's nameable fields for this commit: the previous commit's table refreshed with what
        #: changed when it was built, else built by the first query that needs it.
        self.fields = LazyFieldTable(lambda: FieldTable(store.field_rows(), priors=field_priors, synonyms=synonyms))
        before = None if previous is None else previous.fields.built
        if before is not None and previous is not None:
            changed = store.field_rows(since=previous.generation)
            refreshed = (before.refreshed(changed, removed=removed) if removed is not None
                         else before.refreshed(changed, live=store.product_pk_array()))
            if refreshed is not None:
                self.fields = LazyFieldTable.of(refreshed)

    def _slots(self, modality: str, numbers: np.ndarray) -> np.ndarray:
        order = {int(s.info["number"]): i for i, s in enumerate(self.segments[modality])}
        lookup = np.full(max(order, default=0) + 2, -1, dtype=np.int64)
        for number, slot in order.items():
            lookup[number] = slot
        slots: np.ndarray = lookup[np.clip(numbers, -1, len(lookup) - 2)]
        return slots

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

    def counts(self) -> dict[str, dict[str, int]]:
        """Per modality: segments, live and dead vectors."""
        return {m: {"segments": len(self.segments[m]), "live": len(self._live[m][0]),
                    "dead": sum(int(s.index.ntotal) for s in self.segments[m]) - len(self._live[m][0])} for m in MODALITIES}

    def known(self, product_pks: np.ndarray) -> np.ndarray:
        """Which of ``product_pks`` this view holds vectors of (a query whose snapshot is a commit newer than the
        view, while another thread loads it, keeps only these)."""
        known: np.ndarray = member(product_pks, self._text_ids) | member(product_pks, self._grouped_product)
        return known

    def owners_of(self, image_ids: np.ndarray) -> np.ndarray:
        """Product pk of each image pk (all must exist)."""
        return self._image_owner[np.searchsorted(self._image_pk, image_ids)]

    def search(self, modality: str, query: np.ndarray, k: int, *, allowed: np.ndarray | None = None,
               ef_search: int | None = None, nprobe: int | None = None, threads: int | None = None) -> np.ndarray:
        """Ids of the top-``k`` live vectors of ``modality`` over every segment (within ``allowed`` when given)."""
        scores: list[np.ndarray] = []
        ids: list[np.ndarray] = []
        shared = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64)) if allowed is not None else None
        for segment, dead in zip(self.segments[modality], self._dead[modality]):
            tuned = vector_files.SearchTuning(**segment.info.get("tuning", {}))
            tuning = vector_files.SearchTuning(ef_search=max(ef_search or tuned.ef_search, k), nprobe=nprobe or tuned.nprobe,
                                               rescore=tuned.rescore)
            found_scores, found_ids = vector_files.search(segment.index, query, max(k, tuning.rescore), tuning=tuning,
                                                          selector=shared if shared is not None else dead,
                                                          omp_threads=threads)
            keep = found_ids[0] >= 0
            scores.append(found_scores[0][keep])
            ids.append(found_ids[0][keep])
        if not ids:
            return np.empty(0, np.int64)
        all_scores, all_ids = np.concatenate(scores), np.concatenate(ids)
        depth = max(k, max((s.info.get("tuning", {}).get("rescore", 0) for s in self.segments[modality]), default=0))
        best: np.ndarray = all_ids[np.argsort(-all_scores, kind="stable")[:depth]]
        return best

    def ann_candidates(self, query: np.ndarray, n: int, allowed: tuple[np.ndarray, np.ndarray] | None, *,
                       ef_search: int | None = None, nprobe: int | None = None, threads: int | None = None) -> np.ndarray:
        """Union of the top-``n`` text hits and the products of the top-``2n`` image hits (more where a segment
        was tuned to re-score more of its compressed hits exactly)."""
        q = query.reshape(1, -1)
        text_ids = self.search("text", q, n, allowed=None if allowed is None else allowed[0], ef_search=ef_search,
                               nprobe=nprobe, threads=threads)
        image_ids = self.search("image", q, 2 * n, allowed=None if allowed is None else allowed[1], ef_search=ef_search,
                                nprobe=nprobe, threads=threads)
        return np.unique(np.concatenate([text_ids, self.owners_of(image_ids)]))

    def images_of(self, product_pks: np.ndarray) -> np.ndarray:
        """The image pks of ``product_pks`` (sorted; in memory, no SQL)."""
        left = np.searchsorted(self._grouped_product, product_pks, side="left")
        right = np.searchsorted(self._grouped_product, product_pks, side="right")
        return np.sort(self._grouped_image[_ranges(left, right - left)])

    def _reconstructed(self, modality: str, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of live ``ids``, read back from the segments that hold them."""
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        live, slots = self._live[modality]
        slot = slots[np.searchsorted(live, ids)]
        for i in np.unique(slot):
            rows = np.flatnonzero(slot == i)
            out[rows] = self.segments[modality][int(i)].index.reconstruct_batch(ids[rows])
        return out

    def vectors_of(self, product_pks: np.ndarray) -> dict[str, Any]:
        """Candidate vectors in the layout of ``IndexStore.vectors_of`` (exact copies either way)."""
        if not self._reconstruct:
            return self.store.vectors_of(product_pks.tolist())
        n = len(product_pks)
        has_text = member(product_pks, self._text_ids)
        text = np.zeros((n, self.dim), dtype=np.float32)
        if has_text.any():
            text[has_text] = self._reconstructed("text", product_pks[has_text])
        left = np.searchsorted(self._grouped_product, product_pks, side="left")
        right = np.searchsorted(self._grouped_product, product_pks, side="right")
        counts = right - left
        rows = _ranges(left, counts)
        image_ids = self._grouped_image[rows]
        images = self._reconstructed("image", image_ids) if len(image_ids) else np.empty((0, self.dim), np.float32)
        return {
            "text": text,
            "has_text": has_text,
            "images": images,
            "image_owner": np.repeat(np.arange(n), counts),
            "image_position": self._grouped_position[rows],
        }


#: A view is refreshed from the previous one's arrays while fewer products than this changed.
INCREMENTAL_LIMIT = 20_000


def _rows_since(store: IndexStore, previous: VectorView, commit: dict[str, Any]) -> Any:
    """The vector rows of ``commit`` built from ``previous``'s arrays and the products written or removed since
    (a few indexed reads instead of every row); None when that is not possible or not cheaper."""
    changes = store.changes_since(previous.generation, commit=commit)
    if changes is None or len(changes[0]) > INCREMENTAL_LIMIT:
        return None
    changed, removed = changes
    gone = np.union1d(changed, removed)
    remap = {m: _renumbering(previous, store.segments(m, commit=commit), m) for m in MODALITIES}
    if remap["text"] is None or remap["image"] is None:
        return None
    text_ids, text_segments = previous._rows["text"]
    keep = ~member(text_ids, gone)
    image_pk, owner, position, image_segments = previous._rows["image"]
    keep_images = ~member(owner, gone)
    if (remap["text"](text_segments[keep]) < 0).any() or (remap["image"](image_segments[keep_images]) < 0).any():
        return None  # a row stayed in a segment that went without a merge: not a commit this reader can follow
    new_ids, new_segments = store.vector_rows_of(changed)
    ids = np.concatenate([text_ids[keep], new_ids])
    order = np.argsort(ids, kind="stable")
    text = ids[order], np.concatenate([remap["text"](text_segments[keep]), new_segments])[order]
    keep = keep_images
    fresh = store.image_rows_of(changed)
    pks = np.concatenate([image_pk[keep], fresh[0]])
    order = np.argsort(pks, kind="stable")
    images = (pks[order], np.concatenate([owner[keep], fresh[1]])[order], np.concatenate([position[keep], fresh[2]])[order],
              np.concatenate([remap["image"](image_segments[keep]), fresh[3]])[order])
    return text, images, removed


def _renumbering(previous: VectorView, infos: list[dict[str, Any]], modality: str) -> Any:
    """A function renumbering ``previous``'s segment numbers to ``infos``' (merged segments name what they
    merged); -1 for a segment that went in a way it cannot follow (dropped empty, a repair, merges of merges):
    the caller reads every row when a surviving row maps there."""
    now = {int(info["number"]) for info in infos}
    merged = {int(n): int(info["number"]) for info in infos for n in info.get("merged_from", ())}
    mapping = {}
    for segment in previous.segments[modality]:  # a segment gone unmerged was dropped empty: -1, none of its rows stay
        number = int(segment.info["number"])
        target = merged.get(number, -1)
        mapping[number] = number if number in now else (target if target in now else -1)
    if not mapping:
        return lambda numbers: numbers
    lookup = np.full(max(max(mapping), 0) + 2, -1, dtype=np.int64)
    for old, new in mapping.items():
        lookup[old] = new
    return lambda numbers: lookup[np.clip(numbers, 0, len(lookup) - 1)] if len(numbers) else numbers


def _load(store: IndexStore, info: dict[str, Any]) -> LoadedSegment:
    index = store.load_segment(info)
    ids = np.sort(faiss.vector_to_array(cast(faiss.IndexIDMap, index).id_map)) if index.ntotal else np.empty(0, np.int64)
    return LoadedSegment(info=info, index=index, ids=ids.astype(np.int64))


def _dead_selector(held: np.ndarray, live: np.ndarray) -> faiss.IDSelector | None:
    """A selector that excludes a segment's tombstones (None when it has none)."""
    dead = np.setdiff1d(held, live, assume_unique=True)
    if not len(dead):
        return None
    inner = faiss.IDSelectorBatch(np.ascontiguousarray(dead, dtype=np.int64))
    selector = faiss.IDSelectorNot(inner)
    selector.__dict__["_inner"] = inner  # keep the wrapped selector alive as long as this one
    return selector

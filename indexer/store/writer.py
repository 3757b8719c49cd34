"""``IndexWriter``: the one writer of an index folder.

It stages product puts, field updates and deletes in a SQLite transaction (bulk statements, vectors
in rows with no segment yet).  ``commit`` writes one new segment per modality for the staged vectors
(temporary file, fsync, rename), merges segments when the tiered policy asks
(``indexer.store.segments``), and records the live segments in the same SQLite transaction as the
rows; then it removes files no commit names any more.  Deletes and replacements write no FAISS file:
the old vectors become tombstones.  An exclusive ``flock`` on ``write.lock`` keeps a second writer
out; the kernel releases it when the process dies, even by SIGKILL.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import faiss
import numpy as np
from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from indexer.catalog import ProductRecord
from indexer.config import AUTO_INDEX_TYPE, VectorIndexConfig
from indexer.errors import IndexFormatError
from indexer.store import segments
from indexer.store.attributes import attribute_rows
from indexer.store.database import blobs_to_matrix, vector_to_blob, write_errors
from indexer.store.lock import LOCK_FILE as LOCK_FILE  # re-exported for older imports
from indexer.store.reader import IndexStore
from indexer.store.records import MODALITIES, CommitInfo, EmbeddedProduct
from indexer.store.schema import REMOVALS_KEPT, AttributeValue, ImageRow, IndexMeta, Product, Removal, TextVector

#: Ids per ``IN (...)`` list (well under SQLite's bound-parameter limit).
_CHUNK = 500
_PRODUCTS = cast(Table, Product.__table__)
_IMAGES = cast(Table, ImageRow.__table__)
_TEXTS = cast(Table, TextVector.__table__)
_VALUES = cast(Table, AttributeValue.__table__)
_REMOVALS = cast(Table, Removal.__table__)


class SegmentBuilder(Protocol):
    """Builds one segment: ``segments.build``'s signature (the FAISS index of ``vectors`` under ``ids``, and
    what the commit records of it)."""

    def __call__(self, ids: np.ndarray, vectors: np.ndarray, *, index_type: str, dim: int,
                 config: VectorIndexConfig) -> tuple[faiss.Index, dict[str, Any]]: ...


def vector_table(modality: str) -> tuple[Table, Any]:
    """The table holding ``modality``'s vectors, and its id column (the FAISS id)."""
    return (_IMAGES, _IMAGES.c.pk) if modality == "image" else (_TEXTS, _TEXTS.c.product_pk)


class IndexWriter:
    """Stages product puts, field updates and deletes; ``commit`` makes them live together, atomically."""

    def __init__(self, store: IndexStore, *, rebuild: bool = False, config: VectorIndexConfig = VectorIndexConfig(),
                 segment_builder: SegmentBuilder | None = None):
        """The folder's single writer; ``IndexLockedError`` while another process holds it.

        ``rebuild`` rewrites every segment from the vectors in SQLite at the next commit, without reading
        the live files (repair).  ``segment_builder`` builds a segment's FAISS index from (ids, vectors)
        instead of ``segments.build`` (e.g. trained once, filled by several workers)."""
        if not store.writable:
            raise IndexFormatError(f"{store.folder}: opened read-only")
        self.store = store
        self.config = config
        self.lock = store.backend.write_lock()
        with write_errors(store.folder):
            self.lock.acquire()
        store.refresh()  # the commit made by the previous writer, if any
        # write transactions begin IMMEDIATE: they wait for another process's SQLite write lock up to the busy
        # timeout instead of failing at their first write after a read (SQLITE_BUSY without a wait)
        self.session = Session(store.engine.execution_options(**store.backend.write_options), expire_on_commit=False)
        self._rebuild = rebuild
        self._optimize = False
        self._build: SegmentBuilder = segment_builder or segments.build
        #: Vector counts merged by the last commit, per modality (for reports and benchmarks).
        self.merged: dict[str, int] = {}

    @property
    def generation(self) -> int:
        """The generation the staged changes will commit as."""
        return int(self.store.commit_info.get("generation", 0)) + 1

    # -- staging ---------------------------------------------------------------------------------
    def put(self, product: EmbeddedProduct) -> None:
        """Insert ``product``, replacing any stored product with the same id."""
        self.put_many([product])

    def put_many(self, products: Sequence[EmbeddedProduct]) -> None:
        """Insert ``products`` in a few bulk statements (the last of a repeated id wins), replacing stored ones."""
        with write_errors(self.store.folder):
            self._put_many(products)

    def _put_many(self, products: Sequence[EmbeddedProduct]) -> None:
        latest = {p.record.id: p for p in products}
        if not latest:
            return
        self._delete(list(latest))
        conn = self.session.connection()
        rows = [_product_row(p.record, content_hash=p.content_hash, embed_hash=p.embed_hash, generation=self.generation)
                for p in latest.values()]
        statement = insert(_PRODUCTS).returning(_PRODUCTS.c.id, _PRODUCTS.c.pk, sort_by_parameter_order=True)
        pks: dict[str, int] = {str(r[0]): int(r[1]) for r in conn.execute(statement, rows)}
        texts = [{"product_pk": pks[pid], "vector": vector_to_blob(p.text_vector), "segment": None}
                 for pid, p in latest.items() if p.text_vector is not None]
        images = [{"product_pk": pks[pid], "position": img.position, "location": img.location,
                   "vector": vector_to_blob(img.vector), "segment": None}
                  for pid, p in latest.items() for img in p.images]
        attributes = [row for pid, p in latest.items() for row in attribute_rows(pks[pid], p.record.attributes)]
        for table, values in ((_TEXTS, texts), (_IMAGES, images), (_VALUES, attributes)):
            if values:
                conn.execute(insert(table), values)

    def update_fields(self, updates: Sequence[tuple[ProductRecord, str | None]]) -> int:
        """Rewrite the fields that are not embedded (price, category, brand, attributes, row) of stored products
        in place: same pk, no vector work.  ``updates`` are (record, new content hash); callers make sure the
        embedded part (title, description, images) is unchanged.  Returns how many were stored."""
        with write_errors(self.store.folder):
            return self._update_fields(updates)

    def _update_fields(self, updates: Sequence[tuple[ProductRecord, str | None]]) -> int:
        latest = {record.id: (record, content_hash) for record, content_hash in updates}
        pks = self._pks_of(list(latest))
        if not pks:
            return 0
        conn = self.session.connection()
        table = _PRODUCTS
        conn.execute(
            update(table).where(table.c.pk == bindparam("b_pk")).values(
                row=bindparam("b_row"), price=bindparam("b_price"), category=bindparam("b_category"),
                brand=bindparam("b_brand"), attributes=bindparam("b_attributes", type_=table.c.attributes.type),
                content_hash=bindparam("b_hash"), generation=bindparam("b_generation")),
            [{"b_pk": pk, "b_row": latest[pid][0].row, "b_price": latest[pid][0].price, "b_category": latest[pid][0].category,
              "b_brand": latest[pid][0].brand, "b_attributes": dict(latest[pid][0].attributes), "b_hash": latest[pid][1],
              "b_generation": self.generation} for pid, pk in pks.items()])
        values = _VALUES
        for chunk in _chunks(list(pks.values())):
            conn.execute(delete(values).where(values.c.product_pk.in_(chunk)))
        rows = [row for pid, pk in pks.items() for row in attribute_rows(pk, latest[pid][0].attributes)]
        if rows:
            conn.execute(insert(values), rows)
        return len(pks)

    def delete(self, product_ids: Iterable[str]) -> int:
        """Stage the removal of ``product_ids``; returns how many were stored."""
        with write_errors(self.store.folder):
            return self._delete(list(product_ids))

    def _delete(self, product_ids: list[str]) -> int:
        pks = list(self._pks_of(product_ids).values())
        conn = self.session.connection()
        for chunk in _chunks(pks):  # images, text vectors and attribute values go by ON DELETE CASCADE
            conn.execute(delete(_PRODUCTS).where(_PRODUCTS.c.pk.in_(chunk)))
        if pks:
            conn.execute(insert(_REMOVALS), [{"generation": self.generation, "product_pk": pk} for pk in pks])
        return len(pks)

    def _pks_of(self, product_ids: list[str]) -> dict[str, int]:
        conn = self.session.connection()
        found: dict[str, int] = {}
        for chunk in _chunks(product_ids):
            found.update((str(r[0]), int(r[1])) for r in conn.execute(select(_PRODUCTS.c.id, _PRODUCTS.c.pk).where(_PRODUCTS.c.id.in_(chunk))))
        return found

    # -- committing ------------------------------------------------------------------------------
    def commit(self) -> CommitInfo:
        """Write the staged vectors as new segments (merging some when the policy asks), then commit them with
        the rows in one transaction.

        A full disk, a read-only folder or another process's lock raise ``IndexWriteError`` /
        ``IndexLockedError``; the last commit stays live either way."""
        with write_errors(self.store.folder):
            return self._commit()

    def optimize(self) -> CommitInfo:
        """Commit, merging every modality's segments into one (tombstones dropped, type re-chosen, re-tuned)."""
        self._optimize = True
        try:
            return self.commit()
        finally:
            self._optimize = False

    def rebuild_all(self) -> CommitInfo:
        """Rewrite every segment from the vectors in SQLite (``vitrina repair``)."""
        self._rebuild = True
        return self.commit()  # translated errors

    def _commit(self) -> CommitInfo:
        store = self.store
        old = store.commit_info
        live = {m: [] if self._rebuild else list(old.get("segments", {}).get(m, [])) for m in MODALITIES}
        number = int(old.get("next_segment", 1))
        conn = self.session.connection()
        written: list[Path] = []
        self.merged = {}
        try:
            if self._rebuild:
                for modality in MODALITIES:
                    table, _ = vector_table(modality)
                    conn.execute(update(table).values(segment=None))
            for modality in MODALITIES:
                ids, vectors = self._vectors(modality, None)
                if len(ids):
                    info = self._segment(modality, number, ids, vectors, written)
                    conn.execute(update(vector_table(modality)[0]).where(vector_table(modality)[0].c.segment.is_(None))
                                 .values(segment=number))
                    live[modality].append(info)
                    number += 1
            for modality in MODALITIES:
                number = self._merge(modality, live, number, written)
            horizon = max(1, self.generation - REMOVALS_KEPT + 1)
            conn.execute(delete(_REMOVALS).where(_REMOVALS.c.generation < horizon))
            named = {info["name"] for infos in live.values() for info in infos}
            retired = segments.retire(old, named, generation=self.generation, now=time.time(), config=self.config)
            commit: dict[str, Any] = {"generation": self.generation, "segments": live, "next_segment": number,
                                      "removals_from": horizon, "committed_at": time.time(), "retired": retired}
            self.session.merge(IndexMeta(key="commit", value=commit))
            self.session.commit()
        except BaseException:
            self.session.rollback()
            for path in written:
                path.unlink(missing_ok=True)
            raise
        self._rebuild = False
        store.commit_info = commit
        kept = named | {r["name"] for r in retired}  # replaced segments stay a while for readers still loading them
        for modality in MODALITIES:  # expired segments, and leftovers of interrupted commits
            for path in store.folder.glob(f"{modality}.*.faiss*"):
                if path.name not in kept:
                    path.unlink(missing_ok=True)
        counts = store.counts()
        store.backend.after_commit(counts["products"])
        return CommitInfo(generation=int(commit["generation"]), files=live, products=counts["products"], images=counts["images"])

    def _merge(self, modality: str, live: dict[str, list[dict[str, Any]]], number: int, written: list[Path]) -> int:
        """Merge what the policy (or ``optimize``) picks; returns the next free segment number."""
        conn = self.session.connection()
        table, _ = vector_table(modality)
        counts: dict[int | None, int] = {r[0]: int(r[1]) for r in conn.execute(select(table.c.segment, func.count()).group_by(table.c.segment))}
        states = [segments.SegmentState(number=int(s["number"]), ntotal=int(s["ntotal"]), live=int(counts.get(s["number"], 0)))
                  for s in live[modality]]
        if self._optimize:
            picked = [s.number for s in states] if len(states) > 1 or any(s.dead for s in states) else []
        else:
            picked = segments.plan_merge(states, self.config)
        if not picked:
            return number
        ids, vectors = self._vectors(modality, picked)
        live[modality] = [s for s in live[modality] if s["number"] not in picked]
        if len(ids):  # readers of earlier commits renumber their rows by "merged_from" instead of reading them all
            live[modality].append({**self._segment(modality, number, ids, vectors, written), "merged_from": picked})
            conn.execute(update(table).where(table.c.segment.in_(picked)).values(segment=number))
            number += 1
        self.merged[modality] = len(ids)
        return number

    def _segment(self, modality: str, number: int, ids: np.ndarray, vectors: np.ndarray, written: list[Path]) -> dict[str, Any]:
        store = self.store
        total = sum(self._live_count(m) for m in MODALITIES) or 1
        budget = None if store.max_memory is None else int(store.max_memory * len(ids) / total)
        index_type = segments.segment_type(store.index_type, len(ids), store.identity.dim, max_memory=budget,
                                           flat_limit=self._flat_limit(vectors), config=self.config)
        index, info = self._build(ids, vectors, index_type=index_type, dim=store.identity.dim, config=self.config)
        path = store.folder / segments.segment_name(modality, number)
        written.append(path)
        return segments.write(index, store.folder, modality, number, {**info, "generation": self.generation})

    def _flat_limit(self, vectors: np.ndarray) -> int | None:
        """The measured vector count below which an exact scan beats HNSW here (measured once, on the first
        segment large enough to need it, and kept in ``index_meta``)."""
        if self.store.index_type != AUTO_INDEX_TYPE or not self.config.measure_from or len(vectors) < self.config.measure_from:
            return None
        measured = self.session.get(IndexMeta, "flat_limit")
        if measured is None or measured.value.get("dim") != self.store.identity.dim:
            value = segments.measure_flat_limit(vectors, config=self.config)
            self.session.merge(IndexMeta(key="flat_limit", value=value))
            return int(value["flat_limit"])
        return int(measured.value["flat_limit"])

    def _live_count(self, modality: str) -> int:
        table, _ = vector_table(modality)
        return int(self.session.connection().execute(select(func.count()).select_from(table)).scalar_one())

    def _vectors(self, modality: str, numbers: list[int] | None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) in id order of ``modality``'s rows in segments ``numbers`` (None: the staged ones)."""
        table, id_column = vector_table(modality)
        where = table.c.segment.is_(None) if numbers is None else table.c.segment.in_(numbers)
        rows = self.session.connection().execute(select(id_column, table.c.vector).where(where).order_by(id_column)).all()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return ids, blobs_to_matrix(cast("list[bytes]", [r[1] for r in rows]), self.store.identity.dim)

    def close(self) -> None:
        self.session.close()
        self.lock.release()

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _product_row(record: ProductRecord, *, content_hash: str | None, embed_hash: str | None, generation: int) -> dict[str, Any]:
    return {"id": record.id, "row": record.row, "title": record.title, "description": record.description,
            "price": record.price, "category": record.category, "brand": record.brand,
            "attributes": dict(record.attributes), "content_hash": content_hash, "embed_hash": embed_hash,
            "generation": generation}


def _chunks(values: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]

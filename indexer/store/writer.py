"""``IndexWriter``: the one writer of an index folder.

It stages product puts and deletes in a SQLite transaction and in-memory FAISS indexes;
``commit`` writes the FAISS files of a new generation (temporary file, fsync, rename),
then records them in the same SQLite transaction as the rows, then removes older
generations.  An exclusive ``flock`` on ``write.lock`` keeps a second writer out; the
kernel releases it when the process dies, even by SIGKILL.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import faiss
import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer.store import index_types
from indexer.store import vectors as vector_files
from indexer.config import AUTO_INDEX_TYPE, VectorIndexConfig
from indexer.store.lock import LOCK_FILE as LOCK_FILE, WriteLock  # LOCK_FILE: re-exported for older imports
from indexer.store.database import WRITE, write_errors
from indexer.store.schema import ImageRow, IndexMeta, Product
from indexer.store.database import blobs_to_matrix, vector_to_blob
from indexer.errors import IndexFormatError
from indexer.store.reader import IndexStore
from indexer.store.records import MODALITIES, CommitInfo, EmbeddedProduct

@dataclass
class _Pending:
    """Vector adds and removals staged since the last commit, per modality."""

    add: dict[str, list[tuple[int, np.ndarray]]] = field(default_factory=lambda: {m: [] for m in MODALITIES})
    remove: dict[str, set[int]] = field(default_factory=lambda: {m: set() for m in MODALITIES})



class IndexWriter:
    """Stages product puts and deletes; ``commit`` makes them live together, atomically."""

    def __init__(self, store: IndexStore, *, rebuild: bool = False, config: VectorIndexConfig = VectorIndexConfig()):
        """The folder's single writer; ``IndexLockedError`` while another process holds it.

        ``rebuild`` starts from empty FAISS indexes without reading the live files (repair).
        """
        if not store.writable:
            raise IndexFormatError(f"{store.folder}: opened read-only")
        self.store = store
        self.config = config
        self.lock = WriteLock(store.folder)
        self.lock.acquire()
        store.refresh()  # the commit made by the previous writer, if any
        # write transactions begin IMMEDIATE: they wait for another process's SQLite write lock up to the busy
        # timeout instead of failing at their first write after a read (SQLITE_BUSY without a wait)
        self.session = Session(store.engine.execution_options(**WRITE), expire_on_commit=False)
        self.types = {m: store.factory(m) for m in MODALITIES}
        self.tuned = {m: {k: v for k, v in (store.commit_info.get("files", {}).get(m) or {}).items()
                          if k in ("tuning", "recall", "tuned_at")} for m in MODALITIES}
        if rebuild:  # repair: the live files are not trusted, nor even read
            self.indexes = {m: vector_files.make_index(self.types[m], store.identity.dim,
                                                       ef_construction=config.hnsw_ef_construction) for m in MODALITIES}
        else:
            self.indexes = {m: store.load_vector_index(m) for m in MODALITIES}
        self.pending = _Pending()
        self._rebuild: set[str] = set()
        self._read: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # vectors read from SQLite during a commit

    def put(self, product: EmbeddedProduct) -> None:
        """Insert ``product``, replacing any stored product with the same id."""
        with write_errors(self.store.folder):
            self._put(product)

    def _put(self, product: EmbeddedProduct) -> None:
        record = product.record
        self._delete([record.id])
        row = Product(
            id=record.id, row=record.row, title=record.title, description=record.description,
            price=record.price, category=record.category, brand=record.brand,
            attributes=dict(record.attributes), content_hash=product.content_hash,
            text_vector=vector_to_blob(product.text_vector) if product.text_vector is not None else None,
        )
        row.images = [
            ImageRow(position=img.position, location=img.location, vector=vector_to_blob(img.vector)) for img in product.images
        ]
        self.session.add(row)
        self.session.flush()
        if product.text_vector is not None:
            self.pending.add["text"].append((row.pk, product.text_vector))
        for image_row, img in zip(row.images, product.images):
            self.pending.add["image"].append((image_row.pk, img.vector))

    def delete(self, product_ids: Iterable[str]) -> int:
        """Stage the removal of ``product_ids``; returns how many were stored."""
        with write_errors(self.store.folder):
            return self._delete(product_ids)

    def _delete(self, product_ids: Iterable[str]) -> int:
        removed = 0
        for product in self.session.scalars(select(Product).where(Product.id.in_(list(product_ids)))):
            self._unstage(product)
            self.session.delete(product)
            removed += 1
        self.session.flush()
        return removed

    def _unstage(self, product: Product) -> None:
        """Forget staged vectors of ``product``; mark committed ones for removal."""
        text_pks = {product.pk} if product.text_vector is not None else set()
        for modality, pks in (("text", text_pks), ("image", {img.pk for img in product.images})):
            staged = {pk for pk, _ in self.pending.add[modality]}
            self.pending.add[modality] = [(pk, v) for pk, v in self.pending.add[modality] if pk not in pks]
            self.pending.remove[modality] |= pks - staged

    def commit(self) -> CommitInfo:
        """Write the new FAISS generation, then commit it with the rows in one transaction.

        A full disk, a read-only folder or another process's lock raise ``IndexWriteError`` /
        ``IndexLockedError``; the last commit stays live either way."""
        with write_errors(self.store.folder):
            return self._commit()

    def _commit(self) -> CommitInfo:
        store = self.store
        self._read = {}
        for modality in MODALITIES:
            self._apply(modality)
        self._choose_types()
        for modality in MODALITIES:
            self._tune(modality)
        generation = int(store.commit_info.get("generation", 0)) + 1
        files: dict[str, dict[str, Any]] = {}
        written: list[Path] = []
        try:
            for modality in MODALITIES:
                path = store.file_path(modality, generation)
                size, sha256 = vector_files.write_atomic(self.indexes[modality], path)
                written.append(path)
                files[modality] = {"name": path.name, "size": size, "sha256": sha256, "ntotal": int(self.indexes[modality].ntotal),
                                   "index_type": self.types[modality], **self.tuned[modality]}
            commit = {"generation": generation, "files": files, "committed_at": time.time()}
            self.session.merge(IndexMeta(key="commit", value=commit))
            self.session.commit()
        except BaseException:
            self.session.rollback()
            for path in written:
                path.unlink(missing_ok=True)
            raise
        store.commit_info = commit
        live = {info["name"] for info in files.values()}
        for modality in MODALITIES:  # older generations, and leftovers of interrupted commits
            for path in store.folder.glob(f"{modality}.*.faiss*"):
                if path.name not in live:
                    path.unlink(missing_ok=True)
        self.pending = _Pending()
        self._read = {}
        counts = store.counts()
        return CommitInfo(generation=generation, files=files, products=counts["products"], images=counts["images"])

    def _apply(self, modality: str) -> None:
        index = self.indexes[modality]
        removals = self.pending.remove[modality]
        if removals and vector_files.supports_removal(index):
            index.remove_ids(np.fromiter(removals, dtype=np.int64))  # type: ignore[arg-type]  # faiss's stubs: Index.remove_ids takes only an IDSelector; the Python wrapper takes id arrays
        elif removals:
            self._rebuild.add(modality)
        if modality in self._rebuild or not index.is_trained:
            self.indexes[modality] = self._rebuilt(modality)
            self._rebuild.discard(modality)
            return
        adds = self.pending.add[modality]
        if adds:
            ids = np.array([pk for pk, _ in adds], dtype=np.int64)
            vector_files.train_and_add(index, np.stack([v for _, v in adds]), ids)

    def _rebuilt(self, modality: str) -> faiss.Index:
        """A fresh index holding every vector the session sees for ``modality`` (trains if needed)."""
        index = vector_files.make_index(self.types[modality], self.store.identity.dim,
                                        ef_construction=self.config.hnsw_ef_construction)
        ids, vectors = self._stored_vectors(modality)
        if len(ids):
            vector_files.train_and_add(index, vectors, ids)
        return index

    def _stored_vectors(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """(pks, vectors) of every ``modality`` vector the session sees, in pk order (read once per commit:
        a rebuild, a change of type and the tuning may all need them)."""
        cached = self._read.get(modality)
        if cached is not None:
            return cached
        if modality == "text":
            rows = self.session.execute(select(Product.pk, Product.text_vector).where(Product.text_vector.is_not(None))
                                        .order_by(Product.pk)).all()
        else:
            rows = self.session.execute(select(ImageRow.pk, ImageRow.vector).order_by(ImageRow.pk)).all()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        self._read[modality] = ids, blobs_to_matrix(cast("list[bytes]", [r[1] for r in rows]), self.store.identity.dim)
        return self._read[modality]

    def _choose_types(self) -> None:
        """For an "auto" index: re-choose each modality's FAISS type for its size (budget shared by vector
        count) and rebuild the ones whose type changed (Flat -> HNSW -> IVF-PQ as the catalog grows)."""
        if self.store.index_type != AUTO_INDEX_TYPE:
            return
        counts = {m: int(self.indexes[m].ntotal) for m in MODALITIES}
        total = max(1, sum(counts.values()))
        for modality in MODALITIES:
            budget = None if self.store.max_memory is None else int(self.store.max_memory * counts[modality] / total)
            choice = index_types.choose_index_type(counts[modality], self.store.identity.dim, max_memory_bytes=budget,
                                                     config=self.config)
            if choice.index_type != self.types[modality]:
                self.types[modality] = choice.index_type
                self.indexes[modality] = self._rebuilt(modality)
                self.tuned[modality] = {}

    def _tune(self, modality: str) -> None:
        """Tune efSearch / nprobe of an approximate index to recall@10 >= ``config.target_recall`` on sampled queries;
        again whenever the index has doubled since.  Exact indexes record recall 1."""
        index = self.indexes[modality]
        n = int(index.ntotal)
        if vector_files.is_exact(index):
            self.tuned[modality] = {"recall": 1.0, "tuned_at": n} if n else {}
            return
        done = self.tuned[modality].get("tuned_at")
        if n == 0 or (done and n < 2 * done and "tuning" in self.tuned[modality]):
            return
        ids, vectors = self._stored_vectors(modality)
        queries = index_types.sample_queries(vectors, self.config.tuning_queries)
        # compressed codes (PQ, SQ) only pick candidates, which are re-scored with the exact vectors: when
        # their ranking is too coarse for the target, re-score more of them rather than probe everything
        depths = (0,) if vector_files.stores_full_vectors(index) else self.config.rescore_depths
        for rescore in depths:
            result = index_types.tune_search(index, queries, vectors, self.config.target_recall, ids=ids, rerank=rescore,
                                             max_value=self.config.max_nprobe if rescore else 1024, config=self.config)
            if result.reached:
                break
        tuning = {"ef_search": result.tuning.ef_search, "nprobe": result.tuning.nprobe, "rescore": rescore}
        self.tuned[modality] = {"tuning": tuning, "recall": round(result.recall, 4), "tuned_at": n}

    def rebuild_all(self) -> CommitInfo:
        """Rebuild both FAISS files from the vectors in SQLite (``vitrina repair``)."""
        self._rebuild = set(MODALITIES)
        self.pending = _Pending()
        return self.commit()  # translated errors

    def close(self) -> None:
        self.session.close()
        self.lock.release()

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

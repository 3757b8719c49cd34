"""An index: one metadata database (the truth) plus FAISS segment files (derived).

Layout of a folder::

    vitrina.db              products, images, text vectors, attribute values, index_meta (SQLite, WAL mode)
    database.json           or: the PostgreSQL database holding those tables (``--db``), without a password
    image.<n>.faiss         image segment number n, ids = images.pk
    text.<n>.faiss          text segment number n, ids = products.pk

A commit writes its new segment files (temp file, fsync, rename), then records the live segments in
``index_meta`` in the same database transaction as the product rows, then deletes the files no recent
commit names (``VectorIndexConfig.keep_generations``: a reader elsewhere may still be loading one).  A reader
loads whatever segments the database names, so a crash at any point leaves the last commit readable.  See ``indexer.store.segments`` for tombstones and merges.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import faiss
import numpy as np
from sqlalchemy import select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from indexer.store import vectors as vector_files
from indexer.config import AUTO_INDEX_TYPE
from indexer.encoders.base import ModelIdentity
from indexer.errors import IndexFormatError
from indexer.store.backend import Backend
from indexer.store.database import int_table, open_backend, remember_database, write_errors
from indexer.store.product_reads import ProductReads
from indexer.store.records import MODALITIES
from indexer.store.schema import FORMAT_VERSION, IndexMeta


#: What an "auto" index starts as (exact search), before its first commit re-chooses by size.
FIRST_AUTO_TYPE = "Flat"
_COMMIT = text("SELECT value FROM index_meta WHERE key = 'commit'")
_IMAGE_IDS = text("SELECT pk, coalesce(segment, -1) FROM images ORDER BY pk")
_TEXT_IDS = text("SELECT product_pk, coalesce(segment, -1) FROM text_vectors ORDER BY product_pk")


class IndexStore(ProductReads):
    """An opened index folder.  ``open`` gives a reader; ``create`` or ``open(writable=True)`` a writer."""

    def __init__(self, folder: Path, backend: Backend, *, writable: bool):
        self.folder = folder
        self.backend = backend
        self.engine = backend.engine
        self.writable = writable
        self._local = threading.local()
        meta = self._read_meta()
        self._check_version(meta)
        self.identity = ModelIdentity.from_json(meta["model"])
        self.index_type: str = meta["index_type"]  # "auto" or a FAISS factory string
        self.max_memory: int | None = meta.get("max_memory")
        self.model_spec: dict[str, Any] = meta.get("model_spec", {})
        self.commit_info: dict[str, Any] = meta.get("commit", {"generation": 0, "segments": {}})

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def create(cls, folder: str | Path, *, identity: ModelIdentity, index_type: str, model_spec: dict[str, Any],
               max_memory: int | None = None, database: str | None = None) -> IndexStore:
        """A writer on a new index folder, or on an existing one built with the same model.

        ``index_type`` is "auto" (the type follows the vector count and ``max_memory``) or a FAISS factory string.
        ``database``: a PostgreSQL URL to keep the metadata in (None: SQLite in the folder, or the database
        the folder already names).
        """
        folder = Path(folder)
        if index_type != AUTO_INDEX_TYPE:
            vector_files.make_index(index_type, identity.dim)  # validate the factory string before creating anything
        with write_errors(folder):
            folder.mkdir(parents=True, exist_ok=True)
        backend = open_backend(folder, database, readonly=False, create=True)
        # under the writer's lock: two writers racing on a new index get one index and one clear refusal
        try:
            with write_errors(folder), backend.write_lock():
                return cls._create_or_open(folder, backend, identity=identity, index_type=index_type,
                                           model_spec=model_spec, max_memory=max_memory)
        except BaseException:
            backend.close()
            raise

    @classmethod
    def _create_or_open(cls, folder: Path, backend: Backend, *, identity: ModelIdentity, index_type: str,
                        model_spec: dict[str, Any], max_memory: int | None) -> IndexStore:
        if backend.exists():
            remember_database(backend)  # a new folder on an existing PostgreSQL index (another machine) names it too
            store = cls(folder, backend, writable=True)
            if not store.identity.same_model(identity):
                store.close()
                raise IndexFormatError(
                    f"{folder}: built with model {store.identity.describe()}, not {identity.describe()}; "
                    "index into a new folder to change models"
                )
            if index_type != store.index_type and index_type != AUTO_INDEX_TYPE:  # "auto" (the default) keeps it
                store.close()
                raise IndexFormatError(f"{folder}: index type is {store.index_type!r}, not {index_type!r}; index into a new folder to change it")
            if max_memory is not None and max_memory != store.max_memory:
                store.set_max_memory(max_memory)
            return store
        writes = backend.engine.execution_options(**backend.write_options)
        with writes.begin() as conn:
            backend.create_schema(conn)
        remember_database(backend)
        with Session(writes) as session, session.begin():
            session.add_all(
                [
                    IndexMeta(key="format_version", value=FORMAT_VERSION),
                    IndexMeta(key="model", value=identity.to_json()),
                    IndexMeta(key="model_spec", value=model_spec),
                    IndexMeta(key="index_type", value=index_type),
                    IndexMeta(key="max_memory", value=max_memory),
                    IndexMeta(key="created_at", value=time.time()),
                    IndexMeta(key="commit", value={"generation": 0, "segments": {}, "next_segment": 1}),
                ]
            )
        return cls(folder, backend, writable=True)

    @classmethod
    def open(cls, folder: str | Path, *, writable: bool = False, database: str | None = None) -> IndexStore:
        """A reader (or ``writable``) of the index at ``folder``; ``database``: its PostgreSQL URL when the folder
        does not name it (or to give the password)."""
        folder = Path(folder)
        backend = open_backend(folder, database, readonly=not writable)
        try:
            return cls(folder, backend, writable=writable)
        except BaseException:
            backend.close()
            raise

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_meta(self) -> dict[str, Any]:
        try:
            with Session(self.engine) as session:
                return {row.key: row.value for row in session.scalars(select(IndexMeta))}
        except Exception as exc:  # sqlite3.DatabaseError, psycopg's errors and friends
            translated = self.backend.translate_error(exc)
            if translated is not None and not isinstance(translated, IndexFormatError):
                raise translated from None
            raise IndexFormatError(f"{self.backend.describe()}: unreadable index database ({exc})") from None

    def _check_version(self, meta: dict[str, Any]) -> None:
        version = meta.get("format_version")
        if version != FORMAT_VERSION or "model" not in meta:
            raise IndexFormatError(f"{self.folder}: index format {version!r}, this vitrina reads format {FORMAT_VERSION}; rebuild the index")

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read transaction: every read of this store in this thread sees one commit."""
        with self.backend.snapshot() as conn:
            self._local.conn = conn
            try:
                yield conn
            finally:
                self._local.conn = None

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with self.engine.connect() as conn:
            yield conn

    def read_commit(self) -> dict[str, Any]:
        """The live commit as the current snapshot (or a fresh read) sees it."""
        with self._connect() as conn:  # plain SQL: read at the start of every search
            value = conn.execute(_COMMIT).scalar_one()
        return cast("dict[str, Any]", json.loads(value) if isinstance(value, str) else value)

    def refresh(self) -> bool:
        """Re-read the live commit; True when another writer committed since."""
        value = self.read_commit()
        changed = value != self.commit_info
        self.commit_info = value
        return changed

    # -- segments ------------------------------------------------------------------------
    def segments(self, modality: str, *, commit: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The live segments of ``modality`` in ``commit`` (default: the live one), oldest first."""
        return list((commit or self.commit_info).get("segments", {}).get(modality, []))

    def set_max_memory(self, max_memory: int | None) -> None:
        """Change the memory budget of an "auto" index (used from its next commit)."""
        with write_errors(self.folder), Session(self.engine.execution_options(**self.backend.write_options)) as session, \
                session.begin():
            session.merge(IndexMeta(key="max_memory", value=max_memory))
        self.max_memory = max_memory

    def _largest(self, modality: str, commit: dict[str, Any] | None) -> dict[str, Any]:
        found = self.segments(modality, commit=commit)
        return max(found, key=lambda s: int(s.get("ntotal", 0))) if found else {}

    def factory(self, modality: str, *, commit: dict[str, Any] | None = None) -> str:
        """The FAISS factory string of ``modality``'s largest segment in ``commit`` (default: the live one)."""
        info = self._largest(modality, commit)
        if "index_type" in info:
            return cast(str, info["index_type"])
        return FIRST_AUTO_TYPE if self.index_type == AUTO_INDEX_TYPE else self.index_type

    def tuning(self, modality: str, *, commit: dict[str, Any] | None = None) -> vector_files.SearchTuning:
        """efSearch / nprobe tuned for ``modality``'s largest segment (defaults when never tuned)."""
        return vector_files.SearchTuning(**self._largest(modality, commit).get("tuning", {}))

    def load_segment(self, info: dict[str, Any]) -> faiss.Index:
        """One segment file, checked against what its commit recorded (size, checksum, vector count)."""
        return vector_files.read(self.folder / info["name"], expected_size=info["size"],
                                 expected_sha256=info.get("sha256"), expected_count=info.get("ntotal"))

    def vector_ids(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, segment numbers) of ``modality``'s live vectors, sorted by id (one indexed scan)."""
        with self._connect() as conn:
            table = int_table(conn, _IMAGE_IDS if modality == "image" else _TEXT_IDS, 2)
        return table[:, 0].copy(), table[:, 1].copy()

    def check(self) -> dict[str, Any]:
        """Full consistency check of the live commit, segment by segment; ``IndexFormatError`` names what is wrong.

        Every segment file must match its recorded size, checksum and count; every live vector row must
        name a live segment that holds its id; ids in a file that no row names are tombstones (counted)."""
        summary: dict[str, Any] = {"generation": int(self.commit_info.get("generation", 0)), "products": self.counts()["products"]}
        repair = f"rebuild it with `vitrina repair --index {self.folder}`"
        for modality in MODALITIES:
            ids, numbers = self.vector_ids(modality)
            dead = 0
            listed = {int(info["number"]) for info in self.segments(modality)}
            stray = set(np.unique(numbers).tolist()) - listed
            if stray:
                raise IndexFormatError(f"{self.folder}: {modality} vectors name segments {sorted(stray)} that the commit "
                                       f"does not list; {repair}")
            for info in self.segments(modality):
                index = self.load_segment(info)
                held = np.sort(faiss.vector_to_array(cast(faiss.IndexIDMap, index).id_map)) if index.ntotal else np.empty(0, np.int64)
                mine = ids[numbers == int(info["number"])]
                missing = np.setdiff1d(mine, held)
                if len(missing):
                    raise IndexFormatError(f"{self.folder / info['name']}: {len(missing)} of its {len(mine)} live {modality} "
                                           f"vectors are missing from the file; {repair}")
                dead += len(held) - len(mine)
            summary[modality] = len(ids)
            summary[f"{modality}_dead"] = dead
            summary[f"{modality}_segments"] = len(listed)
        return summary

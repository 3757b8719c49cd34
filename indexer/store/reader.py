"""The index folder: one SQLite database (the truth) plus two FAISS files (derived).

Layout of a folder::

    vitrina.db              products, images, vectors, index_meta (WAL mode)
    image.<gen>.faiss       image vectors, ids = images.pk
    text.<gen>.faiss        text vectors, ids = products.pk

A commit writes the FAISS files of a new generation (temp file, fsync, rename), then
records that generation in ``index_meta`` in the same SQLite transaction as the product
rows, then deletes the older generation.  A reader loads whatever generation the database
names, so a crash at any point leaves the last commit readable.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import faiss
import numpy as np
from sqlalchemy import column, func, literal_column, select, table
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from indexer.store import vectors as vector_files
from indexer.config import AUTO_INDEX_TYPE
from indexer.encoders.base import ModelIdentity
from indexer.errors import IndexFormatError
from indexer.catalog import encodable
from indexer.store.database import WRITE, blobs_to_matrix, image_ranks, make_engine, write_errors
from indexer.store.lock import WriteLock
from indexer.store.records import MODALITIES
from indexer.store.schema import DATABASE_FILE, FORMAT_VERSION, FTS_DDL, FTS_WEIGHTS, Base, ImageRow, IndexMeta, Product



_BM25 = f"-bm25(products_fts, {', '.join(repr(w) for w in FTS_WEIGHTS)})"
_LEXICAL_SQL = (f"SELECT rowid, {_BM25} AS score FROM products_fts WHERE products_fts MATCH ? "
                "ORDER BY score DESC, rowid LIMIT ?")

#: What an "auto" index starts as (exact search), before its first commit re-chooses by size.
FIRST_AUTO_TYPE = "Flat"


class IndexStore:
    """An opened index folder.  ``open`` gives a reader; ``create`` or ``open(writable=True)`` a writer."""

    def __init__(self, folder: Path, engine: Engine, *, writable: bool):
        self.folder = folder
        self.engine = engine
        self.writable = writable
        self._local = threading.local()
        meta = self._read_meta()
        self._check_version(meta)
        self.identity = ModelIdentity.from_json(meta["model"])
        self.index_type: str = meta["index_type"]  # "auto" or a FAISS factory string
        self.max_memory: int | None = meta.get("max_memory")
        self.model_spec: dict[str, Any] = meta.get("model_spec", {})
        self.commit_info: dict[str, Any] = meta.get("commit", {"generation": 0, "files": {}})

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def create(cls, folder: str | Path, *, identity: ModelIdentity, index_type: str, model_spec: dict[str, Any],
               max_memory: int | None = None) -> IndexStore:
        """A writer on a new index folder, or on an existing one built with the same model.

        ``index_type`` is "auto" (the type follows the vector count and ``max_memory``) or a FAISS factory string.
        """
        folder = Path(folder)
        if index_type != AUTO_INDEX_TYPE:
            vector_files.make_index(index_type, identity.dim)  # validate the factory string before creating anything
        with write_errors(folder):
            folder.mkdir(parents=True, exist_ok=True)
        # under the folder's write lock: two writers racing on a new folder get one index and one clear refusal
        with WriteLock(folder), write_errors(folder):
            return cls._create_or_open(folder, identity=identity, index_type=index_type, model_spec=model_spec,
                                       max_memory=max_memory)

    @classmethod
    def _create_or_open(cls, folder: Path, *, identity: ModelIdentity, index_type: str, model_spec: dict[str, Any],
                        max_memory: int | None) -> IndexStore:
        if (folder / DATABASE_FILE).exists():
            store = cls.open(folder, writable=True)
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
        engine = make_engine(folder, readonly=False)
        writes = engine.execution_options(**WRITE)
        with writes.begin() as conn:
            Base.metadata.create_all(conn)
            for statement in FTS_DDL:
                conn.exec_driver_sql(statement)
        with Session(writes) as session, session.begin():
            session.add_all(
                [
                    IndexMeta(key="format_version", value=FORMAT_VERSION),
                    IndexMeta(key="model", value=identity.to_json()),
                    IndexMeta(key="model_spec", value=model_spec),
                    IndexMeta(key="index_type", value=index_type),
                    IndexMeta(key="max_memory", value=max_memory),
                    IndexMeta(key="created_at", value=time.time()),
                    IndexMeta(key="commit", value={"generation": 0, "files": {}}),
                ]
            )
        return cls(folder, engine, writable=True)

    @classmethod
    def open(cls, folder: str | Path, *, writable: bool = False) -> IndexStore:
        folder = Path(folder)
        if not (folder / DATABASE_FILE).is_file():
            raise IndexFormatError(f"{folder}: not an index folder (no {DATABASE_FILE}); build one with `vitrina index`")
        return cls(folder, make_engine(folder, readonly=not writable), writable=writable)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_meta(self) -> dict[str, Any]:
        try:
            with Session(self.engine) as session:
                return {row.key: row.value for row in session.scalars(select(IndexMeta))}
        except Exception as exc:  # sqlite3.DatabaseError and friends
            raise IndexFormatError(f"{self.folder / DATABASE_FILE}: unreadable index database ({exc})") from None

    def _check_version(self, meta: dict[str, Any]) -> None:
        version = meta.get("format_version")
        if version != FORMAT_VERSION or "model" not in meta:
            raise IndexFormatError(f"{self.folder}: index format {version!r}, this vitrina reads format {FORMAT_VERSION}; rebuild the index")

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read transaction: every read of this store in this thread sees one commit."""
        with self.engine.connect() as conn, conn.begin():
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
            value = conn.exec_driver_sql("SELECT value FROM index_meta WHERE key = 'commit'").scalar_one()
        return cast("dict[str, Any]", json.loads(value) if isinstance(value, str) else value)

    def refresh(self) -> bool:
        """Re-read the live commit; True when another writer committed since."""
        value = self.read_commit()
        changed = value != self.commit_info
        self.commit_info = value
        return changed

    # -- FAISS files -----------------------------------------------------------------
    def file_path(self, modality: str, generation: int) -> Path:
        return self.folder / f"{modality}.{generation}.faiss"

    def set_max_memory(self, max_memory: int | None) -> None:
        """Change the memory budget of an "auto" index (used from its next commit)."""
        with write_errors(self.folder), Session(self.engine.execution_options(**WRITE)) as session, session.begin():
            session.merge(IndexMeta(key="max_memory", value=max_memory))
        self.max_memory = max_memory

    def factory(self, modality: str, *, commit: dict[str, Any] | None = None) -> str:
        """The FAISS factory string ``modality``'s index has in ``commit`` (default: the live one)."""
        info = (commit or self.commit_info).get("files", {}).get(modality) or {}
        if "index_type" in info:
            return cast(str, info["index_type"])
        return FIRST_AUTO_TYPE if self.index_type == AUTO_INDEX_TYPE else self.index_type

    def tuning(self, modality: str, *, commit: dict[str, Any] | None = None) -> vector_files.SearchTuning:
        """efSearch / nprobe tuned for ``modality``'s index when it was written (defaults when never tuned)."""
        info = (commit or self.commit_info).get("files", {}).get(modality) or {}
        return vector_files.SearchTuning(**info.get("tuning", {}))

    def load_vector_index(self, modality: str, *, commit: dict[str, Any] | None = None) -> faiss.Index:
        """The FAISS index of ``commit`` (default: the live one) for ``modality``, checked against the database."""
        info = (commit or self.commit_info).get("files", {}).get(modality)
        if info is None:
            return vector_files.make_index(self.factory(modality, commit=commit), self.identity.dim)
        count = self.vector_count(modality)
        return vector_files.read(self.folder / info["name"], expected_size=info["size"],
                                 expected_sha256=info.get("sha256"), expected_count=count)

    def check(self) -> dict[str, int]:
        """Full consistency check of the live commit; ``IndexFormatError`` names what is wrong."""
        summary = {"generation": int(self.commit_info.get("generation", 0)), "products": self.counts()["products"]}
        with self._connect() as conn:
            expected = {
                "text": set(conn.execute(select(Product.pk).where(Product.text_vector.is_not(None))).scalars()),
                "image": set(conn.execute(select(ImageRow.pk)).scalars()),
            }
        for modality in MODALITIES:
            index = self.load_vector_index(modality)
            ids = set(faiss.vector_to_array(cast(faiss.IndexIDMap, index).id_map).tolist()) if index.ntotal else set()
            if ids != expected[modality]:
                raise IndexFormatError(
                    f"{self.folder}: {modality} index ids differ from the database "
                    f"({len(ids - expected[modality])} extra, {len(expected[modality] - ids)} missing); "
                    f"rebuild it with `vitrina repair --index {self.folder}`"
                )
            summary[modality] = len(ids)
        return summary

    def vector_count(self, modality: str) -> int:
        with self._connect() as conn:
            if modality == "image":
                return conn.execute(select(func.count()).select_from(ImageRow)).scalar_one()
            return conn.execute(select(func.count()).select_from(Product).where(Product.text_vector.is_not(None))).scalar_one()

    # -- reading ---------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        with self._connect() as conn:
            products = conn.execute(select(func.count()).select_from(Product)).scalar_one()
        return {"products": products, "images": self.vector_count("image"), "texts": self.vector_count("text")}

    def attribute_fields(self) -> list[str]:
        """Attribute names present in the catalog (filterable beside price, category, brand)."""
        with self._connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT DISTINCT key FROM products, json_each(products.attributes) ORDER BY key"
            ).all()
        return [r[0] for r in rows]

    def product_pks(self, ids: Iterable[str]) -> dict[str, int]:
        """Stored pk of each of ``ids`` that is stored (an id that is not text, or holds a lone surrogate, never is)."""
        ids = [i for i in ids if isinstance(i, str) and encodable(i)]
        if not ids:
            return {}
        with self._connect() as conn:
            rows = conn.execute(select(Product.id, Product.pk).where(Product.id.in_(ids))).all()
        return {row.id: row.pk for row in rows}

    def allowed(self, clauses: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(product pks, image pks) of the products matching every clause."""
        with self._connect() as conn:
            pks = conn.execute(select(Product.pk).where(*clauses)).scalars().all()
            product_pks = np.fromiter(pks, dtype=np.int64, count=len(pks))
            subquery = select(Product.pk).where(*clauses).scalar_subquery()
            image_pks = conn.execute(select(ImageRow.pk).where(ImageRow.product_pk.in_(subquery))).scalars().all()
        return product_pks, np.fromiter(image_pks, dtype=np.int64, count=len(image_pks))

    def product_pks_of_images(self, image_pks: Sequence[int]) -> list[int]:
        with self._connect() as conn:
            return list(conn.execute(select(ImageRow.product_pk).where(ImageRow.pk.in_(list(image_pks)))).scalars())

    def lexical(self, words: Sequence[str], *, clauses: list[Any] | None = None, limit: int = 100) -> tuple[np.ndarray, np.ndarray]:
        """BM25 candidates for ``words`` (any of them): (product pks, scores; higher is better)."""
        if not words:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        match = " OR ".join('"' + w.replace('"', '""') + '"' for w in words)
        if clauses:
            fts = table("products_fts", column("rowid"))
            score = (-func.bm25(literal_column("products_fts"), *(literal_column(repr(w)) for w in FTS_WEIGHTS))).label("score")
            statement = (select(fts.c.rowid, score).where(literal_column("products_fts").op("MATCH")(match))
                         .where(fts.c.rowid.in_(select(Product.pk).where(*clauses)))
                         .order_by(score.desc(), fts.c.rowid).limit(int(limit)))
            with self._connect() as conn:
                rows = conn.execute(statement).all()
        else:  # the common case, on every text search: plain SQL
            with self._connect() as conn:
                rows = conn.exec_driver_sql(_LEXICAL_SQL, (match, int(limit))).all()
        return np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.float32)

    def word_counts(self, words: Sequence[str]) -> dict[str, int]:
        """How many products each of ``words`` occurs in (words in no product are left out)."""
        if not words:
            return {}
        marks = ",".join("?" * len(words))
        with self._connect() as conn:
            rows = conn.exec_driver_sql(f"SELECT term, doc FROM temp.products_fts_words WHERE term IN ({marks})", tuple(words)).all()
        return {term: int(doc) for term, doc in rows}

    def field_rows(self) -> list[tuple[int, str | None, str | None, str | None, dict[str, Any]]]:
        """(pk, title, category, brand, attributes) of every product: the read path's field table is built
        from these once per commit."""
        with self._connect() as conn:
            rows = conn.exec_driver_sql("SELECT pk, title, category, brand, attributes FROM products").all()
        return [(int(r[0]), r[1], r[2], r[3], r[4] if isinstance(r[4], dict) else json.loads(r[4] or "{}")) for r in rows]

    def image_owners(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image pk, product pk, index of the image in its product's ``products()[pk]["images"]``) of every
        stored image (the index, not the catalog position: an image that failed to load leaves no gap)."""
        with self._connect() as conn:
            rows = conn.execute(select(ImageRow.pk, ImageRow.product_pk, ImageRow.position)).all()
        if not rows:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64)
        table = np.array(rows, dtype=np.int64)
        return table[:, 0].copy(), table[:, 1].copy(), image_ranks(table[:, 1], table[:, 2])

    def vectors_of(self, product_pks: Sequence[int]) -> dict[str, Any]:
        """Stored vectors of ``product_pks`` (in that order) for exact scoring.

        Returns ``text`` (n, d) with zero rows where a product has no text, ``has_text`` (n,),
        ``images`` (m, d), ``image_owner`` (m,) row in ``product_pks``, ``image_position`` (m,): the image's
        index in its product's ``products()[pk]["images"]``.
        """
        dim = self.identity.dim
        order = {pk: i for i, pk in enumerate(product_pks)}
        text = np.zeros((len(order), dim), dtype=np.float32)
        has_text = np.zeros(len(order), dtype=bool)
        with self._connect() as conn:
            for pk, blob in conn.execute(select(Product.pk, Product.text_vector).where(Product.pk.in_(list(order)))):
                if blob is not None:
                    text[order[pk]] = np.frombuffer(blob, dtype=np.float32)
                    has_text[order[pk]] = True
            rows = conn.execute(
                select(ImageRow.product_pk, ImageRow.position, ImageRow.vector).where(ImageRow.product_pk.in_(list(order)))
            ).all()
        return {
            "text": text,
            "has_text": has_text,
            "images": blobs_to_matrix([r.vector for r in rows], dim),
            "image_owner": np.array([order[r.product_pk] for r in rows], dtype=np.int64),
            "image_position": image_ranks(np.array([r.product_pk for r in rows], dtype=np.int64),
                                          np.array([r.position for r in rows], dtype=np.int64)),
        }

    def products(self, product_pks: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Metadata of ``product_pks`` as plain dicts, keyed by pk.  ``images`` lists the stored images in
        catalog order (an image that could not be loaded is not among them): ``image_owners`` and
        ``vectors_of`` give each image's index in this list.

        On the query path for every search: plain SQL with positional parameters (no statement to build).
        """
        pks = [int(pk) for pk in product_pks]
        if not pks:
            return {}
        marks = ",".join("?" * len(pks))
        with self._connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT pk, id, title, description, price, category, brand, attributes FROM products "
                f"WHERE pk IN ({marks})", tuple(pks)).all()
            images = conn.exec_driver_sql(
                f"SELECT product_pk, location FROM images WHERE product_pk IN ({marks}) ORDER BY product_pk, position",
                tuple(pks)).all()
        locations: dict[int, list[str]] = {}
        for owner, location in images:
            locations.setdefault(owner, []).append(location)
        out = {}
        for r in rows:
            attributes = r.attributes if isinstance(r.attributes, dict) else json.loads(r.attributes or "{}")
            out[r.pk] = {
                "id": r.id, "title": r.title, "description": r.description, "price": r.price,
                "category": r.category, "brand": r.brand, "attributes": attributes, "images": locations.get(r.pk, []),
            }
        return out

    def content_hashes(self) -> dict[str, str | None]:
        """Stored product id → content hash, for incremental indexing."""
        with self._connect() as conn:
            return dict(conn.execute(select(Product.id, Product.content_hash)).all())

    def product_ids(self) -> set[str]:
        with self._connect() as conn:
            return set(conn.execute(select(Product.id)).scalars())

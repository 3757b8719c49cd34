"""What the read path asks of an index folder's database: metadata, filters, words, vectors.

A mixin of ``IndexStore``: every method reads through ``_connect``, so inside ``store.snapshot()``
all of them see one commit.  The query path's hot statements are prepared ``text()`` constructs with bound
parameters (lists expand into ``IN``), which SQLite and PostgreSQL both run; words go to the backend.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.engine import Connection

from indexer.catalog import encodable
from indexer.encoders.base import ModelIdentity
from indexer.store.backend import Backend
from indexer.store.database import blobs_to_matrix, image_ranks, int_table
from indexer.store.schema import ImageRow, Product, TextVector


def _sql(statement: str, *lists: str) -> Any:
    """A prepared statement; ``lists`` name the parameters that expand into ``IN (...)``."""
    return text(statement).bindparams(*(bindparam(name, expanding=True) for name in lists))


_ATTRIBUTE_KEYS = _sql("SELECT DISTINCT key FROM attribute_values")
_HAS_NUMBER = _sql("SELECT 1 FROM attribute_values WHERE key = :key AND number IS NOT NULL LIMIT 1")
_PRICES = _sql("SELECT pk, price FROM products WHERE pk IN :pks", "pks")
_NUMBERS = _sql("SELECT product_pk, number FROM attribute_values WHERE key = :key AND product_pk IN :pks", "pks")
_FIELD_ROWS = _sql("SELECT pk, title, category, brand, attributes FROM products")
_FIELD_ROWS_SINCE = _sql("SELECT pk, title, category, brand, attributes FROM products WHERE generation > :generation")
_CHANGED = _sql("SELECT pk FROM products WHERE generation > :generation")
_REMOVED = _sql("SELECT product_pk FROM removals WHERE generation > :generation")
_TEXT_ROWS_OF = _sql("SELECT product_pk, coalesce(segment, -1) FROM text_vectors WHERE product_pk IN :pks "
                     "ORDER BY product_pk", "pks")
_IMAGE_ROWS_OF = _sql("SELECT pk, product_pk, position, coalesce(segment, -1) FROM images WHERE product_pk IN :pks "
                      "ORDER BY pk", "pks")
_ALL_PKS = _sql("SELECT pk FROM products ORDER BY pk")
_ALL_IMAGES = _sql("SELECT pk, product_pk, position, coalesce(segment, -1) FROM images ORDER BY pk")
_PRODUCTS = _sql("SELECT pk, id, title, description, price, category, brand, attributes FROM products WHERE pk IN :pks", "pks")
_LOCATIONS = _sql("SELECT product_pk, location FROM images WHERE product_pk IN :pks ORDER BY product_pk, position", "pks")
_HASHES = _sql("SELECT id, content_hash, embed_hash FROM products")


class ProductReads:
    """Reads of products, images, vectors and words (needs ``_connect`` and ``identity``)."""

    identity: ModelIdentity
    backend: Backend

    def _connect(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def vector_count(self, modality: str) -> int:
        with self._connect() as conn:
            table = ImageRow if modality == "image" else TextVector
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    def counts(self) -> dict[str, int]:
        with self._connect() as conn:
            products = conn.execute(select(func.count()).select_from(Product)).scalar_one()
        return {"products": products, "images": self.vector_count("image"), "texts": self.vector_count("text")}

    def attribute_fields(self) -> list[str]:
        """Attribute names present in the catalog (filterable beside price, category, brand)."""
        with self._connect() as conn:
            rows = conn.execute(_ATTRIBUTE_KEYS).all()
        return sorted(r[0] for r in rows)  # by code point, whatever the database's collation

    def numeric_fields(self, keys: Iterable[str]) -> list[str]:
        """Those of the attribute names ``keys`` with at least one numeric value (a number or numeric text):
        what a query may sort and boost by beside ``price`` (one index seek per name)."""
        with self._connect() as conn:
            return [key for key in sorted(set(keys)) if conn.execute(_HAS_NUMBER, {"key": key}).first()]

    def field_numbers(self, field: str, product_pks: Sequence[int]) -> np.ndarray:
        """The number of ``field`` (``price``, or an attribute's number or numeric text) of each of ``product_pks``,
        in that order, NaN where there is none: one statement per query (per 10,000 pks), never one per product."""
        pks = [int(pk) for pk in product_pks]
        out = np.full(len(pks), np.nan, dtype=np.float64)
        position = {pk: i for i, pk in enumerate(pks)}
        with self._connect() as conn:
            for start in range(0, len(pks), 10_000):
                chunk = pks[start:start + 10_000]
                rows = (conn.execute(_PRICES, {"pks": chunk}).all() if field == "price"
                        else conn.execute(_NUMBERS, {"key": field, "pks": chunk}).all())
                for pk, number in rows:
                    if number is not None:
                        out[position[pk]] = float(number)
        return out

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
        product_pks = self.allowed_products(clauses)
        with self._connect() as conn:
            subquery = select(Product.pk).where(*clauses).scalar_subquery()
            image_pks = _int_column(conn.execute(select(ImageRow.pk).where(ImageRow.product_pk.in_(subquery))))
        return product_pks, image_pks

    def allowed_products(self, clauses: list[Any]) -> np.ndarray:
        """The pks (sorted) of the products matching every clause."""
        with self._connect() as conn:
            return np.sort(_int_column(conn.execute(select(Product.pk).where(*clauses))))

    def product_pks_of_images(self, image_pks: Sequence[int]) -> list[int]:
        with self._connect() as conn:
            return list(conn.execute(select(ImageRow.product_pk).where(ImageRow.pk.in_(list(image_pks)))).scalars())

    def lexical(self, words: Sequence[str], *, clauses: list[Any] | None = None, allowed: np.ndarray | None = None,
                limit: int = 100) -> tuple[np.ndarray, np.ndarray]:
        """BM25 candidates for ``words`` (any of them): (product pks, scores; higher is better), among the products
        matching ``clauses`` or, faster when the caller has them, among the ``allowed`` product pks."""
        if not words:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        with self._connect() as conn:
            rows = self.backend.lexical(conn, words, clauses=clauses, allowed=allowed, limit=limit)
        return np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.float32)

    def word_counts(self, words: Sequence[str]) -> dict[str, int]:
        """How many products each of ``words`` occurs in (words in no product are left out)."""
        if not words:
            return {}
        with self._connect() as conn:
            return self.backend.word_counts(conn, words)

    def field_rows(self, *, since: int | None = None) -> list[tuple[int, str | None, str | None, str | None, dict[str, Any]]]:
        """(pk, title, category, brand, attributes) of every product (``since``: of those written by commits after
        that generation): the read path's field table is built from these, and refreshed with what changed."""
        with self._connect() as conn:
            rows = (conn.execute(_FIELD_ROWS).all() if since is None else
                    conn.execute(_FIELD_ROWS_SINCE, {"generation": int(since)}).all())
        return [(int(r[0]), r[1], r[2], r[3], r[4] if isinstance(r[4], dict) else json.loads(r[4] or "{}")) for r in rows]

    def changes_since(self, generation: int, *, commit: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
        """(pks of the products written after ``generation`` — new, replaced or updated —, pks of those removed
        since), both sorted; None when removals that old are no longer kept (read everything instead)."""
        if generation + 1 < int(commit.get("removals_from", 1)):
            return None
        with self._connect() as conn:
            changed = np.sort(int_table(conn, _CHANGED, 1, {"generation": int(generation)})[:, 0])
            removed = np.unique(int_table(conn, _REMOVED, 1, {"generation": int(generation)})[:, 0])
        return changed, removed

    def vector_rows_of(self, product_pks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The text vector rows of ``product_pks``: (ids, segment numbers), by id."""
        if not len(product_pks):
            return np.empty(0, np.int64), np.empty(0, np.int64)
        with self._connect() as conn:
            table = int_table(conn, _TEXT_ROWS_OF, 2, {"pks": [int(p) for p in product_pks]})
        return table[:, 0].copy(), table[:, 1].copy()

    def image_rows_of(self, product_pks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``image_owners`` for the images of ``product_pks`` only."""
        if not len(product_pks):
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64)
        with self._connect() as conn:
            table = int_table(conn, _IMAGE_ROWS_OF, 4, {"pks": [int(p) for p in product_pks]})
        return table[:, 0].copy(), table[:, 1].copy(), image_ranks(table[:, 1], table[:, 2]), table[:, 3].copy()

    def product_pk_array(self) -> np.ndarray:
        """Every stored product's pk, sorted."""
        with self._connect() as conn:
            pks: np.ndarray = int_table(conn, _ALL_PKS, 1)[:, 0].copy()
        return pks

    def image_owners(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(image pk, product pk, index of the image in its product's ``products()[pk]["images"]``, segment) of
        every stored image, by image pk (the index, not the catalog position: an image that failed to load
        leaves no gap)."""
        with self._connect() as conn:
            table = int_table(conn, _ALL_IMAGES, 4)
        return table[:, 0].copy(), table[:, 1].copy(), image_ranks(table[:, 1], table[:, 2]), table[:, 3].copy()

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
            for pk, blob in conn.execute(select(TextVector.product_pk, TextVector.vector).where(TextVector.product_pk.in_(list(order)))):
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

        On the query path for every search: two prepared statements.
        """
        pks = [int(pk) for pk in product_pks]
        if not pks:
            return {}
        with self._connect() as conn:
            rows = conn.execute(_PRODUCTS, {"pks": pks}).all()
            images = conn.execute(_LOCATIONS, {"pks": pks}).all()
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

    def content_hashes(self) -> dict[str, tuple[str | None, str | None]]:
        """Stored product id → (content hash, embedded-part hash), for incremental indexing."""
        with self._connect() as conn:
            rows = conn.execute(_HASHES).all()
        return {r[0]: (r[1], r[2]) for r in rows}

    def product_ids(self) -> set[str]:
        with self._connect() as conn:
            return set(conn.execute(select(Product.id)).scalars())


def _int_column(result: Any) -> np.ndarray:
    """The first column of a result's rows as int64, read from its DBAPI cursor (no ``Row`` objects)."""
    rows = result.cursor.fetchall() if result.cursor is not None else []
    return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))


"""SQLAlchemy models of an index's metadata database (the metadata half of the contract).

The database (SQLite in the index folder, or PostgreSQL) is the source of truth: it holds every product, its images and their vectors
(float32 blobs, in tables of their own so that the rows filters read stay small).  The FAISS
segment files are derived search structures, addressed by the integer primary keys below:

* ``products.pk`` is the product's id in the *text* segments (``text_vectors.product_pk``);
* ``images.pk`` is the image's id in the *image* segments.

Each vector row names the segment that holds it (``segment``; NULL while staged by a writer that
has not committed).  A vector in a segment file whose row is gone is dead (a tombstone): readers
exclude it, merges drop it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: Bumped whenever the folder layout or these tables change incompatibly.
FORMAT_VERSION = 2
DATABASE_FILE = "vitrina.db"


#: Ids are 64-bit (FAISS ids) on PostgreSQL; SQLite's INTEGER PRIMARY KEY (the rowid) already is.
Id = BigInteger().with_variant(Integer(), "sqlite")
#: JSON values: JSONB on PostgreSQL (indexable operators), JSON text on SQLite.
Json = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"
    __table_args__ = {"sqlite_autoincrement": True}  # a deleted product's pk (a FAISS id) is never reused

    pk: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True, nullable=False)
    row: Mapped[int | None] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    price: Mapped[float | None] = mapped_column(Float, index=True)
    category: Mapped[str | None] = mapped_column(String, index=True)
    brand: Mapped[str | None] = mapped_column(String, index=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    #: Hash of everything (``embed_hash`` included): unchanged products are skipped by incremental runs.
    content_hash: Mapped[str | None] = mapped_column(String)
    #: Hash of what is embedded (text, image locations and bytes): when only the rest changes, a product is
    #: updated in place (same pk, no encoder call, no vector work).
    embed_hash: Mapped[str | None] = mapped_column(String)
    #: Generation of the commit that last wrote this row (readers refresh what changed since theirs).
    generation: Mapped[int] = mapped_column(Integer, default=0, index=True)

    images: Mapped[list[ImageRow]] = relationship(
        back_populates="product", cascade="all, delete-orphan", order_by="ImageRow.position"
    )


class ImageRow(Base):
    __tablename__ = "images"

    pk: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    product_pk: Mapped[int] = mapped_column(Id, ForeignKey("products.pk", ondelete="CASCADE"), nullable=False)
    #: Position of the image in the product's catalog row (0 = first).
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    location: Mapped[str] = mapped_column(Text, nullable=False)
    vector: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    segment: Mapped[int | None] = mapped_column(Integer, index=True)

    product: Mapped[Product] = relationship(back_populates="images")

    __table_args__ = (Index("ix_images_product", "product_pk", "position"), {"sqlite_autoincrement": True})


class TextVector(Base):
    """A product's unit text vector (float32 bytes); products without text have no row."""

    __tablename__ = "text_vectors"

    product_pk: Mapped[int] = mapped_column(Id, ForeignKey("products.pk", ondelete="CASCADE"), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    segment: Mapped[int | None] = mapped_column(Integer, index=True)


class Removal(Base):
    """A product removed (deleted, or replaced by a new version) by the commit of ``generation``: readers of an
    earlier commit drop its vectors from their maps without re-reading every row.  Kept for
    ``REMOVALS_KEPT`` generations."""

    __tablename__ = "removals"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    generation: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    product_pk: Mapped[int] = mapped_column(Id, nullable=False)


#: Generations of removals kept; a reader further behind reads every row again.
REMOVALS_KEPT = 10_000


class AttributeValue(Base):
    """One attribute value of a product, typed for indexed filters: ``text`` always (a number's text form,
    ``true``/``false`` for booleans), ``number`` when the value is a number or numeric text, so ``size=42``
    matches a CSV's ``"42"`` and a JSONL's ``42``."""

    __tablename__ = "attribute_values"

    product_pk: Mapped[int] = mapped_column(Id, ForeignKey("products.pk", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    number: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_attribute_text", "key", "text", "product_pk"),
                      Index("ix_attribute_number", "key", "number", "product_pk"))


class IndexMeta(Base):
    """Key → JSON value: format version, model identity, index types, the live commit."""

    __tablename__ = "index_meta"

    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[Any] = mapped_column(Json)

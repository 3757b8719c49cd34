"""``apply_feed``: a partial feed that changes some fields of stored products.

A feed is CSV or JSONL read like a catalog (same row readers, field parsers, row numbers), but a row
carries ``id`` plus only the fields it changes, merged over the stored product.  ``price``, ``category``,
``brand``, ``title``, ``description``, ``image``/``images`` replace the stored value; every other field is
an attribute and merges **per key** (``stock=3`` keeps the other attributes).  An empty value (JSON
``null``, ``""``, an empty CSV cell) clears that field or removes that attribute (a product must keep some
text or an image).  Relative image paths resolve against the feed's folder.

A product whose title, description and images are unchanged is rewritten in place (same pk, no encoder,
no FAISS work; content hash ``content_hash(merged, stored embed_hash)``).  Others are re-embedded by the
indexing pipeline, with an encoder made by ``encoder_factory`` only when the first such row comes.  A bad
row (an unparsable field, an id not in the index, an id alone) is reported with its row number and changes
nothing; of repeated ids the first row wins.  Image bytes changed under an unchanged path are not seen
here (``vitrina index`` finds those).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select

from indexer import catalog as cat
from indexer.catalog import ProductRecord, RowError, catalog_format
from indexer.config import IndexConfig
from indexer.encoders.base import Encoder
from indexer.errors import CatalogError, ModelError
from indexer.pipeline import IndexReport, Problem, _prepare_batch, content_hash, embed_prepared
from indexer.stages import StageTimes
from indexer.store.reader import IndexStore
from indexer.store.schema import Product
from indexer.store.writer import IndexWriter

NOT_IN_INDEX = "not in the index; add it with vitrina index"
_IMAGE_FIELDS = ("image", "images")
_CHUNK = 500


@dataclass(frozen=True, kw_only=True)
class FeedRow:
    """One valid feed row.  ``fields`` holds the given known fields, parsed (``None`` clears price, category or
    brand; ``""`` / ``()`` clears text or images); ``attributes`` the given attributes (``None`` removes the key)."""

    id: str
    row: int
    fields: dict[str, Any]
    attributes: dict[str, Any]
    warnings: tuple[str, ...] = ()


@dataclass(kw_only=True)
class FeedReport:
    """What a feed did.  ``updated + unchanged + skipped + failed`` = the feed's rows; ``updated`` =
    ``fields_only`` (rewritten in place, no encoder) + ``reembedded``."""

    feed: str
    index: str
    updated: int = 0
    fields_only: int = 0
    reembedded: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    images: int = 0  # images embedded for re-embedded products
    commits: int = 0
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return self.updated + self.unchanged + self.skipped + self.failed

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = self.rows
        return data


def iter_feed(path: str | Path, *, on_error: Callable[[RowError], None],
              allow_outside_root: bool = False) -> Iterator[FeedRow]:
    """Yield every valid row of the feed at ``path``; bad rows go to ``on_error`` (the first row of an id wins).
    Raises ``CatalogError`` only when the file itself cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{path}: feed file not found")
    fmt = catalog_format(path)
    root = path.resolve().parent
    seen: set[str] = set()
    rows = cat._csv_rows(path) if fmt == "csv" else cat._jsonl_rows(path)
    for number, raw in rows:
        if isinstance(raw, RowError):
            on_error(raw)
            continue
        try:
            item = parse_feed_row(raw, row=number, root=root, csv_row=fmt == "csv", allow_outside_root=allow_outside_root)
        except (CatalogError, ValueError, TypeError, OverflowError, RecursionError, OSError) as exc:  # never stops the read
            reason = str(exc) if isinstance(exc, CatalogError) else f"unusable row ({type(exc).__name__}: {cat._printable(str(exc))})"
            on_error(RowError(row=number, reason=reason, product_id=cat._raw_id(raw)))
            continue
        if item.id in seen:
            on_error(RowError(row=number, reason="duplicate id (the first row wins)", product_id=item.id))
            continue
        seen.add(item.id)
        yield item


def parse_feed_row(raw: dict[str, Any], *, row: int, root: Path, csv_row: bool = False,
                   allow_outside_root: bool = False) -> FeedRow:
    """Validate one raw feed row with the catalog's field parsers; a ``CatalogError`` names the bad field."""
    if not isinstance(raw, dict):
        raise CatalogError(f"expected an object, got {type(raw).__name__}")
    warnings: list[str] = []
    values = cat.checked_values({k.strip(): v for k, v in raw.items() if isinstance(k, str) and k.strip()}, warnings)
    if cat._blank(values.get("id")):
        raise CatalogError("missing id")
    product_id = cat._parse_id(values.pop("id"))
    if not values:
        raise CatalogError("only an id: no field to update")
    fields: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for name, value in values.items():
        try:
            if name in _IMAGE_FIELDS:
                pass  # below: image and images together make the list
            elif name == "price":
                fields[name] = None if cat._blank(value) else cat._parse_price(value)
            elif name in ("category", "brand"):
                fields[name] = cat._optional_text({name: value}, name)
            elif name in ("title", "description"):
                fields[name] = cat._truncated({name: value}, name, cat.MAX_FIELD_CHARS[name], warnings)
            elif cat.attribute_name_ok(name, warnings):
                attributes[name] = None if cat._blank(value) else cat._attribute(name, value, warnings)
        except CatalogError as exc:
            raise CatalogError(f"field {name!r}: {exc}") from None
    given = {k: v for k, v in values.items() if k in _IMAGE_FIELDS}
    if given:
        try:
            images = cat._parse_images({k: v for k, v in given.items() if not cat._blank(v)}, root=root, csv_row=csv_row)
        except CatalogError as exc:
            raise CatalogError(f"field {'images' if 'images' in given else 'image'!r}: {exc}") from None
        fields["images"] = images if allow_outside_root else cat._inside_root(images, root, warnings)
    return FeedRow(id=product_id, row=row, fields=fields, attributes=attributes, warnings=tuple(warnings))


def merge(item: FeedRow, stored: dict[str, Any], *, row: int) -> ProductRecord:
    """The stored product (``IndexStore.products`` form) with ``item``'s fields over it, attributes per key."""
    attributes = {**(stored.get("attributes") or {}), **item.attributes}
    attributes = {key: value for key, value in attributes.items() if value is not None}
    given = item.fields
    return ProductRecord(
        id=item.id, row=row, title=given.get("title", stored.get("title") or ""),
        description=given.get("description", stored.get("description") or ""),
        images=tuple(given.get("images", stored.get("images") or ())), price=given.get("price", stored.get("price")),
        category=given.get("category", stored.get("category")), brand=given.get("brand", stored.get("brand")),
        attributes=attributes,
    )


def apply_feed(feed: str | Path, folder: str | Path, *, encoder_factory: Callable[[], Encoder],
               config: IndexConfig = IndexConfig(), progress: Callable[[int], None] | None = None) -> FeedReport:
    """Apply the partial feed at ``feed`` to the index in ``folder`` (see the module's docstring); committed
    every ``config.commit_every`` products and at the end.  ``encoder_factory`` is called at most once, only
    when a row changes a title, description or images.  Raises ``CatalogError`` (unreadable feed),
    ``IndexFormatError`` (not an index) or ``ModelError`` (the encoder is not the index's model)."""
    started = time.perf_counter()
    feed = Path(feed)
    report = FeedReport(feed=str(feed), index=str(folder))
    if not feed.is_file():  # refused before the index is opened
        raise CatalogError(f"{feed}: feed file not found")
    catalog_format(feed)

    def on_error(error: RowError) -> None:
        report.skipped += 1
        report.problems.append(Problem(row=error.row, product_id=error.product_id, reason=error.reason))
        if progress:
            progress(1)
    rows = iter_feed(feed, on_error=on_error, allow_outside_root=config.allow_outside_root)
    store = IndexStore.open(folder, writable=True, database=config.database)
    try:
        with IndexWriter(store, config=config.vectors) as writer:
            applier = _Applier(store, writer, report, config, encoder_factory)
            changes = 0
            while batch := list(itertools.islice(rows, config.batch_size)):
                changes += applier.apply(batch)
                if progress:
                    progress(len(batch))
                if config.commit_every and changes >= config.commit_every:
                    writer.commit()
                    report.commits += 1
                    changes = 0
            if changes:
                writer.commit()
                report.commits += 1
    finally:
        store.close()
    report.problems.sort(key=lambda p: p.row)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


class _Applier:
    """Applies batches of feed rows through one writer; holds the lazily made encoder."""

    def __init__(self, store: IndexStore, writer: IndexWriter, report: FeedReport, config: IndexConfig,
                 encoder_factory: Callable[[], Encoder]):
        self.store, self.writer, self.report, self.config, self.encoder_factory = store, writer, report, config, encoder_factory
        self.stages = StageTimes()
        self._encoder: Encoder | None = None

    def encoder(self) -> Encoder:
        if self._encoder is None:
            encoder = self.encoder_factory()
            if not self.store.identity.same_model(encoder.identity):
                raise ModelError(f"{self.store.folder}: built with model {self.store.identity.describe()}, not "
                                 f"{encoder.identity.describe()}; re-embedding needs the index's model")
            self._encoder = encoder
        return self._encoder

    def apply(self, batch: list[FeedRow]) -> int:
        """Stage ``batch``'s changes; returns how many products were written."""
        stored = self._stored([item.id for item in batch])
        metadata = self.store.products([s.pk for s in stored.values()])
        in_place: list[tuple[ProductRecord, str | None]] = []
        to_embed: list[ProductRecord] = []
        rows: dict[str, FeedRow] = {}
        for item in batch:
            found = stored.get(item.id)
            if found is None or found.pk not in metadata:
                self._skip(item, NOT_IN_INDEX)
                continue
            before = metadata[found.pk]
            record = merge(item, before, row=found.row if found.row is not None else item.row)
            if not record.text and not record.images:
                self._skip(item, "the update leaves no title, description or image: nothing to index")
                continue
            rows[item.id] = item
            self.report.problems.extend(Problem(row=item.row, product_id=item.id, reason=warning, outcome="applied with a change")
                                        for warning in item.warnings)
            if (record.title, record.description, record.images) != (before["title"] or "", before["description"] or "", tuple(before["images"])):
                to_embed.append(record)
                continue
            new_hash = content_hash(record, found.embed_hash) if found.embed_hash else None
            if new_hash is not None and new_hash == found.content_hash:
                self.report.unchanged += 1
            else:
                in_place.append((record, new_hash))
        moved = self.writer.update_fields(in_place)
        self.report.updated += moved
        self.report.fields_only += moved
        return moved + (self._reembed(to_embed, stored, rows) if to_embed else 0)

    def _reembed(self, records: list[ProductRecord], stored: dict[str, Any], rows: dict[str, FeedRow]) -> int:
        """Run ``records`` through the indexing pipeline's prepare and embed steps; returns products written."""
        encoder = self.encoder()
        hashes = {r.id: (stored[r.id].content_hash, stored[r.id].embed_hash) for r in records}
        prepared = _prepare_batch(records, encoder=encoder, config=self.config, stored=hashes, stages=self.stages)
        report = self.report
        report.unchanged += prepared.unchanged
        for held in prepared.held:  # a stored product whose image cannot be read now keeps its stored version
            report.skipped += 1
            for location, reason in held.failures:
                report.problems.append(Problem(
                    row=rows[held.record.id].row, product_id=held.record.id, image=location,
                    reason=f"{reason}; the stored version is kept, with none of this row's changes",
                    outcome="kept the stored version"))
        scratch = IndexReport(catalog=report.feed, index=report.index)
        products = embed_prepared(prepared, encoder=encoder, report=scratch, stages=self.stages)
        self.writer.put_many(products)
        moved = self.writer.update_fields([(item.record, item.content_hash) for item in prepared.field_only])
        report.failed, report.reembedded = report.failed + scratch.failed, report.reembedded + len(products)
        report.fields_only, report.updated = report.fields_only + moved, report.updated + len(products) + moved
        report.images += sum(len(p.images) for p in products)
        outcomes = {"indexed without this image": "updated without this image"}
        for problem in scratch.problems:
            row = rows[problem.product_id].row if problem.product_id in rows else problem.row
            report.problems.append(replace(problem, row=row, outcome=outcomes.get(problem.outcome, problem.outcome)))
        return len(products) + moved

    def _stored(self, ids: list[str]) -> dict[str, Any]:
        """(id, pk, row, content_hash, embed_hash) of the stored products among ``ids``, as last committed."""
        statement = select(Product.id, Product.pk, Product.row, Product.content_hash, Product.embed_hash)
        found: dict[str, Any] = {}
        with self.store.engine.connect() as conn:
            for start in range(0, len(ids), _CHUNK):
                found.update((r.id, r) for r in conn.execute(statement.where(Product.id.in_(ids[start:start + _CHUNK]))))
        return found

    def _skip(self, item: FeedRow, reason: str) -> None:
        self.report.skipped += 1
        self.report.problems.append(Problem(row=item.row, product_id=item.id, reason=reason))

"""``build_index``: read a catalog, load its images, embed, and store, in batches.

Incremental and resumable: each product's content hash (its fields and the bytes of its
images) is stored with it, so a re-run embeds only new and changed products, and a run
killed at any point continues from its last commit when started again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
from PIL import Image

from indexer.catalog import ProductRecord, RowError, catalog_format, iter_products
from indexer.config import IndexConfig
from indexer.encoders.base import Encoder
from indexer.errors import CatalogError, ImageError
from indexer.media.fetch import fetch_many
from indexer.media.images import decode_image, read_file
from indexer.prefetch import prefetch
from indexer.stages import StageTimes
from indexer.store.reader import IndexStore
from indexer.store.writer import IndexWriter
from indexer.store.records import EmbeddedImage, EmbeddedProduct
from indexer.vectors_file import NOTHING_GIVEN, VectorsFile

if TYPE_CHECKING:
    class _PixelEncoder(Encoder, Protocol):
        """An encoder with ``preprocess_images``, whose output ``encode_pixels`` embeds."""

        def encode_pixels(self, pixels: Any) -> np.ndarray: ...




@dataclass(frozen=True, kw_only=True)
class Problem:
    """Something that went wrong with one row or one image, and what became of the row."""

    row: int
    product_id: str | None
    reason: str
    image: str | None = None
    outcome: str = "skipped"  # skipped | failed | indexed without this image | indexed with a change

    def __str__(self) -> str:
        who = f" {self.product_id!r}" if self.product_id else ""
        image = f" image {self.image}" if self.image else ""
        return f"row {self.row}{who}{image}: {self.reason} ({self.outcome})"


@dataclass(kw_only=True)
class IndexReport:
    """What a run did.  ``indexed + unchanged + updated + skipped + failed`` = the catalog's
    rows; ``deleted`` counts stored products no longer in the catalog (``delete_missing``)."""

    catalog: str
    index: str
    indexed: int = 0
    unchanged: int = 0
    updated: int = 0
    #: Of ``updated``: products whose embedded part (text, images) was unchanged, updated in place with no
    #: encoder call and no vector work.
    fields_only: int = 0
    deleted: int = 0
    skipped: int = 0
    failed: int = 0
    images: int = 0
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    commits: int = 0
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage (see ``indexer.stages``)

    @property
    def rows(self) -> int:
        return self.indexed + self.unchanged + self.updated + self.skipped + self.failed

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = self.rows
        return data


@dataclass
class _Loaded:
    """A record with its image bytes read (not yet decoded) and its content hash."""

    record: ProductRecord
    data: list[tuple[int, str, bytes]]
    failures: list[tuple[str, str]]
    content_hash: str
    embed_hash: str


def build_index(
    catalog: str | Path,
    folder: str | Path,
    *,
    encoder: Encoder,
    config: IndexConfig = IndexConfig(),
    model_spec: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    delete_missing: bool = False,
    stages: StageTimes | None = None,
    vectors: VectorsFile | None = None,
) -> IndexReport:
    """Index every valid product of ``catalog`` into ``folder`` (created if missing).

    New products are added, changed ones re-embedded and replaced, unchanged ones skipped.
    Bad rows and bad images are reported in the returned ``IndexReport`` and never stop
    the run; a bad row never removes the stored version of its product.

    Pipelined: a worker thread reads, hashes, decodes and preprocesses the next batches
    while this thread runs the model on the current one and stores it.  ``stages`` (read
    it from ``progress``) collects the seconds per stage; the report carries them too.
    ``vectors`` gives precomputed vectors of some products (``indexer.vectors_file``).
    """
    started = time.perf_counter()
    stages = stages if stages is not None else StageTimes()
    report = IndexReport(catalog=str(catalog), index=str(folder))
    if not Path(catalog).is_file():  # refused before the index folder is created
        raise CatalogError(f"{catalog}: catalog file not found")
    catalog_format(Path(catalog))
    if vectors is not None:
        vectors.check_dim(encoder.dim)
    seen: set[str] = set()
    on_row_error = row_error_recorder(report, seen, progress)
    records = iter_products(catalog, on_error=on_row_error, allow_outside_root=config.allow_outside_root)
    store = IndexStore.create(
        folder, identity=encoder.identity, index_type=config.index_type, max_memory=config.max_memory,
        model_spec=model_spec or {"name": encoder.identity.name, "pretrained": encoder.identity.pretrained},
        database=config.database,
    )
    try:
        with IndexWriter(store, config=config.vectors) as writer:
            stored = store.content_hashes()
            changes = 0

            def prepare(batch: list[ProductRecord]) -> _Prepared:
                return _prepare_batch(batch, encoder=encoder, config=config, stored=stored, stages=stages, vectors=vectors)

            with closing(prefetch(_batches(records, config.batch_size), prepare, workers=1, depth=config.prefetch_depth)) as batches:
                while True:
                    with stages.time("wait"):
                        prepared = next(batches, None)
                    if prepared is None:
                        break
                    seen.update(record.id for record in prepared.records)
                    report.unchanged += prepared.unchanged + len(prepared.held)
                    report.problems.extend(held_problem(item.record.row, item.record.id, location, reason)
                                           for item in prepared.held for location, reason in item.failures)
                    products = embed_prepared(prepared, encoder=encoder, report=report, stages=stages, vectors=vectors)
                    with stages.time("store"):
                        changes = store_batch(writer, products, [(item.record, item.content_hash) for item in prepared.field_only],
                                              stored=stored, report=report, changes=changes, commit_every=config.commit_every)
                    if progress:
                        progress(len(prepared.records))
            with stages.time("store"):
                finish_run(writer, report, stored=stored, seen=seen, changes=changes, delete_missing=delete_missing)
    finally:
        store.close()
    for row, product_id in vectors.unknown(seen) if vectors is not None else ():
        report.problems.append(Problem(row=0, product_id=product_id, outcome="ignored",
                                       reason=f"vectors row {row}: not a product of the catalog"))
    report.problems.sort(key=lambda p: p.row)
    report.seconds = round(time.perf_counter() - started, 3)
    report.stages = stages.to_json()
    return report


def store_batch(writer: IndexWriter, products: list[EmbeddedProduct], in_place: list[tuple[ProductRecord, str | None]], *,
                stored: Mapping[str, Any], report: IndexReport, changes: int, commit_every: int) -> int:
    """Store a batch (re-embedded products put, field-only changes updated in place), count it in ``report``, and
    commit once ``commit_every`` changes are staged; returns the changes staged since the last commit."""
    writer.put_many(products)
    moved = writer.update_fields(in_place)
    updated = sum(p.record.id in stored for p in products)
    report.updated += updated + moved
    report.fields_only += moved
    report.indexed += len(products) - updated
    report.images += sum(len(p.images) for p in products)
    changes += len(products) + moved
    if commit_every and changes >= commit_every:
        writer.commit()
        report.commits += 1
        changes = 0
    return changes


def row_error_recorder(report: IndexReport, seen: set[str], progress: Callable[[int], None] | None) -> Callable[[RowError], None]:
    """What an indexing run does with a catalog row's problem: a fixable one is noted (the row is indexed with the
    change), a fatal one skips the row; either way its product id counts as seen (``--delete-missing`` keeps it)."""

    def on_row_error(error: RowError) -> None:
        if error.product_id:
            seen.add(error.product_id)
        if not error.fatal:
            report.problems.append(Problem(row=error.row, product_id=error.product_id, reason=error.reason,
                                           outcome="indexed with a change"))
            return
        report.skipped += 1
        report.problems.append(Problem(row=error.row, product_id=error.product_id, reason=error.reason))
        if progress:
            progress(1)

    return on_row_error


def held_problem(row: int, product_id: str, location: str, reason: str) -> Problem:
    """A stored product whose image cannot be read this run: it stays as stored."""
    return Problem(row=row, product_id=product_id, image=location, outcome="kept the stored version",
                   reason=f"{reason}; the stored version (with this image) is kept until it can be read")


def finish_run(writer: IndexWriter, report: IndexReport, *, stored: Iterable[str], seen: set[str], changes: int,
               delete_missing: bool) -> None:
    """The end of an indexing run: products missing from the catalog deleted (when asked), the last commit, and
    a merge of everything after a bulk change (a bulk load ends merged, as a fresh build would)."""
    store = writer.store
    if delete_missing:
        report.deleted = writer.delete(set(stored) - seen)
        changes += report.deleted
    if changes or report.commits == 0 and not store.commit_info.get("segments"):
        writer.commit()
        report.commits += 1
    if _bulk_change(report, store):
        writer.optimize()
        report.commits += 1


def _bulk_change(report: IndexReport, store: IndexStore) -> bool:
    """True when a run re-embedded or deleted a tenth of the index or more and left it in several segments
    (a merge then costs in proportion to what changed; small runs leave merging to the tiered policy)."""
    changed = report.indexed + report.updated - report.fields_only + report.deleted
    segments = [store.segments(m) for m in ("image", "text")]
    return changed > 0 and 10 * changed >= store.counts()["products"] and any(len(s) > 1 for s in segments)


@dataclass
class _Prepared:
    """A batch made ready off the main thread: what changed, read and decoded (images preprocessed
    into ``pixels`` when the encoder can take them, else left as decoded images)."""

    records: list[ProductRecord]
    unchanged: int
    todo: list[_Loaded]
    field_only: list[_Loaded]  # stored products whose embedded part is unchanged: updated in place, not embedded
    held: list[_Loaded]  # stored products with an image that cannot be read now: their stored version stays
    decoded: list[list[tuple[int, str]]]  # per todo item: (position, location) of each usable image, in order
    images: Any  # pixels tensor, a list of PIL images, or None


def _prepare_batch(batch: list[ProductRecord], *, encoder: Encoder, config: IndexConfig,
                   stored: dict[str, tuple[str | None, str | None]], stages: StageTimes,
                   vectors: VectorsFile | None = None) -> _Prepared:
    with stages.time("read"):
        loaded = _read_batch(batch, config=config, vectors=vectors)
    changed = [item for item in loaded if stored.get(item.record.id, (None, None))[0] != item.content_hash]
    field_only = [item for item in changed if not item.failures and item.record.id in stored
                  and stored[item.record.id][1] == item.embed_hash]
    in_place = {id(item) for item in field_only}
    changed = [item for item in changed if id(item) not in in_place]
    # an image that cannot be read now (missing file, unreachable URL) is not a change of the product: a stored
    # product is not re-stored without it; a new one is indexed without it and retried on the next run
    held = [item for item in changed if item.record.id in stored and item.failures]
    todo = [item for item in changed if not (item.record.id in stored and item.failures)]
    with stages.time("decode"):
        target = getattr(encoder, "image_size", None)
        decoded: list[list[tuple[int, str]]] = []
        images: list[Image.Image] = []
        for item in todo:
            usable = []
            for position, location, data in item.data:
                try:
                    images.append(decode_image(data, name=location, limits=config.images, min_size=target))
                    usable.append((position, location))
                except ImageError as exc:
                    item.failures.append((location, str(exc).removeprefix(f"{location}: ")))
            decoded.append(usable)
        preprocess = getattr(encoder, "preprocess_images", None)
        pixels: Any = preprocess(images) if images and preprocess is not None else (images or None)
    return _Prepared(records=batch, unchanged=len(loaded) - len(changed) - len(field_only), todo=todo, field_only=field_only,
                     held=held, decoded=decoded, images=pixels)


def embed_prepared(prepared: _Prepared, *, encoder: Encoder, report: IndexReport, stages: StageTimes,
                   vectors: VectorsFile | None = None) -> list[EmbeddedProduct]:
    """Embed the texts and images of a prepared batch (but the ``vectors`` given); failures go to ``report``."""
    batch, decoded = prepared.todo, prepared.decoded
    given = [vectors.given(item.record) if vectors is not None else NOTHING_GIVEN for item in batch]
    for item, images, supplied in zip(batch, decoded, given):
        outcome = "indexed without this image" if item.record.text or images or supplied is not NOTHING_GIVEN else "failed"
        for location, reason in item.failures:
            report.problems.append(Problem(row=item.record.row, product_id=item.record.id, image=location,
                                           reason=reason, outcome=outcome))
    keep = [i for i, item in enumerate(batch) if item.record.text or decoded[i] or given[i] is not NOTHING_GIVEN]
    for i in sorted(set(range(len(batch))) - set(keep)):
        report.failed += 1
        report.problems.append(Problem(row=batch[i].record.row, product_id=batch[i].record.id,
                                       reason="no text and no usable image (any stored version is kept)", outcome="failed"))
    texts = [batch[i].record.text for i in keep if batch[i].record.text and given[i].text is None]
    with stages.time("text"):
        text_vectors = iter(encoder.encode_texts(texts)) if texts else iter(())
    with stages.time("image"):
        image_vectors = iter(_encode_prepared_images(encoder, prepared.images))
    out = []
    kept = set(keep)
    for i, images in enumerate(decoded):
        if i not in kept:  # no text and no usable image: nothing of it was embedded
            continue
        encoded = [next(image_vectors) for _ in images]
        record = batch[i].record
        supplied = given[i]
        text_vector = supplied.text if supplied.text is not None else next(text_vectors) if record.text else None
        embedded = supplied.images if supplied.images is not None else tuple(
            EmbeddedImage(position=position, location=location, vector=vector)
            for (position, location), vector in zip(images, encoded))
        out.append(EmbeddedProduct(record=record, text_vector=text_vector, images=embedded, content_hash=batch[i].content_hash,
                                   embed_hash=batch[i].embed_hash))
    return out


def _encode_prepared_images(encoder: Encoder, images: Any) -> np.ndarray:
    if images is None:
        return np.empty((0, encoder.dim), dtype=np.float32)
    if isinstance(images, list):
        return encoder.encode_images(images)
    size = getattr(encoder, "batch_size", len(images)) or len(images)
    return np.concatenate([cast("_PixelEncoder", encoder).encode_pixels(images[i:i + size]) for i in range(0, len(images), size)])


def _read_batch(batch: list[ProductRecord], *, config: IndexConfig, vectors: VectorsFile | None = None) -> list[_Loaded]:
    """Read (not decode) the batch's images, URLs fetched concurrently, and hash each product."""
    urls = sorted({loc for record in batch if not (vectors is not None and vectors.covers_images(record.id))
                   for loc in record.images if loc.lower().startswith(("http://", "https://"))})
    fetched = dict(zip(urls, fetch_many(urls, policy=config.fetch))) if urls else {}
    return [_read(record, fetched=fetched, config=config, vectors=vectors) for record in batch]


def _read(record: ProductRecord, *, fetched: dict[str, bytes | ImageError], config: IndexConfig,
          vectors: VectorsFile | None = None) -> _Loaded:
    data: list[tuple[int, str, bytes]] = []
    failures: list[tuple[str, str]] = []
    digest = hashlib.sha256()
    for position, location in enumerate(() if vectors is not None and vectors.covers_images(record.id) else record.images):
        try:
            raw = fetched[location] if location in fetched else read_file(Path(location), limits=config.images)
            if isinstance(raw, ImageError):
                raise raw
            digest.update(hashlib.sha256(raw).digest())
            data.append((position, location, raw))
        except ImageError as exc:
            digest.update(f"unreadable:{location}".encode())
            failures.append((location, str(exc).removeprefix(f"{location}: ")))
    embedded = embed_hash(record, vectors.mix(record.id, digest.hexdigest()) if vectors is not None else digest.hexdigest())
    return _Loaded(record=record, data=data, failures=failures, content_hash=content_hash(record, embedded), embed_hash=embedded)


def embed_hash(record: ProductRecord, images_digest: str) -> str:
    """Hash of what is embedded: the text (title, description), the image locations and their bytes."""
    fields = {"title": record.title, "description": record.description, "images": list(record.images),
              "image_bytes": images_digest}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def content_hash(record: ProductRecord, embedded: str) -> str:
    """Hash of everything: the fields that are not embedded plus ``embedded`` (``embed_hash``), so a field
    update computes it without reading any image."""
    fields = {"price": record.price, "category": record.category, "brand": record.brand,
              "attributes": record.attributes, "embedded": embedded}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def _batches(records: Iterable[ProductRecord], size: int) -> Iterator[list[ProductRecord]]:
    batch: list[ProductRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch

"""``build_index``: read a catalog, load its images, embed, and store, in batches.

Incremental and resumable: each product's content hash (its fields and the bytes of its
images) is stored with it, so a re-run embeds only new and changed products, and a run
killed at any point continues from its last commit when started again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from .catalog import ProductRecord, RowError, iter_products
from .config import IndexConfig
from .encoder import Encoder
from .errors import ImageError
from .fetch import fetch_many
from .images import decode_image, read_file
from .store import EmbeddedImage, EmbeddedProduct, IndexStore


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
    deleted: int = 0
    skipped: int = 0
    failed: int = 0
    images: int = 0
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    commits: int = 0

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


def build_index(
    catalog: str | Path,
    folder: str | Path,
    *,
    encoder: Encoder,
    config: IndexConfig = IndexConfig(),
    model_spec: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    delete_missing: bool = False,
) -> IndexReport:
    """Index every valid product of ``catalog`` into ``folder`` (created if missing).

    New products are added, changed ones re-embedded and replaced, unchanged ones skipped.
    Bad rows and bad images are reported in the returned ``IndexReport`` and never stop
    the run; a bad row never removes the stored version of its product.
    """
    started = time.perf_counter()
    report = IndexReport(catalog=str(catalog), index=str(folder))
    seen: set[str] = set()

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

    records = iter_products(catalog, on_error=on_row_error, allow_outside_root=config.allow_outside_root)
    store = IndexStore.create(
        folder, identity=encoder.identity, index_type=config.index_type, max_memory=config.max_memory,
        model_spec=model_spec or {"name": encoder.identity.name, "pretrained": encoder.identity.pretrained},
    )
    try:
        with store.writer() as writer:
            stored = store.content_hashes()
            changes = 0
            for batch in _batches(records, config.batch_size):
                loaded = _read_batch(batch, config=config)
                seen.update(record.id for record in batch)
                todo = []
                for item in loaded:
                    if stored.get(item.record.id) == item.content_hash:
                        report.unchanged += 1
                    else:
                        todo.append(item)
                for product in embed_batch(todo, encoder=encoder, config=config, report=report):
                    writer.put(product)
                    if product.record.id in stored:
                        report.updated += 1
                    else:
                        report.indexed += 1
                    report.images += len(product.images)
                    changes += 1
                if config.commit_every and changes >= config.commit_every:
                    writer.commit()
                    report.commits += 1
                    changes = 0
                if progress:
                    progress(len(batch))
            if delete_missing:
                report.deleted = writer.delete(set(stored) - seen)
                changes += report.deleted
            if changes or report.commits == 0 and not store.commit_info.get("files"):
                writer.commit()
                report.commits += 1
    finally:
        store.close()
    report.problems.sort(key=lambda p: p.row)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def embed_batch(
    batch: list[_Loaded], *, encoder: Encoder, config: IndexConfig, report: IndexReport
) -> list[EmbeddedProduct]:
    """Decode images and embed texts and images of one batch; failures go to ``report``."""
    decoded: list[list[tuple[int, str, Image.Image]]] = []
    for item in batch:
        images = []
        for position, location, data in item.data:
            try:
                images.append((position, location, decode_image(data, name=location, limits=config.images)))
            except ImageError as exc:
                item.failures.append((location, str(exc).removeprefix(f"{location}: ")))
        decoded.append(images)
        outcome = "indexed without this image" if item.record.text or images else "failed"
        for location, reason in item.failures:
            report.problems.append(Problem(row=item.record.row, product_id=item.record.id, image=location,
                                           reason=reason, outcome=outcome))
    keep = [i for i, item in enumerate(batch) if item.record.text or decoded[i]]
    for i in sorted(set(range(len(batch))) - set(keep)):
        report.failed += 1
        report.problems.append(Problem(row=batch[i].record.row, product_id=batch[i].record.id,
                                       reason="no text and no usable image (any stored version is kept)", outcome="failed"))
    texts = [batch[i].record.text for i in keep if batch[i].record.text]
    text_vectors = iter(encoder.encode_texts(texts)) if texts else iter(())
    flat_images = [img for i in keep for (_, _, img) in decoded[i]]
    image_vectors = iter(encoder.encode_images(flat_images)) if flat_images else iter(())
    out = []
    for i in keep:
        record = batch[i].record
        text_vector = next(text_vectors) if record.text else None
        images = tuple(
            EmbeddedImage(position=position, location=location, vector=next(image_vectors))
            for position, location, _ in decoded[i]
        )
        out.append(EmbeddedProduct(record=record, text_vector=text_vector, images=images, content_hash=batch[i].content_hash))
    return out


def _read_batch(batch: list[ProductRecord], *, config: IndexConfig) -> list[_Loaded]:
    """Read (not decode) the batch's images, URLs fetched concurrently, and hash each product."""
    urls = sorted({loc for record in batch for loc in record.images if loc.lower().startswith(("http://", "https://"))})
    fetched = dict(zip(urls, fetch_many(urls, policy=config.fetch))) if urls else {}
    return [_read(record, fetched=fetched, config=config) for record in batch]


def _read(record: ProductRecord, *, fetched: dict[str, bytes | ImageError], config: IndexConfig) -> _Loaded:
    data: list[tuple[int, str, bytes]] = []
    failures: list[tuple[str, str]] = []
    digest = hashlib.sha256()
    for position, location in enumerate(record.images):
        try:
            raw = fetched[location] if location in fetched else read_file(Path(location), limits=config.images)
            if isinstance(raw, ImageError):
                raise raw
            digest.update(hashlib.sha256(raw).digest())
            data.append((position, location, raw))
        except ImageError as exc:
            digest.update(f"unreadable:{location}".encode())
            failures.append((location, str(exc).removeprefix(f"{location}: ")))
    return _Loaded(record=record, data=data, failures=failures, content_hash=_content_hash(record, digest.hexdigest()))


def _content_hash(record: ProductRecord, images_digest: str) -> str:
    fields = {
        "title": record.title, "description": record.description, "price": record.price,
        "category": record.category, "brand": record.brand, "attributes": record.attributes,
        "images": list(record.images), "image_bytes": images_digest,
    }
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

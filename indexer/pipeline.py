"""``build_index``: read a catalog, load its images, embed, and store, in batches."""

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
from .images import decode_image, fetch_url, read_file
from .store import EmbeddedImage, EmbeddedProduct, IndexStore


@dataclass(frozen=True, kw_only=True)
class Problem:
    """Something that went wrong with one row or one image, and what became of the row."""

    row: int
    product_id: str | None
    reason: str
    image: str | None = None
    outcome: str = "skipped"  # skipped | failed | indexed without this image

    def __str__(self) -> str:
        who = f" {self.product_id!r}" if self.product_id else ""
        image = f" image {self.image}" if self.image else ""
        return f"row {self.row}{who}{image}: {self.reason} ({self.outcome})"


@dataclass(kw_only=True)
class IndexReport:
    """What a run did: counts, and every problem with its row number."""

    catalog: str
    index: str
    indexed: int = 0
    images: int = 0
    skipped: int = 0
    failed: int = 0
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    commits: int = 0

    @property
    def rows(self) -> int:
        return self.indexed + self.skipped + self.failed

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = self.rows
        return data


def build_index(
    catalog: str | Path,
    folder: str | Path,
    *,
    encoder: Encoder,
    config: IndexConfig = IndexConfig(),
    model_spec: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> IndexReport:
    """Index every valid product of ``catalog`` into ``folder`` (created if missing).

    Products already in the folder with the same id are replaced.  Bad rows and bad
    images are reported in the returned ``IndexReport``; they never stop the run.
    """
    started = time.perf_counter()
    report = IndexReport(catalog=str(catalog), index=str(folder))

    def on_row_error(error: RowError) -> None:
        report.skipped += 1
        report.problems.append(Problem(row=error.row, product_id=error.product_id, reason=error.reason))
        if progress:
            progress(1)

    records = iter_products(catalog, on_error=on_row_error)
    store = IndexStore.create(
        folder, identity=encoder.identity, index_type=config.index_type,
        model_spec=model_spec or {"name": encoder.identity.name, "pretrained": encoder.identity.pretrained},
    )
    try:
        with store.writer() as writer:
            since_commit = 0
            for batch in _batches(records, config.batch_size):
                embedded = embed_batch(batch, encoder=encoder, config=config, report=report)
                for product in embedded:
                    writer.put(product)
                report.indexed += len(embedded)
                report.images += sum(len(p.images) for p in embedded)
                since_commit += len(embedded)
                if config.commit_every and since_commit >= config.commit_every:
                    writer.commit()
                    report.commits += 1
                    since_commit = 0
                if progress:
                    progress(len(batch))
            writer.commit()
            report.commits += 1
    finally:
        store.close()
    report.problems.sort(key=lambda p: p.row)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def embed_batch(
    batch: list[ProductRecord], *, encoder: Encoder, config: IndexConfig, report: IndexReport
) -> list[EmbeddedProduct]:
    """Load images and embed texts and images of one batch; failures go to ``report``."""
    loaded: list[list[tuple[int, str, Image.Image]]] = []
    hashes: list[str] = []
    for record in batch:
        images, digest = _load_images(record, config=config, report=report)
        loaded.append(images)
        hashes.append(_content_hash(record, digest))
    keep = [i for i, record in enumerate(batch) if record.text or loaded[i]]
    for i in set(range(len(batch))) - set(keep):
        report.failed += 1
        report.problems.append(
            Problem(row=batch[i].row, product_id=batch[i].id, reason="no text and no usable image", outcome="failed")
        )
    texts = [batch[i].text for i in keep if batch[i].text]
    text_vectors = iter(encoder.encode_texts(texts)) if texts else iter(())
    flat_images = [img for i in keep for (_, _, img) in loaded[i]]
    image_vectors = iter(encoder.encode_images(flat_images)) if flat_images else iter(())
    out = []
    for i in keep:
        record = batch[i]
        text_vector = next(text_vectors) if record.text else None
        images = tuple(
            EmbeddedImage(position=position, location=location, vector=next(image_vectors))
            for position, location, _ in loaded[i]
        )
        out.append(EmbeddedProduct(record=record, text_vector=text_vector, images=images, content_hash=hashes[i]))
    return out


def _load_images(
    record: ProductRecord, *, config: IndexConfig, report: IndexReport
) -> tuple[list[tuple[int, str, Image.Image]], str]:
    images = []
    failures: list[tuple[str, str]] = []
    digest = hashlib.sha256()
    for position, location in enumerate(record.images):
        try:
            if location.lower().startswith(("http://", "https://")):
                data = fetch_url(location, limits=config.images)
            else:
                data = read_file(Path(location), limits=config.images)
            digest.update(hashlib.sha256(data).digest())
            images.append((position, location, decode_image(data, name=location, limits=config.images)))
        except ImageError as exc:
            failures.append((location, str(exc).removeprefix(f"{location}: ")))
    outcome = "indexed without this image" if record.text or images else "failed"
    for location, reason in failures:
        report.problems.append(Problem(row=record.row, product_id=record.id, image=location, reason=reason, outcome=outcome))
    return images, digest.hexdigest()


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

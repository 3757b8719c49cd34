"""``index_vectors``: store products with vectors computed elsewhere — no model, no catalog file, no image read.

    from indexer import ProductRecord, index_vectors
    records = [ProductRecord(id=f"P{i}", row=i + 1, title=titles[i], images=(paths[i],)) for i in range(n)]
    report = index_vectors("bench-index", records, text=text, image=image, identity=encoder.identity)

``text`` and ``image`` are (n, d) float arrays, row i for ``records[i]`` (either may be None: that side is not
stored); each row must be finite and not all zeros, and d the ``identity``'s dimension (``VectorsFileError``
otherwise).  Vectors are stored at unit length, an image row as the record's first image (``vector:<id>`` when
the record has none).  Writes go through ``IndexStore.create`` + ``IndexWriter.put_many`` + ``commit``, in
batches of ``config.batch_size`` (committed every ``config.commit_every``), so it builds a large index fast
(benchmarks use it).  Hashes are the ones ``build_index`` makes for the same vectors from a vectors file, so a
re-run with the same records and vectors leaves every product unchanged; changed fields alone are updated in
place; ``build_index`` with a vectors file of the same text and image vectors sees them as unchanged too.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from indexer.catalog import ProductRecord
from indexer.config import IndexConfig
from indexer.encoders.base import ModelIdentity
from indexer.pipeline import IndexReport, content_hash, embed_hash, store_batch
from indexer.store.reader import IndexStore
from indexer.store.records import EmbeddedProduct
from indexer.store.writer import IndexWriter
from indexer.vectors_file import VectorsFile

#: The digest of no image bytes: a product whose image vector is given has none of its images read.
_NO_IMAGES = hashlib.sha256().hexdigest()


def index_vectors(
    folder: str | Path,
    records: Iterable[ProductRecord],
    *,
    text: Any = None,
    image: Any = None,
    identity: ModelIdentity,
    model_spec: dict[str, Any] | None = None,
    config: IndexConfig = IndexConfig(),
    progress: Callable[[int], None] | None = None,
) -> IndexReport:
    """Store ``records`` with the given vectors (row i for ``records[i]``) in ``folder`` (created if missing)."""
    started = time.perf_counter()
    records = list(records)
    vectors = VectorsFile([r.id for r in records], text=text, image=image, source="index_vectors")
    vectors.check_dim(identity.dim, model=f"the model {identity.name}")
    report = IndexReport(catalog=f"<{len(records)} records>", index=str(folder))
    store = IndexStore.create(folder, identity=identity, index_type=config.index_type, max_memory=config.max_memory,
                              model_spec=model_spec or {"name": identity.name, "pretrained": identity.pretrained},
                              database=config.database)
    try:
        with IndexWriter(store, config=config.vectors) as writer:
            stored = store.content_hashes()
            changes = 0
            for start in range(0, len(records), config.batch_size):
                products: list[EmbeddedProduct] = []
                in_place: list[tuple[ProductRecord, str | None]] = []
                for row, record in enumerate(records[start:start + config.batch_size], start=start):
                    embedded = embed_hash(record, vectors.mix_at(row, _NO_IMAGES))
                    hashed = content_hash(record, embedded)
                    old_content, old_embedded = stored.get(record.id, (None, None))
                    if old_content == hashed:
                        report.unchanged += 1
                    elif old_embedded == embedded:
                        in_place.append((record, hashed))
                    else:
                        given = vectors.given_at(row, record)
                        products.append(EmbeddedProduct(record=record, text_vector=given.text, images=given.images or (),
                                                        content_hash=hashed, embed_hash=embedded))
                changes = store_batch(writer, products, in_place, stored=stored, report=report, changes=changes,
                                      commit_every=config.commit_every)
                if progress:
                    progress(min(config.batch_size, len(records) - start))
            if changes or report.commits == 0 and not store.commit_info.get("segments"):
                writer.commit()
                report.commits += 1
    finally:
        store.close()
    report.seconds = round(time.perf_counter() - started, 3)
    return report

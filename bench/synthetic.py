"""Synthetic index folders: random unit vectors plus metadata rows, built through the real store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexer.catalog import ProductRecord
from indexer.encoders.base import ModelIdentity
from indexer.store.reader import IndexStore
from indexer.store.writer import IndexWriter
from indexer.store.records import EmbeddedImage, EmbeddedProduct

CATEGORIES = ("shoes", "bags", "hats", "shirts", "dresses", "lamps", "mugs", "chairs")
BRANDS = tuple(f"Brand{i}" for i in range(20))


def unit_rows(rng: np.random.Generator, n: int, dim: int, *, clustered: bool = False) -> np.ndarray:
    if clustered:
        centres = rng.standard_normal((max(1, n // 500), dim)).astype(np.float32)
        x = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.standard_normal((n, dim)).astype(np.float32)
    else:
        x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def build_synthetic_index(folder: Path, *, products: int, dim: int, identity: ModelIdentity,
                          images_per_product: int = 2, index_type: str = "Flat", seed: int = 0,
                          clustered: bool = True, batch: int = 5000) -> Path:
    rng = np.random.default_rng(seed)
    store = IndexStore.create(folder, identity=identity, index_type=index_type, model_spec={"name": identity.name})
    with store, IndexWriter(store) as writer:
        for start in range(0, products, batch):
            n = min(batch, products - start)
            texts = unit_rows(rng, n, dim, clustered=clustered)
            images = unit_rows(rng, n * images_per_product, dim, clustered=clustered)
            for i in range(n):
                pid = start + i
                record = ProductRecord(
                    id=f"SKU-{pid:07d}", row=pid + 1, title=f"product {pid}", description="synthetic",
                    price=float(rng.integers(1, 500)), category=CATEGORIES[pid % len(CATEGORIES)],
                    brand=BRANDS[pid % len(BRANDS)], attributes={"color": ("red", "blue", "green")[pid % 3]},
                    images=tuple(f"/img/{pid}_{j}.jpg" for j in range(images_per_product)),
                )
                writer.put(EmbeddedProduct(
                    record=record, text_vector=texts[i],
                    images=tuple(EmbeddedImage(position=j, location=record.images[j], vector=images[i * images_per_product + j])
                                 for j in range(images_per_product)),
                ))
            writer.commit()
    return folder


# -- bulk builder for the benchmarks' large scales --------------------------------------------------


def synthetic_vectors(products: int, dim: int, *, images_per_product: int = 2, seed: int = 0,
                      clustered: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(text vectors (n, d), image vectors (n * images_per_product, d)), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return (unit_rows(rng, products, dim, clustered=clustered),
            unit_rows(rng, products * images_per_product, dim, clustered=clustered))


def build_synthetic_bulk(folder: Path, *, text: np.ndarray, images: np.ndarray, identity: ModelIdentity,
                         index_type: str = "Flat", seed: int = 0) -> Path:
    """The same folder ``build_synthetic_index`` makes, written in bulk (100k products in seconds, not minutes).

    Rows go in with one Core ``executemany`` per table (the schema's triggers still fire), the FAISS
    files are built with ``indexer.store.vectors`` and written atomically, and the commit is recorded the way
    ``IndexWriter.commit`` records it, so ``IndexStore.open`` / ``check`` / ``SearchEngine`` read it as usual.
    Product ``i`` has pk ``i + 1``; its images have pks ``i * per + j + 1``.
    """
    import time

    from sqlalchemy import insert
    from sqlalchemy.orm import Session

    from indexer.store import vectors as vector_files
    from indexer.store.schema import ImageRow, IndexMeta, Product

    products, dim = text.shape
    per = len(images) // max(products, 1)
    rng = np.random.default_rng(seed)
    prices = rng.integers(1, 500, products).astype(float)
    store = IndexStore.create(folder, identity=identity, index_type=index_type, model_spec={"name": identity.name})
    with store, store.engine.begin() as conn:
        conn.execute(insert(Product.__table__), [
            {"pk": i + 1, "id": f"SKU-{i:07d}", "row": i + 1, "title": f"product {i}", "description": "synthetic",
             "price": prices[i], "category": CATEGORIES[i % len(CATEGORIES)], "brand": BRANDS[i % len(BRANDS)],
             "attributes": {"color": ("red", "blue", "green")[i % 3]}, "text_vector": text[i].tobytes(),
             "content_hash": None}
            for i in range(products)])
        conn.execute(insert(ImageRow.__table__), [
            {"pk": r + 1, "product_pk": r // per + 1, "position": r % per, "location": f"/img/{r // per}_{r % per}.jpg",
             "vector": images[r].tobytes()}
            for r in range(len(images))])
        files = {}
        for modality, matrix in (("image", images), ("text", text)):
            index = vector_files.make_index(index_type, dim)
            vector_files.train_and_add(index, matrix, np.arange(1, len(matrix) + 1, dtype=np.int64))
            path = store.file_path(modality, 1)
            size, sha256 = vector_files.write_atomic(index, path)
            files[modality] = {"name": path.name, "size": size, "sha256": sha256, "ntotal": int(index.ntotal)}
        with Session(bind=conn) as session:
            session.merge(IndexMeta(key="commit", value={"generation": 1, "files": files, "committed_at": time.time()}))
            session.flush()
    return folder


def cached_synthetic(cache: Path, *, products: int, dim: int, index_type: str, identity: ModelIdentity,
                     images_per_product: int = 2, clustered: bool = True, seed: int = 0) -> Path:
    """A bulk-built synthetic folder under ``cache``, reused across runs (the key names every input).

    Index types after the first share its database: the folder is copied and only the FAISS files
    and the ``index_type`` / ``commit`` rows are replaced (an HNSW build is the slow part, not SQLite).
    """
    import json
    import shutil
    import sqlite3
    import time

    from indexer.store import vectors as vector_files
    from indexer.store.schema import DATABASE_FILE

    base_key = f"{'clustered' if clustered else 'uniform'}-{products}x{dim}-{images_per_product}img-s{seed}"
    folder = cache / f"{base_key}-{_slug(index_type)}"
    if (folder / "done").is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    text, images = synthetic_vectors(products, dim, images_per_product=images_per_product, seed=seed, clustered=clustered)
    siblings = sorted(p for p in cache.glob(f"{base_key}-*") if (p / "done").is_file()) if cache.is_dir() else []
    if not siblings:
        build_synthetic_bulk(folder, text=text, images=images, identity=identity, index_type=index_type, seed=seed)
    else:
        folder.mkdir(parents=True)
        with sqlite3.connect(siblings[0] / DATABASE_FILE) as source, sqlite3.connect(folder / DATABASE_FILE) as target:
            source.backup(target)
        files = {}
        for modality, matrix in (("image", images), ("text", text)):
            index = vector_files.make_index(index_type, dim)
            vector_files.train_and_add(index, matrix, np.arange(1, len(matrix) + 1, dtype=np.int64))
            path = folder / f"{modality}.1.faiss"
            size, sha256 = vector_files.write_atomic(index, path)
            files[modality] = {"name": path.name, "size": size, "sha256": sha256, "ntotal": int(index.ntotal)}
        with sqlite3.connect(folder / DATABASE_FILE) as conn:
            conn.execute("UPDATE index_meta SET value = ? WHERE key = 'index_type'", (json.dumps(index_type),))
            conn.execute("UPDATE index_meta SET value = ? WHERE key = 'commit'",
                         (json.dumps({"generation": 1, "files": files, "committed_at": time.time()}),))
    (folder / "done").write_text("ok\n")
    return folder


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)

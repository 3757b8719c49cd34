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
                         index_type: str = "Flat", seed: int = 0, commit: bool = True) -> Path:
    """The same folder ``build_synthetic_index`` makes, written through the store's bulk path
    (``IndexWriter.put_many``: a few executemany statements per 5,000 products) and committed once, so the
    vectors form one segment per modality.  Product ``i`` has pk ``i + 1``; its images have pks ``i * per + j + 1``.
    ``commit=False`` leaves the folder without a commit (to time the put alone)."""

    products, dim = text.shape
    per = len(images) // max(products, 1)
    rng = np.random.default_rng(seed)
    prices = rng.integers(1, 500, products).astype(float)
    store = IndexStore.create(folder, identity=identity, index_type=index_type, model_spec={"name": identity.name})
    with store, IndexWriter(store) as writer:
        for start in range(0, products, 5000):
            batch = []
            for i in range(start, min(products, start + 5000)):
                record = ProductRecord(
                    id=f"SKU-{i:07d}", row=i + 1, title=f"product {i}", description="synthetic", price=float(prices[i]),
                    category=CATEGORIES[i % len(CATEGORIES)], brand=BRANDS[i % len(BRANDS)],
                    attributes={"color": ("red", "blue", "green")[i % 3]},
                    images=tuple(f"/img/{i}_{j}.jpg" for j in range(per)))
                batch.append(EmbeddedProduct(record=record, text_vector=text[i], images=tuple(
                    EmbeddedImage(position=j, location=record.images[j], vector=images[i * per + j]) for j in range(per))))
            writer.put_many(batch)
        if commit:
            writer.commit()
    return folder


def cached_synthetic(cache: Path, *, products: int, dim: int, index_type: str, identity: ModelIdentity,
                     images_per_product: int = 2, clustered: bool = True, seed: int = 0) -> Path:
    """A bulk-built synthetic folder under ``cache``, reused across runs (the key names every input)."""
    import shutil

    base_key = f"{'clustered' if clustered else 'uniform'}-{products}x{dim}-{images_per_product}img-s{seed}"
    folder = cache / f"{base_key}-{_slug(index_type)}-v2"
    if (folder / "done").is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    text, images = synthetic_vectors(products, dim, images_per_product=images_per_product, seed=seed, clustered=clustered)
    build_synthetic_bulk(folder, text=text, images=images, identity=identity, index_type=index_type, seed=seed)
    (folder / "done").write_text("ok\n")
    return folder


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)

"""Synthetic index folders: random unit vectors plus metadata rows, built through the real store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexer.catalog import ProductRecord
from indexer.encoder import ModelIdentity
from indexer.store import EmbeddedImage, EmbeddedProduct, IndexStore

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
    with store, store.writer() as writer:
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

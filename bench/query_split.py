"""Per-query time split (encode / ANN / SQLite / fuse / total) on a synthetic store.

    python -m bench query-split --products 10000
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from indexer.config import ModelConfig, SearchConfig
from indexer.encoders.base import ModelIdentity
from indexer.encoders.loading import load_encoder
from indexer.store.reader import IndexStore
from search import SearchEngine

from bench.synthetic import build_synthetic_index


class _SameIdentity:
    """A real encoder presented under the synthetic index's identity (dims match)."""

    def __init__(self, encoder, identity: ModelIdentity):
        self.inner, self.identity = encoder, identity

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode_texts(self, texts):
        return self.inner.encode_texts(texts)

    def encode_images(self, images):
        return self.inner.encode_images(images)


def run(*, products: int, queries: int, model: str, threads: int | None, where: bool) -> dict:
    encoder = load_encoder(ModelConfig(name=model, pretrained="random", threads=threads))
    identity = ModelIdentity(name="synthetic", pretrained=None, fingerprint="synthetic", dim=encoder.dim)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        folder = build_synthetic_index(Path(tmp) / "idx", products=products, dim=encoder.dim, identity=identity)
        build_s = time.perf_counter() - t
        engine = SearchEngine(IndexStore.open(folder),
                              _SameIdentity(encoder, identity), config=SearchConfig())
        words = ["red", "shoe", "leather", "bag", "striped", "summer", "dress", "blue", "cotton", "lamp"]
        rng = np.random.default_rng(1)
        split: dict[str, list[float]] = {}
        for i in range(queries + 3):
            text = " ".join(rng.choice(words, 3)) + f" {i}"  # distinct texts: no cache hits
            result = engine.search(text, k=10, where={"category": "shoes"} if where else None)
            if i >= 3:  # warm-up
                for stage, ms in result.timings.items():
                    split.setdefault(stage, []).append(ms)
        engine.close()
    medians = {stage: round(statistics.median(v), 3) for stage, v in split.items()}
    p95 = {stage: round(float(np.percentile(v, 95)), 3) for stage, v in split.items()}
    return {"products": products, "model": model, "queries": queries, "filtered": where, "build_seconds": round(build_s, 1),
            "p50_ms": medians, "p95_ms": p95, "p50_minus_encode_ms": round(statistics.median(
                [t - e for t, e in zip(split["total"], split["encode"])]), 3)}


def main(args) -> None:
    out = run(products=args.products, queries=args.queries, model=args.model, threads=args.threads, where=args.where)
    print(json.dumps(out, indent=2))

"""Lexical queries on PostgreSQL vs SQLite: the same synthetic catalog in both, the engine's word path timed.

The catalog: ``--products`` products whose titles (6 words), descriptions (25 words), brands (300) and
categories (40) are drawn from a 5,000-word vocabulary with Zipf-like frequencies (a few words in most
products, most words in few), tiny vectors (the vectors are not what is measured).  A query is 1-3 words
drawn by the same frequencies; as the engine does (``search.gathering``), the word counts are read first and
words in more than ``lexical_max_docs`` products are left out, then the best 100 matches are read.  Both
stores are opened like a server opens them; p50/p95 per query over the same queries, interleaved.
PostgreSQL runs in a throwaway cluster on this machine (``vitrina.testing.postgres_cluster``, fsync off).

    python -m bench postgres-lexical --products 100000 --queries 300
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import common
from indexer.catalog import ProductRecord
from indexer.config import SearchConfig
from indexer.encoders.base import ModelIdentity
from indexer.store.reader import IndexStore
from indexer.store.records import EmbeddedProduct
from indexer.store.writer import IndexWriter

DIM = 8
IDENTITY = ModelIdentity(name="synthetic", pretrained=None, fingerprint="synthetic-lexical", dim=DIM)
VOCABULARY = 5000


def _words(rng: np.random.Generator, weights: np.ndarray, n: int) -> list[str]:
    return [f"w{int(i)}" for i in rng.choice(VOCABULARY, n, p=weights)]


def _zipf() -> np.ndarray:
    weights = 1.0 / np.arange(1, VOCABULARY + 1) ** 1.07
    return weights / weights.sum()


def _products(n: int, seed: int = 0) -> list[EmbeddedProduct]:
    rng = np.random.default_rng(seed)
    weights = _zipf()
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    out = []
    for i in range(n):
        record = ProductRecord(id=f"SKU-{i:07d}", row=i + 1, title=" ".join(_words(rng, weights, 6)),
                               description=" ".join(_words(rng, weights, 25)), brand=f"brand{int(rng.integers(300))}",
                               category=f"category{int(rng.integers(40))}", price=float(rng.uniform(1, 500)),
                               attributes={"color": f"colour{int(rng.integers(12))}"})
        out.append(EmbeddedProduct(record=record, text_vector=vectors[i]))
    return out


def _build(folder: Path, products: list[EmbeddedProduct], database: str | None) -> float:
    started = time.perf_counter()
    store = IndexStore.create(folder, identity=IDENTITY, index_type="Flat", model_spec={}, database=database)
    with store, IndexWriter(store) as writer:
        for start in range(0, len(products), 5000):
            writer.put_many(products[start:start + 5000])
        writer.commit()
    return time.perf_counter() - started


def _query_words(n: int, seed: int = 11) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    weights = _zipf()
    return [_words(rng, weights, int(rng.integers(1, 4))) for _ in range(n)]


def _one(store: IndexStore, words: list[str], max_docs: int | None) -> tuple[float, int]:
    started = time.perf_counter()
    with store.snapshot():
        counts = store.word_counts(words)
        kept = [w for w in words if w in counts and (max_docs is None or counts[w] <= max_docs)]
        pks, _ = store.lexical(kept, limit=100)
    return (time.perf_counter() - started) * 1000, len(pks)


def main(args: Any) -> dict[str, Any]:
    from vitrina.testing.postgres_cluster import PostgresCluster

    import tempfile

    work = Path(tempfile.mkdtemp(prefix="vitrina-bench-lexical-"))
    products = _products(args.products)
    queries = _query_words(args.queries)
    max_docs = SearchConfig().lexical_max_docs
    result: dict[str, Any] = {"products": args.products, "queries": args.queries, "lexical_max_docs": max_docs}
    with PostgresCluster.start() as cluster:
        url = cluster.create_database("lexical")
        result["build_s"] = {"sqlite": round(_build(work / "sqlite", products, None), 1),
                             "postgresql": round(_build(work / "postgresql", products, url), 1)}
        print(f"built {args.products} products: {result['build_s']}", flush=True)
        with IndexStore.open(work / "sqlite") as lite, IndexStore.open(work / "postgresql") as pg:
            stores = {"sqlite": lite, "postgresql": pg}
            for store in stores.values():  # warm the caches as a serving process would be
                for words in queries[:20]:
                    _one(store, words, max_docs)
            times: dict[str, list[float]] = {name: [] for name in stores}
            hits: dict[str, list[int]] = {name: [] for name in stores}
            for words in queries:  # interleaved: both see the same machine load
                for name, store in stores.items():
                    ms, found = _one(store, words, max_docs)
                    times[name].append(ms)
                    hits[name].append(found)
        for name in stores:
            result[name] = {"p50_ms": round(float(np.median(times[name])), 3),
                            "p95_ms": round(float(np.percentile(times[name], 95)), 3),
                            "mean_hits": round(float(np.mean(hits[name])), 1)}
        result["ratio_p50"] = round(result["postgresql"]["p50_ms"] / result["sqlite"]["p50_ms"], 2)
        result["same_hit_counts"] = float(np.mean(np.array(hits["sqlite"]) == np.array(hits["postgresql"])))
    result["machine"] = common.machine()
    print(json.dumps(result, indent=2))
    common.write_results("postgres_lexical", result)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return result


def configure(parser: Any) -> None:
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.set_defaults(run=main)

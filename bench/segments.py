"""segments: a live catalog on the segmented index (bench/README.md): synthetic clustered 512-d vectors, 1 text +
1 image per product, the base folder cached in ``bench/results/cache``, the stand-in encoder ``bench.latency.VectorEncoder``
(its time subtracted), one FAISS thread, compared things alternated; the under-load writer is a subprocess."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import common
from bench.latency import VectorEncoder
from bench.synthetic import BRANDS, CATEGORIES, cached_synthetic, synthetic_vectors
from indexer.catalog import ProductRecord
from indexer.config import SearchConfig, VectorIndexConfig
from indexer.encoders.base import ModelIdentity
from indexer.store.index_types import sample_queries
from indexer.store.reader import IndexStore
from indexer.store.records import EmbeddedImage, EmbeddedProduct
from indexer.store.writer import IndexWriter
from search import SearchEngine
from search.filters import compile_where
from bench.segments_table import table_rows

from indexer.feed import apply_feed

DIM = 512
IDENTITY = ModelIdentity(name="synthetic", pretrained=None, fingerprint="synthetic", dim=DIM)
COLOURS = ("red", "blue", "green")
_T0 = time.perf_counter()


def _log(message: str) -> None:
    print(f"[segments {time.perf_counter() - _T0:5.0f}s load {os.getloadavg()[0]:.1f}] {message}", flush=True)


def _product(i: int, price: float, text: np.ndarray, image: np.ndarray) -> EmbeddedProduct:
    """Product ``i`` as ``bench.synthetic.build_synthetic_bulk`` stores it (1 image), with the given vectors."""
    record = ProductRecord(id=f"SKU-{i:07d}", row=i + 1, title=f"product {i}", description="synthetic", price=float(price),
                           category=CATEGORIES[i % len(CATEGORIES)], brand=BRANDS[i % len(BRANDS)],
                           attributes={"color": COLOURS[i % 3]}, images=(f"/img/{i}_0.jpg",))
    return EmbeddedProduct(record=record, text_vector=text,
                           images=(EmbeddedImage(position=0, location=record.images[0], vector=image),))


def _prices(n: int, seed: int = 0) -> np.ndarray:  # as build_synthetic_bulk draws them
    return np.random.default_rng(seed).integers(1, 500, n).astype(float)


def _changed(rng: np.random.Generator, i: int, price: float) -> EmbeddedProduct:
    """Product ``i`` with new random vectors (a re-photographed, re-worded product)."""
    x = rng.standard_normal((2, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return _product(i, price, x[0], x[1])


def _build(folder: Path, products: list[EmbeddedProduct], index_type: str, batch: int = 5000) -> dict[str, float]:
    """A folder of ``products`` put through ``IndexWriter.put_many`` in batches, committed once (timed apart)."""
    shutil.rmtree(folder, ignore_errors=True)
    store = IndexStore.create(folder, identity=IDENTITY, index_type=index_type, model_spec={"name": "synthetic"})
    with store, IndexWriter(store, config=VectorIndexConfig(measure_from=0)) as writer:
        started = time.perf_counter()
        for start in range(0, len(products), batch):
            writer.put_many(products[start:start + batch])
        middle = time.perf_counter()
        writer.commit()
        return {"put_s": round(middle - started, 3), "commit_s": round(time.perf_counter() - middle, 3)}


def _queries(products: int, n: int, *, data_seed: int = 0, seed: int = 7) -> tuple[VectorEncoder, list[str]]:
    """The stand-in encoder and its query texts: ``n`` queries near the image vectors of a synthetic set."""
    _, images = synthetic_vectors(products, DIM, images_per_product=1, seed=data_seed)
    vectors = sample_queries(images, n, seed=seed)
    texts = [f"q{i}" for i in range(len(vectors))]
    return VectorEncoder(vectors, texts, IDENTITY), texts


def _engine(folder: Path, encoder: VectorEncoder) -> SearchEngine:
    return SearchEngine(IndexStore.open(folder), encoder, config=SearchConfig())  # type: ignore[arg-type]


def _timed(engine: SearchEngine, text: str, **kw: Any) -> tuple[float, Any]:
    """(wall ms minus the encode stage, result) of one search."""
    started = time.perf_counter()
    result = engine.search(text, k=10, rerank=False, **kw)
    return (time.perf_counter() - started) * 1000 - result.timings.get("encode", 0.0), result


def _commit_one(writer: IndexWriter, product: EmbeddedProduct) -> float:
    """ms of put_many([product]) + commit: one changed product made live."""
    started = time.perf_counter()
    writer.put_many([product])
    writer.commit()
    return (time.perf_counter() - started) * 1000


def _faiss_files(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.faiss")}


def _summary(values: list[float]) -> dict[str, Any]:
    return {"queries": len(values), "p50_ms": common.p50(values), "p99_ms": round(float(np.percentile(values, 99)), 3),
            "max_ms": round(max(values), 1)}


def bulk_put(folder: Path, n: int, index_type: str) -> dict[str, Any]:
    """Step 1: ``n`` products through put_many (batches of 5000), then one commit."""
    (text, images), prices = synthetic_vectors(n, DIM, images_per_product=1, seed=1), _prices(n, 1)
    return {"products": n, **_build(folder, [_product(i, prices[i], text[i], images[i]) for i in range(n)], index_type)}


def filtered(folder: Path, n: int, queries: int) -> dict[str, Any]:
    """Step 6: engine.search(where={"color": "red"}) minus encode: the filter as shops repeat it (its products kept
    per commit), the same with that cache cleared before each query (SQL every time), and the SQL alone."""
    encoder, texts = _queries(n, queries + 5, data_seed=1)
    engine = _engine(folder, encoder)
    where = {"color": "red"}
    times: dict[str, list[float]] = {"filtered": [], "filtered_cold": [], "unfiltered": [], "sql": []}
    allowed, fields = 0, engine.store.attribute_fields()
    for i, text in enumerate(texts):
        a, _ = _timed(engine, text, where=where)
        engine._view.derived.pop("allowed", None)
        cold, _ = _timed(engine, text, where=where)
        b, _ = _timed(engine, text)
        started = time.perf_counter()
        allowed = len(engine.store.allowed_products(compile_where(where, attribute_fields=fields)))
        sql = (time.perf_counter() - started) * 1000
        if i >= 5:  # warm-up
            for name, ms in (("filtered", a), ("filtered_cold", cold), ("unfiltered", b), ("sql", sql)):
                times[name].append(ms)
    engine.close()
    return {"products": n, "allowed_products": allowed, "filtered_p95_ms": common.p95(times["filtered"]),
            **{f"{name}_p50_ms": common.p50(v) for name, v in times.items()}}


def commit_costs(big: Path, small: Path, commits: int, seed: int = 3) -> dict[str, Any]:
    """Step 2: put_many([one changed product]) + commit, alternating the small and the big index."""
    rng = np.random.default_rng(seed)
    stores = {"small": IndexStore.open(small, writable=True), "big": IndexStore.open(big, writable=True)}
    writers = {name: IndexWriter(store) for name, store in stores.items()}
    sizes = {name: store.counts()["products"] for name, store in stores.items()}
    times: dict[str, list[float]] = {"small": [], "big": []}
    merges: dict[str, list[Any]] = {"small": [], "big": []}
    out: dict[str, Any] = {}
    try:
        for i in range(commits):
            for name, writer in writers.items():
                times[name].append(_commit_one(writer, _changed(rng, int(rng.integers(0, sizes[name])), 9.0 + i)))
                if writer.merged:
                    merges[name].append({"commit": i + 1, "ms": round(times[name][-1], 1), "merged": writer.merged})
        for name, store in stores.items():
            segs = store.segments("text")
            out[name] = {"products": sizes[name], "commits": commits, "median_ms": common.p50(times[name]),
                         "median_first5_ms": common.p50(times[name][:5]), "max_ms": round(max(times[name]), 1),
                         "all_ms": [round(t, 1) for t in times[name]], "merges": merges[name], "text_segments_after": len(segs),
                         "largest_segment_type": max(segs, key=lambda s: s["ntotal"])["index_type"]}
    finally:
        for name, writer in writers.items():
            writer.close()
            stores[name].close()
    out["ratio_big_vs_small"] = round(out["big"]["median_ms"] / out["small"]["median_ms"], 2)
    return out


def price_change(folder: Path, n_products: int, changes: int, work: Path, seed: int = 4) -> dict[str, Any]:
    """Step 3: update_fields of ``changes`` products + commit (no encoder, no FAISS file); then apply_feed if present."""
    picked = np.random.default_rng(seed).choice(n_products, 2 * changes, replace=False)
    prices, zero = _prices(n_products), np.zeros(DIM, np.float32)
    out: dict[str, Any] = {"products": n_products, "changed": changes}
    before = _faiss_files(folder)
    with IndexStore.open(folder, writable=True) as store, IndexWriter(store) as writer:
        updates = [(_product(int(j), prices[j] + 1000, zero, zero).record, None) for j in picked[:changes]]
        started = time.perf_counter()
        stored = writer.update_fields(updates)
        middle = time.perf_counter()
        writer.commit()
        ended = time.perf_counter()
        probe = updates[0][0]
        pk = store.product_pks([probe.id])[probe.id]
        price_now = store.products([pk])[pk]["price"]
    new = sorted(_faiss_files(folder) - before)
    out["update_fields"] = {"stored": stored, "update_s": round(middle - started, 3), "commit_s": round(ended - middle, 3),
                            "total_s": round(ended - started, 3), "new_faiss_files": new, "encoder_calls": 0,
                            "price_applied": price_now == probe.price}
    assert not new and price_now == probe.price, (new, price_now, probe.price)
    calls = []

    def refuse() -> Any:
        calls.append(1)
        raise RuntimeError("a price feed must not need the encoder")

    feed = work / "price-feed.csv"
    feed.write_text("id,price\n" + "".join(f"SKU-{int(j):07d},{prices[j] + 2000:.2f}\n" for j in picked[changes:]))
    before = _faiss_files(folder)
    started = time.perf_counter()
    report = apply_feed(feed, folder, encoder_factory=refuse)
    out["apply_feed"] = {"rows": changes, "seconds": round(time.perf_counter() - started, 3), "updated": report.updated,
                         "fields_only": report.fields_only, "reembedded": report.reembedded, "commits": report.commits,
                         "skipped": report.skipped, "encoder_factory_calls": len(calls),
                         "new_faiss_files": sorted(_faiss_files(folder) - before)}
    return out


def segments_vs_merged(base: Path, work: Path, n_products: int, index_type: str, queries: int, seed: int = 5) -> dict[str, Any]:
    """Step 4: 1 big + 9 single-product segments vs the same after optimize (alternated); optimize vs a fresh build."""
    rng, prices = np.random.default_rng(seed), _prices(n_products)
    text, images = synthetic_vectors(n_products, DIM, images_per_product=1)
    folders = {name: work / name for name in ("segmented", "optimized", "fresh", "exact")}
    shutil.copytree(base, folders["segmented"])
    changed: dict[int, EmbeddedProduct] = {}
    with IndexStore.open(folders["segmented"], writable=True) as store, \
            IndexWriter(store, config=VectorIndexConfig(merge_factor=1000)) as writer:  # a policy that never merges
        for j in rng.choice(n_products, 9, replace=False):
            changed[int(j)] = _changed(rng, int(j), prices[j])
            _commit_one(writer, changed[int(j)])
        counts = {m: len(store.segments(m)) for m in ("text", "image")}
    shutil.copytree(folders["segmented"], folders["optimized"])
    _log("  optimize")
    with IndexStore.open(folders["optimized"], writable=True) as store, IndexWriter(store) as writer:
        started = time.perf_counter()
        writer.optimize()
        optimize_s = time.perf_counter() - started
        check = store.check()
    _log(f"  optimize {optimize_s:.1f} s; fresh single-commit build of the same final vectors, and a Flat one")
    # in the optimized folder's pk order: unchanged products by id, then the changed ones in commit order
    final = [_product(i, prices[i], text[i], images[i]) for i in range(n_products) if i not in changed] + list(changed.values())
    del text, images
    fresh_build = _build(folders["fresh"], final, index_type)
    _build(folders["exact"], final, "Flat")  # context: how much of the engine's top 10 an exact scan shares
    del final
    encoder, texts = _queries(n_products, queries + 5)
    engines = {name: _engine(folder, encoder) for name, folder in folders.items()}
    times: dict[str, list[float]] = {"segmented": [], "optimized": []}
    same = {"fresh": 0, "fresh_ids": 0, "segmented": 0}
    overlap = {"segmented": 0, "optimized": 0}
    for i, query in enumerate(texts):
        results = {}
        for name in (("segmented", "optimized") if i % 2 == 0 else ("optimized", "segmented")):
            ms, results[name] = _timed(engines[name], query)
            if i >= 5:  # warm-up
                times[name].append(ms)
        for name in ("fresh", "exact"):
            results[name] = _timed(engines[name], query)[1]
        top = {name: ([h.product_id for h in r.hits], [round(h.score, 4) for h in r.hits]) for name, r in results.items()}
        same["fresh"] += top["optimized"] == top["fresh"]
        same["fresh_ids"] += top["optimized"][0] == top["fresh"][0]
        same["segmented"] += top["optimized"] == top["segmented"]
        for name in overlap:
            overlap[name] += len(set(top[name][0]) & set(top["exact"][0]))
    views = {name: engine._view.counts() for name, engine in engines.items()}
    for name, engine in engines.items():
        engine.close()
        if name != "optimized":
            shutil.rmtree(folders[name], ignore_errors=True)
    n, p50 = len(texts), {name: common.p50(v) for name, v in times.items()}
    return {"products": n_products, "segments_before": counts, "views": views, "optimize_s": round(optimize_s, 1),
            "optimized_check": check, "fresh_build": fresh_build, "queries": len(times["segmented"]),
            "segmented_p50_ms": p50["segmented"], "optimized_p50_ms": p50["optimized"],
            "segmented_p95_ms": common.p95(times["segmented"]), "optimized_p95_ms": common.p95(times["optimized"]),
            "ratio_p50": round(p50["segmented"] / p50["optimized"], 2),
            "optimized_equals_fresh": round(same["fresh"] / n, 4), "optimized_ids_equal_fresh": round(same["fresh_ids"] / n, 4),
            "optimized_equals_segmented": round(same["segmented"] / n, 4),
            "overlap_at_10_with_exact": {name: round(v / (10 * n), 4) for name, v in overlap.items()}}


def under_load(folder: Path, n_products: int, queries: int, seconds: float) -> dict[str, Any]:
    """Step 5: queries in a loop for ``seconds`` with no writer, then while a writer process commits every second."""
    encoder, texts = _queries(n_products, queries, seed=11)
    engine = _engine(folder, encoder)
    for text in texts[:10]:
        _timed(engine, text)
    reloads: list[float] = []

    def loop() -> list[float]:
        out, end = [], time.perf_counter() + seconds
        for i in range(1_000_000):  # bounded by count and time
            if time.perf_counter() >= end:
                break
            generation = engine._view.generation
            out.append(_timed(engine, texts[i % len(texts)])[0])
            if engine._view.generation != generation:
                reloads.append(round(out[-1], 1))  # this query loaded the writer's new commit
        return out

    quiet = loop()
    writer = subprocess.Popen([sys.executable, "-m", "bench.segments", "writer", str(folder), str(seconds), str(n_products)],
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert writer.stdout is not None
    try:
        ready, _, _ = select.select([writer.stdout], [], [], 300)
        line = writer.stdout.readline() if ready else ""
        if line.strip() != "ready":
            raise RuntimeError(f"the writer process did not start: {line!r}")
        loaded = loop()
        report = json.loads(writer.communicate(timeout=seconds + 300)[0].strip().splitlines()[-1])
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    engine.close()
    q, w = _summary(quiet), _summary(loaded)
    return {"seconds": seconds, "quiet": q, "loaded": w, "writer": report, "queries_that_loaded_a_commit_ms": reloads,
            "p99_ratio": round(w["p99_ms"] / q["p99_ms"], 2), "p50_ratio": round(w["p50_ms"] / q["p50_ms"], 2)}


def writer_process(folder: str, seconds: float, n_products: int) -> None:
    """The subprocess of ``under_load``: its own store and writer, one changed product committed per second."""
    rng = np.random.default_rng(6)
    times, merges = [], []
    with IndexStore.open(folder, writable=True) as store, IndexWriter(store) as writer:
        print("ready", flush=True)
        start = time.perf_counter()
        for i in range(int(seconds) + 1):  # bounded by count and time
            time.sleep(max(0.0, start + i - time.perf_counter()))
            if time.perf_counter() - start >= seconds:
                break
            times.append(_commit_one(writer, _changed(rng, int(rng.integers(0, n_products)), 7.0)))
            if writer.merged:
                merges.append(i + 1)
    print(json.dumps({"commits": len(times), "commit_p50_ms": common.p50(times), "commit_max_ms": round(max(times, default=0), 1),
                      "merge_commits": merges}), flush=True)


def main(args: Any) -> dict[str, Any]:
    work, load = common.RESULTS / "segments-work", {}
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    def phase(name: str) -> None:
        load[name] = [round(x, 2) for x in os.getloadavg()]
        _log(name)

    out: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "run"}, "load_by_phase": load}
    steps = {int(x) for x in str(args.steps).split(",")}
    try:
        if steps & {1, 6}:
            phase(f"step 1: put {args.filter_products} products ({args.index_type})")
            out["put"] = bulk_put(work / "filter", args.filter_products, args.index_type)
            _log(f"  put {out['put']['put_s']} s, commit {out['put']['commit_s']} s")
        if 6 in steps:
            phase(f"step 6: attribute filter at {args.filter_products}")
            out["filter"] = filtered(work / "filter", args.filter_products, args.queries)
        shutil.rmtree(work / "filter", ignore_errors=True)
        phase(f"base: {args.products} products {args.index_type} (cached in {args.cache})")
        started = time.perf_counter()
        base = cached_synthetic(Path(args.cache), products=args.products, dim=DIM, index_type=args.index_type,
                                identity=IDENTITY, images_per_product=1)
        out["base"] = {"folder": base, "build_or_cache_s": round(time.perf_counter() - started, 1)}
        shutil.copytree(base, work / "live")
        if 2 in steps:
            phase(f"step 2: commit of 1 changed product, {args.small} vs {args.products}")
            text, images = synthetic_vectors(args.small, DIM, images_per_product=1, seed=2)
            _build(work / "small", [_product(i, 10.0, text[i], images[i]) for i in range(args.small)], args.index_type)
            out["commit"] = commit_costs(work / "live", work / "small", args.commits)
        if 3 in steps:
            phase("step 3: price change of 1000 products")
            out["price_change"] = price_change(work / "live", args.products, min(1000, args.products // 4), work)
        if 4 in steps:
            phase("step 4: 10 segments vs optimized")
            out["segments_vs_merged"] = segments_vs_merged(base, work, args.products, args.index_type, args.queries)
        if 5 in steps:
            phase(f"step 5: p99 with a writer committing every second ({args.seconds} s per phase)")
            out["under_load"] = under_load(work / "live", args.products, args.queries, args.seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = table_rows(out, args)
    out["targets"] = {f"{r['step']}: {r['measure']} {r['target']}": r["met"] for r in rows if r["target"]}
    print(common.table(rows, ["step", "measure", "value", "target", "met"]))
    print(f"load average now {[round(x, 2) for x in os.getloadavg()]}; by phase {load}")
    name = "segments" if steps == set(range(1, 7)) else "segments-steps-" + "".join(str(x) for x in sorted(steps))
    print(f"wrote {common.write_results('segments', out, out=common.RESULTS / f'{name}.json')}")
    return out


def configure(parser: Any) -> None:
    parser.add_argument("--products", type=int, default=100_000, help="the big index (commit cost, price change, segments, load)")
    parser.add_argument("--small", type=int, default=1000, help="the small index the commit cost is compared with")
    parser.add_argument("--filter-products", type=int, default=20_000, help="products put in step 1, filtered in step 6")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--index-type", default="HNSW32")
    parser.add_argument("--seconds", type=float, default=20, help="length of the quiet and of the under-load phase")
    parser.add_argument("--commits", type=int, default=10, help="single-product commits timed per index (the 10th merges)")
    parser.add_argument("--cache", default=str(common.CACHE), help="where the base folder is kept between runs")
    parser.add_argument("--steps", default="1,2,3,4,5,6", help="which steps to run (comma-separated; 1 and 6 share a folder)")
    parser.set_defaults(run=main)


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "writer":
    writer_process(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))

"""IVF-PQ at 10M vectors within a memory budget: recall@10 after exact re-scoring, memory, latency.

    python -m bench recall-large --vectors 10000000 --max-memory 3GB

The vectors never sit in RAM all at once: clustered unit vectors (as ``bench.synthetic``: ``n / 500``
centres, noise 0.35) are drawn chunk by chunk from per-chunk seeds and written to a float32 memory map
on disk (``--workdir``, 4 * 512 bytes per vector: 20 GB at 10M), which stands in for the exact copies
SQLite keeps.  The index is what ``choose_index_type`` picks for the budget, built as the engine builds
it (``make_index`` + ``train_and_add``: trained on a 256k sample, then added chunk by chunk).  Ground
truth is an exact chunked scan of the memory map; each nprobe of the ladder fetches ``--rerank``
candidates per query and re-scores them with the exact vectors, as the engine does.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import common

CHUNK = 250_000


def _chunk(centres: np.ndarray, seed: int, c: int, size: int) -> np.ndarray:
    rng = np.random.default_rng([seed, c])
    x = centres[rng.integers(0, len(centres), size)] + 0.35 * rng.standard_normal((size, centres.shape[1]), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def main(args) -> dict[str, Any]:
    import faiss

    from indexer.store import vectors as vector_files
    from indexer.store.index_types import choose_index_type, recall_at_k, sample_queries
    from indexer.store.vectors import SearchTuning

    n, dim, seed = args.vectors, args.dim, 0
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"clustered-{n}x{dim}.f32"
    centres = np.random.default_rng(seed).standard_normal((max(1, n // 500), dim)).astype(np.float32)
    chunks = [(c, start, min(CHUNK, n - start)) for c, start in enumerate(range(0, n, CHUNK))]
    started = time.perf_counter()
    fresh = not path.is_file() or path.stat().st_size != n * dim * 4
    data = np.memmap(path, dtype=np.float32, mode="w+" if fresh else "r", shape=(n, dim))
    if fresh:
        for c, start, size in chunks:
            data[start:start + size] = _chunk(centres, seed, c, size)
        data.flush()
    generate_s = time.perf_counter() - started

    choice = choose_index_type(n, dim, max_memory_bytes=args.max_memory)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    rss = common.anon_mb()  # the memory map's pages are file-backed: not the index's
    started = time.perf_counter()
    index = vector_files.make_index(choice.index_type, dim)
    sample = np.sort(np.random.default_rng(1).choice(n, min(n, 256 * 1024), replace=False))
    index.train(np.ascontiguousarray(data[sample]))
    train_s = time.perf_counter() - started
    for c, start, size in chunks:
        vector_files.train_and_add(index, np.asarray(data[start:start + size]), np.arange(start, start + size, dtype=np.int64))
    build_s = time.perf_counter() - started
    index_mb = common.anon_mb() - rss

    queries = sample_queries(np.asarray(data[: min(n, CHUNK)]), args.queries, seed=7)
    started = time.perf_counter()
    best_s = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    best_i = np.full((len(queries), 10), -1, dtype=np.int64)
    for c, start, size in chunks:  # exact top-10 by a chunked scan
        scores = queries @ np.asarray(data[start:start + size]).T
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        both_s = np.concatenate([best_s, np.take_along_axis(scores, top, 1)], axis=1)
        both_i = np.concatenate([best_i, top + start], axis=1)
        keep = np.argsort(-both_s, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(both_s, keep, 1), np.take_along_axis(both_i, keep, 1)
    truth_s = time.perf_counter() - started

    faiss.omp_set_num_threads(1)
    ladder = []
    nlist = faiss.extract_index_ivf(faiss.downcast_index(index.index)).nlist if "IVF" in choice.index_type else 0
    for nprobe in [p for p in (4, 8, 16, 32, 64, 128, 256) if not nlist or p <= nlist]:
        tuning = SearchTuning(nprobe=nprobe)
        found, times = [], []
        for q in queries:
            t = time.perf_counter()
            _, cand = vector_files.search(index, q.reshape(1, -1), args.rerank, tuning=tuning)
            cand = cand[0][cand[0] >= 0]
            exact = np.asarray(data[np.sort(cand)]) @ q
            found.append(np.sort(cand)[np.argsort(-exact)[:10]])
            times.append((time.perf_counter() - t) * 1000)
        recall = recall_at_k(np.array([np.pad(f, (0, 10 - len(f)), constant_values=-1) for f in found]), best_i, 10)
        ladder.append({"nprobe": nprobe, "recall_at_10": round(recall, 4), "ms_per_query_1thread": round(float(np.median(times)), 3)})
        print(f"  nprobe {nprobe}: recall@10 {recall:.3f}, {ladder[-1]['ms_per_query_1thread']} ms", flush=True)
        if recall >= args.target:
            break
    reached = next((row for row in ladder if row["recall_at_10"] >= args.target), None)
    result = {
        "vectors": n, "dim": dim, "index_type": choice.index_type, "max_memory_mb": round(args.max_memory / 2**20),
        "estimated_mb": round(choice.estimated_bytes / 2**20), "index_rss_mb": round(index_mb), "generate_s": round(generate_s, 1),
        "train_s": round(train_s, 1), "build_s": round(build_s, 1), "truth_s": round(truth_s, 1), "rescored_top": args.rerank,
        "ladder": ladder,
        "targets": {"ivfpq_le_3GB_recall_ge_0.90": {"memory_mb": round(index_mb), "recall": reached["recall_at_10"] if reached else ladder[-1]["recall_at_10"],
                                                    "met": bool(reached) and index_mb <= 3 * 1024}},
    }
    print(common.table(ladder, ["nprobe", "recall_at_10", "ms_per_query_1thread"]))
    print({k: v for k, v in result.items() if k != "ladder"})
    out = common.write_results("recall-large", result)
    print(f"wrote {out}")
    return result


def configure(parser) -> None:
    from vitrina.options import parse_size

    parser.add_argument("--vectors", type=int, default=10_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--max-memory", type=parse_size, default=parse_size("3GB"), help="index budget (choose_index_type)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rerank", type=int, default=100, help="candidates re-scored exactly per query")
    parser.add_argument("--target", type=float, default=0.90)
    parser.add_argument("--workdir", default=str(common.CACHE / "large"), help="where the float32 memory map is kept")
    parser.set_defaults(run=main)

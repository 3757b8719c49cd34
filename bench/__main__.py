"""Benchmarks (not part of the test run): ``python -m bench --help``; see bench/README.md."""
import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights only: never download

from bench import encoder_runtime, fast_refusals, indexing, latency, log_cost, peers, postgres_lexical, query_split, ranking, ray_embedding, recall, recall_large, scale_figures, segments, serve_latency, shop_sim, text_tower


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description="vitrina benchmarks (numbers, not tests)")
    sub = parser.add_subparsers(dest="command", required=True)
    qs = sub.add_parser("query-split", help="per-query time split on a synthetic store with random vectors")
    qs.add_argument("--products", type=int, default=10_000)
    qs.add_argument("--queries", type=int, default=50)
    qs.add_argument("--model", default="ViT-B-32", help="open_clip architecture (random weights) for the encode stage")
    qs.add_argument("--threads", type=int, default=None)
    qs.add_argument("--where", action="store_true", help="add a category filter to every query")
    qs.set_defaults(run=query_split.main)
    latency.configure(sub.add_parser("query-latency", help="p50/p95 by stage at 10k-1M products vs FAISS flat + sqlite3"))
    recall.configure(sub.add_parser("recall", help="recall@10 vs exact, ms/query and memory per index type"))
    recall_large.configure(sub.add_parser("recall-large", help="IVF-PQ at 10M within --max-memory: recall@10 after re-scoring"))
    ray_embedding.configure(sub.add_parser("ray-embedding", help="products/s: plain build_index vs Ray with 1 and 2 actors, scaling ratio"))
    postgres_lexical.configure(sub.add_parser("postgres-lexical", help="word queries on PostgreSQL vs SQLite: the same catalog, p50/p95, ratio"))
    scale_figures.configure(sub.add_parser("scale-figures", help="per-node figures for docs/scale.md: embedding, memory per vector, merges, row sizes"))
    indexing.configure(sub.add_parser("indexing", help="images/s: model forward passes alone vs build_index end to end"))
    encoder_runtime.configure(sub.add_parser("encoder-runtime", help="image tower images/s: eager torch vs ONNX Runtime, cosine"))
    text_tower.configure(sub.add_parser("text-tower", help="text tower on the real token length vs padded: speed, cosine"))
    ranking.configure(sub.add_parser("ranking", help="ranking quality: demo catalog (unseen seed) + hand catalog, nDCG, p50"))
    fast_refusals.configure(sub.add_parser("fast-refusals", help="seconds to refuse bad input (filter field, catalog header, format...)"))
    log_cost.configure(sub.add_parser("log-cost", help="what the search log costs a search: recording, POST /search with the log off / in files / in PostgreSQL"))
    shop_sim.configure(sub.add_parser("shop-sim", help="simulated shop: re-ranker learnt from a click log (position bias) vs fusion, true-preference nDCG"))
    segments.configure(sub.add_parser("segments", help="live catalog: commit cost, field updates, segments vs merged, latency under a committing writer, attribute filter, bulk put"))
    peers.configure(sub.add_parser("peers", help="vitrina vs txtai, LanceDB, clip-retrieval (own venvs): build s, p50/p95, recall@10"))
    serve = serve_latency.configure(sub.add_parser("serve-latency", help="p50/p95 of /search and /search/image, 8 concurrent clients"))
    serve.set_defaults(run=serve_latency.main)
    args = parser.parse_args()
    args.run(args)


main()

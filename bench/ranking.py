"""Ranking quality of the default engine: a demo catalog from an unseen seed, and a hand-written catalog.

    python -m bench ranking                  # seed 404, 1000 products, bundled model: ~20 s once cached
    python -m bench ranking --quick          # fewer queries: ~10 s once cached
    python -m bench ranking --seed 505 --products 2000 --rebuild

Everything goes through the public API: ``indexer.build_index`` / ``load_encoder`` to index, and
``search.SearchEngine.search(..., rerank=False)`` to ask. Ground truth comes from the catalog's own fields (category,
color, pattern), from the generator's held-out judgments (nDCG@10) and from fresh renders of a product's ``Look``
(``vitrina.demo.drawing.render_photo``; photos never indexed). The figures:

1. "COLOUR CATEGORY" (canonical words): share of the top 10 in the category (queries whose category has >= 10
   products), and the exact colour+category match at rank 1;
2. the same with plurals / synonyms of the category and synonyms of the colour ("Crimson cushions", "cobalt pants");
3. "COLOUR PATTERN CATEGORY": share of the top 10 in the category (and the exact match at 1);
4. a catalog photo (one of the product's own indexed images): that product at rank 1;
5. a fresh photo of a product: the product at rank 1 and in the top 10;
6. fresh photo + "but in COLOUR" (weights text 1, image 1; the colour exists in that category and differs from the
   photo's): the top hit has the photo's category and the named colour;
7. nDCG@10 per query kind of ``judgments-heldout.jsonl``: the default search, product text vectors only
   (``image_share=0``) and product image vectors only (``image_share=1``), both with ``lexical_weight=0`` and
   ``field_weight=0`` (each where ``search`` accepts it), so "fusion >= best single modality" can be read off;
8. the hand-written catalog of ``bench/hand_catalog.py`` (48 products, real-world words): a title word finds its
   product in the top 5, "COLOUR CATEGORY" share of the top 5 in the category, catalog photo at rank 1;
9. latency: p50 / p95 of ``result.timings`` total minus encode over the text queries of 1-3.

The first run for a seed draws the catalog (~12 s for 1000 products) and indexes it (~10 s) on 2 vCPUs. A figure
that raises (the engine is being changed) is reported as an error, the others still run, and the exit status is 1.
The demo catalog and its index are cached in ``bench/results/cache/ranking-s<seed>-n<products>/``; the index is
rebuilt when it is missing, cannot be opened, holds another model or another number of products. ``--rebuild``
forces both; ``--reindex`` rebuilds the indexes alone (the cache cannot tell that the indexer changed). The bundled
model was trained on seed 7, which is refused.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import common
from bench.ranking_figures import (PHOTO_COLOUR_TEXTS, Probe, SHARE_ONLY_IMAGES, fig_catalog_photo, fig_fresh_photo, fig_hand, fig_ndcg, fig_photo_colour, fig_text, latency, ndcg_modes, summary_rows, text_sets)

TRAINED_SEED = 7  # the bundled demo model's training catalog
JUDGED_QUERIES = 400  # judged queries the generator writes per catalog (half of them held out)
IMAGE_SIZE = 224
SIZES: dict[str, dict[str, int]] = {  # queries per figure ("judged": per kind); 0: all
    "full": {"text": 60, "catalog_photo": 150, "fresh_photo": 150, "photo_colour": 100, "judged": 0, "hand_words": 0},
    "quick": {"text": 20, "catalog_photo": 40, "fresh_photo": 40, "photo_colour": 30, "judged": 25, "hand_words": 60},
}


# -- catalogs and indexes -------------------------------------------------------------------------------------------
def read_rows(catalog: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in catalog.read_text(encoding="utf-8").splitlines() if line.strip()]


def ensure_demo_catalog(folder: Path, *, seed: int, products: int, rebuild: bool) -> tuple[Path, bool]:
    """(catalog.jsonl, whether it was generated now): the generator's catalog, reused when the stamp matches."""
    from vitrina.demo.catalog import generate_catalog

    stamp = folder / "bench-ranking.json"
    settings = {"seed": seed, "products": products, "image_size": IMAGE_SIZE, "queries": JUDGED_QUERIES}
    catalog = folder / "catalog.jsonl"
    if not rebuild and catalog.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == settings:
        return catalog, False
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    print(f"drawing demo catalog: {products} products, seed {seed} -> {folder}", flush=True)
    generate_catalog(folder, products=products, seed=seed, image_size=IMAGE_SIZE, queries=JUDGED_QUERIES)
    stamp.write_text(json.dumps(settings) + "\n")
    print(f"  drawn in {time.perf_counter() - started:.0f}s", flush=True)
    return catalog, True


def ensure_index(catalog: Path, folder: Path, encoder: Any, *, products: int, rebuild: bool,
                 config: Any = None) -> tuple[Any, dict[str, Any]]:
    """An open ``SearchEngine`` (re-ranker off) over ``folder``, built from ``catalog`` unless a usable one is there."""
    from indexer import IndexConfig, SearchConfig, VitrinaError, build_index
    from search import SearchEngine

    config = config or SearchConfig()

    if folder.exists() and not rebuild:
        try:
            engine = SearchEngine.open(folder, encoder=encoder, rerank=False, config=config)
        except VitrinaError as exc:
            print(f"  cached index unusable ({type(exc).__name__}: {exc}); re-indexing", flush=True)
        else:
            count = (engine.info().get("counts") or {}).get("products")
            if count == products:
                return engine, {"cached": True, "products": count}
            engine.close()
            print(f"  cached index holds {count} products, expected {products}; re-indexing", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    print(f"indexing {catalog} -> {folder}", flush=True)
    report = build_index(catalog, folder, encoder=encoder, config=IndexConfig(),
                         model_spec={"name": encoder.identity.name, "pretrained": None})
    info = {"cached": False, "products": report.indexed, "images": report.images, "failed": report.failed,
            "seconds": round(time.perf_counter() - started, 1)}
    print(f"  {report.indexed} products, {report.images} images, {report.failed} failed in {info['seconds']}s", flush=True)
    return SearchEngine.open(folder, encoder=encoder, rerank=False, config=config), info


def product_looks(seed: int, rows: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """({product id: Look} as the generator drew them, "ok"), or (None, "unavailable" | "mismatch").

    The generator has no public accessor for a product's Look: this replays its product list
    (``vitrina.demo.catalog._make_products``, generator-side, not the engine) and checks every product's id,
    title, category, colour and pattern against the catalog file before trusting it.
    """
    try:
        from vitrina.demo import catalog as generator

        products = generator._make_products(len(rows), seed, (2, 4))
    except Exception as exc:  # noqa: BLE001 -- a renamed or re-signed helper: fall back to the generator's query photos
        print(f"  generator looks unavailable ({type(exc).__name__}: {exc})", file=sys.stderr)
        return None, "unavailable"
    by_id = {r["id"]: r for r in rows}
    looks = {}
    try:
        for p in products:
            row = by_id.get(p.id)
            if row is None or (row["title"], row["category"], row["color"], row["pattern"]) != \
                    (p.title, p.category, p.colour, p.pattern):
                return None, "mismatch"
            looks[p.id] = p.look
    except AttributeError as exc:
        print(f"  generator looks unavailable ({exc})", file=sys.stderr)
        return None, "unavailable"
    return (looks, "ok") if len(looks) == len(rows) else (None, "mismatch")


def render_fresh(look: Any, key: Iterable[int]) -> Any:
    from vitrina.demo.drawing import render_photo

    return render_photo(look, size=IMAGE_SIZE, rng=np.random.default_rng(list(key)))


def judged_photo_queries(catalog_dir: Path) -> list[tuple[str, Path]]:
    """Fallback fresh photos: the generator's photo queries (fresh renders) and the product each shows (label 3)."""
    from search.evaluation.judgments import read_judgments

    out = []
    for name in ("judgments-train.jsonl", "judgments-heldout.jsonl"):
        for q in read_judgments(catalog_dir / name):
            if q.kind == "photo" and q.image is not None:
                best = [pid for pid, label in q.labels.items() if label == 3]
                if len(best) == 1:
                    out.append((best[0], q.image))
    return out


# -- the run ----------------------------------------------------------------------------------------------------------
def _run_figure(results: dict[str, Any], name: str, fn: Callable[[], Any]) -> None:
    started = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as exc:  # noqa: BLE001 -- the engine is being changed under us: report and carry on with the next figure
        traceback.print_exc(file=sys.stderr)
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    seconds = time.perf_counter() - started
    if isinstance(results[name], dict):
        results[name]["seconds"] = round(seconds, 1)
    print(f"  {name}: {seconds:.1f}s", flush=True)


def main(args: Any) -> None:
    from indexer import ModelConfig, load_encoder

    if args.seed == TRAINED_SEED:
        raise SystemExit(f"seed {TRAINED_SEED} is the bundled model's training catalog: pick another (default 404)")
    common.quiet_open_clip()
    sizes = SIZES["quick" if args.quick else "full"]
    cache = Path(args.cache)
    demo_dir = cache / f"ranking-s{args.seed}-n{args.products}"
    encoder = load_encoder(ModelConfig(threads=args.threads))
    config = search_config(args.set)
    print(f"model: {encoder.identity.describe()}", flush=True)

    catalog, generated = ensure_demo_catalog(demo_dir / "catalog", seed=args.seed, products=args.products, rebuild=args.rebuild)
    rows = read_rows(catalog)
    looks, looks_status = product_looks(args.seed, rows)
    if looks_status == "mismatch" and not generated:  # cached before the generator changed: draw it again
        print("  cached catalog differs from the generator's products; drawing it again", flush=True)
        catalog, generated = ensure_demo_catalog(demo_dir / "catalog", seed=args.seed, products=args.products, rebuild=True)
        rows = read_rows(catalog)
        looks, looks_status = product_looks(args.seed, rows)
    engine, index_info = ensure_index(catalog, demo_dir / "index", encoder, config=config, products=len(rows),
                                      rebuild=args.rebuild or args.reindex or generated)
    hand_root = cache / "ranking-hand" / f"v{_hand_version()}"
    root = catalog.parent
    by_id = {r["id"]: r for r in rows}
    probe = Probe(engine)
    config = getattr(engine, "config", None)
    defaults = {f: getattr(config, f) for f in ("k", "image_share", "photo_image_share", "lexical_weight", "field_weight",
                                                 "candidate_factor", "min_candidates") if hasattr(config, f)}
    for text in ("red mug", "blue striped dress", "lamp"):  # warm-up (caches, first FAISS calls): not timed
        try:
            probe(text=text, k=10)
        except Exception as exc:  # noqa: BLE001 -- each figure below reports its own failure
            print(f"  warm-up text search failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            break

    fig: dict[str, Any] = {}
    print("measuring", flush=True)
    sets = text_sets(rows, args.seed, sizes["text"])
    _run_figure(fig, "1_colour_category", lambda: fig_text(probe, by_id, sets["canonical"]))
    _run_figure(fig, "2_plural_synonym", lambda: fig_text(probe, by_id, sets["plural_synonym"]))
    _run_figure(fig, "3_colour_pattern_category", lambda: fig_text(probe, by_id, sets["colour_pattern"]))

    rng = random.Random(f"bench-ranking/{args.seed}/catalog-photo")
    picks = [(r["id"], rng.choice(r["images"])) for r in rng.sample(rows, min(sizes["catalog_photo"], len(rows)))]
    _run_figure(fig, "4_catalog_photo", lambda: fig_catalog_photo(probe, root, rows, picks))

    index_of = {r["id"]: i for i, r in enumerate(rows)}
    if looks is not None:
        source = "fresh renders of each product's Look (vitrina.demo.drawing.render_photo, never indexed)"
    else:
        source = "the generator's photo-query files (queries/*.jpg, fresh renders; the label-3 product)"

    def fresh_photos() -> dict[str, Any]:
        if looks is not None:
            rng = random.Random(f"bench-ranking/{args.seed}/fresh")
            ids = [r["id"] for r in rng.sample(rows, min(sizes["fresh_photo"], len(rows)))]
            photos = [(pid, render_fresh(looks[pid], (args.seed, 77, index_of[pid]))) for pid in ids]
        else:
            photos = judged_photo_queries(root)[: sizes["fresh_photo"]]
        return {**fig_fresh_photo(probe, photos), "source": source}

    _run_figure(fig, "5_fresh_photo", fresh_photos)

    def photo_colour() -> dict[str, Any]:
        colours_of: dict[str, set[str]] = {}
        for r in rows:
            colours_of.setdefault(r["category"], set()).add(r["color"])
        rng = random.Random(f"bench-ranking/{args.seed}/photo-colour")
        picks: list[tuple[dict[str, Any], Any]]
        if looks is not None:
            picks = [(r, None) for r in rng.sample(rows, min(sizes["photo_colour"], len(rows)))]
        else:
            picks = [(by_id[pid], image) for pid, image in judged_photo_queries(root)[: sizes["photo_colour"]]]
        queries = []
        for r, image in picks:
            others = sorted(colours_of[r["category"]] - {r["color"]})
            if not others:
                continue
            target = rng.choice(others)
            if image is None and looks is not None:
                image = render_fresh(looks[r["id"]], (args.seed, 78, index_of[r["id"]]))
            queries.append({"product": r["id"], "category": r["category"], "target": target, "image": image,
                            "text": rng.choice(PHOTO_COLOUR_TEXTS).format(c=target)})
        return {**fig_photo_colour(probe, by_id, queries), "source": source}

    _run_figure(fig, "6_photo_plus_colour", photo_colour)

    modes = ndcg_modes(engine)
    _run_figure(fig, "7_ndcg10_heldout", lambda: fig_ndcg(probe, root / "judgments-heldout.jsonl", sizes["judged"], modes))
    fig["9_latency_text"] = latency(probe.timings.get("text", []))
    engine.close()

    def hand() -> dict[str, Any]:
        from bench.hand_catalog import ITEMS, write_hand_catalog

        hand_catalog = hand_root / "catalog.jsonl"
        written = False
        if args.rebuild or not hand_catalog.is_file() or len(read_rows(hand_catalog)) != len(ITEMS):
            write_hand_catalog(hand_root)
            written = True
        hand_rows = read_rows(hand_catalog)
        hand_engine, _ = ensure_index(hand_catalog, hand_root / "index", encoder, config=config, products=len(hand_rows),
                                      rebuild=written or args.reindex)
        try:
            return fig_hand(Probe(hand_engine), hand_root, hand_rows, sizes["hand_words"], args.seed)
        finally:
            hand_engine.close()

    _run_figure(fig, "8_hand_catalog", hand)

    params = {
        "1-3": f"text, k=10, engine defaults {defaults}",
        "4": f"image = one of the product's catalog files, k=1; defaults, and image_share={SHARE_ONLY_IMAGES:g}",
        "5": f"image = fresh photo ({source}), k=10, defaults",
        "6": "image = fresh photo + text 'but in COLOUR' (4 phrasings, canonical colour), weights text 1 image 1, k=10",
        "7": "judgments-heldout.jsonl, k=10; default | " + " | ".join(f"{m}: {kw}" for m, kw in modes.items() if kw),
        "8": f"hand catalog ({hand_root}); title word k=5, 'COLOUR CATEGORY' k=5, catalog photo k=1 (defaults; and "
             f"image_share={SHARE_ONLY_IMAGES:g})",
        "9": "result.timings of the figure 1-3 text queries (default search)",
    }
    table_rows = summary_rows(fig)
    print()
    print(f"ranking: seed {args.seed}, {len(rows)} products, model {encoder.identity.describe()}, "
          f"{'quick' if args.quick else 'full'} query sets, rerank=False")
    print(common.table(table_rows, ["fig", "queries", "metric", "value", "n"]))
    print("\nparameters:")
    for key, text in params.items():
        print(f"  {key}: {text}")
    out = Path(args.out) if args.out else common.RESULTS / f"ranking-{args.seed}{'-quick' if args.quick else ''}.json"
    path = common.write_results("ranking", {
        "seed": args.seed, "products": len(rows), "quick": args.quick, "model": encoder.identity.describe(),
        "engine_defaults": defaults, "catalog": str(catalog), "index": index_info, "parameters": params,
        "figures": fig, "table": table_rows}, out)
    print(f"\n-> {path}")
    failed = [name for name, data in fig.items() if isinstance(data, dict) and "error" in data]
    if failed:
        raise SystemExit(f"{len(failed)} figure(s) failed: {', '.join(failed)} (tracebacks above, errors in the JSON)")


def _hand_version() -> int:
    from bench.hand_catalog import VERSION

    return VERSION


def search_config(settings: Sequence[str]) -> Any:
    """``SearchConfig`` with ``KEY=VALUE`` overrides (numbers parsed; ``none`` is None)."""
    from indexer import SearchConfig

    values: dict[str, Any] = {}
    for setting in settings:
        key, _, raw = setting.partition("=")
        values[key.strip()] = None if raw.strip().lower() == "none" else float(raw)
    return SearchConfig(**values)


def configure(parser: Any) -> Any:
    parser.add_argument("--seed", type=int, default=404, help="demo catalog seed (not 7: the bundled model's training seed)")
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a SearchConfig default, e.g. --set photo_image_share=0.8 (repeatable)")
    parser.add_argument("--quick", action="store_true", help="fewer queries per figure")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the encoder (1 is fastest on 2 vCPUs)")
    parser.add_argument("--rebuild", action="store_true", help="draw the demo catalog and re-index it even when cached")
    parser.add_argument("--reindex", action="store_true",
                        help="rebuild the cached indexes (demo and hand) from the cached catalogs, e.g. after the indexer changed")
    parser.add_argument("--cache", default=str(common.CACHE), help="where catalogs and indexes are kept between runs")
    parser.add_argument("--out", default=None, help="JSON results (default bench/results/ranking-<seed>[-quick].json)")
    parser.set_defaults(run=main)
    return parser

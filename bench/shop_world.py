"""The simulated shop's world for ``bench.shop_sim``: its catalog, shoppers' queries, serving and logging."""

from __future__ import annotations

import json
import random
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.shop_clicks import (
    Shoppers,
    latent_quality,
    popularity,
)

TRAINED_SEED = 7  # the bundled demo model's training catalog
TUNING_SEED = 616  # the only seed the simulation's parameters may be tuned on
IMAGE_SIZE = 224
START = 1748736000.0  # 2025-06-01T00:00:00Z: the simulated clock's first search
MEAN_GAP_S = 60.0
K = 10
BOOTSTRAP = 2000
DENSE_PAIRS = 10  # diagnostic: theta fitted on pairs shown at least this often
VERSION = 1  # of the cached catalog + popularity


@dataclass(frozen=True, kw_only=True)
class ShopQuery:
    text: str
    form: str
    intent: dict[str, Any]
    relevance: np.ndarray  # r per product (catalog order)


# -- the catalog and its index --------------------------------------------------------------------------------
def _generator_products(seed: int, rows: list[dict[str, Any]]) -> list[Any]:
    """The generator's own product list for ``seed`` (it knows each product's model code and ground truth),
    checked against the catalog file (as ``bench.ranking.product_looks`` does)."""
    from vitrina.demo import catalog as generator

    products = generator._make_products(len(rows), seed, (2, 4))
    for p, row in zip(products, rows):
        if (row["id"], row["title"], row["category"], row["color"], row["pattern"]) != \
                (p.id, p.title, p.category, p.colour, p.pattern):
            raise SystemExit(f"the demo generator no longer draws product {row['id']} as cached: rerun with --rebuild")
    return products


def prepare(args: Any, encoder: Any) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    """(index folder, catalog rows with popularity, info): drawn, annotated and indexed once per settings."""
    from bench.ranking import ensure_index
    from vitrina.demo.catalog import generate_catalog

    root = Path(args.cache) / f"shop-sim-s{args.seed}-n{args.products}"
    catalog_dir = root / "catalog"
    stamp = catalog_dir / "bench-shop-sim.json"
    settings = {"seed": args.seed, "products": args.products, "image_size": IMAGE_SIZE, "version": VERSION}
    generated = False
    if args.rebuild or not stamp.is_file() or json.loads(stamp.read_text()) != settings:
        shutil.rmtree(catalog_dir, ignore_errors=True)
        started = time.perf_counter()
        print(f"drawing demo catalog: {args.products} products, seed {args.seed} -> {catalog_dir}", flush=True)
        generate_catalog(catalog_dir, products=args.products, seed=args.seed, image_size=IMAGE_SIZE, queries=0)
        stamp.write_text(json.dumps(settings) + "\n")
        generated = True
        print(f"  drawn in {time.perf_counter() - started:.0f}s", flush=True)
    rows = common_rows(catalog_dir / "catalog.jsonl")
    ids = [r["id"] for r in rows]
    quality = latent_quality(args.seed, ids)
    pops = popularity(args.seed, ids, quality, args.popularity_noise)
    shop_rows = [{**r, "popularity": float(p)} for r, p in zip(rows, pops)]
    shop_catalog = catalog_dir / f"catalog-shop-pop{args.popularity_noise:g}.jsonl"
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in shop_rows)
    changed = not shop_catalog.is_file() or shop_catalog.read_text(encoding="utf-8") != text
    if changed:
        shop_catalog.write_text(text, encoding="utf-8")
    index = root / f"index-pop{args.popularity_noise:g}"
    engine, info = ensure_index(shop_catalog, index, encoder, products=len(rows),
                                rebuild=generated or changed or args.reindex)
    engine.close()
    return index, shop_rows, {"catalog": str(shop_catalog), "index": str(index), **info,
                              "quality": quality, "popularity_corr": float(np.corrcoef(quality, pops)[0, 1])}


def common_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# -- queries --------------------------------------------------------------------------------------------------
def _form(intent: dict[str, Any]) -> str:
    if intent.get("model"):
        return "model"
    return "+".join(k for k in ("brand", "material", "colour", "pattern", "category") if intent.get(k))


def intent_key(intent: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in intent.items() if v}, sort_keys=True)


def draw_queries(products: list[Any], n: int, key: str, taken: set[str]) -> list[ShopQuery]:
    """``n`` distinct text queries in the generator's phrasings, none of ``taken`` (which grows)."""
    from vitrina.demo import catalog as generator

    rng = random.Random(key)
    out: list[ShopQuery] = []
    for _ in range(50 * n):
        if len(out) == n:
            break
        text, intent = generator._text_query(rng, rng.choice(products))
        if text.lower() in taken:
            continue
        taken.add(text.lower())
        relevance = np.array([generator._grade(p, **intent) for p in products], dtype=np.int64)
        out.append(ShopQuery(text=text, form=_form(intent), intent=intent, relevance=relevance))
    return out


def zipf(n: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    return w / w.sum()


# -- the shop: serving and logging ----------------------------------------------------------------------------
def simulated_log(folder: Path) -> Any:
    """A ``SearchLog`` whose searches carry the simulated clock's time instead of the wall clock's."""
    from search.behaviour.log import SearchLog

    class SimulatedClockLog(SearchLog):
        now = START

        def record_search(self, search: Any) -> None:
            super().record_search(replace(search, at=self.now))

    return SimulatedClockLog(folder)


def run_shop(engine: Any, log: Any, shoppers: Shoppers, plan: Sequence[ShopQuery], grades: Sequence[np.ndarray],
             *, explore: float, rng: np.random.Generator, index_of: dict[str, int]) -> dict[str, Any]:
    """Serve ``plan`` (one query per search) as ``vitrina serve`` does and log what the shoppers do."""
    from search.behaviour.log import LoggedEvent
    from search.web.events import SearchRecorder
    from search.web.models import SearchIn

    recorder = SearchRecorder(log, engine)
    events: Counter[str] = Counter()
    swapped = 0
    started = time.perf_counter()
    first_at = log.now
    for i, (query, g) in enumerate(zip(plan, grades)):
        log.now += float(rng.exponential(MEAN_GAP_S))
        params = SearchIn.model_validate({"text": query.text, "k": K})
        result = engine.search(terms=[(query.text, 1.0)], where=None, image_share=None, exclude=[], k=K + 1, offset=0)
        hits = list(result.hits[:K])
        if len(hits) >= 2 and rng.random() < explore:
            a, b = rng.choice(len(hits), 2, replace=False)
            hits[a], hits[b] = hits[b], hits[a]
            swapped += 1
        query_id = recorder.record(terms=[("text", query.text, 1.0)], params=params, hits=hits, offset=0, result=result,
                                   rerank_supported=True)
        if query_id is None:
            raise SystemExit("the search log refused a search (see the warning above)")
        shown = [g[index_of[h.product_id]] for h in hits]
        for n, (position, kind) in enumerate(shoppers.browse(shown, rng)):
            log.record_event(LoggedEvent(query_id=query_id, product_id=hits[position - 1].product_id, kind=kind,
                                         position=position, at=log.now + 5.0 * (n + 1)))
            events[kind] += 1
        if i % 200 == 199:
            log.flush()
    log.flush()
    return {"searches": len(plan), "swapped": swapped, "events": dict(events), "first_at": first_at, "last_at": log.now,
            "seconds": round(time.perf_counter() - started, 1)}


# -- learning ---------------------------------------------------------------------------------------------------
def business_available() -> bool:
    try:
        from search.business import reranker_attributes  # noqa: F401
        from search.rerank.features import business_fields  # noqa: F401
    except ImportError:
        return False
    return True

"""Quality of a model on a generated demo catalog, measured through the real search engine.

    python -m vitrina.demo.quality --model data/demo-model --products 1500 --seed 99

* text → product: for every colour + pattern + category combination present, the plain
  query ("red striped t-shirt"); precision@10 where relevant = all named attributes match
  (divided by the number of relevant products when fewer than 10 exist); the same for
  one- and two-attribute queries ("red", "striped handbag");
* photo → same product: the last photo of every product is left out of the index and
  used as the query; the share of queries whose product is in the top 10 (and top 1).

Figures are given for the model alone (lexical search off) and for the default search.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

ATTRIBUTE_SETS = (
    ("color", "pattern", "category"),
    ("color", "category"), ("pattern", "category"), ("color", "pattern"),
    ("color",), ("pattern",), ("category",),
)


def held_out_catalog(catalog_dir: Path) -> tuple[Path, list[tuple[str, Path]]]:
    """A copy of the catalog without each product's last photo, and those photos as queries."""
    rows = [json.loads(line) for line in (catalog_dir / "catalog.jsonl").read_text().splitlines() if line.strip()]
    queries = []
    for row in rows:
        if len(row["images"]) >= 2:
            queries.append((row["id"], catalog_dir / row["images"][-1]))
            row["images"] = row["images"][:-1]
    path = catalog_dir / "catalog-heldout-photos.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, queries


def measure(engine: Any, rows: list[dict[str, Any]], photos: list[tuple[str, Path]], *, lexical_weight: float) -> dict[str, float]:
    results: dict[str, float] = {}
    for keys in ATTRIBUTE_SETS:
        combos = sorted({tuple(row[k] for k in keys) for row in rows})
        precisions = []
        for combo in combos:
            relevant = {row["id"] for row in rows if all(row[k] == v for k, v in zip(keys, combo))}
            hits = engine.search(" ".join(combo), k=10, lexical_weight=lexical_weight)
            precisions.append(sum(h.product_id in relevant for h in hits) / min(10, len(relevant)))
        results["text/" + "+".join(keys)] = round(sum(precisions) / len(precisions), 3)
    ranks = []
    for product_id, photo in photos:
        ids = [h.product_id for h in engine.search(image=photo, k=10, image_share=1.0, lexical_weight=lexical_weight)]
        ranks.append(ids.index(product_id) if product_id in ids else 10)
    results["photo/top1"] = round(sum(r == 0 for r in ranks) / len(ranks), 3)
    results["photo/top10"] = round(sum(r < 10 for r in ranks) / len(ranks), 3)
    single_double = [v for k, v in results.items() if k.startswith("text/") and k.count("+") < 2]
    results["text/one-or-two-attributes-min"] = min(single_double)
    return results


def measure_demo_quality(model: str | Path | None, workdir: Path, *, products: int, seed: int) -> dict[str, Any]:
    from indexer.config import IndexConfig, ModelConfig
    from indexer.encoders.loading import load_encoder
    from indexer.pipeline import build_index
    from indexer.store.reader import IndexStore
    from search import SearchEngine
    from vitrina.commands.demo import ensure_demo_catalog

    catalog_dir = workdir / f"catalog-{products}-{seed}"
    ensure_demo_catalog(catalog_dir, products=products, seed=seed, quiet=True)
    catalog, photos = held_out_catalog(catalog_dir)
    started = time.perf_counter()
    encoder = load_encoder(ModelConfig(name=str(model) if model else None))
    load_seconds = time.perf_counter() - started
    index = workdir / f"index-{products}-{seed}-{encoder.identity.fingerprint[:12]}"  # one per model
    build_index(catalog, index, encoder=encoder, config=IndexConfig(commit_every=0))
    rows = [json.loads(line) for line in catalog.read_text().splitlines() if line.strip()]
    with SearchEngine(IndexStore.open(index), encoder) as engine:
        model_only = measure(engine, rows, photos, lexical_weight=0.0)
        default = measure(engine, rows, photos, lexical_weight=engine.config.lexical_weight)
    return {"model": encoder.identity.describe(), "products": products, "seed": seed, "photo_queries": len(photos),
            "load_seconds": round(load_seconds, 2), "model_only": model_only, "default_search": default}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m vitrina.demo.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder or name (default: the bundled demo model)")
    parser.add_argument("--products", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=99, help="catalog seed (use one the model was not trained on)")
    parser.add_argument("--workdir", type=Path, default=Path("demo-quality"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(json.dumps(measure_demo_quality(args.model, args.workdir, products=args.products, seed=args.seed), indent=2))


if __name__ == "__main__":
    main()

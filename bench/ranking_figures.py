"""The figures of `python -m bench ranking`: query sets drawn from a catalog, and each figure measured through
the public search API (``Probe`` wraps ``SearchEngine.search``)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import common


SHARE_ONLY_IMAGES = 1.0  # image_share of the extra "photos only" rows


#: Keywords that add non-vector evidence; a single-modality mode turns each off (0) when search() accepts it.
NON_VECTOR_WEIGHTS = ("lexical_weight", "field_weight")


PHOTO_COLOUR_TEXTS = ("but in {c}", "in {c}", "this one but in {c}", "same in {c}")


# -- asking the engine ------------------------------------------------------------------------------------------------
NDCG_MODES: dict[str, dict[str, float]] = {  # search() keywords of each mode; see ndcg_modes()
    "default": {},
    "text_vectors_only": {"image_share": 0.0, "lexical_weight": 0.0},
    "image_vectors_only": {"image_share": 1.0, "lexical_weight": 0.0},
}


class Probe:
    """``engine.search(rerank=False, ...)`` returning product ids; keeps the timings of tagged calls."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.timings: dict[str, list[dict[str, float]]] = {}

    def __call__(self, *, timed: str | None = None, **kwargs: Any) -> list[str]:
        result = self.engine.search(rerank=False, **kwargs)
        if timed:
            self.timings.setdefault(timed, []).append(dict(result.timings))
        return [hit.product_id for hit in result]


def _mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 3) if values else None


def _plural(word: str) -> str:
    head, _, last = word.rpartition(" ")
    if last.endswith(("ss", "ch", "sh", "x")):
        last += "es"
    elif not last.endswith("s"):
        last += "s"
    return f"{head} {last}" if head else last


# -- figures ----------------------------------------------------------------------------------------------------------
def text_sets(rows: list[dict[str, Any]], seed: int, n: int) -> dict[str, list[dict[str, Any]]]:
    """The three text query sets of figures 1-3 (combinations that exist in the catalog)."""
    from vitrina.demo.vocabulary import CATEGORY_SPECS, COLOUR_SPECS

    colour_syn = {c.name: c.synonyms for c in COLOUR_SPECS}
    category_syn = {c.name: c.synonyms for c in CATEGORY_SPECS}
    cc = sorted({(r["color"], r["category"]) for r in rows})
    ccp = sorted({(r["color"], r["pattern"], r["category"]) for r in rows})
    rng = random.Random(f"bench-ranking/{seed}/text")
    sets: dict[str, list[dict[str, Any]]] = {"canonical": [], "plural_synonym": [], "colour_pattern": []}
    for col, cat in rng.sample(cc, min(n, len(cc))):
        sets["canonical"].append({"text": f"{col} {cat}", "category": cat, "color": col})
    for col, cat in rng.sample(cc, min(n, len(cc))):
        syns = category_syn.get(cat, ())
        words = sorted({_plural(cat), *syns, *(_plural(s) for s in syns)} - {cat})
        colour = rng.choice((col, *colour_syn.get(col, ())))
        text = f"{colour} {rng.choice(words) if words else cat}"
        sets["plural_synonym"].append({"text": text[:1].upper() + text[1:], "category": cat, "color": col})
    for col, pat, cat in rng.sample(ccp, min(n, len(ccp))):
        sets["colour_pattern"].append({"text": f"{col} {pat} {cat}", "category": cat, "color": col, "pattern": pat})
    return sets


def fig_text(probe: Probe, by_id: dict[str, dict[str, Any]], queries: list[dict[str, Any]], *, k: int = 10) -> dict[str, Any]:
    """Share of the top ``k`` in the named category, and the exact match (every named field) at rank 1."""
    per_category = Counter(r["category"] for r in by_id.values())
    named = ("category", "color", "pattern")
    share: list[float] = []
    exact: list[bool] = []
    failed: list[dict[str, Any]] = []
    for q in queries:
        ids = probe(text=q["text"], k=k, timed="text")
        hits = [by_id[i] for i in ids if i in by_id]
        if per_category[q["category"]] >= k:
            share.append(sum(h["category"] == q["category"] for h in hits[:k]) / k)

        def match(p: dict[str, Any], q: dict[str, Any] = q) -> bool:
            return all(p.get(f) == q[f] for f in named if f in q)

        if any(match(p) for p in by_id.values()):
            exact.append(bool(hits) and match(hits[0]))
            if not exact[-1] and len(failed) < 5:
                failed.append({"query": q["text"], "top3": [f"{h['color']} {h['pattern']} {h['category']}" for h in hits[:3]]})
    return {"share_in_category": _mean(share), "n_share": len(share), "exact_at_1": _mean(exact), "n_exact": len(exact),
            "queries": [q["text"] for q in queries], "exact_misses": failed}


def fig_catalog_photo(probe: Probe, root: Path, rows: list[dict[str, Any]], picks: list[tuple[str, str]]) -> dict[str, Any]:
    """A product's own indexed photo as the query: it is at rank 1 (default share, and photos only)."""
    default, images_only = [], []
    for pid, rel in picks:
        default.append(probe(image=root / rel, k=1)[:1] == [pid])
        images_only.append(probe(image=root / rel, k=1, image_share=SHARE_ONLY_IMAGES)[:1] == [pid])
    return {"rank1": _mean(default), f"rank1_image_share_{SHARE_ONLY_IMAGES:g}": _mean(images_only), "n": len(picks)}


def fig_fresh_photo(probe: Probe, photos: list[tuple[str, Any]]) -> dict[str, Any]:
    rank1, top10 = [], []
    for pid, image in photos:
        ids = probe(image=image, k=10)
        rank1.append(ids[:1] == [pid])
        top10.append(pid in ids)
    return {"rank1": _mean(rank1), "top10": _mean(top10), "n": len(photos)}


def fig_photo_colour(probe: Probe, by_id: dict[str, dict[str, Any]], queries: list[dict[str, Any]]) -> dict[str, Any]:
    ok, original = [], []
    for q in queries:
        ids = probe(text=q["text"], image=q["image"], weights={"text": 1.0, "image": 1.0}, k=10)
        top = by_id.get(ids[0]) if ids else None
        ok.append(top is not None and top["category"] == q["category"] and top["color"] == q["target"])
        original.append(ids[:1] == [q["product"]])
    return {"top1_category_and_colour": _mean(ok), "original_at_1": _mean(original), "n": len(queries)}


def ndcg_modes(engine: Any) -> dict[str, dict[str, float]]:
    """NDCG_MODES with every non-vector weight the engine's ``search`` accepts set to 0 in the single modes."""
    import inspect

    accepted = inspect.signature(engine.search).parameters
    modes = {}
    for mode, kwargs in NDCG_MODES.items():
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        if kwargs:
            kwargs.update({w: 0.0 for w in NON_VECTOR_WEIGHTS if w in accepted})
        modes[mode] = kwargs
    return modes


def fig_ndcg(probe: Probe, judgments: Path, per_kind: int, modes: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Mean nDCG@10 per query kind and mode; ``per_kind``: the first that many queries of each kind (0: all)."""
    from search.evaluation.judgments import read_judgments
    from search.evaluation.metrics import ndcg_at_k

    queries = [q for q in read_judgments(judgments) if q.relevant > 0]
    if per_kind:
        seen: Counter[str] = Counter()
        kept = []
        for q in queries:
            if seen[q.kind] < per_kind:
                kept.append(q)
                seen[q.kind] += 1
        queries = kept
    scores: dict[str, dict[str, list[float]]] = {}
    for q in queries:
        for mode, extra in modes.items():
            kwargs: dict[str, Any] = {"k": 10, **q.search_args(), **extra}
            ids = probe(**kwargs)
            ranked = [q.labels.get(pid, 0) for pid in ids]
            scores.setdefault(q.kind, {}).setdefault(mode, []).append(ndcg_at_k(ranked, list(q.labels.values()), 10))
    out: dict[str, Any] = {}
    for kind in sorted(scores):
        means = {mode: round(float(np.mean(v)), 3) for mode, v in scores[kind].items()}
        best = max(means["text_vectors_only"], means["image_vectors_only"])
        out[kind] = {**means, "best_single": best, "default_minus_best_single": round(means["default"] - best, 3),
                     "n": len(scores[kind]["default"])}
    return out


def fig_hand(probe: Probe, root: Path, rows: list[dict[str, Any]], max_words: int, seed: int) -> dict[str, Any]:
    from bench.hand_catalog import title_words

    words = [(r["id"], w) for r in rows for w in title_words(r["title"])]
    if max_words and len(words) > max_words:
        words = random.Random(f"bench-ranking/{seed}/hand-words").sample(words, max_words)
    found: list[bool] = []
    missed: list[str] = []
    for pid, word in words:
        found.append(pid in probe(text=word, k=5))
        if not found[-1] and len(missed) < 8:
            missed.append(word)
    by_id = {r["id"]: r for r in rows}
    share = []
    for col, cat in sorted({(r["color"], r["category"]) for r in rows}):
        hits = [by_id[i] for i in probe(text=f"{col} {cat}", k=5) if i in by_id]
        share.append(sum(h["category"] == cat for h in hits[:5]) / 5)
    photos = fig_catalog_photo(probe, root, rows, [(r["id"], r["images"][0]) for r in rows])
    return {"title_word_top5": _mean(found), "n_words": len(words), "word_misses": missed,
            "colour_category_share_top5": _mean(share), "n_colour_category": len(share),
            "catalog_photo_rank1": photos["rank1"],
            f"catalog_photo_rank1_image_share_{SHARE_ONLY_IMAGES:g}": photos[f"rank1_image_share_{SHARE_ONLY_IMAGES:g}"],
            "n_photos": photos["n"]}


def latency(timings: list[dict[str, float]]) -> dict[str, Any]:
    after_encode = [t["total"] - t.get("encode", 0.0) for t in timings if "total" in t]
    return {"p50_total_minus_encode_ms": common.p50(after_encode), "p95_total_minus_encode_ms": common.p95(after_encode),
            "p50_encode_ms": common.p50([t["encode"] for t in timings if "encode" in t]),
            "p50_total_ms": common.p50([t["total"] for t in timings if "total" in t]), "n": len(after_encode)}


def summary_rows(fig: dict[str, Any]) -> list[dict[str, Any]]:
    """The printed table: one row per number."""
    rows: list[dict[str, Any]] = []

    def add(key: str, queries: str, metric: str, field: str, n_field: str = "n") -> None:
        data = fig.get(key) or {}
        value = "error" if "error" in data else data.get(field)
        rows.append({"fig": key.split("_", 1)[0], "queries": queries, "metric": metric, "value": value,
                     "n": data.get(n_field)})

    add("1_colour_category", "COLOUR CATEGORY", "share of top 10 in category", "share_in_category", "n_share")
    add("1_colour_category", "COLOUR CATEGORY", "exact colour+category at 1", "exact_at_1", "n_exact")
    add("2_plural_synonym", "plural/synonym", "share of top 10 in category", "share_in_category", "n_share")
    add("2_plural_synonym", "plural/synonym", "exact colour+category at 1", "exact_at_1", "n_exact")
    add("3_colour_pattern_category", "COLOUR PATTERN CATEGORY", "share of top 10 in category", "share_in_category", "n_share")
    add("3_colour_pattern_category", "COLOUR PATTERN CATEGORY", "exact match at 1", "exact_at_1", "n_exact")
    add("4_catalog_photo", "catalog photo", "product at rank 1", "rank1")
    add("4_catalog_photo", "catalog photo", f"rank 1, image_share={SHARE_ONLY_IMAGES:g}", f"rank1_image_share_{SHARE_ONLY_IMAGES:g}")
    add("5_fresh_photo", "fresh photo", "product at rank 1", "rank1")
    add("5_fresh_photo", "fresh photo", "product in top 10", "top10")
    add("6_photo_plus_colour", "photo + 'in COLOUR'", "top hit: category & colour", "top1_category_and_colour")
    add("6_photo_plus_colour", "photo + 'in COLOUR'", "original product at 1", "original_at_1")
    ndcg = fig.get("7_ndcg10_heldout") or {}
    if "error" in ndcg:
        rows.append({"fig": "7", "queries": "judged held-out", "metric": "nDCG@10", "value": "error"})
    for kind in ("text", "photo", "text+photo"):
        data = ndcg.get(kind)
        if not data:
            continue
        for mode in (*NDCG_MODES, "default_minus_best_single"):
            rows.append({"fig": "7", "queries": f"judged {kind}", "metric": f"nDCG@10 {mode}", "value": data.get(mode),
                         "n": data.get("n")})
    add("8_hand_catalog", "hand: title word", "product in top 5", "title_word_top5", "n_words")
    add("8_hand_catalog", "hand: COLOUR CATEGORY", "share of top 5 in category", "colour_category_share_top5", "n_colour_category")
    add("8_hand_catalog", "hand: catalog photo", "product at rank 1", "catalog_photo_rank1", "n_photos")
    add("8_hand_catalog", "hand: catalog photo", f"rank 1, image_share={SHARE_ONLY_IMAGES:g}",
        f"catalog_photo_rank1_image_share_{SHARE_ONLY_IMAGES:g}", "n_photos")
    add("9_latency_text", "text (figs 1-3)", "p50 total-encode ms", "p50_total_minus_encode_ms")
    add("9_latency_text", "text (figs 1-3)", "p95 total-encode ms", "p95_total_minus_encode_ms")
    add("9_latency_text", "text (figs 1-3)", "p50 encode ms", "p50_encode_ms")
    return rows

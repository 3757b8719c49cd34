"""Offline evaluation: run several systems over judged queries; metrics per query kind; stage latencies.

Systems (all on the same engine and index):

* ``text``: the query vector against product text vectors only (``image_share=0``, lexical off);
* ``image``: against product image vectors only (``image_share=1``, lexical off);
* ``lexical``: BM25 ranking alone (the index's FTS5 table; photo-only queries find nothing);
* ``fusion``: the weighted sum with the engine's defaults (lexical on), no re-ranker;
* ``fusion+rerank``: the same with the index's trained classifier (only when the engine has one).

Groups: each judged query's ``kind`` (text, photo, text+photo); text queries naming a brand (``brand``) or a
model number (``model``) of their best-labelled products also count in those groups; synthetic exact-id
queries (``id``) form their own group and stay out of ``overall``.  ``top1`` is the share of queries whose
first hit has the query's highest label ("the product at rank 1").
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from search.evaluation import metrics
from search.evaluation.judgments import JudgedQuery
from search.query import build_terms, query_words
from search.rerank.features import tokens

if TYPE_CHECKING:
    from search.candidates import Candidates
    from search.engine import SearchEngine

SYSTEMS: tuple[str, ...] = ("text", "image", "lexical", "fusion", "fusion+rerank")
_SEARCH_ARGS: dict[str, dict[str, Any]] = {
    "text": {"image_share": 0.0, "lexical_weight": 0.0, "rerank": False},
    "image": {"image_share": 1.0, "lexical_weight": 0.0, "rerank": False},
    "fusion": {"rerank": False},
    "fusion+rerank": {"rerank": True},
}
CURVE_KS: tuple[int, ...] = (1, 2, 3, 5, 7, 10, 15, 20, 30, 40, 50, 75, 100)


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """Which cut-offs, systems and depth an evaluation uses."""

    ks: tuple[int, ...] = (1, 10, 50)
    ndcg_k: int = 10
    #: Hits retrieved per query and system (the recall curve runs up to it).
    depth: int = 100
    systems: tuple[str, ...] = SYSTEMS

    def __post_init__(self) -> None:
        if not self.ks or min(self.ks) < 1 or max(self.ks) > self.depth:
            raise ValueError(f"every k must be within [1, depth={self.depth}], got {self.ks}")
        unknown = set(self.systems) - set(SYSTEMS)
        if unknown:
            raise ValueError(f"unknown systems {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")


def query_groups(query: JudgedQuery, products: Mapping[str, dict[str, Any]]) -> list[str]:
    """The groups ``query`` counts in: its kind, and ``brand`` / ``model`` / ``id`` for such text queries."""
    if query.query_id.startswith("id:"):
        return ["id"]
    groups = [query.kind]
    if query.kind != "text" or not query.text:
        return groups
    words = set(tokens(query.text))
    best = max(query.labels.values(), default=0)
    top = [products[p] for p, label in query.labels.items() if label == best and best > 0 and p in products]
    codes = {w for w in words if any(c.isdigit() for c in w)}
    if codes and top and all(codes <= set(tokens(f"{p.get('title')} {p.get('description')}")) for p in top):
        groups.append("model")
    elif top and all(p.get("brand") and set(tokens(p["brand"])) <= words for p in top):
        groups.append("brand")
    return groups


class _CpuTimed:
    """Wraps a re-ranker and records the CPU milliseconds of each call (wall time suffers from busy neighbours)."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.cpu_ms: list[float] = []

    def rerank(self, candidates: Candidates) -> Candidates:
        started = time.thread_time()
        out: Candidates = self.inner.rerank(candidates)
        self.cpu_ms.append((time.thread_time() - started) * 1000)
        return out


def _ranked_ids(engine: SearchEngine, system: str, query: JudgedQuery, depth: int) -> tuple[list[str], dict[str, float]]:
    if system == "lexical":
        started = time.perf_counter()
        words = query_words(build_terms(text=query.text)) if query.text else []
        pks, _ = engine.store.lexical(words, limit=depth)
        meta = engine.store.products(pks.tolist()) if len(pks) else {}
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        return [meta[int(pk)]["id"] for pk in pks], {"candidates": elapsed, "total": elapsed}
    result = engine.search(**query.search_args(), k=depth, **_SEARCH_ARGS[system])
    timings = dict(result.timings)
    timings["candidates"] = sum(timings.get(s, 0.0) for s in ("sqlite", "ann", "fuse"))
    return [h.product_id for h in result.hits], timings


def _scores(ranked: np.ndarray, judged: np.ndarray, config: EvalConfig) -> dict[str, Any]:
    out: dict[str, Any] = {f"recall@{k}": metrics.recall_at_k(ranked, judged, k) for k in config.ks}
    out[f"ndcg@{config.ndcg_k}"] = metrics.ndcg_at_k(ranked, judged, config.ndcg_k)
    out["mrr"] = metrics.reciprocal_rank(ranked)
    out["top1"] = metrics.top1(ranked, judged)
    out["curve"] = metrics.recall_curve(ranked, judged, [k for k in CURVE_KS if k <= config.depth])
    return out


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in rows[0] if k != "curve"] if rows else []
    out: dict[str, Any] = {k: round(metrics.mean([r[k] for r in rows]), 4) for k in keys}
    out["queries"] = len(rows)
    if rows:
        out["recall_curve"] = [round(float(v), 4) for v in np.mean([r["curve"] for r in rows], axis=0)]
    return out


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def evaluate(engine: SearchEngine, queries: Sequence[JudgedQuery], *, config: EvalConfig = EvalConfig(),
             progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Metrics per system, overall and per group, with stage latency medians; a JSON-ready dict."""
    systems = [s for s in config.systems if s != "fusion+rerank" or engine.reranker is not None]
    queries = [q for q in queries if q.relevant > 0]
    wanted = {p for q in queries for p, label in q.labels.items() if label > 0}
    pks = engine.store.product_pks(wanted)
    stored = engine.store.products(list(pks.values())) if pks else {}
    products = {row["id"]: row for row in stored.values()}
    groups = {q.query_id: query_groups(q, products) for q in queries}
    per_system: dict[str, Any] = {}
    latency: dict[str, dict[str, list[float]]] = {}
    timed = _CpuTimed(engine.reranker)
    probe = copy.copy(engine)  # the same engine, its re-ranker timed
    probe.reranker = timed if engine.reranker is not None else None
    for system in systems:
        rows: dict[str, list[dict[str, Any]]] = {}
        times: dict[str, list[float]] = {}
        for query in queries:
            ids, timings = _ranked_ids(probe, system, query, config.depth)
            ranked = np.array([query.labels.get(i, 0) for i in ids], dtype=np.float64)
            judged = np.array(list(query.labels.values()), dtype=np.float64)
            scores = _scores(ranked, judged, config)
            for group in groups[query.query_id] + ([] if groups[query.query_id] == ["id"] else ["overall"]):
                rows.setdefault(group, []).append(scores)
            for stage, ms in timings.items():
                times.setdefault(stage, []).append(ms)
            if progress is not None:
                progress(1)
        per_system[system] = {"overall": _summary(rows.get("overall", [])),
                              "by_kind": {g: _summary(r) for g, r in sorted(rows.items()) if g != "overall"}}
        latency[system] = times
        per_system[system]["latency_ms"] = {stage: _median(v) for stage, v in sorted(times.items())}
    counts: dict[str, int] = {}
    for names in groups.values():
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    stages = latency.get("fusion+rerank") or latency.get("fusion") or {}
    report: dict[str, Any] = {
        "queries": {"overall": sum(1 for g in groups.values() if g != ["id"]), **dict(sorted(counts.items()))},
        "ks": list(config.ks), "ndcg_k": config.ndcg_k, "depth": config.depth,
        "curve_ks": [k for k in CURVE_KS if k <= config.depth], "systems": per_system,
        "latency_ms": {stage: _median(stages.get(stage, [])) for stage in ("encode", "candidates", "rerank", "total")},
    }
    rerank_times = latency.get("fusion+rerank", {}).get("rerank", [])
    if rerank_times:
        report["latency_ms"]["rerank_p95"] = round(float(np.percentile(rerank_times, 95)), 3)
        report["latency_ms"]["rerank_cpu"] = _median(timed.cpu_ms)
    report["checks"] = checks(report)
    return report


def checks(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, evaluated on ``report``: name, value, target, passed."""
    systems, key = report["systems"], f"ndcg@{report['ndcg_k']}"
    out: list[dict[str, Any]] = []

    def ndcg(system: str, group: str) -> float | None:
        part = systems.get(system, {})
        found = part.get("overall") if group == "overall" else part.get("by_kind", {}).get(group)
        return found.get(key) if found and found.get("queries") else None

    def gain(new: float | None, old: float | None) -> float | None:
        return None if new is None or not old else round(new / old - 1.0, 4)

    for group in ("overall", "text", "photo", "text+photo"):
        value = gain(ndcg("fusion+rerank", group), ndcg("fusion", group))
        if value is not None:
            out.append({"name": f"rerank gain {key} ({group})", "value": value, "target": 0.05, "passed": value >= 0.05})
    single = [v for v in (ndcg("text", "text+photo"), ndcg("image", "text+photo")) if v is not None]
    for system in ("fusion", "fusion+rerank"):
        value = gain(ndcg(system, "text+photo"), max(single)) if single else None
        if value is not None:
            out.append({"name": f"{system} over best single modality {key} (text+photo)", "value": value,
                        "target": 0.10, "passed": value >= 0.10})
    for system in ("fusion", "fusion+rerank"):
        for group in ("id", "model", "brand"):
            found = systems.get(system, {}).get("by_kind", {}).get(group)
            if found and found.get("queries"):
                out.append({"name": f"{system} top1 ({group})", "value": found["top1"], "target": 0.95,
                            "passed": found["top1"] >= 0.95})
    for key, name in (("rerank", "rerank latency median ms"), ("rerank_cpu", "rerank CPU time median ms")):
        value = report["latency_ms"].get(key)
        if value is not None:
            out.append({"name": name, "value": value, "target": 5.0, "passed": value <= 5.0})
    return out

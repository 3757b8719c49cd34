"""Training the fusion classifier from judged queries, on the very candidates the engine re-ranks.

    reranker, report = train_reranker(engine, read_judgments("judgments-train.jsonl"))
    save_reranker(reranker, engine.store.folder)

Training asks the engine for the candidates it re-ranks at query time (:func:`query_candidates`) and builds
features with the one function query time uses (``search.rerank.features.build_features``).  Candidates the
judgments do not mention count as label 0 by default (the demo judgments list every relevant product);
``RerankerConfig(unjudged="skip")`` leaves them out of the loss instead.  A judged product's label weight
(``JudgedQuery.label_weights``, e.g. the inverse propensity of a logged click) multiplies its loss; unlisted
products weigh 1.  Judgments from the search log carry each product's logged behaviour
(``JudgedQuery.evidence``): then a behaviour prior per product (``search.rerank.behaviour``) becomes a
feature, out of fold per training query, and is stored with the classifier.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np

from search.candidates import Candidates
from search.engine import SearchEngine
from search.evaluation.judgments import JudgedQuery, id_queries, split_queries
from search.rerank.behaviour import BEHAVIOUR_FEATURE, BehaviourPrior
from search.rerank.features import build_features
from search.rerank.model import EpochReport, QueryData, RerankerConfig, fit, ndcg
from search.rerank.storage import FusionReranker, reranker_meta
from search.trained_files import index_identity

__all__ = ["TrainReport", "query_candidates", "query_data", "train_reranker"]


# -- the candidates of a judged query, exactly as the engine re-ranks them -------------------------------------
class _Capture:
    """A stand-in re-ranker that keeps what the engine hands it."""

    candidates: Candidates | None = None

    def rerank(self, candidates: Candidates) -> Candidates:
        self.candidates = candidates
        return candidates


def query_candidates(engine: SearchEngine, query: JudgedQuery, *, depth: int, image_share: float | None = None,
                     lexical_weight: float | None = None) -> tuple[Candidates | None, dict[str, float]]:
    """The top ``depth`` candidates (by fused score) the engine would hand its re-ranker for ``query``, and
    the stage timings; ``None`` when nothing matched.  The engine itself is not modified."""
    capture = _Capture()
    probe = copy.copy(engine)  # shares the store, view and caches; only its re-ranker and depth differ
    probe.reranker = capture
    probe.config = replace(engine.config, rerank_depth=depth)
    result = probe.search(**query.search_args(), k=min(depth, engine.config.max_k), rerank=True,
                          image_share=image_share, lexical_weight=lexical_weight)
    return capture.candidates, result.timings


def query_data(candidates: Candidates, query: JudgedQuery, *, attributes: Sequence[str] = (),
               unjudged: str = "zero", behaviour: Mapping[str, float] | None = None) -> QueryData:
    """Features and labels of one judged query's candidates (``behaviour``: product priors, see
    ``search.rerank.behaviour``)."""
    rows, qf = build_features(candidates, attributes=attributes, behaviour=behaviour)
    ids = [p["id"] for p in candidates.products]
    labels = np.array([query.labels.get(i, 0) for i in ids], dtype=np.float32)
    mask = np.array([i in query.labels for i in ids], dtype=bool) if unjudged == "skip" else np.ones(len(ids), bool)
    weights = np.array([query.label_weights.get(i, 1.0) for i in ids], dtype=np.float32) if query.label_weights else None
    return QueryData(rows=rows, query=qf, labels=labels, mask=mask, fused=np.asarray(candidates.fused, np.float32),
                     judged=np.array(sorted(query.labels.values(), reverse=True), dtype=np.float32), kind=query.kind,
                     weights=weights)


# -- training --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class TrainReport:
    train_queries: int
    val_queries: int
    skipped: int  # queries without candidates
    baseline_val_ndcg: float | None  # fused order on the validation queries
    best_val_ndcg: float | None
    best_epoch: int
    seconds: float
    epochs: list[EpochReport] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "epochs": [asdict(e) for e in self.epochs]}


def train_reranker(engine: SearchEngine, queries: Sequence[JudgedQuery], *, config: RerankerConfig = RerankerConfig(),
                   on_query: Callable[[int], None] | None = None,
                   on_epoch: Callable[[EpochReport], None] | None = None,
                   sources: Mapping[str, int] | None = None) -> tuple[FusionReranker, TrainReport]:
    """Train a classifier for ``engine``'s index on judged ``queries`` (plus ``config.id_queries`` exact-id
    queries); a ``val_fraction`` of them picks the best epoch.  ``on_query(1)`` ticks per query collected.
    ``sources`` (e.g. ``{"judged": 0, "pseudo": 1500}``, see ``search.rerank.pseudo``) is recorded in the
    stored classifier's ``trained`` metadata."""
    started = time.perf_counter()
    depth = config.depth or engine.config.rerank_depth
    queries = list(queries)
    if config.id_queries:
        queries += id_queries(engine.store.product_ids(), config.id_queries, seed=config.seed)
    attributes = config.attributes
    if attributes is None:
        attributes = tuple(engine.store.attribute_fields()[: config.max_attributes])
    prior = BehaviourPrior.learn(queries)  # from the log's evidence (None without)
    if prior is not None and BEHAVIOUR_FEATURE not in attributes:
        attributes = (*attributes, BEHAVIOUR_FEATURE)
    train_q, val_q = split_queries(queries, config.val_fraction, seed=config.seed)
    data: dict[str, list[QueryData]] = {"train": [], "val": []}
    skipped = 0
    for split, group in (("train", train_q), ("val", val_q)):
        for query in group:
            candidates, _ = query_candidates(engine, query, depth=depth)
            if candidates is None or len(candidates) == 0:
                skipped += 1
            else:
                data[split].append(query_data(candidates, query, attributes=attributes, unjudged=config.unjudged,
                                              behaviour=prior.without(query) if prior is not None else None))
            if on_query is not None:
                on_query(1)
    result = fit(data["train"], data["val"], config, attributes=attributes, progress=on_epoch)
    baseline = ndcg(data["val"], [d.fused for d in data["val"]]) if data["val"] else None
    best = next((e.val_ndcg for e in result.epochs if e.epoch == result.best_epoch), None)
    report = TrainReport(train_queries=len(data["train"]), val_queries=len(data["val"]), skipped=skipped,
                         baseline_val_ndcg=baseline, best_val_ndcg=best, best_epoch=result.best_epoch,
                         seconds=time.perf_counter() - started, epochs=result.epochs)
    meta = reranker_meta(config, attributes=attributes, depth=depth, identity=index_identity(engine.store),
                         norm=result.norm, behaviour=prior.to_json() if prior is not None else None,
                 trained={"config": asdict(config),
                          "effective": {"residual": config.residual_bound, "average": config.averaging,
                                        "weight_decay": config.decay}, "queries": len(queries), **({"sources": dict(sources)} if sources else {}),
                          "val_ndcg": _round(best),
                          "baseline_val_ndcg": _round(baseline), "best_epoch": result.best_epoch,
                          "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return FusionReranker(arch=config.arch, params=result.params, norm=result.norm, meta=meta), report


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)




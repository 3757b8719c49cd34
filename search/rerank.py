"""The fusion classifier: a trained re-ranker of the engine's top candidates, stored in the index folder.

    reranker, report = train_reranker(engine, read_judgments("judgments-train.jsonl"))
    save_reranker(reranker, engine.store.folder)     # INDEX/reranker/{reranker.json, weights.npz}
    engine.reranker = load_reranker(engine.store)    # None when the index has none

``reranker.json`` holds the format version, architecture, feature lists, normalisation statistics and the
identity of the index it was trained on (model fingerprint + the index's ``created_at``); ``weights.npz`` the
parameters (no pickle).  :func:`load_reranker` refuses (``ModelError``, naming both) a classifier trained on
another index or model, or on another feature set.  Scoring is numpy only; torch is imported for training.

Training asks the engine for the very candidates it re-ranks at query time (:func:`query_candidates`) and
builds features with the one function query time uses (``rerank_features.build_features``).  Candidates the
judgments do not mention count as label 0 by default (the demo judgments list every relevant product);
``RerankerConfig(unjudged="skip")`` leaves them out of the loss instead.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from indexer.errors import ModelError
from indexer.schema import IndexMeta
from indexer.store import IndexStore

from .judgments import JudgedQuery, id_queries, split_queries
from .rerank_features import FEATURE_VERSION, QUERY_FEATURES, build_features, channel_columns, channel_names, feature_names
from .rerank_model import ARCHITECTURES, EpochReport, Normaliser, QueryData, RerankerConfig, fit, forward, ndcg

if TYPE_CHECKING:
    from .candidates import Candidates
    from .engine import SearchEngine

__all__ = ["FusionReranker", "RerankerConfig", "TrainReport", "index_identity", "load_reranker", "query_candidates",
           "query_data", "read_reranker", "save_reranker", "train_reranker"]

RERANKER_DIR = "reranker"
META_FILE = "reranker.json"
WEIGHTS_FILE = "weights.npz"
FORMAT = "vitrina-reranker"
FORMAT_VERSION = 1
#: Products whose tokenised metadata a loaded classifier keeps in memory.
PROFILE_CACHE = 100_000


class FusionReranker:
    """Scores (query, candidate) pairs from ``build_features``; implements the engine's ``Reranker``."""

    def __init__(self, *, arch: str, params: dict[str, np.ndarray], norm: Normaliser, meta: dict[str, Any]):
        self.arch = arch
        self.attributes: tuple[str, ...] = tuple(meta.get("attributes", ()))
        self.channels = channel_columns(self.attributes)
        self.params = params
        self.norm = norm
        self.meta = meta
        self._profiles: dict = {}  # product metadata tokenised once (see build_features)

    def score(self, candidates: Candidates) -> np.ndarray:
        if len(self._profiles) > PROFILE_CACHE:
            self._profiles = {}
        rows, query = build_features(candidates, attributes=self.attributes, cache=self._profiles)
        return forward(self.arch, self.params, self.norm, rows, query, self.channels)

    def rerank(self, candidates: Candidates) -> Candidates:
        if len(candidates) == 0:
            return candidates
        return candidates.with_rerank(self.score(candidates))

    def describe(self) -> str:
        trained = self.meta.get("trained", {})
        return f"{self.arch} fusion classifier (val nDCG@10 {trained.get('val_ndcg')}, fused {trained.get('baseline_val_ndcg')})"


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
               unjudged: str = "zero") -> QueryData:
    """Features and labels of one judged query's candidates."""
    rows, qf = build_features(candidates, attributes=attributes)
    ids = [p["id"] for p in candidates.products]
    labels = np.array([query.labels.get(i, 0) for i in ids], dtype=np.float32)
    mask = np.array([i in query.labels for i in ids], dtype=bool) if unjudged == "skip" else np.ones(len(ids), bool)
    return QueryData(rows=rows, query=qf, labels=labels, mask=mask, fused=np.asarray(candidates.fused, np.float32),
                     judged=np.array(sorted(query.labels.values(), reverse=True), dtype=np.float32), kind=query.kind)


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
                   on_epoch: Callable[[EpochReport], None] | None = None) -> tuple[FusionReranker, TrainReport]:
    """Train a classifier for ``engine``'s index on judged ``queries`` (plus ``config.id_queries`` exact-id
    queries); a ``val_fraction`` of them picks the best epoch.  ``on_query(1)`` ticks per query collected."""
    started = time.perf_counter()
    depth = config.depth or engine.config.rerank_depth
    queries = list(queries)
    if config.id_queries:
        queries += id_queries(engine.store.product_ids(), config.id_queries, seed=config.seed)
    attributes = config.attributes
    if attributes is None:
        attributes = tuple(engine.store.attribute_fields()[: config.max_attributes])
    train_q, val_q = split_queries(queries, config.val_fraction, seed=config.seed)
    data: dict[str, list[QueryData]] = {"train": [], "val": []}
    skipped = 0
    for split, group in (("train", train_q), ("val", val_q)):
        for query in group:
            candidates, _ = query_candidates(engine, query, depth=depth)
            if candidates is None or len(candidates) == 0:
                skipped += 1
            else:
                data[split].append(query_data(candidates, query, attributes=attributes, unjudged=config.unjudged))
            if on_query is not None:
                on_query(1)
    result = fit(data["train"], data["val"], config, attributes=attributes, progress=on_epoch)
    baseline = ndcg(data["val"], [d.fused for d in data["val"]]) if data["val"] else None
    best = next((e.val_ndcg for e in result.epochs if e.epoch == result.best_epoch), None)
    report = TrainReport(train_queries=len(data["train"]), val_queries=len(data["val"]), skipped=skipped,
                         baseline_val_ndcg=baseline, best_val_ndcg=best, best_epoch=result.best_epoch,
                         seconds=time.perf_counter() - started, epochs=result.epochs)
    meta = _meta(config, attributes=attributes, depth=depth, identity=index_identity(engine.store), norm=result.norm,
                 trained={"config": asdict(config), "queries": len(queries), "val_ndcg": _round(best),
                          "baseline_val_ndcg": _round(baseline), "best_epoch": result.best_epoch,
                          "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return FusionReranker(arch=config.arch, params=result.params, norm=result.norm, meta=meta), report


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _meta(config: RerankerConfig, *, attributes: Sequence[str], depth: int, identity: dict[str, Any], norm: Normaliser,
          trained: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": FORMAT, "version": FORMAT_VERSION, "feature_version": FEATURE_VERSION, "architecture": config.arch,
        "hidden": config.hidden, "objective": config.objective, "depth": depth, "attributes": list(attributes),
        "features": list(feature_names(attributes)), "query_features": list(QUERY_FEATURES),
        "channels": list(channel_names(attributes)), "normalisation": norm.to_json(),
        "index": identity, "trained": trained,
    }


# -- identity and persistence ----------------------------------------------------------------------------------
def index_identity(store: IndexStore) -> dict[str, Any]:
    """What a classifier remembers of its index: the model's fingerprint and the index's creation time."""
    with store.engine.connect() as conn:
        created = conn.execute(select(IndexMeta.value).where(IndexMeta.key == "created_at")).scalar_one_or_none()
    return {"model": store.identity.name, "pretrained": store.identity.pretrained,
            "model_fingerprint": store.identity.fingerprint, "dim": store.identity.dim, "created_at": created,
            "products": store.counts()["products"]}


def _describe(identity: dict[str, Any]) -> str:
    created = identity.get("created_at")
    when = datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="seconds") if isinstance(created, (int, float)) else "?"
    return f"model {identity.get('model')} (weights {str(identity.get('model_fingerprint'))[:12]}), index created {when}"


def save_reranker(reranker: FusionReranker, index_folder: str | Path) -> Path:
    """Write ``INDEX/reranker/`` (replacing one that is there) and return its path."""
    target = Path(index_folder) / RERANKER_DIR
    staging = target.with_name(f"{RERANKER_DIR}.tmp-{os.getpid()}")
    old = target.with_name(f"{RERANKER_DIR}.old-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with (staging / WEIGHTS_FILE).open("wb") as handle:
        np.savez(handle, **reranker.params)
    (staging / META_FILE).write_text(json.dumps(reranker.meta, indent=2) + "\n", encoding="utf-8")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def read_reranker(folder: str | Path) -> FusionReranker:
    """A stored classifier (``INDEX/reranker``) without checking which index it belongs to."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as stored:
            params = {k: np.asarray(stored[k], dtype=np.float32) for k in stored.files}
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder}: unreadable re-ranker ({exc}); retrain it with `vitrina train-reranker`") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise ModelError(f"{folder}: not a re-ranker of format {FORMAT} v{FORMAT_VERSION}; retrain it with `vitrina train-reranker`")
    attributes = meta.get("attributes") if isinstance(meta.get("attributes"), list) else []
    if (meta.get("feature_version") != FEATURE_VERSION or meta.get("features") != list(feature_names(attributes))
            or meta.get("query_features") != list(QUERY_FEATURES) or meta.get("channels") != list(channel_names(attributes))):
        raise ModelError(f"{folder}: trained on another feature set (v{meta.get('feature_version')}, "
                         f"{len(meta.get('features') or [])} features; this vitrina computes v{FEATURE_VERSION}, "
                         f"{len(feature_names(attributes))}); retrain it with `vitrina train-reranker`")
    arch = meta.get("architecture")
    if arch not in ARCHITECTURES:
        raise ModelError(f"{folder}: unknown re-ranker architecture {arch!r}; retrain it with `vitrina train-reranker`")
    try:
        norm = Normaliser.from_json(meta["normalisation"])
        probe = forward(arch, params, norm, np.zeros((2, len(meta["features"])), np.float32),
                        np.zeros(len(QUERY_FEATURES), np.float32), channel_columns(attributes))
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise ModelError(f"{folder}: malformed re-ranker weights ({exc!r}); retrain it with `vitrina train-reranker`") from None
    if probe.shape != (2,):
        raise ModelError(f"{folder}: malformed re-ranker weights; retrain it with `vitrina train-reranker`")
    return FusionReranker(arch=arch, params=params, norm=norm, meta=meta)


def load_reranker(store: IndexStore) -> FusionReranker | None:
    """The classifier stored in ``store``'s folder, None when there is none; ``ModelError`` when it was
    trained for another index or model."""
    folder = store.folder / RERANKER_DIR
    if not (folder / META_FILE).is_file():
        return None
    reranker = read_reranker(folder)
    trained, current = reranker.meta.get("index", {}), index_identity(store)
    if trained.get("model_fingerprint") != current["model_fingerprint"] or trained.get("created_at") != current["created_at"]:
        raise ModelError(
            f"{folder} was trained for another index ({_describe(trained)}); this index has {_describe(current)}. "
            f"Retrain it with `vitrina train-reranker --index {store.folder} --judgments FILE`, "
            "or search without it (rerank=False, --no-rerank)"
        )
    return reranker

"""The fusion classifier as stored in an index folder: scoring, saving and loading (no engine, no torch).

    save_reranker(reranker, engine.store.folder)     # INDEX/reranker/{reranker.json, weights.npz}
    engine.reranker = load_reranker(engine.store)    # None when the index has none

``reranker.json`` holds the format version, architecture, feature lists (``attributes``, and ``business``: the
business fields, e.g. popularity, whose per-query z-scores are features; a file without it has none),
normalisation statistics and the identity of the index it was trained on (model fingerprint + the index's
``created_at``); ``weights.npz`` the parameters (no pickle).  :func:`load_reranker` refuses (``ModelError``,
naming both) a classifier trained on another index or model, or on another feature set.  Scoring is numpy
only; torch is imported for training.  Training lives in :mod:`search.rerank.train`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from indexer.errors import ModelError
from indexer.store.reader import IndexStore

from search.candidates import Candidates
from search.rerank.features import (FEATURE_VERSION, QUERY_FEATURES, build_features, business_fields, channel_columns,
                                    channel_names, feature_names)
from search.rerank.config import ARCHITECTURES, RerankerConfig
from search.rerank.model import Normaliser, forward
from search.trained_files import describe_index, index_identity, read_trained, same_index, save_trained

__all__ = ["FusionReranker", "load_reranker", "read_reranker", "save_reranker", "reranker_meta"]

RERANKER_DIR = "reranker"
META_FILE = "reranker.json"
FORMAT = "vitrina-reranker"
FORMAT_VERSION = 1
#: Products whose tokenised metadata a loaded classifier keeps in memory.
PROFILE_CACHE = 100_000


class FusionReranker:
    """Scores (query, candidate) pairs from ``build_features``; implements the engine's ``Reranker``."""

    def __init__(self, *, arch: str, params: dict[str, np.ndarray], norm: Normaliser, meta: dict[str, Any]):
        self.arch = arch
        self.attributes: tuple[str, ...] = tuple(meta.get("attributes", ()))
        #: The business fields it scores with (``business:NAME`` entries of ``attributes``); () when none.
        self.business: tuple[str, ...] = business_fields(self.attributes)
        self.channels = channel_columns(self.attributes)
        self.params = params
        self.norm = norm
        self.meta = meta
        self._profiles: dict[Any, Any] = {}  # product metadata tokenised once (see build_features)
        behaviour = meta.get("behaviour")
        stored = behaviour.get("products") if isinstance(behaviour, dict) else None
        #: Behaviour priors by product id (``search.rerank.behaviour``); None when it has none.
        self.behaviour: dict[str, float] | None = ({str(k): float(v) for k, v in stored.items()}
                                                   if isinstance(stored, dict) else None)

    @property
    def depth(self) -> int:
        """How many fused candidates it was trained to re-rank (the engine re-ranks as many)."""
        return int(self.meta.get("depth") or 0)

    def score(self, candidates: Candidates) -> np.ndarray:
        if len(self._profiles) > PROFILE_CACHE:
            self._profiles = {}
        rows, query = build_features(candidates, attributes=self.attributes, cache=self._profiles, behaviour=self.behaviour)
        return forward(self.arch, self.params, self.norm, rows, query, self.channels)

    def rerank(self, candidates: Candidates) -> Candidates:
        if len(candidates) == 0:
            return candidates
        return candidates.with_rerank(self.score(candidates))

    def describe(self) -> str:
        trained = self.meta.get("trained", {})
        return f"{self.arch} fusion classifier (val nDCG@10 {trained.get('val_ndcg')}, fused {trained.get('baseline_val_ndcg')})"


def reranker_meta(config: RerankerConfig, *, attributes: Sequence[str], depth: int, identity: dict[str, Any], norm: Normaliser,
          trained: dict[str, Any], behaviour: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``reranker.json`` holds besides the weights (``behaviour``: the stored behaviour priors)."""
    return {**({"behaviour": behaviour} if behaviour is not None else {}),
        "format": FORMAT, "version": FORMAT_VERSION, "feature_version": FEATURE_VERSION, "architecture": config.arch,
        "hidden": config.hidden, "objective": config.objective, "depth": depth, "attributes": list(attributes),
        "business": list(business_fields(attributes)),
        "features": list(feature_names(attributes)), "query_features": list(QUERY_FEATURES),
        "channels": list(channel_names(attributes)), "normalisation": norm.to_json(),
        "index": identity, "trained": trained,
    }


# -- identity and persistence ----------------------------------------------------------------------------------
def save_reranker(reranker: FusionReranker, index_folder: str | Path) -> Path:
    """Write ``INDEX/reranker/`` (replacing one that is there) and return its path."""
    return save_trained(Path(index_folder) / RERANKER_DIR, reranker.params, reranker.meta, meta_file=META_FILE)


def read_reranker(folder: str | Path) -> FusionReranker:
    """A stored classifier (``INDEX/reranker``) without checking which index it belongs to."""
    folder = Path(folder)
    meta, params = read_trained(folder, meta_file=META_FILE, what="re-ranker", advice="retrain it with `vitrina train-reranker`")
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise ModelError(f"{folder}: not a re-ranker of format {FORMAT} v{FORMAT_VERSION}; retrain it with `vitrina train-reranker`")
    attributes = cast("list[str]", meta.get("attributes") if isinstance(meta.get("attributes"), list) else [])
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
    if not same_index(trained, current):
        raise ModelError(
            f"{folder} was trained for another index ({describe_index(trained)}); this index has {describe_index(current)}. "
            f"Retrain it with `vitrina train-reranker --index {store.folder} --judgments FILE`, "
            "or search without it (rerank=False, --no-rerank)"
        )
    return reranker

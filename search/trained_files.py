"""Trained models kept in an index folder (the re-ranker, the photo + words combiner): written atomically as a
JSON description plus numpy weights (no pickle), read back with clear errors, and tied to the index they were
trained for (the model's fingerprint and the index's creation time)."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from indexer.errors import ModelError
from indexer.store.reader import IndexStore
from indexer.store.schema import IndexMeta

WEIGHTS_FILE = "weights.npz"


def index_identity(store: IndexStore) -> dict[str, Any]:
    """What a trained model remembers of its index: the model's fingerprint and the index's creation time."""
    with store.engine.connect() as conn:
        created = conn.execute(select(IndexMeta.value).where(IndexMeta.key == "created_at")).scalar_one_or_none()
    return {"model": store.identity.name, "pretrained": store.identity.pretrained,
            "model_fingerprint": store.identity.fingerprint, "dim": store.identity.dim, "created_at": created,
            "products": store.counts()["products"]}


def same_index(trained: dict[str, Any], current: dict[str, Any]) -> bool:
    return bool(trained.get("model_fingerprint") == current["model_fingerprint"] and trained.get("created_at") == current["created_at"])


def describe_index(identity: dict[str, Any]) -> str:
    created = identity.get("created_at")
    when = datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="seconds") if isinstance(created, (int, float)) else "?"
    return f"model {identity.get('model')} (weights {str(identity.get('model_fingerprint'))[:12]}), index created {when}"


def save_trained(target: Path, params: dict[str, np.ndarray], meta: dict[str, Any], *, meta_file: str) -> Path:
    """Write ``target/`` (``meta_file`` + weights), replacing one that is there, through a staging folder."""
    staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    old = target.with_name(f"{target.name}.old-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with (staging / WEIGHTS_FILE).open("wb") as handle:
        np.savez(handle, **params)  # type: ignore[arg-type]  # numpy's stub: **kwds could be allow_pickle
    (staging / meta_file).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def read_trained(folder: Path, *, meta_file: str, what: str, advice: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(description, float32 weights) of ``folder``; ``ModelError`` naming ``what`` and ``advice`` when unreadable."""
    try:
        meta = json.loads((folder / meta_file).read_text(encoding="utf-8"))
        with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as stored:
            params = {k: np.asarray(stored[k], dtype=np.float32) for k in stored.files}
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder}: unreadable {what} ({exc}); {advice}") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{folder}: not a {what}; {advice}")
    return meta, params

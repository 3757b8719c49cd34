"""The learned combiner of a photo and words ("this but in red"), stored in the index folder.

A small gated residual network over the two unit vectors (after TIRG, Vo et al. 2019)::

    h = relu(W1 [p; t] + b1)
    q = normalise(sigmoid(Wg h + bg) * p + Wr h + br)

The gate keeps what the photo shows; the residual moves it the way the words say.  It is trained from the
catalog itself (``search.composer_train``) and, when the index has one, the engine adds its output as one
more query term for queries with both a photo and words.  Scoring is numpy only; torch is used to train.

Stored as ``INDEX/composer/{composer.json, weights.npz}``; a composer trained for another index or model is
refused (``ModelError``), as re-rankers are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import ModelError
from indexer.store.reader import IndexStore

from search.trained_files import index_identity, read_trained, same_index, save_trained

COMPOSER_DIR = "composer"
META_FILE = "composer.json"
FORMAT = "vitrina-composer"
FORMAT_VERSION = 1
PARAMS = ("w1", "b1", "wg", "bg", "wr", "br")


def forward(params: dict[str, np.ndarray], photo: np.ndarray, text: np.ndarray) -> np.ndarray:
    """Composed unit vectors for rows of ``photo`` and ``text`` (``(n, d)`` each, or ``(d,)``)."""
    p, t = np.atleast_2d(np.asarray(photo, np.float32)), np.atleast_2d(np.asarray(text, np.float32))
    h = np.maximum(np.concatenate([p, t], axis=1) @ params["w1"] + params["b1"], 0.0)
    gate = 1.0 / (1.0 + np.exp(-(h @ params["wg"] + params["bg"])))
    q = gate * p + h @ params["wr"] + params["br"]
    q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    out: np.ndarray = q.astype(np.float32)
    return out[0] if np.ndim(photo) == 1 else out


class Composer:
    """A trained combiner: ``compose(photo, text)`` -> the unit vector of "this photo, changed by these words"."""

    def __init__(self, params: dict[str, np.ndarray], meta: dict[str, Any]):
        self.params = params
        self.meta = meta

    def compose(self, photo: np.ndarray, text: np.ndarray) -> np.ndarray:
        return forward(self.params, photo, text)

    def describe(self) -> str:
        trained = self.meta.get("trained", {})
        return f"gated residual composer (held-out accuracy {trained.get('val_accuracy')}, plain sum {trained.get('baseline_accuracy')})"


def save_composer(composer: Composer, index_folder: str | Path) -> Path:
    """Write ``INDEX/composer/`` (replacing one that is there) and return its path."""
    return save_trained(Path(index_folder) / COMPOSER_DIR, composer.params, composer.meta, meta_file=META_FILE)


def read_composer(folder: str | Path) -> Composer:
    """A stored composer, without checking which index it belongs to."""
    folder = Path(folder)
    advice = "retrain it with `vitrina train-composer`"
    meta, params = read_trained(folder, meta_file=META_FILE, what="composer", advice=advice)
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise ModelError(f"{folder}: not a composer of format {FORMAT} v{FORMAT_VERSION}; {advice}")
    dim = int(meta.get("dim") or 0)
    try:
        probe = forward(params, np.ones(dim, np.float32) / np.sqrt(max(dim, 1)), np.ones(dim, np.float32) / np.sqrt(max(dim, 1)))
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{folder}: malformed composer weights ({exc!r}); {advice}") from None
    if set(params) != set(PARAMS) or probe.shape != (dim,):
        raise ModelError(f"{folder}: malformed composer weights; {advice}")
    return Composer(params, meta)


def load_composer(store: IndexStore) -> Composer | None:
    """The composer stored in ``store``'s folder, None when there is none; ``ModelError`` when it was trained
    for another index or model."""
    folder = store.folder / COMPOSER_DIR
    if not (folder / META_FILE).is_file():
        return None
    composer = read_composer(folder)
    if not same_index(composer.meta.get("index", {}), index_identity(store)):
        raise ModelError(f"{folder} was trained for another index or model; retrain it with "
                         f"`vitrina train-composer --index {store.folder}`, or search without it (compose=False)")
    return composer


def composer_meta(*, dim: int, hidden: int, identity: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
    return {"format": FORMAT, "version": FORMAT_VERSION, "dim": dim, "hidden": hidden, "index": identity,
            "trained": trained}

"""Pure fusion arithmetic over arrays: no I/O, no models, only numpy.

* ``combine_terms``: the query vector ``q = normalise(sum_i w_i e_i)``;
* ``modality_scores``: a product's text cosine and the best cosine over its images;
* ``fuse``: ``s = a * image + (1 - a) * text``, falling back to the one modality a
  product has when it lacks the other;
* ``top_k``: the ``offset``-th to ``offset + k``-th best, ties broken by id.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-8


class FusionError(ValueError):
    """The terms cancel out (their weighted sum is the zero vector)."""


def combine_terms(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Unit vector of the weighted sum of unit term vectors ``vectors`` (n, d)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    weights = np.asarray(weights, dtype=np.float32).reshape(-1, 1)
    total = (vectors * weights).sum(axis=0)
    norm = float(np.linalg.norm(total))
    if norm < _EPS:
        raise FusionError("the weighted terms cancel out: their sum is the zero vector")
    unit: np.ndarray = (total / norm).astype(np.float32)
    return unit


def modality_scores(
    query: np.ndarray,
    text: np.ndarray,
    has_text: np.ndarray,
    images: np.ndarray,
    image_owner: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per product: (text cosine, best image cosine, row of the best image or -1).

    ``text`` (n, d) holds the products' text vectors (rows where ``has_text`` is False are
    ignored and score NaN); ``images`` (m, d) their image vectors, ``image_owner`` (m,) the
    product row of each.  A product without images scores NaN with best row -1.
    """
    n = len(text)
    text_score = (text @ query).astype(np.float32) if n else np.empty(0, np.float32)
    text_score = np.where(has_text, text_score, np.nan).astype(np.float32)
    image_score = np.full(n, -np.inf, dtype=np.float32)
    best_image = np.full(n, -1, dtype=np.int64)
    if len(images):
        sims = (images @ query).astype(np.float32)
        order = np.lexsort((-sims, image_owner))  # by owner, best first within owner
        owners = image_owner[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = owners[1:] != owners[:-1]
        winners = order[first]
        image_score[image_owner[winners]] = sims[winners]
        best_image[image_owner[winners]] = winners
    image_score[best_image < 0] = np.nan
    return text_score, image_score, best_image


def fuse(text_score: np.ndarray, image_score: np.ndarray, image_share: float, *,
         lexical: np.ndarray | None = None, lexical_weight: float = 0.0) -> np.ndarray:
    """``a * image + (1 - a) * text + l * lexical``.

    A product missing one modality gets the other's score for both; ``lexical`` (BM25
    normalised to [0, 1] per query, NaN where the words did not match) adds
    ``lexical_weight`` times itself.
    """
    if not 0.0 <= image_share <= 1.0:
        raise ValueError(f"image_share must be within [0, 1], got {image_share}")
    both = image_share * image_score + (1.0 - image_share) * text_score
    fused = np.where(np.isnan(image_score), text_score, np.where(np.isnan(text_score), image_score, both))
    if lexical is not None and lexical_weight:
        fused = fused + lexical_weight * np.nan_to_num(lexical, nan=0.0)
    return fused.astype(np.float32)


def align_scores(ids: np.ndarray, scored_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``scores`` of ``scored_ids`` laid out along ``ids`` (NaN where an id has none)."""
    out = np.full(len(ids), np.nan, dtype=np.float32)
    if len(scored_ids):
        order = np.argsort(scored_ids)
        pos = np.searchsorted(scored_ids[order], ids)
        pos = np.clip(pos, 0, len(scored_ids) - 1)
        hit = scored_ids[order][pos] == ids
        out[hit] = scores[order][pos[hit]]
    return out


def normalise_lexical(scores: np.ndarray) -> np.ndarray:
    """BM25 scores divided by the query's best one (NaN stays NaN; all-NaN stays NaN)."""
    if not np.any(~np.isnan(scores)):
        return scores
    best = float(np.nanmax(scores))
    return (scores / best).astype(np.float32) if best > 0 else np.where(np.isnan(scores), np.nan, 0.0).astype(np.float32)


def top_k(ids: np.ndarray, scores: np.ndarray, k: int, offset: int = 0) -> np.ndarray:
    """Positions of the ``offset``..``offset+k`` best scores (descending; ties by ascending id; NaN last)."""
    scores = np.where(np.isnan(scores), -np.inf, scores)
    order = np.lexsort((ids, -scores))
    return order[offset : offset + k]

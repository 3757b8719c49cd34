"""The scored candidates of one query: pure arrays plus the query's shape.

What the engine hands to the re-ranker and turns into hits.  All arrays are aligned and
ordered best first by the current score (``fused``, or ``rerank`` once re-ranked).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from search.query import Term


@dataclass(frozen=True, kw_only=True)
class QueryInfo:
    """The shape of a query, as features see it."""

    kinds: tuple[str, ...]
    weights: tuple[float, ...]
    words: tuple[str, ...]
    texts: tuple[str, ...]
    image_share: float
    lexical_weight: float

    @classmethod
    def from_terms(cls, terms: list[Term], *, words: list[str], image_share: float, lexical_weight: float) -> QueryInfo:
        return cls(
            kinds=tuple(t.kind for t in terms), weights=tuple(float(t.weight) for t in terms), words=tuple(words),
            texts=tuple(t.value for t in terms if t.kind == "text" and t.weight > 0),
            image_share=image_share, lexical_weight=lexical_weight,
        )

    def weight_of(self, kind: str, *, positive: bool = True) -> float:
        return float(sum(w for k, w in zip(self.kinds, self.weights) if k == kind and (w > 0) == positive))

    @property
    def has_photo(self) -> bool:
        return any(k == "image" and w > 0 for k, w in zip(self.kinds, self.weights))

    @property
    def kind(self) -> str:
        """``text``, ``photo``, ``text+photo`` or ``product`` (more like this)."""
        text = any(k == "text" and w > 0 for k, w in zip(self.kinds, self.weights))
        if self.has_photo:
            return "text+photo" if text else "photo"
        return "text" if text else "product"


@dataclass(frozen=True, kw_only=True)
class Candidates:
    """Per candidate product: cosine to its text, best cosine over its images, BM25, fused score."""

    pks: np.ndarray
    text: np.ndarray  # NaN: the product has no text
    image: np.ndarray  # NaN: the product has no image
    image_position: np.ndarray  # position of the best image in the product's list, -1 if none
    image_count: np.ndarray
    lexical: np.ndarray  # raw BM25 (higher is better), NaN: the words did not match
    lexical_norm: np.ndarray  # BM25 / the query's best BM25
    fused: np.ndarray
    #: Each part of ``fused`` as it enters the sum (``image``, ``text``, ``lexical``, ``field`` and one
    #: ``field:NAME`` per matched field); ``fused`` is the sum of the first four.
    parts: dict[str, np.ndarray] = field(default_factory=dict)
    products: list[dict[str, Any]]
    query: QueryInfo
    rerank: np.ndarray | None = None
    #: Facts about the whole query (e.g. ``scored``: how many products were scored before truncation).
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.pks)

    @property
    def score(self) -> np.ndarray:
        """The score hits are ordered by: the re-ranker's when present, else the fused one."""
        return self.rerank if self.rerank is not None else self.fused

    def take(self, order: np.ndarray) -> Candidates:
        """The candidates at ``order`` (positions), in that order."""
        order = np.asarray(order, dtype=np.int64)
        arrays = {name: getattr(self, name)[order] for name in
                  ("pks", "text", "image", "image_position", "image_count", "lexical", "lexical_norm", "fused")}
        return replace(self, **arrays, products=[self.products[i] for i in order],
                       parts={name: part[order] for name, part in self.parts.items()},
                       rerank=None if self.rerank is None else self.rerank[order])

    def concat(self, rest: Candidates) -> Candidates:
        """These candidates followed by ``rest`` (of the same query); re-rank scores continue below ours."""
        arrays: dict[str, Any] = {name: np.concatenate([getattr(self, name), getattr(rest, name)]) for name in
                  ("pks", "text", "image", "image_position", "image_count", "lexical", "lexical_norm", "fused")}
        rerank = None
        if self.rerank is not None:
            floor = float(self.rerank.min()) if len(self.rerank) else 0.0
            below = floor - 1.0 - np.arange(len(rest), dtype=np.float32) if rest.rerank is None else rest.rerank
            rerank = np.concatenate([self.rerank, np.asarray(below, np.float32)])
        parts = {name: np.concatenate([part, rest.parts.get(name, np.zeros(len(rest), np.float32))])
                 for name, part in self.parts.items()}
        return replace(self, **arrays, products=[*self.products, *rest.products], parts=parts, rerank=rerank)

    def with_rerank(self, scores: np.ndarray) -> Candidates:
        """Re-ordered by ``scores`` (descending; ties keep the fused order)."""
        scores = np.asarray(scores, dtype=np.float32)
        order = np.lexsort((np.arange(len(scores)), -scores))
        return replace(self, rerank=scores).take(order)

"""What a search returns: hits with their score parts, and the result of one query."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np


from search.candidates import Candidates, QueryInfo


@dataclass(frozen=True, kw_only=True)
class Hit:
    """One result: the product, its score, the parts it came from, and its best image.

    ``scores`` holds each part of the fused score as it enters the sum (``image``, ``text``, ``lexical``,
    ``field``; ``fused`` is their sum), the raw values beside them (``image_cosine``, ``text_cosine``,
    ``bm25``) and ``rerank`` when a trained re-ranker ordered the hits (then ``score`` is that).
    ``matched`` names the fields whose values the query's words (or photo) named, with their parts."""

    product_id: str
    score: float
    product: dict[str, Any]
    scores: dict[str, float | None]
    image: str | None = None
    image_index: int | None = None
    matched: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id, "score": self.score, "scores": self.scores, "matched": self.matched,
            "image": self.image, "image_index": self.image_index, "product": self.product,
        }


@dataclass(frozen=True, kw_only=True)
class SearchResult(Sequence[Hit]):
    """The hits of one query, best first, with per-stage timings in milliseconds, the weights the query was
    scored with (one set per query) and the catalog field values its words named."""

    hits: list[Hit]
    timings: dict[str, float] = field(default_factory=dict)
    candidates: int = 0
    weights: dict[str, Any] = field(default_factory=dict)
    fields: list[dict[str, Any]] = field(default_factory=list)
    #: The index commit whose vectors answered (see ``SearchEngine.info()["generation"]``).
    generation: int | None = None

    @overload
    def __getitem__(self, index: int) -> Hit: ...

    @overload
    def __getitem__(self, index: slice) -> list[Hit]: ...

    def __getitem__(self, index: int | slice) -> Hit | list[Hit]:
        return self.hits[index]

    def __len__(self) -> int:
        return len(self.hits)

    def to_json(self) -> dict[str, Any]:
        return {"hits": [h.to_json() for h in self.hits], "timings_ms": self.timings, "candidates": self.candidates,
                "weights": self.weights, "fields": self.fields}


def no_candidates(info: QueryInfo) -> Candidates:
    empty_f, empty_i = np.empty(0, np.float32), np.empty(0, np.int64)
    return Candidates(pks=empty_i, text=empty_f, image=empty_f, image_position=empty_i, image_count=empty_i,
                      lexical=empty_f, lexical_norm=empty_f, fused=empty_f, products=[], query=info)


def hits_from(candidates: Candidates) -> list[Hit]:
    """Hits for every candidate, in order, with the score parts each came from."""
    hits = []
    for i, product in enumerate(candidates.products):
        position = int(candidates.image_position[i])
        scores: dict[str, float | None] = {name: float(candidates.parts[name][i])
                                           for name in ("image", "text", "lexical", "field") if name in candidates.parts}
        scores.update({"fused": float(candidates.fused[i]), "image_cosine": _num(candidates.image[i]),
                       "text_cosine": _num(candidates.text[i]), "bm25": _num(candidates.lexical[i])})
        if candidates.rerank is not None:
            scores["rerank"] = float(candidates.rerank[i])
        matched = {name.partition(":")[2]: round(float(part[i]), 4) for name, part in candidates.parts.items()
                   if name.startswith("field:") and part[i] != 0}
        hits.append(Hit(
            product_id=product["id"], score=float(candidates.score[i]), product=product, scores=scores, matched=matched,
            image=product["images"][position] if position >= 0 else None, image_index=position if position >= 0 else None,
        ))
    return hits


def _num(x: float) -> float | None:
    return None if np.isnan(x) else float(x)

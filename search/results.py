"""What a search returns: hits with their score parts, and the result of one query."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np


from search.candidates import Candidates, QueryInfo


@dataclass(frozen=True, kw_only=True)
class Hit:
    """One result: the product, its fused score, the parts it came from, and its best image."""

    product_id: str
    score: float
    product: dict[str, Any]
    scores: dict[str, float | None]
    image: str | None = None
    image_index: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id, "score": self.score, "scores": self.scores,
            "image": self.image, "image_index": self.image_index, "product": self.product,
        }


@dataclass(frozen=True, kw_only=True)
class SearchResult(Sequence[Hit]):
    """The hits of one query, best first, with per-stage timings in milliseconds."""

    hits: list[Hit]
    timings: dict[str, float] = field(default_factory=dict)
    candidates: int = 0

    @overload
    def __getitem__(self, index: int) -> Hit: ...

    @overload
    def __getitem__(self, index: slice) -> list[Hit]: ...

    def __getitem__(self, index: int | slice) -> Hit | list[Hit]:
        return self.hits[index]

    def __len__(self) -> int:
        return len(self.hits)

    def to_json(self) -> dict[str, Any]:
        return {"hits": [h.to_json() for h in self.hits], "timings_ms": self.timings, "candidates": self.candidates}


def no_candidates(info: QueryInfo) -> Candidates:
    empty_f, empty_i = np.empty(0, np.float32), np.empty(0, np.int64)
    return Candidates(pks=empty_i, text=empty_f, image=empty_f, image_position=empty_i, image_count=empty_i,
                      lexical=empty_f, lexical_norm=empty_f, fused=empty_f, products=[], query=info)


def hits_from(candidates: Candidates) -> list[Hit]:
    """Hits for every candidate, in order, with the score parts each came from."""
    hits = []
    for i, product in enumerate(candidates.products):
        position = int(candidates.image_position[i])
        scores = {"image": _num(candidates.image[i]), "text": _num(candidates.text[i]),
                  "lexical": _num(candidates.lexical[i]), "fused": float(candidates.fused[i])}
        if candidates.rerank is not None:
            scores["rerank"] = float(candidates.rerank[i])
        hits.append(Hit(
            product_id=product["id"], score=float(candidates.score[i]), product=product, scores=scores,
            image=product["images"][position] if position >= 0 else None, image_index=position if position >= 0 else None,
        ))
    return hits


def _num(x: float) -> float | None:
    return None if np.isnan(x) else float(x)

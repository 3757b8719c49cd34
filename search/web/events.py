"""The search log over HTTP (``vitrina serve --log [DIR|URL]``): each search shown is recorded, ``POST /events`` takes
what shoppers did with it.

A search answered while logging is on carries ``"query_id"``; report a click, add-to-cart or purchase of one
of its products with ``POST /events {"query_id", "product_id", "kind", "position"}`` (202).  404 when the
query id was never logged, or when logging is off; 422 for a bad body, in the API's usual shape.

Recording is cheap and never fails a search: the ``LoggedSearch`` is built from what the page already holds
(no SQL) and handed to ``SearchLog.record_search``, which queues it for its writer thread.  What is kept
(see ``search.behaviour.log``): the terms as the engine got them (a photo only as the SHA-256 of the
uploaded bytes, a vector as its dimension and the SHA-256 of its float32 little-endian bytes), the
filters, the options, the hits shown with their score parts, the index generation; nothing about who
searched.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from search.behaviour.log import LoggedEvent, LoggedSearch, SearchLog, ShownHit, new_query_id
from search.web.models import ErrorOut, Text, ValidationErrorOut

#: Where ``Service`` keeps the SHA-256 of a photo's uploaded bytes on the decoded image (``Image.info``).
PHOTO_DIGEST = "vitrina_sha256"
#: Options of a request that are logged (named, so a new field is logged only once added here: privacy first).
_OPTIONS = {"k", "offset", "image_share", "rerank", "exclude", "image_weight", "sort", "boost", "in_stock"}
_log = logging.getLogger("vitrina.web")

Kind = Literal["click", "add_to_cart", "purchase"]


class EventIn(BaseModel):
    """``POST /events``: what a shopper did with a product shown for a logged search."""

    model_config = ConfigDict(extra="forbid", strict=True)
    query_id: Text = Field(min_length=1, max_length=64,
                          description="The query_id of the search answer the product was shown in")
    product_id: Text = Field(min_length=1, max_length=256)
    kind: Kind = Field(description="click, add_to_cart or purchase")
    position: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Its 1-based position in the results (counting the offset)")


class EventOut(BaseModel):
    accepted: bool = True


def add_event_routes(app: FastAPI, log: SearchLog | None) -> None:
    """``POST /events``; without a log it answers 404 (logging is off)."""

    @app.post("/events", status_code=202, response_model=EventOut,
              summary="Report a click, add-to-cart or purchase of a product shown for a logged search",
              responses={400: {"model": ErrorOut, "description": "The body cannot be read as JSON (not UTF-8 text)"},
                         404: {"model": ErrorOut,
                               "description": "Unknown query_id, or event logging is off (start the server with --log)"},
                         422: {"model": ValidationErrorOut, "description": "A bad body (each field named in errors)"}})
    def events(body: EventIn) -> EventOut:  # a plain def: ``knows`` may read the log file, so it runs in a thread
        if log is None:
            raise HTTPException(404, "event logging is off (start the server with --log)")
        if not log.accepting:
            raise HTTPException(404, "event logging is off (the search log failed to write; see the server log)")
        if not log.knows(body.query_id):
            raise HTTPException(404, f"unknown query_id {body.query_id!r}: no logged search has it")
        log.record_event(LoggedEvent(query_id=body.query_id, product_id=body.product_id, kind=body.kind,
                                     position=body.position, at=time.time()))
        return EventOut()


class SearchRecorder:
    """Turns one shown page into a ``LoggedSearch`` on the log; ``record`` answers its query id (None: not logged)."""

    def __init__(self, log: SearchLog, engine: Any):
        self.log, self.engine = log, engine

    def record(self, *, terms: Sequence[tuple[str, Any, float]], params: BaseModel, hits: Iterable[Any], offset: int,
               result: Any, rerank_supported: bool) -> str | None:
        if not self.log.accepting:
            return None
        try:
            query_id = new_query_id()
            options = params.model_dump(include=_OPTIONS)
            weights = getattr(result, "weights", None) or {}
            options.update(rerank_supported=rerank_supported,
                           weights={k: v for k, v in weights.items() if k != "field_priors"})
            shown = tuple(ShownHit(product_id=h.product_id, position=rank, score=float(h.score),
                                   scores={k: float(v) for k, v in h.scores.items() if v is not None})
                          for rank, h in enumerate(hits, start=offset + 1))
            self.log.record_search(LoggedSearch(
                query_id=query_id, at=time.time(), terms=[logged_term(*t) for t in terms], shown=shown,
                where=getattr(params, "where", None), params=options, generation=self._generation(result)))
            return query_id
        except Exception as exc:  # noqa: BLE001  (the log must never fail a search)
            _log.warning("search not logged: %s: %s", type(exc).__name__, exc)
            return None

    def _generation(self, result: Any) -> int | None:
        """The index generation the page came from: the result's when it says, else the engine's current view."""
        generation = getattr(result, "generation", None)
        if generation is None:  # the engine's view attribute, read without SQL (engine.info() counts rows)
            generation = getattr(getattr(self.engine, "_view", None), "generation", None)
        return int(generation) if isinstance(generation, (int, np.integer)) else None


def photo_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def logged_term(kind: str, value: Any, weight: float) -> dict[str, Any]:
    """A query term as logged: text as typed, a product id, a photo as the SHA-256 of its bytes, a vector as
    its dimension and the SHA-256 of its float32 little-endian bytes."""
    if kind == "image":
        info = getattr(value, "info", None)
        term: dict[str, Any] = {"image_sha256": info.get(PHOTO_DIGEST) if isinstance(info, dict) else None}
    elif kind == "vector":
        vector = np.asarray(value, dtype="<f4").ravel()
        term = {"vector_sha256": hashlib.sha256(vector.tobytes()).hexdigest(), "vector_dims": int(vector.size)}
    elif kind == "product":
        term = {"product": str(value)}
    else:
        term = {"text": str(value)}
    return {**term, "weight": float(weight)}

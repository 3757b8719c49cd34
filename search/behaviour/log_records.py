"""What a search log holds: the records (a search shown, an event a shopper reported), their settings, and
their rows as both log stores keep them (JSON text columns, the same in SQLite and PostgreSQL).

Pure data: no I/O here.  ``search.behaviour.log`` writes them (``SearchLog``) to a folder of SQLite files
(``search.behaviour.log_files``) or to PostgreSQL tables (``search.behaviour.log_postgres``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from indexer.errors import VitrinaError

__all__ = ["EVENT_GRADES", "EVENT_KINDS", "LogConfig", "LoggedEvent", "LoggedSearch", "SearchLogError", "ShownHit",
           "event_from_row", "event_row", "iter_shown", "new_query_id", "search_from_row", "search_row"]

EVENT_KINDS = ("click", "add_to_cart", "purchase")
#: Graded relevance an event stands for (the strongest event of a shown product wins).
EVENT_GRADES = {"click": 1, "add_to_cart": 2, "purchase": 3}


class SearchLogError(VitrinaError):
    """A search log that is not there or cannot be read (CLI: exit 1 with the message)."""


@dataclass(frozen=True, kw_only=True)
class LogConfig:
    """Rotation and buffering of a search log."""

    #: The live file (or PostgreSQL partition) is rotated past this size (bytes).
    max_bytes: int = 256 * 1024 * 1024
    #: Rotated files (partitions) kept; the oldest beyond this is deleted.
    keep: int = 4
    #: Rows waiting for the writer thread; beyond this, rows are dropped (and counted), never waited for.
    queue_size: int = 10_000
    #: Query ids remembered in memory for ``knows`` (older ones are looked up in the store).
    remember: int = 200_000
    #: After a failed write logging is off; it is tried again this many seconds later (0: never).
    retry_seconds: float = 60.0


@dataclass(frozen=True, kw_only=True)
class ShownHit:
    """One product as it was shown: its 1-based position, fused score and score parts."""

    product_id: str
    position: int
    score: float
    scores: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class LoggedSearch:
    query_id: str
    at: float
    #: Each term as logged: {"text": str} / {"product": id} / {"image_sha256": hex} / {"vector_sha256": hex,
    #: "vector_dims": n}, with its "weight".
    terms: Sequence[Mapping[str, Any]]
    shown: Sequence[ShownHit]
    where: Mapping[str, Any] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    generation: int | None = None

    @property
    def text(self) -> str | None:
        """The query's words when it is a plain text query (one positive text term), else None."""
        texts = [t for t in self.terms if "text" in t]
        return str(texts[0]["text"]) if len(texts) == 1 and len(self.terms) == 1 else None


@dataclass(frozen=True, kw_only=True)
class LoggedEvent:
    query_id: str
    product_id: str
    kind: str
    position: int | None
    at: float


def new_query_id() -> str:
    return uuid.uuid4().hex


def iter_shown(searches: Sequence[LoggedSearch]) -> Iterator[tuple[LoggedSearch, ShownHit]]:
    for search in searches:
        for hit in search.shown:
            yield search, hit


# -- rows: (query_id, at, terms, filters, params, shown, generation) and (query_id, product_id, kind, position, at)
def search_row(search: LoggedSearch) -> tuple[Any, ...]:
    shown = [{"product_id": hit.product_id, "position": hit.position, "score": hit.score, "scores": dict(hit.scores)}
             for hit in search.shown]
    return (search.query_id, search.at, json.dumps(list(map(dict, search.terms))),
            json.dumps(search.where) if search.where else None, json.dumps(dict(search.params)),
            json.dumps(shown), search.generation)


def search_from_row(row: Sequence[Any]) -> LoggedSearch:
    return LoggedSearch(query_id=row[0], at=row[1], terms=json.loads(row[2]), where=json.loads(row[3]) if row[3] else None,
                        params=json.loads(row[4]) if row[4] else {}, generation=row[6],
                        shown=tuple(ShownHit(**hit) for hit in json.loads(row[5])))


def event_row(event: LoggedEvent) -> tuple[Any, ...]:
    return (event.query_id, event.product_id, event.kind, event.position, event.at)


def event_from_row(row: Sequence[Any]) -> LoggedEvent:
    return LoggedEvent(query_id=row[0], product_id=row[1], kind=row[2], position=row[3], at=row[4])

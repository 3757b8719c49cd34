"""A search log kept in PostgreSQL: the index's own metadata database (``vitrina serve --log`` when the
metadata lives there) or any database by URL (``--log postgresql://...``).

Three tables beside the index's, the same columns as the SQLite files' (``search.behaviour.log_files``), JSON
as text::

    vitrina_log_searches   (part, query_id, at, terms, filters, params, shown, generation)  LIST-partitioned by part
    vitrina_log_events     (part, seq, query_id, product_id, kind, position, at)            LIST-partitioned by part
    vitrina_log_state      (part)  the live part

Rotation is the files' rotation in partitions: past ``LogConfig.max_bytes`` in the live part (its two
partitions with their indexes and TOAST, ``pg_total_relation_size``) a new part becomes live and the parts
older than the ``keep`` newest rotated ones are dropped (``DROP TABLE`` gives the space back at once, no
``DELETE`` and no vacuum).  Several processes write at once (``vitrina serve --workers N``, replicas): each
batch reads the live part ``FOR SHARE`` in its transaction, a rotation updates it under a transaction-level
advisory lock, so no batch writes into a part being dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import QueuePool

from indexer.errors import first_line
from indexer.store.postgres_backend import make_url_safe, normalise_url, translate_postgres_error
from search.behaviour.log_records import (LogConfig, LoggedEvent, LoggedSearch, SearchLogError, event_from_row, event_row,
                                          search_from_row, search_row)

__all__ = ["PostgresLogStore", "read_postgres_log"]

SEARCHES, EVENTS, STATE = "vitrina_log_searches", "vitrina_log_events", "vitrina_log_state"
#: Serialises creating the tables and rotating among every process that writes the log.
LOG_LOCK_KEY = 0x766974726C6F67
_PART = re.compile(r"_p(\d+)$")
_log = logging.getLogger("vitrina.log")
#: How long a rotation waits for the tables' locks (a long read of the log holds them) before it is put off.
ROTATE_LOCK_TIMEOUT_MS = 5000

_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {STATE} (one boolean PRIMARY KEY DEFAULT true CHECK (one), part integer NOT NULL)",
    f"""CREATE TABLE IF NOT EXISTS {SEARCHES} (
        part integer NOT NULL, query_id text NOT NULL, at double precision NOT NULL, terms text NOT NULL,
        filters text, params text, shown text NOT NULL, generation bigint, PRIMARY KEY (part, query_id)
    ) PARTITION BY LIST (part)""",
    f"CREATE INDEX IF NOT EXISTS {SEARCHES}_query ON {SEARCHES} (query_id)",
    f"""CREATE TABLE IF NOT EXISTS {EVENTS} (
        part integer NOT NULL, seq bigserial, query_id text NOT NULL, product_id text NOT NULL, kind text NOT NULL,
        position integer, at double precision NOT NULL
    ) PARTITION BY LIST (part)""",
    f"INSERT INTO {STATE} (part) VALUES (1) ON CONFLICT DO NOTHING",
)
_INSERT_SEARCH = text(f"INSERT INTO {SEARCHES} (part, query_id, at, terms, filters, params, shown, generation) "
                      "VALUES (:part, :q, :at, :terms, :filters, :params, :shown, :generation) ON CONFLICT DO NOTHING")
_INSERT_EVENT = text(f"INSERT INTO {EVENTS} (part, query_id, product_id, kind, position, at) "
                     "VALUES (:part, :q, :product, :kind, :position, :at)")
_SEARCH_COLUMNS = "query_id, at, terms, filters, params, shown, generation"


class PostgresLogStore:
    """The writer's side of a PostgreSQL log; one per process, any number of processes."""

    #: Other processes write the same tables: a query id one of them logged may not be in this one's memory.
    shared = True

    def __init__(self, url: str, config: LogConfig = LogConfig()):
        self.url = normalise_url(url)
        self.config = config
        self.where = make_url_safe(self.url)
        self.engine: Engine = create_engine(self.url, poolclass=QueuePool, pool_size=2, max_overflow=6,
                                            pool_pre_ping=True,
                                            connect_args={"connect_timeout": 10, "application_name": "vitrina-log"})
        try:
            with self.engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOG_LOCK_KEY})
                for statement in _SCHEMA:
                    conn.execute(text(statement))
                _ensure_part(conn, _live_part(conn))
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise _log_error(exc, self.where, "cannot keep the search log") from None

    def write(self, searches: Sequence[LoggedSearch], events: Sequence[LoggedEvent]) -> None:
        with self.engine.begin() as conn:
            part = conn.execute(text(f"SELECT part FROM {STATE} FOR SHARE")).scalar_one()
            if searches:
                conn.execute(_INSERT_SEARCH, [dict(zip(("q", "at", "terms", "filters", "params", "shown", "generation"),
                                                       search_row(s)), part=part) for s in searches])
            if events:
                conn.execute(_INSERT_EVENT, [dict(zip(("q", "product", "kind", "position", "at"), event_row(e)), part=part)
                                             for e in events])
        try:
            self._rotate_if_due(part)
        except SQLAlchemyError as exc:  # a lock not got in time (a long read of the log): the rows are in; next batch
            reason = first_line(getattr(exc, "orig", None) or exc)
            _log.warning("search log %s: rotation put off (%s); tried again after the next batch", self.where, reason)

    def knows(self, query_id: str) -> bool:
        try:
            with self.engine.connect() as conn:
                found = conn.execute(text(f"SELECT 1 FROM {SEARCHES} WHERE query_id = :q LIMIT 1"), {"q": query_id})
                return found.first() is not None
        except SQLAlchemyError:
            return False

    def reopen(self) -> None:
        """Fresh connections after a failed write (the next retry)."""
        self.engine.dispose()

    def _rotate_if_due(self, part: int) -> None:
        with self.engine.connect() as conn:
            if _part_bytes(conn, part) <= self.config.max_bytes:
                return
        with self.engine.begin() as conn:
            conn.execute(text(f"SET LOCAL lock_timeout = {int(ROTATE_LOCK_TIMEOUT_MS)}"))
            if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": LOG_LOCK_KEY}).scalar_one():
                return  # another process is rotating
            live = conn.execute(text(f"SELECT part FROM {STATE} FOR UPDATE")).scalar_one()
            if live != part or _part_bytes(conn, live) <= self.config.max_bytes:
                return  # rotated meanwhile
            _ensure_part(conn, live + 1)
            conn.execute(text(f"UPDATE {STATE} SET part = :part"), {"part": live + 1})
            for old in _parts(conn):
                if old < live + 1 - self.config.keep:
                    conn.execute(text(f"DROP TABLE IF EXISTS {SEARCHES}_p{old}, {EVENTS}_p{old}"))

    def close(self) -> None:
        self.engine.dispose()


def read_postgres_log(url: str) -> tuple[list[LoggedSearch], list[LoggedEvent]]:
    """Every search and event of the PostgreSQL log at ``url``, in time order, from one snapshot."""
    where = make_url_safe(normalise_url(url))
    engine = create_engine(normalise_url(url), connect_args={"connect_timeout": 10, "application_name": "vitrina-log"})
    try:
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            if conn.execute(text("SELECT to_regclass(:t)"), {"t": SEARCHES}).scalar() is None:
                raise SearchLogError(f"{where}: no search log in this database (written by `vitrina serve --log` "
                                     "when the index's metadata lives there, or `--log URL`)")
            searches = [search_from_row(row) for row in conn.execute(
                text(f"SELECT {_SEARCH_COLUMNS} FROM {SEARCHES} ORDER BY at, query_id"))]
            events = [event_from_row(row) for row in conn.execute(
                text(f"SELECT query_id, product_id, kind, position, at FROM {EVENTS} ORDER BY at, part, seq"))]
            return searches, events
    except SQLAlchemyError as exc:
        raise _log_error(exc, where, "the search log cannot be read") from None
    except (ValueError, TypeError) as exc:
        raise SearchLogError(f"{where}: the search log cannot be read: {exc}") from None
    finally:
        engine.dispose()


def _live_part(conn: Connection) -> int:
    return int(conn.execute(text(f"SELECT part FROM {STATE}")).scalar_one())


def _ensure_part(conn: Connection, part: int) -> None:
    for table in (SEARCHES, EVENTS):
        conn.execute(text(f"CREATE TABLE IF NOT EXISTS {table}_p{int(part)} PARTITION OF {table} FOR VALUES IN ({int(part)})"))


def _parts(conn: Connection) -> list[int]:
    names = conn.execute(text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                              "WHERE i.inhparent = CAST(:t AS regclass)"), {"t": SEARCHES}).scalars()
    return sorted(int(m.group(1)) for name in names if (m := _PART.search(name)))


def _part_bytes(conn: Connection, part: int) -> int:
    total: Any = conn.execute(text("SELECT pg_total_relation_size(to_regclass(:s)) + pg_total_relation_size(to_regclass(:e))"),
                              {"s": f"{SEARCHES}_p{int(part)}", "e": f"{EVENTS}_p{int(part)}"}).scalar()
    return int(total or 0)


def _log_error(exc: SQLAlchemyError, where: str, doing: str) -> SearchLogError:
    known = translate_postgres_error(exc, where)
    if known is not None:
        return SearchLogError(f"{doing}: {known}")
    orig = getattr(exc, "orig", None) or exc
    return SearchLogError(f"{where}: {doing}: {first_line(orig)}")

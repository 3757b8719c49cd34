"""The shop's search log: every search shown and every event shoppers report, append-only, in SQLite files
or in PostgreSQL.

Where it is kept (``vitrina serve --log [WHERE]``, ``open_log_store``, ``read_log``):

* a folder: SQLite files, ``log.db`` and rotated ``log.<n>.db`` (``search.behaviour.log_files``); one
  process writes it;
* a PostgreSQL URL: partitioned tables ``vitrina_log_*`` in that database (``search.behaviour.log_postgres``);
  any number of processes write it (``serve --workers N``, replicas);
* ``--log`` alone (``index_log_location``): the index's metadata database when it is PostgreSQL, else the
  folder ``search-log`` beside the index folder's files.

What is kept: ``searches`` (query id, time, the query's terms and weights, filters and options, the ranked
product ids shown with their score parts, the index generation) and ``events`` (query id, product id,
kind — click, add_to_cart, purchase — position, time).

Privacy: nothing identifies a shopper.  No IP address, cookie, user agent, session or account id is stored;
a photo query is kept as the SHA-256 of its bytes only (never the bytes), a vector query as its length and
hash; text queries are kept as typed.  To delete: remove the folder (or any ``log.<n>.db`` in it) while the
server is stopped, or ``DROP TABLE vitrina_log_searches, vitrina_log_events, vitrina_log_state`` in
PostgreSQL; rotation drops the oldest part by itself.

Recording never slows or fails a search: ``record_search`` / ``record_event`` put the row on a bounded queue
that a background thread writes in batches (a full queue drops the row and counts it); an error writing
(a full disk, a read-only folder, a database gone) turns logging off with a warning and searches go on;
``LogConfig.retry_seconds`` later the next search tries again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

from indexer.errors import first_line
from indexer.store.database import database_url
from search.behaviour.log_files import LOG_FILE, FolderLogStore, read_folder_log, rotated_files
from search.behaviour.log_postgres import PostgresLogStore, read_postgres_log
from search.behaviour.log_records import (EVENT_GRADES, EVENT_KINDS, LogConfig, LoggedEvent, LoggedSearch, SearchLogError,
                                          ShownHit, iter_shown, new_query_id)

__all__ = ["BATCH_SECONDS", "EVENT_GRADES", "EVENT_KINDS", "INDEX_LOG_FOLDER", "LOG_FILE", "LogConfig", "LogStore",
           "LoggedEvent", "LoggedSearch", "SearchLog", "SearchLogError", "ShownHit", "index_log_location",
           "is_database_url", "iter_shown", "new_query_id", "open_log_store", "read_log", "rotated_files"]

_log = logging.getLogger("vitrina.log")
#: How long the writer thread gathers rows before writing them in one transaction (seconds).
BATCH_SECONDS = 0.05
#: ``--log`` alone over an index whose metadata is SQLite: this folder inside the index folder.
INDEX_LOG_FOLDER = "search-log"


class LogStore(Protocol):
    """Where a ``SearchLog`` writes: ``FolderLogStore`` or ``PostgresLogStore``."""

    where: str
    #: True when other processes write the same log (a query id may be known there first).
    shared: bool

    def write(self, searches: list[LoggedSearch], events: list[LoggedEvent]) -> None: ...
    def knows(self, query_id: str) -> bool: ...
    def reopen(self) -> None: ...
    def close(self) -> None: ...


def is_database_url(location: str | Path) -> bool:
    return isinstance(location, str) and "://" in location


def open_log_store(location: str | Path, config: LogConfig = LogConfig()) -> LogStore:
    """The store at ``location`` (a folder, or a PostgreSQL URL), created when new; ``SearchLogError`` when it
    cannot be kept there."""
    if is_database_url(location):
        try:
            return PostgresLogStore(str(location), config)
        except ValueError as exc:  # not a PostgreSQL URL
            raise SearchLogError(f"--log: {exc}") from None
    try:
        return FolderLogStore(location, config)
    except Exception as exc:  # noqa: BLE001  (an OSError or sqlite3.Error: not a folder, no permission, a full disk)
        raise SearchLogError(f"cannot keep the search log in {location}: {exc}") from None


def read_log(location: str | Path) -> tuple[list[LoggedSearch], list[LoggedEvent]]:
    """Every search and event of the log at ``location`` (a folder or a PostgreSQL URL), in time order."""
    if is_database_url(location):
        try:
            return read_postgres_log(str(location))
        except ValueError as exc:
            raise SearchLogError(f"--from-log: {exc}") from None
    return read_folder_log(location)


def index_log_location(index: str | Path, database: str | None = None) -> str:
    """Where ``--log`` alone keeps the log of the index at ``index``: its PostgreSQL database when its
    metadata lives there (``database`` or the folder's ``database.json``), else ``INDEX/search-log``."""
    url = database_url(Path(index), database)
    return url if url is not None else str(Path(index) / INDEX_LOG_FOLDER)


def _looks_like_a_query_id(value: str) -> bool:
    """``new_query_id``'s shape (32 hex digits): only such an id is worth asking the store for twice."""
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


class SearchLog:
    """The writer side of a log: thread-safe, non-blocking; ``close`` flushes what is queued."""

    def __init__(self, location: str | Path | LogStore, config: LogConfig = LogConfig()):
        self.config = config
        self.store: LogStore = (open_log_store(location, config) if isinstance(location, (str, Path)) else location)
        self.where = self.store.where
        self.enabled = True
        self.dropped = 0
        self._off_since = 0.0
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue(maxsize=config.queue_size)
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._recent_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="vitrina-log", daemon=True)
        self._thread.start()

    # -- recording (any thread) ------------------------------------------------------------------
    def record_search(self, search: LoggedSearch) -> None:
        if self._put(("search", search)):
            self._remember(search.query_id)

    def record_event(self, event: LoggedEvent) -> None:
        self._put(("event", event))

    def knows(self, query_id: str) -> bool:
        """True when ``query_id`` was logged (recently in memory, else in the store).  A store that other
        processes write is asked twice, a batch apart: their search may still be on its way."""
        with self._recent_lock:
            if query_id in self._recent:
                return True
        if self.store.knows(query_id):
            return True
        if not self.store.shared or not _looks_like_a_query_id(query_id):
            return False
        time.sleep(3 * BATCH_SECONDS)
        return self.store.knows(query_id)

    @property
    def accepting(self) -> bool:
        """Whether rows are taken now: on, or off for longer than ``retry_seconds`` (the next row tries again)."""
        if not self.enabled and self.config.retry_seconds and time.monotonic() - self._off_since >= self.config.retry_seconds:
            self.enabled = True
            _log.warning("search log %s: trying to write again", self.where)
        return self.enabled

    def _remember(self, query_id: str) -> None:
        with self._recent_lock:
            self._recent[query_id] = None
            while len(self._recent) > self.config.remember:
                self._recent.popitem(last=False)

    def _put(self, item: tuple[str, Any]) -> bool:
        if not self.accepting:
            return False
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    # -- the writer thread -----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            deadline = time.monotonic() + BATCH_SECONDS  # gather a batch: the thread wakes rarely and holds the GIL little
            while len(batch) < 2048 and item is not None:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                    batch.append(item)
                except queue.Empty:
                    break
            rows = [b for b in batch if b is not None]
            if rows and self.enabled:
                self._write(rows)
            for _ in batch:
                self._queue.task_done()
            if None in batch:
                return

    def _write(self, rows: list[tuple[str, Any]]) -> None:
        try:
            self.store.write([s for kind, s in rows if kind == "search"], [e for kind, e in rows if kind == "event"])
        except Exception as exc:  # a full disk, a read-only folder, a database gone, a value that will not serialise
            self.enabled = False
            self._off_since = time.monotonic()
            again = (f"trying again in {self.config.retry_seconds:g} s" if self.config.retry_seconds
                     else "until the server restarts")
            _log.warning("search log %s: %s; logging is off, %s (searches go on)", self.where,
                         first_line(exc), again)
            try:
                self.store.reopen()
            except Exception:  # noqa: BLE001  (tried again at the next write)
                pass

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued row is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        try:
            self._queue.put(None, timeout=5)
        except queue.Full:
            pass
        self._thread.join(timeout=10)
        self.store.close()

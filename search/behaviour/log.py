"""The shop's search log: every search shown and every event shoppers report, append-only, in SQLite.

A folder (``vitrina serve --log DIR``) holds::

    log.db          the live log (WAL mode)
    log.<n>.db      rotated logs (n grows with time); at most ``LogConfig.keep`` of them are kept

Two tables: ``searches`` (query id, time, the query's terms and weights, filters and options, the ranked
product ids shown with their score parts, the index generation) and ``events`` (query id, product id,
kind — click, add_to_cart, purchase — position, time).

Privacy: nothing identifies a shopper.  No IP address, cookie, user agent, session or account id is stored;
a photo query is kept as the SHA-256 of its bytes only (never the bytes), a vector query as its length and
hash; text queries are kept as typed.  To delete: remove the folder (or any ``log.<n>.db`` in it) while the
server is stopped, or let rotation drop the oldest file.

Recording never slows or fails a search: ``record_search`` / ``record_event`` put the row on a bounded queue
that a background thread writes in batches (a full queue drops the row and counts it); an error writing
(a full disk, a read-only folder) turns logging off with a warning and searches go on.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_FILE = "log.db"
EVENT_KINDS = ("click", "add_to_cart", "purchase")
#: Graded relevance an event stands for (the strongest event of a shown product wins).
EVENT_GRADES = {"click": 1, "add_to_cart": 2, "purchase": 3}
_log = logging.getLogger("vitrina.log")
#: How long the writer thread gathers rows before writing them in one transaction (seconds).
BATCH_SECONDS = 0.05

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS searches (
        query_id TEXT PRIMARY KEY, at REAL NOT NULL, terms TEXT NOT NULL, filters TEXT, params TEXT,
        shown TEXT NOT NULL, generation INTEGER)""",
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, query_id TEXT NOT NULL, product_id TEXT NOT NULL,
        kind TEXT NOT NULL, position INTEGER, at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ix_events_query ON events(query_id)",
)


@dataclass(frozen=True, kw_only=True)
class LogConfig:
    """Rotation and buffering of a search log."""

    #: The live file is rotated past this size (bytes).
    max_bytes: int = 256 * 1024 * 1024
    #: Rotated files kept; the oldest beyond this is deleted.
    keep: int = 4
    #: Rows waiting for the writer thread; beyond this, rows are dropped (and counted), never waited for.
    queue_size: int = 10_000
    #: Query ids remembered in memory for ``knows`` (older ones are looked up in the live file).
    remember: int = 200_000


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


class SearchLog:
    """The writer side of a log folder: thread-safe, non-blocking; ``close`` flushes what is queued."""

    def __init__(self, folder: str | Path, config: LogConfig = LogConfig()):
        self.folder = Path(folder)
        self.config = config
        self.folder.mkdir(parents=True, exist_ok=True)
        self.enabled = True
        self.dropped = 0
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue(maxsize=config.queue_size)
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._recent_lock = threading.Lock()
        self._conn = _connect(self.folder / LOG_FILE)  # opened here: a folder that cannot hold a log fails at startup
        self._thread = threading.Thread(target=self._run, name="vitrina-log", daemon=True)
        self._thread.start()

    # -- recording (any thread) ------------------------------------------------------------------
    def record_search(self, search: LoggedSearch) -> None:
        if self._put(("search", search)):
            self._remember(search.query_id)

    def record_event(self, event: LoggedEvent) -> None:
        self._put(("event", event))

    def knows(self, query_id: str) -> bool:
        """True when ``query_id`` was logged (recently in memory, else in the live file)."""
        with self._recent_lock:
            if query_id in self._recent:
                return True
        try:
            with closing(_connect(self.folder / LOG_FILE, readonly=True)) as conn:
                return conn.execute("SELECT 1 FROM searches WHERE query_id = ?", (query_id,)).fetchone() is not None
        except sqlite3.Error:
            return False

    def _remember(self, query_id: str) -> None:
        with self._recent_lock:
            self._recent[query_id] = None
            while len(self._recent) > self.config.remember:
                self._recent.popitem(last=False)

    def _put(self, item: tuple[str, Any]) -> bool:
        if not self.enabled:
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
            with self._conn:
                self._conn.executemany(
                    "INSERT OR IGNORE INTO searches VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [_search_row(s) for kind, s in rows if kind == "search"])
                self._conn.executemany(
                    "INSERT INTO events (query_id, product_id, kind, position, at) VALUES (?, ?, ?, ?, ?)",
                    [(e.query_id, e.product_id, e.kind, e.position, e.at) for kind, e in rows if kind == "event"])
            self._rotate_if_due()
        except Exception as exc:  # a full disk, a read-only folder, a value that will not serialise: never the search
            self.enabled = False
            _log.warning("search log %s: %s; logging is off until the server restarts (searches go on)", self.folder, exc)

    def _rotate_if_due(self) -> None:
        live = self.folder / LOG_FILE
        size = sum(p.stat().st_size for p in self.folder.glob(LOG_FILE + "*") if p.is_file())
        if size <= self.config.max_bytes:
            return
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()
        numbers = [n for n in (_rotated_number(p) for p in self.folder.glob("log.*.db")) if n is not None]
        live.rename(self.folder / f"log.{max(numbers, default=0) + 1}.db")
        for leftover in self.folder.glob(LOG_FILE + "-*"):
            leftover.unlink(missing_ok=True)
        rotated = rotated_files(self.folder)
        for old in rotated[:max(0, len(rotated) - self.config.keep)]:
            old.unlink(missing_ok=True)
        self._conn = _connect(live)

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
        self._conn.close()


def rotated_files(folder: Path) -> list[Path]:
    """Rotated log files, oldest first."""
    found = [(n, p) for p in folder.glob("log.*.db") if (n := _rotated_number(p)) is not None]
    return [p for _, p in sorted(found)]


def read_log(folder: str | Path) -> tuple[list[LoggedSearch], list[LoggedEvent]]:
    """Every search and event in a log folder (rotated files first, then the live one), in time order."""
    folder = Path(folder)
    files = [*rotated_files(folder), folder / LOG_FILE]
    searches: list[LoggedSearch] = []
    events: list[LoggedEvent] = []
    for path in files:
        if not path.is_file():
            continue
        with closing(_connect(path, readonly=True)) as conn:
            for row in conn.execute("SELECT query_id, at, terms, filters, params, shown, generation FROM searches"):
                searches.append(LoggedSearch(
                    query_id=row[0], at=row[1], terms=json.loads(row[2]), where=json.loads(row[3]) if row[3] else None,
                    params=json.loads(row[4]) if row[4] else {}, generation=row[6],
                    shown=tuple(ShownHit(**hit) for hit in json.loads(row[5]))))
            for row in conn.execute("SELECT query_id, product_id, kind, position, at FROM events ORDER BY id"):
                events.append(LoggedEvent(query_id=row[0], product_id=row[1], kind=row[2], position=row[3], at=row[4]))
    searches.sort(key=lambda s: s.at)
    events.sort(key=lambda e: e.at)
    return searches, events


def iter_shown(searches: Sequence[LoggedSearch]) -> Iterator[tuple[LoggedSearch, ShownHit]]:
    for search in searches:
        for hit in search.shown:
            yield search, hit


def _search_row(search: LoggedSearch) -> tuple[Any, ...]:
    shown = [{"product_id": hit.product_id, "position": hit.position, "score": hit.score, "scores": dict(hit.scores)}
             for hit in search.shown]
    return (search.query_id, search.at, json.dumps(list(map(dict, search.terms))),
            json.dumps(search.where) if search.where else None, json.dumps(dict(search.params)),
            json.dumps(shown), search.generation)


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.commit()
    return conn


def _rotated_number(path: Path) -> int | None:
    middle = path.name[len("log."):-len(".db")]
    return int(middle) if middle.isdigit() else None

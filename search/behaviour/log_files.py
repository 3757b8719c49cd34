"""A search log kept as SQLite files in a folder (``vitrina serve --log DIR``)::

    log.db          the live log (WAL mode)
    log.<n>.db      rotated logs (n grows with time); at most ``LogConfig.keep`` of them are kept

Two tables: ``searches`` (query id, time, the query's terms and weights, filters and options, the ranked
product ids shown with their score parts, the index generation) and ``events`` (query id, product id,
kind, position, time).  One process writes a folder (rotation renames the live file), so ``vitrina serve``
with several workers keeps its log in PostgreSQL instead (``search.behaviour.log_postgres``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

from search.behaviour.log_records import (LogConfig, LoggedEvent, LoggedSearch, SearchLogError, event_from_row, event_row,
                                          search_from_row, search_row)

__all__ = ["LOG_FILE", "FolderLogStore", "has_folder_log", "read_folder_log", "rotated_files"]

LOG_FILE = "log.db"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS searches (
        query_id TEXT PRIMARY KEY, at REAL NOT NULL, terms TEXT NOT NULL, filters TEXT, params TEXT,
        shown TEXT NOT NULL, generation INTEGER)""",
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, query_id TEXT NOT NULL, product_id TEXT NOT NULL,
        kind TEXT NOT NULL, position INTEGER, at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ix_events_query ON events(query_id)",
)


class FolderLogStore:
    """The writer's side of a log folder; ``write`` runs on one thread (``SearchLog``'s), ``knows`` on any."""

    #: One process writes a folder: a query id it logged is always in its own memory first.
    shared = False

    def __init__(self, folder: str | Path, config: LogConfig = LogConfig()):
        self.folder = Path(folder)
        self.config = config
        self.where = str(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._conn = _connect(self.folder / LOG_FILE)  # opened here: a folder that cannot hold a log fails at startup

    def write(self, searches: Sequence[LoggedSearch], events: Sequence[LoggedEvent]) -> None:
        with self._conn:
            self._conn.executemany("INSERT OR IGNORE INTO searches VALUES (?, ?, ?, ?, ?, ?, ?)", map(search_row, searches))
            self._conn.executemany("INSERT INTO events (query_id, product_id, kind, position, at) VALUES (?, ?, ?, ?, ?)",
                                   map(event_row, events))
        self._rotate_if_due()

    def knows(self, query_id: str) -> bool:
        try:
            with closing(_connect(self.folder / LOG_FILE, readonly=True)) as conn:
                return conn.execute("SELECT 1 FROM searches WHERE query_id = ?", (query_id,)).fetchone() is not None
        except sqlite3.Error:
            return False

    def reopen(self) -> None:
        """A fresh connection after a failed write (the next retry)."""
        try:
            self._conn.close()
        finally:
            self._conn = _connect(self.folder / LOG_FILE)

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

    def close(self) -> None:
        self._conn.close()


def rotated_files(folder: Path) -> list[Path]:
    """Rotated log files, oldest first."""
    found = [(n, p) for p in folder.glob("log.*.db") if (n := _rotated_number(p)) is not None]
    return [p for _, p in sorted(found)]


def has_folder_log(folder: Path) -> bool:
    return (folder / LOG_FILE).is_file() or bool(rotated_files(folder))


def read_folder_log(folder: str | Path) -> tuple[list[LoggedSearch], list[LoggedEvent]]:
    """Every search and event in a log folder (rotated files first, then the live one), in time order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SearchLogError(f"{folder}: no such log folder")
    if not has_folder_log(folder):
        raise SearchLogError(f"{folder}: no search log in it ({LOG_FILE}, written by `vitrina serve --log {folder}`)")
    searches: list[LoggedSearch] = []
    events: list[LoggedEvent] = []
    try:
        for path in [*rotated_files(folder), folder / LOG_FILE]:
            if not path.is_file():
                continue
            with closing(_connect(path, readonly=True)) as conn:
                rows = conn.execute("SELECT query_id, at, terms, filters, params, shown, generation FROM searches")
                searches.extend(map(search_from_row, rows))
                rows = conn.execute("SELECT query_id, product_id, kind, position, at FROM events ORDER BY id")
                events.extend(map(event_from_row, rows))
    except (sqlite3.Error, ValueError, TypeError) as exc:
        raise SearchLogError(f"{folder}: the search log cannot be read: {exc}") from None
    searches.sort(key=lambda s: s.at)
    events.sort(key=lambda e: e.at)
    return searches, events


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

"""SQLite through SQLAlchemy: how an index folder's database is opened, and vectors as blobs.

Every connection gets foreign keys, a busy timeout, a 64 MiB page cache and a memory map (the query
path reads a few rows per search and should find them in memory), and a temporary ``fts5vocab`` view
of the word index (how many products each word occurs in); readers are ``query_only``, the writer
runs in WAL mode.  Transactions are real SQLite transactions (``BEGIN`` on begin).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine

from indexer.store.schema import DATABASE_FILE


def database_url(folder: Path) -> str:
    return f"sqlite:///{folder / DATABASE_FILE}"


def make_engine(folder: Path, *, readonly: bool) -> Engine:
    """An engine whose transactions are real SQLite transactions (``BEGIN`` on begin), so a
    read transaction sees one snapshot of the database (WAL) across all its statements."""
    engine = create_engine(database_url(folder), connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN below, pysqlite nothing of its own
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB of page cache per connection (default 2 MiB)
        cursor.execute("PRAGMA mmap_size=268435456")  # read pages through a 256 MiB memory map
        # per-connection view of the FTS5 vocabulary (document count of each word), made before query_only
        cursor.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.products_fts_words USING fts5vocab(main, products_fts, 'row')")
        if readonly:
            cursor.execute("PRAGMA query_only=ON")
        else:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def vector_to_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def blobs_to_matrix(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.empty((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)

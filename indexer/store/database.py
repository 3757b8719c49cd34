"""SQLite through SQLAlchemy: how an index folder's database is opened, and vectors as blobs.

Every connection gets foreign keys, a busy timeout, a 64 MiB page cache and a memory map (the query
path reads a few rows per search and should find them in memory), and a temporary ``fts5vocab`` view
of the word index (how many products each word occurs in); readers are ``query_only``, the writer
runs in WAL mode.  Transactions are real SQLite transactions (``BEGIN`` on begin); write transactions
(``WRITE`` execution options) begin ``IMMEDIATE``, so a write waits for another process's write lock
(up to ``BUSY_TIMEOUT_S``) instead of failing at its first statement.

A reader of a folder it cannot write (a read-only copy or mount of a finished index) opens the database
``immutable``: SQLite then needs no ``-shm``/``-wal`` files beside it.  The pool holds a connection per
thread that asks (each thread holds at most one: its snapshot), so concurrent searches never wait for one.

``write_errors`` turns SQLite's and the file system's failures (disk full, locked, read-only) into
``IndexWriteError`` / ``IndexLockedError`` with what to do, without the SQL or the row data.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

from indexer.errors import IndexFormatError, IndexLockedError, IndexWriteError, VitrinaError
from indexer.store.schema import DATABASE_FILE

#: How long a statement waits for another process's lock before ``IndexLockedError``.
BUSY_TIMEOUT_S = 30.0
#: Execution options of a write transaction: it begins ``IMMEDIATE`` (takes the write lock, waiting for it).
WRITE = {"sqlite_begin": "IMMEDIATE"}
#: Connections kept open for reuse; more are opened (never waited for) while more threads read at once.
POOL_SIZE = 16

_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26


def database_url(folder: Path) -> str:
    return f"sqlite:///{folder / DATABASE_FILE}"


def writable_location(folder: Path) -> bool:
    """Whether this process may write the database and create its ``-wal``/``-shm`` files beside it."""
    path = folder / DATABASE_FILE
    effective = os.access in os.supports_effective_ids
    return os.access(folder, os.W_OK | os.X_OK, effective_ids=effective) and \
        os.access(path, os.R_OK | os.W_OK, effective_ids=effective)


def make_engine(folder: Path, *, readonly: bool) -> Engine:
    """An engine whose transactions are real SQLite transactions (``BEGIN`` on begin), so a
    read transaction sees one snapshot of the database (WAL) across all its statements."""
    path = (folder / DATABASE_FILE).absolute()
    immutable = readonly and path.is_file() and not writable_location(folder)
    uri = f"file:{quote(str(path))}" + ("?immutable=1" if immutable else "")

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=BUSY_TIMEOUT_S)

    # every thread holds at most one connection (its snapshot): unbounded overflow never makes one wait,
    # where a bounded pool ran out at 16 concurrent searches (TimeoutError after 30 s)
    engine = create_engine("sqlite://", creator=connect, poolclass=QueuePool, pool_size=POOL_SIZE, max_overflow=-1)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN below, pysqlite nothing of its own
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
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
        mode = conn.get_execution_options().get("sqlite_begin")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")

    return engine


def translate_error(exc: BaseException, folder: Path) -> VitrinaError | None:
    """The domain error for a database or file-system failure of the index at ``folder``; None for others.

    By SQLite's error code and the OS's errno, never by message: the message names what to do, and never
    carries the SQL statement or the product data SQLAlchemy's own message would."""
    orig = getattr(exc, "orig", None) or exc  # SQLAlchemy's DBAPIError wraps sqlite3's exception
    if isinstance(orig, sqlite3.Error):
        code = (getattr(orig, "sqlite_errorcode", 0) or 0) & 0xFF
        if code in (_BUSY, _LOCKED):
            return IndexLockedError(f"{folder}: another process holds the index database's write lock (waited "
                                    f"{BUSY_TIMEOUT_S:g} s); let it finish or stop it, then run again")
        if code == _FULL:
            return IndexWriteError(f"{folder}: the disk is full (writing the index database); free some space and "
                                   "run again: the last commit is intact")
        if code in (_READONLY, _CANTOPEN, _IOERR):
            return IndexWriteError(f"{folder}: cannot write the index database ({orig}); check the folder's "
                                   "permissions and free space, then run again: the last commit is intact")
        if code in (_CORRUPT, _NOTADB):
            return IndexFormatError(f"{folder}: the index database is damaged ({orig}); `vitrina check --index {folder}` "
                                    "says more; rebuild the index into a new folder")
        return None
    if isinstance(orig, OSError) and orig.errno in (errno.ENOSPC, errno.EDQUOT):
        return IndexWriteError(f"{folder}: no space left on the device ({getattr(orig, 'filename', None) or 'index files'}); "
                               "free some space and run again: the last commit is intact")
    if isinstance(orig, OSError) and orig.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return IndexWriteError(f"{folder}: cannot write the index folder ({orig.strerror}); check its permissions")
    return None


@contextmanager
def write_errors(folder: Path) -> Iterator[None]:
    """Re-raise database and file-system failures of a write as ``translate_error``'s domain errors."""
    try:
        yield
    except VitrinaError:
        raise
    except Exception as exc:
        translated = translate_error(exc, folder)
        if translated is None:
            raise
        raise translated from None


def vector_to_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def blobs_to_matrix(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.empty((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)


def image_ranks(owners: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Each image's rank among its owner's images by catalog position (0, 1, ...: no gaps where an image of
    the catalog row failed to load), in the input order."""
    if not len(owners):
        return np.empty(0, np.int64)
    order = np.lexsort((positions, owners))
    grouped = owners[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = grouped[1:] != grouped[:-1]
    first = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order)) - first
    return ranks


def int_table(conn: Any, sql: str, columns: int, params: tuple[Any, ...] = ()) -> np.ndarray:
    """The integer rows of ``sql`` as an (n, ``columns``) int64 array, read from the DBAPI cursor as plain tuples
    (numpy probing SQLAlchemy ``Row`` objects one by one costs ~50x more: 6 s for 100k rows)."""
    cursor = conn.exec_driver_sql(sql, params).cursor
    rows = cursor.fetchall() if cursor is not None else []
    return np.array(rows, dtype=np.int64).reshape(len(rows), columns)


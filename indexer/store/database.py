"""Opening an index's metadata database (SQLite in the folder, or PostgreSQL by URL), the domain errors
of its failures, and vectors as blobs.

``open_backend`` picks the backend: an explicit ``database`` URL (PostgreSQL), else the PostgreSQL database
the folder names in ``database.json`` (written when the index was created or migrated there; without a
password: give it with ``PGPASSWORD`` or ``~/.pgpass``, or pass the URL again), else the folder's own
``vitrina.db`` (SQLite).

``write_errors`` turns the databases' and the file system's failures (disk full, locked, read-only,
unreachable) into ``IndexWriteError`` / ``IndexLockedError`` / ``DatabaseUnavailableError`` with what to do,
without the SQL or the row data.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import IndexFormatError, IndexWriteError, VitrinaError
from indexer.store.backend import Backend
from indexer.store.postgres_backend import PostgresBackend, make_url_safe, normalise_url, translate_postgres_error
from indexer.store.schema import DATABASE_FILE
from indexer.store.sqlite_backend import SQLiteBackend, translate_sqlite_error

#: The file in an index folder naming the PostgreSQL database that holds its metadata.
DATABASE_POINTER = "database.json"


def postgres_url(database: str | None) -> str | None:
    """``database`` as a PostgreSQL URL (None: SQLite); ``IndexFormatError`` for anything else."""
    if database is None or database in ("", "sqlite"):
        return None
    try:
        return normalise_url(database)
    except ValueError as exc:
        raise IndexFormatError(f"--db: {exc}; leave it out to keep the metadata in the index folder (SQLite)") from None


def has_index(folder: Path, database: str | None = None) -> bool:
    """Whether an index's metadata is there (without opening a PostgreSQL connection)."""
    return postgres_url(database) is not None or SQLiteBackend.file_exists(folder) or (folder / DATABASE_POINTER).is_file()


def database_url(folder: Path, database: str | None = None) -> str | None:
    """The PostgreSQL URL of the index at ``folder``'s metadata: ``database`` when given, else the one its
    ``database.json`` names (without a password); None when the metadata is the folder's SQLite file."""
    url = postgres_url(database)
    if url is None and (folder / DATABASE_POINTER).is_file():  # the folder's metadata lives in PostgreSQL
        try:
            url = postgres_url(json.loads((folder / DATABASE_POINTER).read_text(encoding="utf-8"))["url"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexFormatError(f"{folder / DATABASE_POINTER}: unreadable ({exc}); pass --db URL") from None
    return url


def open_backend(folder: Path, database: str | None = None, *, readonly: bool, create: bool = False) -> Backend:
    """The metadata database of the index at ``folder``.  ``create``: a new SQLite file may be made."""
    url = database_url(folder, database)
    if url is not None:
        return PostgresBackend.open(folder, url, readonly=readonly)
    if not create and not SQLiteBackend.file_exists(folder):
        raise IndexFormatError(f"{folder}: not an index folder (no {DATABASE_FILE}); build one with `vitrina index` "
                               "(or pass --db URL when its metadata lives in PostgreSQL)")
    return SQLiteBackend.open(folder, readonly=readonly)


def remember_database(backend: Backend) -> None:
    """Name a PostgreSQL database in the index folder (without its password), so later commands find it."""
    if isinstance(backend, PostgresBackend):
        with write_errors(backend.folder):
            (backend.folder / DATABASE_POINTER).write_text(json.dumps({"url": make_url_safe(backend.url)}) + "\n",
                                                          encoding="utf-8")


def translate_error(exc: BaseException, folder: Path) -> VitrinaError | None:
    """The domain error for a database or file-system failure of the index at ``folder``; None for others.

    By SQLite's error code, PostgreSQL's SQLSTATE and the OS's errno, never by message: the message names
    what to do, and never carries the SQL statement or the product data SQLAlchemy's own message would."""
    translated = translate_sqlite_error(exc, folder) or translate_postgres_error(exc, str(folder))
    if translated is not None:
        return translated
    orig = getattr(exc, "orig", None) or exc
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


def int_table(conn: Any, statement: Any, columns: int, params: dict[str, Any] | None = None) -> np.ndarray:
    """The integer rows of ``statement`` as an (n, ``columns``) int64 array, read from the DBAPI cursor as plain
    tuples (numpy probing SQLAlchemy ``Row`` objects one by one costs ~50x more: 6 s for 100k rows)."""
    cursor = conn.execute(statement, params or {}).cursor
    rows = cursor.fetchall() if cursor is not None else []
    return np.array(rows, dtype=np.int64).reshape(len(rows), columns)


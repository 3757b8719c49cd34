"""SQLite through SQLAlchemy: the default backend, one ``vitrina.db`` file in the index folder.

Every connection gets foreign keys, a busy timeout, a 64 MiB page cache and a memory map (the query
path reads a few rows per search and should find them in memory), and a temporary ``fts5vocab`` view
of the word index (how many products each word occurs in); readers are ``query_only``, the writer
runs in WAL mode.  Transactions are real SQLite transactions (``BEGIN`` on begin); write transactions
(``write_options``) begin ``IMMEDIATE``, so a write waits for another process's write lock (up to
``BUSY_TIMEOUT_S``) instead of failing at its first statement.

A reader of a folder it cannot write (a read-only copy or mount of a finished index) opens the database
``immutable``: SQLite then needs no ``-shm``/``-wal`` files beside it.  The pool holds a connection per
thread that asks (each thread holds at most one: its snapshot), so concurrent searches never wait for one.

Words: an FTS5 table (``products_fts``, rowid = ``products.pk``) kept in step with ``products`` by
triggers, ranked by BM25 with per-column weights.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from sqlalchemy import bindparam, column, create_engine, event, func, literal_column, select, table, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

from indexer.errors import IndexFormatError, IndexLockedError, IndexWriteError, VitrinaError
from indexer.store.backend import Backend, Lock
from indexer.store.lock import WriteLock
from indexer.store.schema import DATABASE_FILE, Base, Product

#: How long a statement waits for another process's lock before ``IndexLockedError``.
BUSY_TIMEOUT_S = 30.0
#: Execution options of a write transaction: it begins ``IMMEDIATE`` (takes the write lock, waiting for it).
WRITE = {"sqlite_begin": "IMMEDIATE"}
#: Connections kept open for reuse; more are opened (never waited for) while more threads read at once.
POOL_SIZE = 16

_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26

#: Full-text index over the products' words, kept in step with ``products`` by triggers.
#: Its rowid is ``products.pk``; text attributes are folded into one column.
FTS_DDL = (
    """CREATE VIRTUAL TABLE IF NOT EXISTS products_fts USING fts5(
        product_id, title, description, brand, category, attributes,
        tokenize = 'unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER IF NOT EXISTS products_fts_insert AFTER INSERT ON products BEGIN
        INSERT INTO products_fts(rowid, product_id, title, description, brand, category, attributes)
        VALUES (new.pk, new.id, new.title, new.description, coalesce(new.brand, ''), coalesce(new.category, ''),
                coalesce((SELECT group_concat(value, ' ') FROM json_each(new.attributes) WHERE type = 'text'), ''));
    END""",
    """CREATE TRIGGER IF NOT EXISTS products_fts_delete AFTER DELETE ON products BEGIN
        DELETE FROM products_fts WHERE rowid = old.pk;
    END""",
    """CREATE TRIGGER IF NOT EXISTS products_fts_update AFTER UPDATE ON products BEGIN
        DELETE FROM products_fts WHERE rowid = old.pk;
        INSERT INTO products_fts(rowid, product_id, title, description, brand, category, attributes)
        VALUES (new.pk, new.id, new.title, new.description, coalesce(new.brand, ''), coalesce(new.category, ''),
                coalesce((SELECT group_concat(value, ' ') FROM json_each(new.attributes) WHERE type = 'text'), ''));
    END""",
)
#: BM25 column weights, in the order of the FTS columns: ids and brands count most.
FTS_WEIGHTS = (10.0, 3.0, 1.0, 5.0, 2.0, 1.0)

_BM25 = f"-bm25(products_fts, {', '.join(repr(w) for w in FTS_WEIGHTS)})"
_LEXICAL = text(f"SELECT rowid, {_BM25} AS score FROM products_fts WHERE products_fts MATCH :match "
                "ORDER BY score DESC, rowid LIMIT :limit")
# "+rowid": a bare rowid would hand the list to FTS5, which then runs one full-text lookup per allowed product
_LEXICAL_ALLOWED = text(f"SELECT rowid, {_BM25} AS score FROM products_fts WHERE products_fts MATCH :match "
                        "AND +rowid IN (SELECT value FROM json_each(:allowed)) ORDER BY score DESC, rowid LIMIT :limit")
_WORD_COUNTS = text("SELECT term, doc FROM temp.products_fts_words WHERE term IN :words").bindparams(
    bindparam("words", expanding=True))


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


def fts_match(words: Sequence[str]) -> str:
    """An FTS5 query matching any of ``words`` (each a quoted phrase)."""
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


class SQLiteBackend(Backend):
    kind = "sqlite"

    @classmethod
    def open(cls, folder: Path, *, readonly: bool) -> SQLiteBackend:
        return cls(folder, make_engine(folder, readonly=readonly), readonly=readonly)

    @staticmethod
    def file_exists(folder: Path) -> bool:
        return (folder / DATABASE_FILE).is_file()

    def exists(self) -> bool:
        return self.file_exists(self.folder)

    def describe(self) -> str:
        return str(self.folder / DATABASE_FILE)

    def create_schema(self, conn: Connection) -> None:
        Base.metadata.create_all(conn)
        for statement in FTS_DDL:
            conn.exec_driver_sql(statement)

    def write_lock(self) -> Lock:
        return WriteLock(self.folder)

    @property
    def write_options(self) -> dict[str, Any]:
        return WRITE

    def lexical(self, conn: Connection, words: Sequence[str], *, clauses: list[Any] | None, allowed: np.ndarray | None,
                limit: int) -> list[tuple[int, float]]:
        match = fts_match(words)
        if allowed is not None:  # the words drive the search; each match is checked against the list
            rows = conn.execute(_LEXICAL_ALLOWED, {"match": match, "allowed": json.dumps(allowed.tolist()), "limit": int(limit)})
        elif clauses:
            fts = table("products_fts", column("rowid"))
            score = (-func.bm25(literal_column("products_fts"), *(literal_column(repr(w)) for w in FTS_WEIGHTS))).label("score")
            statement = (select(fts.c.rowid, score).where(literal_column("products_fts").op("MATCH")(match))
                         .where(literal_column("+products_fts.rowid").in_(select(Product.pk).where(*clauses)))
                         .order_by(score.desc(), fts.c.rowid).limit(int(limit)))
            rows = conn.execute(statement)
        else:  # the common case, on every text search
            rows = conn.execute(_LEXICAL, {"match": match, "limit": int(limit)})
        return [(int(r[0]), float(r[1])) for r in rows]

    def word_counts(self, conn: Connection, words: Sequence[str]) -> dict[str, int]:
        return {term: int(doc) for term, doc in conn.execute(_WORD_COUNTS, {"words": list(words)})}

    def translate_error(self, exc: BaseException) -> VitrinaError | None:
        return translate_sqlite_error(exc, self.folder)


def translate_sqlite_error(exc: BaseException, folder: Path) -> VitrinaError | None:
    """The domain error for an SQLite failure of the index at ``folder`` (by SQLite's error code, never by
    message); None when ``exc`` is not one."""
    orig = getattr(exc, "orig", None) or exc  # SQLAlchemy's DBAPIError wraps sqlite3's exception
    if not isinstance(orig, sqlite3.Error):
        return None
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

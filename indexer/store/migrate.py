"""``migrate_to_postgres``: move an index's metadata from its SQLite file into a PostgreSQL database.

Every table is copied with its primary keys (the FAISS segment files address vectors by them, so the
files stay as they are) in one PostgreSQL transaction, under the folder's write lock; the id sequences
continue from SQLite's (a deleted product's id is never reused).  The copy is checked row count by row
count before it commits.  Then the folder names the database (``database.json``) and the SQLite file is
kept beside it as ``vitrina.db.migrated`` (delete it once satisfied): nothing stored is lost whichever
step fails, and a failed migration leaves the folder as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Table, func, insert, select, text

from indexer.errors import IndexFormatError
from indexer.store.database import open_backend, postgres_url, remember_database, write_errors
from indexer.store.lock import WriteLock
from indexer.store.schema import DATABASE_FILE, Base

__all__ = ["MIGRATED_SUFFIX", "migrate_to_postgres"]

MIGRATED_SUFFIX = ".migrated"
#: Tables in foreign-key order, with the sequence-backed key whose next value must follow SQLite's.
_TABLES = (("index_meta", None), ("products", "pk"), ("images", "pk"), ("text_vectors", None),
           ("attribute_values", None), ("removals", "id"))
_BATCH = 2000


def migrate_to_postgres(folder: str | Path, database: str, *, progress: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Copy the SQLite index at ``folder`` into the empty PostgreSQL ``database``; rows copied per table."""
    folder = Path(folder)
    url = postgres_url(database)
    if url is None:
        raise IndexFormatError("--db: give the PostgreSQL URL to migrate into (postgresql+psycopg://USER@HOST/DATABASE)")
    if not (folder / DATABASE_FILE).is_file():
        raise IndexFormatError(f"{folder}: no {DATABASE_FILE} to migrate (already migrated, or not an index folder)")
    started = time.perf_counter()
    with write_errors(folder), WriteLock(folder):
        source = open_backend(folder, readonly=True)
        target = open_backend(folder, url, readonly=False)
        try:
            if target.exists():
                raise IndexFormatError(f"{target.describe()}: already holds an index; migrate into an empty database")
            copied: dict[str, int] = {}
            with target.write_lock(), source.snapshot() as reading, target.engine.begin() as writing:
                target.create_schema(writing)
                for name, key in _TABLES:
                    table = Base.metadata.tables[name]
                    copied[name] = _copy(reading, writing, table, progress)
                    if key is not None:
                        _continue_sequence(reading, writing, name, key)
                    held = writing.execute(select(func.count()).select_from(table)).scalar_one()
                    if held != copied[name]:
                        raise IndexFormatError(f"{target.describe()}: {name} holds {held} rows after copying {copied[name]}; "
                                               "nothing was committed")
            remember_database(target)
        finally:
            source.close()
            target.close()
        for suffix in ("", "-wal", "-shm"):
            path = folder / (DATABASE_FILE + suffix)
            if path.exists():
                path.rename(folder / (DATABASE_FILE + suffix + MIGRATED_SUFFIX))
    return {"tables": copied, "seconds": round(time.perf_counter() - started, 2), "database": target.describe()}


def _copy(reading: Any, writing: Any, table: Table, progress: Callable[[str, int], None] | None) -> int:
    rows = reading.execution_options(stream_results=True).execute(select(table))
    count = 0
    while batch := rows.fetchmany(_BATCH):
        writing.execute(insert(table), [dict(row._mapping) for row in batch])
        count += len(batch)
        if progress:
            progress(table.name, len(batch))
    return count


def _continue_sequence(reading: Any, writing: Any, name: str, key: str) -> None:
    """PostgreSQL's id sequence of ``name`` resumes after SQLite's highest id ever given (``sqlite_sequence``)."""
    given = reading.execute(text("SELECT seq FROM sqlite_sequence WHERE name = :name"), {"name": name}).scalar()
    highest = reading.execute(text(f"SELECT max({key}) FROM {name}")).scalar()
    last = max(int(given or 0), int(highest or 0))
    if last > 0:
        writing.execute(text("SELECT setval(pg_get_serial_sequence(:table, :key), :last)"),
                        {"table": name, "key": key, "last": last})

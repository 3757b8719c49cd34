"""What an index's metadata database must provide, whichever engine holds it (``Backend``).

Two backends implement it: SQLite (``sqlite_backend``: the default, one file in the index folder) and
PostgreSQL (``postgres_backend``: a database named by a URL, shared by several machines).  Everything
the rest of vitrina does with the database goes through SQLAlchemy Core with bound parameters, which
both speak; what differs lives behind this interface:

* the engine and its connections (pragmas, pools), and how a read sees one commit (``snapshot``);
* the full-text index over the products' words, its ranking (``lexical``) and its word counts;
* the writer's lock (a ``flock`` on a file; an advisory lock in the database);
* which failures mean "locked", "full", "unreachable" (``translate_error``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from sqlalchemy.engine import Connection, Engine

from indexer.errors import VitrinaError


class Lock(Protocol):
    """The single writer's lock: ``IndexLockedError`` from ``acquire`` while another process holds it."""

    def acquire(self) -> None: ...

    def release(self) -> None: ...

    def __enter__(self) -> Lock: ...

    def __exit__(self, *exc: object) -> None: ...


class Backend:
    """An opened metadata database of the index at ``folder`` (the FAISS segment files live there)."""

    kind: ClassVar[str] = ""

    def __init__(self, folder: Path, engine: Engine, *, readonly: bool):
        self.folder = folder
        self.engine = engine
        self.readonly = readonly

    def describe(self) -> str:
        """Where the metadata lives, for messages (never a password)."""
        raise NotImplementedError

    # -- schema and locking -------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether an index has been created there."""
        raise NotImplementedError

    def create_schema(self, conn: Connection) -> None:
        """The tables, the full-text index and whatever keeps it in step, in ``conn``'s transaction."""
        raise NotImplementedError

    def write_lock(self) -> Lock:
        raise NotImplementedError

    @property
    def write_options(self) -> dict[str, Any]:
        """Execution options of a write transaction."""
        return {}

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read transaction: every statement in it sees the same commit."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def reading(self) -> AbstractContextManager[Connection]:
        """A connection for a few reads outside any snapshot."""
        return self.engine.connect()

    def after_commit(self, products: int) -> None:
        """Housekeeping after a commit that left ``products`` products (statistics, index upkeep)."""

    # -- words --------------------------------------------------------------------------------------
    def lexical(self, conn: Connection, words: Sequence[str], *, clauses: list[Any] | None, allowed: np.ndarray | None,
                limit: int) -> list[tuple[int, float]]:
        """(product pk, score; higher is better) of the best ``limit`` products matching any of ``words``,
        among those matching ``clauses`` or among the ``allowed`` pks."""
        raise NotImplementedError

    def word_counts(self, conn: Connection, words: Sequence[str]) -> dict[str, int]:
        """How many products each of ``words`` occurs in (words in none left out)."""
        raise NotImplementedError

    # -- failures -----------------------------------------------------------------------------------
    def translate_error(self, exc: BaseException) -> VitrinaError | None:
        """The domain error for a failure of this database; None for others."""
        raise NotImplementedError

    def close(self) -> None:
        self.engine.dispose()

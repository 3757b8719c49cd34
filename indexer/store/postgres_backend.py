"""PostgreSQL through SQLAlchemy (psycopg 3): the metadata of an index shared by several machines.

The tables are the same models as SQLite's (``indexer.store.schema``: ids are ``bigint``, JSON is
``jsonb``); what SQLite does its own way has a twin here:

* words: FTS5 + BM25 become a ``product_words`` table (``tsvector`` per product, a GIN index) kept in
  step with ``products`` by statement-level triggers.  Text is folded like FTS5's ``unicode61
  remove_diacritics`` tokenizer (lower case, ``unaccent``, split on anything not a letter or digit) and
  weighted per field in PostgreSQL's four classes: id A (1.0), brand B (0.5), title and category C (0.3),
  description and text attributes D (0.1) -- BM25's 10 / 5 / 3 and 2 / 1 and 1.  The ranking is
  ``ts_rank`` with length normalisation 1: term frequency in a weighted, length-damped sum, without BM25's
  inverse document frequency (a rare word does not count more than a common one; vitrina keeps words found
  in very many products out of the query by their counts, and standardises lexical scores per query);
* ``fts5vocab`` word counts become a ``word_counts`` table (term, products) kept by triggers at every
  statement, so a commit leaves them exact;
* a read sees one commit through a ``REPEATABLE READ`` read-only transaction (SQLite: a WAL snapshot);
* the writer's ``flock`` on ``write.lock`` becomes a session advisory lock (``pg_try_advisory_lock``),
  released by the server when the writer's connection ends, even if its process is killed.

One index per database: point two indexes at two databases (or two URLs with different databases).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import bindparam, column, create_engine, func, inspect, literal_column, select, table, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import QueuePool

from indexer.errors import DatabaseUnavailableError, IndexLockedError, IndexWriteError, VitrinaError, first_line
from indexer.store.backend import Backend, Lock
from indexer.store.schema import Base, IndexMeta, Product

POOL_SIZE = 16
#: The advisory lock key of an index's writer ("vitrina" in ASCII): one writer per database.
WRITER_LOCK_KEY = 0x76697472696E61
#: ts_rank weights of the classes {D, C, B, A}.
RANK_WEIGHTS = "{0.1, 0.3, 0.5, 1.0}"

_WORDS_DDL = (
    # a B-tree entry holds at most 2,704 bytes: text that may be longer (a brand, an attribute value of 2,000
    # characters of up to 4 bytes) gets a hash index, which serves the equality filters on it alike
    "DROP INDEX IF EXISTS ix_products_category",
    "CREATE INDEX IF NOT EXISTS ix_products_category ON products USING hash (category)",
    "DROP INDEX IF EXISTS ix_products_brand",
    "CREATE INDEX IF NOT EXISTS ix_products_brand ON products USING hash (brand)",
    "DROP INDEX IF EXISTS ix_attribute_text",
    "CREATE INDEX IF NOT EXISTS ix_attribute_text ON attribute_values USING hash (text)",
    "CREATE EXTENSION IF NOT EXISTS unaccent",
    """CREATE OR REPLACE FUNCTION vitrina_fold(t text) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS
       $$ SELECT regexp_replace(lower(unaccent(coalesce(t, ''))), '[^[:alnum:]]+', ' ', 'g') $$""",
    """CREATE OR REPLACE FUNCTION vitrina_product_words(id text, brand text, title text, category text,
                                                        description text, attributes jsonb)
       RETURNS tsvector LANGUAGE sql STABLE PARALLEL SAFE AS $$
         SELECT setweight(to_tsvector('simple', vitrina_fold(id)), 'A')
             || setweight(to_tsvector('simple', vitrina_fold(brand)), 'B')
             || setweight(to_tsvector('simple', vitrina_fold(concat_ws(' ', title, category))), 'C')
             || setweight(to_tsvector('simple', vitrina_fold(concat_ws(' ', description,
                  (SELECT string_agg(v #>> '{}', ' ') FROM jsonb_each(coalesce(attributes, '{}'::jsonb)) AS e(k, v)
                   WHERE jsonb_typeof(v) = 'string')))), 'D')
       $$""",
    "CREATE TABLE IF NOT EXISTS product_words (pk bigint PRIMARY KEY, words tsvector NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ix_product_words ON product_words USING gin (words)",
    "CREATE TABLE IF NOT EXISTS word_counts (term text PRIMARY KEY, doc bigint NOT NULL)",
    """CREATE OR REPLACE FUNCTION vitrina_words_inserted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
         INSERT INTO product_words (pk, words)
         SELECT n.pk, vitrina_product_words(n.id, n.brand, n.title, n.category, n.description, n.attributes) FROM new_rows n;
         RETURN NULL; END $$""",
    """CREATE OR REPLACE FUNCTION vitrina_words_updated() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
         UPDATE product_words w SET words = x.words
         FROM (SELECT n.pk, vitrina_product_words(n.id, n.brand, n.title, n.category, n.description, n.attributes) AS words
               FROM new_rows n) x
         WHERE w.pk = x.pk AND w.words IS DISTINCT FROM x.words;
         RETURN NULL; END $$""",
    """CREATE OR REPLACE FUNCTION vitrina_words_deleted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
         DELETE FROM product_words w USING old_rows o WHERE w.pk = o.pk;
         RETURN NULL; END $$""",
    """CREATE OR REPLACE FUNCTION vitrina_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
         INSERT INTO word_counts (term, doc)
         SELECT t, count(*) FROM new_rows n, unnest(tsvector_to_array(n.words)) AS t GROUP BY t
         ON CONFLICT (term) DO UPDATE SET doc = word_counts.doc + EXCLUDED.doc;
         RETURN NULL; END $$""",
    """CREATE OR REPLACE FUNCTION vitrina_counts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
         UPDATE word_counts c SET doc = c.doc - d.n
         FROM (SELECT t, count(*) AS n FROM old_rows o, unnest(tsvector_to_array(o.words)) AS t GROUP BY t) d
         WHERE c.term = d.t;
         RETURN NULL; END $$""",
    """CREATE OR REPLACE FUNCTION vitrina_counts_updated() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
         INSERT INTO word_counts (term, doc)
         SELECT t, sum(n) FROM (
             SELECT t, 1 AS n FROM new_rows w, unnest(tsvector_to_array(w.words)) AS t
             UNION ALL SELECT t, -1 FROM old_rows w, unnest(tsvector_to_array(w.words)) AS t) x
         GROUP BY t HAVING sum(n) <> 0
         ON CONFLICT (term) DO UPDATE SET doc = word_counts.doc + EXCLUDED.doc;
         RETURN NULL; END $$""",
    """CREATE OR REPLACE TRIGGER products_words_insert AFTER INSERT ON products
       REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vitrina_words_inserted()""",
    """CREATE OR REPLACE TRIGGER products_words_update AFTER UPDATE ON products
       REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vitrina_words_updated()""",
    """CREATE OR REPLACE TRIGGER products_words_delete AFTER DELETE ON products
       REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vitrina_words_deleted()""",
    """CREATE OR REPLACE TRIGGER product_words_counts_insert AFTER INSERT ON product_words
       REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vitrina_counts_inserted()""",
    """CREATE OR REPLACE TRIGGER product_words_counts_update AFTER UPDATE ON product_words
       REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vitrina_counts_updated()""",
    """CREATE OR REPLACE TRIGGER product_words_counts_delete AFTER DELETE ON product_words
       REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION vitrina_counts_deleted()""",
)

_RANK = f"ts_rank('{RANK_WEIGHTS}'::float4[], w.words, q, 1)"
_LEXICAL = text(f"SELECT w.pk, {_RANK} AS score FROM product_words w, to_tsquery('simple', :query) AS q "
                "WHERE w.words @@ q ORDER BY score DESC, w.pk LIMIT :limit")
_LEXICAL_ALLOWED = text(f"SELECT w.pk, {_RANK} AS score FROM product_words w, to_tsquery('simple', :query) AS q "
                        "WHERE w.words @@ q AND w.pk = ANY(CAST(:allowed AS bigint[])) ORDER BY score DESC, w.pk LIMIT :limit")
_WORD_COUNTS = text("SELECT term, doc FROM word_counts WHERE term IN :terms AND doc > 0").bindparams(
    bindparam("terms", expanding=True))


def fold(word: str) -> list[str]:
    """The tokens of ``word`` as the full-text index holds them (lower case, no accents, split on what is
    not a letter or digit): PostgreSQL's ``vitrina_fold`` and FTS5's ``unicode61 remove_diacritics``."""
    decomposed = unicodedata.normalize("NFKD", word.lower())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.findall(r"[^\W_]+", plain)


def tsquery(words: Sequence[str]) -> str:
    """A ``to_tsquery`` text matching any of ``words`` (a word of several tokens as a phrase)."""
    phrases = [" <-> ".join(f"'{t}'" for t in tokens) for tokens in (fold(w) for w in words) if tokens]
    return " | ".join(phrases)


def normalise_url(url: str) -> str:
    """``url`` with the psycopg 3 driver named (``postgresql://`` and ``postgres://`` become
    ``postgresql+psycopg://``); anything else is refused."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise ValueError(f"not a PostgreSQL URL: {make_url_safe(url)!r}; use postgresql+psycopg://USER@HOST/DATABASE")


def make_url_safe(url: str) -> str:
    """``url`` without its password, for messages and for the index folder's ``database.json``."""
    try:
        return make_url(url).render_as_string(hide_password=True).replace(":***@", "@")
    except Exception:
        return url.split("@")[-1]


def make_engine(url: str) -> Engine:
    """A pooled engine; connections are opened on demand (never waited for) like SQLite's."""
    return create_engine(normalise_url(url), poolclass=QueuePool, pool_size=POOL_SIZE, max_overflow=-1,
                         connect_args={"connect_timeout": 10, "application_name": "vitrina"})


class AdvisoryLock:
    """The writer's lock: a session advisory lock held on a connection of its own."""

    def __init__(self, engine: Engine, describe: str):
        self.engine, self.describe = engine, describe
        self._conn: Connection | None = None

    def acquire(self) -> None:
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": WRITER_LOCK_KEY}).scalar_one()
        except BaseException:
            conn.close()
            raise
        if not got:
            holder = conn.execute(text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                                       "AND objid = :low LIMIT 1"), {"low": WRITER_LOCK_KEY & 0xFFFFFFFF}).scalar()
            conn.close()
            raise IndexLockedError(f"{self.describe}: another writer (server pid {holder or '?'}) is updating this index; "
                                   "wait for it to finish or stop it (searches keep working meanwhile)")
        self._conn = conn

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": WRITER_LOCK_KEY})
            finally:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> AdvisoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class PostgresBackend(Backend):
    kind = "postgresql"

    def __init__(self, folder: Path, engine: Engine, *, readonly: bool, url: str):
        super().__init__(folder, engine, readonly=readonly)
        self.url = url
        self._analyzed_at: int | None = None

    @classmethod
    def open(cls, folder: Path, url: str, *, readonly: bool) -> PostgresBackend:
        return cls(folder, make_engine(url), readonly=readonly, url=url)

    def exists(self) -> bool:
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(IndexMeta.__tablename__):
                return False
            return conn.execute(select(IndexMeta.key).where(IndexMeta.key == "format_version")).first() is not None

    def describe(self) -> str:
        return make_url_safe(self.url)

    def create_schema(self, conn: Connection) -> None:
        Base.metadata.create_all(conn)
        for statement in _WORDS_DDL:
            conn.exec_driver_sql(statement)

    def write_lock(self) -> Lock:
        return AdvisoryLock(self.engine, self.describe())

    def after_commit(self, products: int) -> None:
        """The writer merges the GIN index's pending list (readers would scan it on every query) and, after a
        bulk change (10% of the products or more since this writer last did), refreshes the planner's statistics:
        right after a bulk load the planner took a sequential scan over every product for each word query
        (28.6 ms p50 at 20k; 3.3 ms once analyzed, SQLite 3.5)."""
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("SELECT gin_clean_pending_list('ix_product_words'::regclass)"))
            last = self._analyzed_at
            if last is None or abs(products - last) * 10 >= max(last, 1):
                conn.execute(text("ANALYZE products, product_words, word_counts, attribute_values, images, text_vectors"))
                self._analyzed_at = products

    def snapshot(self) -> Any:
        return _snapshot(self.engine)

    def lexical(self, conn: Connection, words: Sequence[str], *, clauses: list[Any] | None, allowed: np.ndarray | None,
                limit: int) -> list[tuple[int, float]]:
        query = tsquery(words)
        if not query:
            return []
        if allowed is not None:
            rows = conn.execute(_LEXICAL_ALLOWED, {"query": query, "allowed": [int(p) for p in allowed], "limit": int(limit)})
        elif clauses:
            w = table("product_words", column("pk"), column("words"))
            matched = func.to_tsquery(literal_column("'simple'::regconfig"), bindparam("query"))
            score = func.ts_rank(literal_column(f"'{RANK_WEIGHTS}'::float4[]"), w.c.words, matched, 1).label("score")
            statement = (select(w.c.pk, score).where(w.c.words.op("@@")(matched))
                         .where(w.c.pk.in_(select(Product.pk).where(*clauses)))
                         .order_by(score.desc(), w.c.pk).limit(int(limit)))
            rows = conn.execute(statement, {"query": query})
        else:
            rows = conn.execute(_LEXICAL, {"query": query, "limit": int(limit)})
        return [(int(r[0]), float(r[1])) for r in rows]

    def word_counts(self, conn: Connection, words: Sequence[str]) -> dict[str, int]:
        folded = {word: tokens[0] for word in words if len(tokens := fold(word)) == 1}
        if not folded:
            return {}
        counts = {term: int(doc) for term, doc in conn.execute(_WORD_COUNTS, {"terms": sorted(set(folded.values()))})}
        return {word: counts[term] for word, term in folded.items() if term in counts}

    def translate_error(self, exc: BaseException) -> VitrinaError | None:
        return translate_postgres_error(exc, self.describe())


class _snapshot:
    """A ``REPEATABLE READ`` read-only transaction (one commit for every statement in it)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def __enter__(self) -> Connection:
        self.conn = self.engine.connect().execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        self.transaction = self.conn.begin()
        return self.conn

    def __exit__(self, *exc: object) -> None:
        try:
            self.transaction.rollback()  # nothing was written; ends the snapshot
        finally:
            self.conn.close()


_LOCKED = {"55P03", "40P01", "40001"}
_FULL = {"53100"}
_UNREACHABLE_CLASSES = ("08", "57", "53")


def translate_postgres_error(exc: BaseException, where: str) -> VitrinaError | None:
    """The domain error for a PostgreSQL failure (by SQLSTATE, never by message); None when ``exc`` is not one."""
    orig = getattr(exc, "orig", None) or exc
    if not type(orig).__module__.startswith("psycopg"):
        return None
    state = getattr(orig, "sqlstate", None) or ""
    if state in _LOCKED:
        return IndexLockedError(f"{where}: another transaction holds a lock this write needs; let it finish, then run again")
    if state in _FULL:
        return IndexWriteError(f"{where}: the database server's disk is full; free some space and run again: "
                               "the last commit is intact")
    if state in ("25006", "42501"):
        return IndexWriteError(f"{where}: the database refuses this write ({state}: read-only or no permission); "
                               "connect as a user that may write, then run again: the last commit is intact")
    unreachable = not state and type(orig).__name__ in ("OperationalError", "InterfaceError")  # no server answer
    if unreachable or state.startswith(_UNREACHABLE_CLASSES):
        reason = first_line(orig)
        return DatabaseUnavailableError(f"{where}: cannot use the PostgreSQL database ({reason}); check that the server "
                                        "is running and the URL, user and password (PGPASSWORD or ~/.pgpass) are right")
    return None

"""PostgreSQL as the metadata backend: what only it does (migration, the advisory lock, words folded like FTS5,
word counts kept by triggers, an unreachable server).  The store, engine and filter suites run on it too."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from indexer.config import IndexConfig
from indexer.errors import DatabaseUnavailableError, IndexFormatError, IndexLockedError
from indexer.pipeline import build_index
from indexer.store.postgres_backend import fold, tsquery
from indexer.store.reader import IndexStore
from indexer.store.writer import IndexWriter
from search import SearchEngine
from vitrina.cli import cli

pytestmark = pytest.mark.postgres


def _hits(folder, encoder, **options):
    queries = ("red square widget", "blue circle", "green thing", "brand1")
    with SearchEngine.open(folder, encoder=encoder, rerank=False) as engine:
        return [[(h.product_id, round(h.score, 4)) for h in engine.search(q, k=10, **options).hits] for q in queries]


def test_folding_matches_the_sqlite_tokenizer():
    assert fold("Café") == ["cafe"] and fold("T-Shirt_XL") == ["t", "shirt", "xl"] and fold("!!") == []
    assert tsquery(["red", "t-shirt", "--"]) == "'red' | 't' <-> 'shirt'"


def test_migrating_keeps_ids_vectors_and_answers_and_the_index_goes_on(tmp_path, built_index, catalog, tiny_encoder, pg_url):
    before = _hits(built_index, tiny_encoder, lexical_weight=0.0)
    with IndexStore.open(built_index) as store:
        ids = store.product_pks(store.product_ids())
        counts, commit = store.counts(), store.commit_info
    result = CliRunner().invoke(cli, ["migrate", "--from", str(built_index), "--db", pg_url])
    assert result.exit_code == 0, result.output
    assert "24 products" in result.output and "36 images" in result.output
    assert (built_index / "database.json").is_file() and (built_index / "vitrina.db.migrated").is_file()
    assert "password" not in (built_index / "database.json").read_text()
    with IndexStore.open(built_index) as store:  # the folder names its database now
        assert store.backend.kind == "postgresql"
        assert store.product_pks(ids) == ids and store.counts() == counts and store.commit_info == commit
        assert store.check()["image"] == 36
        assert store.word_counts(["brand1"]) == {"brand1": 8}
    assert _hits(built_index, tiny_encoder, lexical_weight=0.0) == before  # vectors and ids unchanged: same answers
    lines = catalog.read_text().splitlines()
    catalog.write_text("\n".join(lines + [json.dumps({"id": "NEW", "title": "brand new red widget"})]) + "\n")
    report = build_index(catalog, built_index, encoder=tiny_encoder)
    assert report.indexed == 1
    with IndexStore.open(built_index) as store:
        assert store.product_pks(["NEW"])["NEW"] > max(ids.values())  # the sequence went on from SQLite's
    again = CliRunner().invoke(cli, ["migrate", "--from", str(built_index), "--db", pg_url])
    assert again.exit_code == 1 and "no vitrina.db to migrate" in again.output


def test_migrating_into_a_database_that_holds_an_index_is_refused_and_changes_nothing(tmp_path, catalog, tiny_encoder,
                                                                                    built_index, pg_url):
    build_index(catalog, tmp_path / "other", encoder=tiny_encoder, config=IndexConfig(database=pg_url))
    result = CliRunner().invoke(cli, ["migrate", "--from", str(built_index), "--db", pg_url])
    assert result.exit_code == 1 and "already holds an index" in result.output
    assert (built_index / "vitrina.db").is_file() and not (built_index / "database.json").exists()
    with pytest.raises(IndexFormatError, match="not a PostgreSQL URL"):
        IndexStore.open(built_index, database="mysql://x@y/z")


def test_one_writer_per_database_by_an_advisory_lock(tmp_path, catalog, tiny_encoder, pg_url):
    folder = tmp_path / "idx"
    build_index(catalog, folder, encoder=tiny_encoder, config=IndexConfig(database=pg_url))
    with IndexStore.open(folder, writable=True) as first, IndexWriter(first):
        with IndexStore.open(folder, writable=True) as second, pytest.raises(IndexLockedError, match="server pid"):
            IndexWriter(second)
        with SearchEngine.open(folder, encoder=tiny_encoder) as engine:  # readers go on
            assert len(engine.search("red", k=3)) == 3
    with IndexStore.open(folder, writable=True) as third, IndexWriter(third):
        pass  # released with the writer's connection


def test_word_counts_stay_exact_through_updates_replacements_and_deletes(tmp_path, catalog, tiny_encoder, pg_url):
    folder = tmp_path / "idx"
    config = IndexConfig(database=pg_url)
    build_index(catalog, folder, encoder=tiny_encoder, config=config)
    rows = [json.loads(line) for line in catalog.read_text().splitlines()]
    rows[0]["title"] = "Crème brûlée widget"
    rows[1]["brand"] = "Zephyr"
    rows[2]["price"] = 1.0
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows[:20]))
    build_index(catalog, folder, encoder=tiny_encoder, config=config, delete_missing=True)
    with IndexStore.open(folder) as store, store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT term, doc FROM word_counts WHERE doc > 0").all()
        truth = conn.exec_driver_sql("SELECT t, count(*) FROM product_words, unnest(tsvector_to_array(words)) AS t "
                                     "GROUP BY t").all()
        assert dict(stored) == dict(truth)
        [pk] = store.lexical(["creme"])[0]  # accents folded as FTS5 does
        assert store.products([int(pk)])[int(pk)]["id"] == rows[0]["id"]
        assert store.word_counts(["zephyr", "brûlée"]) == {"zephyr": 1, "brûlée": 1}


def test_an_unreachable_database_is_a_clear_error(tmp_path, built_index):
    url = f"postgresql+psycopg://postgres@/nowhere?host={tmp_path}/no-socket"
    with pytest.raises(DatabaseUnavailableError, match="cannot use the PostgreSQL database"):
        IndexStore.open(built_index, database=url)
    result = CliRunner().invoke(cli, ["search", "red", "--index", str(built_index), "--db", url])
    assert result.exit_code == 1 and "cannot use the PostgreSQL database" in result.output
    assert "Traceback" not in result.output


def test_lexical_ranking_prefers_the_heavier_field(tmp_path, tiny_encoder, pg_url):
    catalog = tmp_path / "c.jsonl"
    catalog.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "a", "title": "plain mug", "description": "made by acme in a small workshop"},
        {"id": "b", "title": "acme mug", "description": "a mug"},
        {"id": "c", "title": "mug", "brand": "Acme"}]))
    build_index(catalog, tmp_path / "idx", encoder=tiny_encoder, config=IndexConfig(database=pg_url))
    with IndexStore.open(tmp_path / "idx") as store:
        pks, scores = store.lexical(["acme"])
        order = [store.products([int(p)])[int(p)]["id"] for p in pks]
        assert order == ["c", "b", "a"] and np.all(np.diff(scores) <= 0)  # brand > title > description


def test_the_cli_indexes_into_postgresql_and_later_commands_find_it(tmp_path, catalog, tiny_encoder, pg_url):
    folder = tmp_path / "idx"
    runner = CliRunner()
    model = ["--model", tiny_encoder.identity.name, "--pretrained", "random"]
    built = runner.invoke(cli, ["index", str(catalog), "--index", str(folder), "--db", pg_url, *model])
    assert built.exit_code == 0, built.output
    assert not (folder / "vitrina.db").exists() and (folder / "database.json").is_file()
    info = runner.invoke(cli, ["info", "--index", str(folder)])
    assert info.exit_code == 0 and "metadata   postgresql+psycopg://postgres@/" in info.output and "24 " in info.output
    feed = tmp_path / "prices.csv"
    feed.write_text("id,price\nP001,99.5\n")
    updated = runner.invoke(cli, ["update", str(feed), "--index", str(folder)])
    assert updated.exit_code == 0, updated.output
    found = runner.invoke(cli, ["search", "green", "--index", str(folder), "--where", "price>99", "--json", *model[:2]])
    assert found.exit_code == 0, found.output
    assert [h["product_id"] for h in json.loads(found.output)["hits"]] == ["P001"]


def test_nul_characters_are_removed_with_a_warning_naming_the_row_and_field(tmp_path, tiny_encoder, pg_url):
    catalog = tmp_path / "c.jsonl"
    catalog.write_text(json.dumps({"id": "a", "title": "plain"}) + "\n" +
                       json.dumps({"id": "b", "title": "red\u0000mug", "colour\u0000": "x\u0000y"}) + "\n")
    report = build_index(catalog, tmp_path / "idx", encoder=tiny_encoder, config=IndexConfig(database=pg_url))
    assert report.indexed == 2
    assert {(p.row, p.reason) for p in report.problems} == {(2, "field 'title': NUL characters removed"),
                                                           (2, "field 'colour': NUL characters removed")}
    with IndexStore.open(tmp_path / "idx") as store:
        pk = store.product_pks(["b"])["b"]
        assert store.products([pk])[pk]["title"] == "redmug" and store.products([pk])[pk]["attributes"] == {"colour": "xy"}


def test_long_values_are_stored_and_filtered_on_postgresql_too(tmp_path, tiny_encoder, pg_url):
    """A B-tree entry in PostgreSQL holds at most 2,704 bytes: long brands and attribute values (4-byte characters)
    are hash-indexed instead, and overlong attribute names are dropped with a warning."""
    rng = np.random.default_rng(0)
    brand, value = ("".join(chr(int(c)) for c in rng.integers(0x1F300, 0x1FAFF, n)) for n in (3000, 2000))
    catalog = tmp_path / "c.jsonl"
    catalog.write_text(json.dumps({"id": "a", "title": "long one", "brand": brand, "tag": value, "k" * 300: "v"}) + "\n" +
                       json.dumps({"id": "b", "title": "short one", "brand": "x", "tag": "y"}) + "\n")
    report = build_index(catalog, tmp_path / "idx", encoder=tiny_encoder, config=IndexConfig(database=pg_url))
    assert report.indexed == 2 and any("attribute name of 300 characters" in p.reason for p in report.problems)
    with SearchEngine.open(tmp_path / "idx", encoder=tiny_encoder, rerank=False) as engine:
        assert [h.product_id for h in engine.search("one", where={"brand": brand}).hits] == ["a"]
        assert [h.product_id for h in engine.search("one", where={"tag": value}).hits] == ["a"]

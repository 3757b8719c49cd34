"""Segmented index: commits cost what changed, deletes are tombstones, merges keep results, readers reuse."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from conftest import write_catalog
from indexer.config import IndexConfig, VectorIndexConfig
from indexer.pipeline import build_index
from indexer.store.reader import IndexStore
from indexer.store.segments import SegmentState, plan_merge, tier
from indexer.store.writer import IndexWriter
from search import SearchEngine
from search.field_table import FieldTable
from search.vector_view import VectorView
from conftest import BOTH_DATABASES, database_for


@pytest.fixture(params=BOTH_DATABASES)
def database(request):
    """Every test here runs on SQLite and on PostgreSQL (``postgres`` marker)."""
    return database_for(request)

POLICY = VectorIndexConfig(merge_factor=3, merge_floor=10, max_merge_vectors=1000)


def states(*triples):
    return [SegmentState(number=n, ntotal=t, live=live) for n, t, live in triples]


def test_merge_policy_is_tiered_bounded_and_expunges_tombstones():
    assert [tier(n, POLICY) for n in (0, 9, 10, 29, 30, 89, 90, 300)] == [0, 0, 1, 1, 2, 2, 3, 4]
    assert plan_merge(states((1, 5, 5), (2, 5, 5)), POLICY) == []  # two of a tier: wait for the third
    assert plan_merge(states((1, 500, 500), (2, 5, 5), (3, 4, 4), (4, 1, 1)), POLICY) == [2, 3, 4]
    assert plan_merge(states((1, 5, 0), (2, 500, 500)), POLICY) == [1]  # nothing live: dropped, no work
    assert plan_merge(states((1, 100, 40), (2, 5, 5)), POLICY) == [1]  # mostly tombstones: rewritten alone
    big = VectorIndexConfig(merge_factor=3, merge_floor=10, max_merge_vectors=100)
    assert plan_merge(states((1, 60, 60), (2, 60, 60), (3, 60, 60)), big) == []  # too much work: left to optimize


def _files(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.faiss")}


def _search(folder, encoder, queries=("red square widget", "blue circle", "green thing")):
    with SearchEngine.open(folder, encoder=encoder, rerank=False) as engine:
        return [[(h.product_id, round(h.score, 4)) for h in engine.search(q, k=10).hits] for q in queries]


def test_changing_one_product_writes_only_its_vectors_and_leaves_the_rest(tmp_path, built_index, catalog, tiny_encoder):
    before = _files(built_index)
    lines = catalog.read_text().splitlines()
    lines[5] = lines[5].replace("widget", "gizmo")
    catalog.write_text("\n".join(lines) + "\n")
    report = build_index(catalog, built_index, encoder=tiny_encoder)
    assert (report.updated, report.fields_only) == (1, 0)
    after = _files(built_index)
    assert {name: after[name] for name in before} == before  # old segments untouched
    with IndexStore.open(built_index) as store:
        new = [s for m in ("image", "text") for s in store.segments(m) if s["name"] not in before]
        assert sorted(s["ntotal"] for s in new) == [1, 2]  # one text vector, two image vectors
        summary = store.check()
        assert (summary["text_dead"], summary["image_dead"]) == (1, 2)


def test_a_price_change_is_a_field_update_with_no_vector_work(built_index, catalog, tiny_encoder):
    before = _files(built_index)
    with IndexStore.open(built_index) as store:
        pk = store.product_pks(["P004"])["P004"]
    rows = [json.loads(line) for line in catalog.read_text().splitlines()]
    rows[4]["price"] = 999.0
    rows[4]["stock"] = 3
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows))

    class NoImages:
        def __getattr__(self, name):
            if name in ("encode_texts", "encode_images", "encode_pixels"):
                raise AssertionError("the encoder was called for a price change")
            return getattr(tiny_encoder, name)

    report = build_index(catalog, built_index, encoder=NoImages())
    assert (report.updated, report.fields_only, report.unchanged) == (1, 1, 23)
    assert _files(built_index).keys() == before.keys()
    with IndexStore.open(built_index) as store:
        assert store.product_pks(["P004"])["P004"] == pk  # same primary key
        assert store.products([pk])[pk]["price"] == 999.0
    with SearchEngine.open(built_index, encoder=tiny_encoder, rerank=False) as engine:
        hits = engine.search("widget", where={"stock": 3, "price": {"gt": 500}}, k=5).hits
        assert [h.product_id for h in hits] == ["P004"]


def test_deleted_products_are_tombstones_that_no_search_returns(tmp_path, catalog, tiny_encoder, database):
    folder = tmp_path / "idx"
    build_index(catalog, folder, encoder=tiny_encoder, config=IndexConfig(index_type="HNSW16", vectors=VectorIndexConfig(small_segment=0),
                                                                         database=database))
    before = _files(folder)
    with IndexStore.open(folder, writable=True) as store, IndexWriter(store) as writer:
        assert writer.delete(["P007", "P008"]) == 2
        writer.commit()
    assert _files(folder) == before  # no FAISS file written for a delete
    with SearchEngine.open(folder, encoder=tiny_encoder, rerank=False) as engine:
        photo = catalog.parent / "images" / "p7_0.png"
        found = {h.product_id for h in engine.search(image=photo, k=22).hits}
        assert "P007" not in found and "P008" not in found and len(found) == 22
        assert engine.info()["generation"] == 2


def test_merged_index_answers_exactly_as_a_fresh_build(tmp_path, tiny_encoder, monkeypatch, database):
    from indexer import pipeline

    monkeypatch.setattr(pipeline, "_bulk_change", lambda report, store: False)  # keep the runs' segments
    catalog = write_catalog(tmp_path / "cat", n=24)
    rows = catalog.read_text().splitlines()
    piecewise, fresh = tmp_path / "piecewise", tmp_path / "fresh"
    config = IndexConfig(vectors=VectorIndexConfig(merge_factor=4, merge_floor=100), database=database)
    for end in range(3, 25, 3):  # eight commits of three products: tier merges on the way
        catalog.write_text("\n".join(rows[:end]) + "\n")
        build_index(catalog, piecewise, encoder=tiny_encoder, config=config)
    with IndexStore.open(piecewise) as store:
        assert 1 < len(store.segments("text")) < 8  # merged some, not all
    unmerged = _search(piecewise, tiny_encoder)
    with IndexStore.open(piecewise, writable=True) as store, IndexWriter(store) as writer:
        writer.optimize()
    with IndexStore.open(piecewise) as store:
        assert [len(store.segments(m)) for m in ("image", "text")] == [1, 1]
    build_index(catalog, fresh, encoder=tiny_encoder)
    assert _search(piecewise, tiny_encoder) == _search(fresh, tiny_encoder) == unmerged


def test_a_new_commit_loads_only_new_segments_and_refreshes_the_field_table(built_index, catalog, tiny_encoder):
    with IndexStore.open(built_index) as store:
        with store.snapshot():
            old = VectorView(store)
            old.fields.get()
        rows = [json.loads(line) for line in catalog.read_text().splitlines()]
        rows[2]["category"] = rows[3]["category"]
        rows[5]["title"] = "a brand new title"
        catalog.write_text("".join(json.dumps(r) + "\n" for r in rows[:-1]))  # and the last one deleted
        build_index(catalog, built_index, encoder=tiny_encoder, delete_missing=True)
        with store.snapshot():
            new = VectorView(store, previous=old)
            full = FieldTable(store.field_rows())
            pks = store.product_pk_array()
        assert new.segments["text"][0] is old.segments["text"][0]  # the untouched segment was reused
        assert new.fields.built is not None  # refreshed, not left to rebuild
        assert new.fields.get().values_of(pks) == full.values_of(pks)
        assert new.counts()["text"] == {"segments": 2, "live": 23, "dead": 2}


def test_a_query_on_a_newer_snapshot_than_its_view_drops_what_the_view_lacks(built_index, tiny_encoder):
    with SearchEngine.open(built_index, encoder=tiny_encoder, rerank=False) as engine:
        view = engine._view
        with IndexStore.open(built_index, writable=True) as store, IndexWriter(store) as writer:
            writer.delete(["P000", "P001"])
            writer.commit()
        held, release = threading.Event(), threading.Event()

        def loading():  # another query is loading the new commit: this one answers from the old view
            with engine._lock:
                held.set()
                release.wait(30)

        other = threading.Thread(target=loading)
        other.start()
        held.wait(30)
        try:
            hits = engine.search("red square widget", k=24).hits
        finally:
            release.set()
            other.join()
        assert engine._view is view
        assert {"P000", "P001"}.isdisjoint(h.product_id for h in hits) and len(hits) == 22


def test_typed_attribute_filters_use_the_index(tmp_path, tiny_encoder, database):
    rows = [{"id": "a", "title": "shoe one", "size": "42", "colour": "blue"},
            {"id": "b", "title": "shoe two", "size": 42},
            {"id": "c", "title": "shoe three", "size": "M", "colour": "green"},
            {"id": "d", "title": "shoe four", "size": 44.5}]
    catalog = tmp_path / "c.jsonl"
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_index(catalog, tmp_path / "idx", encoder=tiny_encoder, config=IndexConfig(database=database))
    with SearchEngine.open(tmp_path / "idx", encoder=tiny_encoder, rerank=False) as engine:
        def ids(where):
            return sorted(h.product_id for h in engine.search("shoe", where=where, k=10).hits)
        assert ids({"size": 42}) == ids({"size": "42"}) == ["a", "b"]
        assert ids({"size": {"gt": 43}}) == ["d"] and ids({"size": {"ne": 42}}) == ["c", "d"]
        assert ids({"colour": "blue"}) == ["a"] and ids({"colour": {"in": ["green", "blue"]}}) == ["a", "c"]
        assert ids({"colour": None}) == ["b", "d"] and ids({"size": {"lt": "N"}}) == ["c"]
    with IndexStore.open(tmp_path / "idx") as store, store.engine.connect() as conn:
        if store.backend.kind == "sqlite":  # PostgreSQL's planner scans four rows rather than use an index
            plan = " ".join(str(r) for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT product_pk FROM attribute_values WHERE key = 'size' AND number = 42").all())
            assert "ix_attribute_number" in plan


def test_bulk_put_replaces_in_place_of_a_batch(tmp_path, tiny_encoder, database):
    from indexer.catalog import ProductRecord
    from indexer.store.records import EmbeddedProduct

    store = IndexStore.create(tmp_path / "idx", identity=tiny_encoder.identity, index_type="auto", model_spec={}, database=database)
    rng = np.random.default_rng(0)
    vector = lambda: (lambda v: v / np.linalg.norm(v))(rng.standard_normal(tiny_encoder.dim).astype(np.float32))
    with store, IndexWriter(store) as writer:
        writer.put_many([EmbeddedProduct(record=ProductRecord(id=f"p{i}", row=i, title=f"t{i}"), text_vector=vector())
                         for i in range(50)] + [EmbeddedProduct(record=ProductRecord(id="p0", row=99, title="again"), text_vector=vector())])
        info = writer.commit()
        assert info.products == 50 and store.check()["text"] == 50
        pk = store.product_pks(["p0"])["p0"]
        assert store.products([pk])[pk]["title"] == "again"


def test_info_check_and_optimize_show_segments(built_index, tiny_encoder):
    from click.testing import CliRunner

    from vitrina.cli import cli

    with IndexStore.open(built_index, writable=True) as store, IndexWriter(store) as writer:
        writer.delete(["P003"])
        writer.commit()
    runner = CliRunner()
    info = runner.invoke(cli, ["info", "--index", str(built_index)])
    assert info.exit_code == 0, info.output
    assert "1 segments, 23 live and 1 dead vectors" in info.output and "vitrina optimize" in info.output
    data = json.loads(runner.invoke(cli, ["info", "--index", str(built_index), "--json"]).output)
    assert data["vector_indexes"]["text"]["dead"] == 1 and data["vector_indexes"]["text"]["segments"][0]["live"] == 23
    check = runner.invoke(cli, ["check", "--index", str(built_index)])
    assert check.exit_code == 0 and "every segment verified" in check.output and "3 dead vectors" in check.output
    optimized = runner.invoke(cli, ["optimize", "--index", str(built_index)])
    assert optimized.exit_code == 0 and "merged image 34 vectors, text 23 vectors" in optimized.output
    check = runner.invoke(cli, ["check", "--index", str(built_index)])
    assert "0 dead vectors" in check.output
    with IndexStore.open(built_index) as store:
        named = {info["name"] for infos in store.commit_info["segments"].values() for info in infos}
        retired = {r["name"] for r in store.commit_info["retired"]}  # kept a while for replicas still loading them
        assert len(named) == 2 and {p.name for p in built_index.glob("*.faiss")} == named | retired
        assert store.check()["text_dead"] == 0


def test_an_index_of_the_format_before_segments_is_refused_and_the_demo_rebuilds_its_own(tmp_path, built_index, tiny_encoder,
                                                                                       database):
    import shutil

    from indexer.errors import IndexFormatError
    from vitrina.commands.demo import _index_is_current

    from sqlalchemy import update

    from indexer.store.schema import IndexMeta

    old = tmp_path / "demo" / "index"
    shutil.copytree(built_index, old)
    with IndexStore.open(old, writable=True) as store, store.engine.begin() as conn:
        conn.execute(update(IndexMeta).where(IndexMeta.key == "format_version").values(value=1))
    with pytest.raises(IndexFormatError, match="rebuild the index"):
        IndexStore.open(old)
    if database is None:  # the demo's own index (SQLite) is rebuilt
        assert not _index_is_current(old, tiny_encoder, 24) and not old.exists()


def test_a_view_refreshed_from_the_last_one_equals_a_view_read_afresh(tmp_path, catalog, tiny_encoder, monkeypatch, database):
    from indexer import pipeline
    from search import vector_view

    monkeypatch.setattr(pipeline, "_bulk_change", lambda report, store: False)
    rows = [json.loads(line) for line in catalog.read_text().splitlines()]
    folder = tmp_path / "idx"
    config = IndexConfig(vectors=VectorIndexConfig(merge_factor=3, merge_floor=100), database=database)

    def write(selected):
        catalog.write_text("".join(json.dumps(r) + "\n" for r in selected))
        build_index(catalog, folder, encoder=tiny_encoder, config=config, delete_missing=True)

    write(rows[:8])
    steps = [lambda: write(rows[:12]),  # new products: a new segment
             lambda: write(rows[2:12]),  # two deleted
             lambda: write([{**r, "price": 1.0} if i == 3 else r for i, r in enumerate(rows[2:16])]),  # a field update
             lambda: write([{**r, "title": "renamed"} if i == 4 else r for i, r in enumerate(rows[2:18])]),  # a merge
             lambda: write(rows[2:20])]
    with IndexStore.open(folder) as store:
        with store.snapshot():
            view = VectorView(store)
        for step in steps:
            step()
            with store.snapshot():
                assert vector_view._rows_since(store, view, store.read_commit()) is not None  # refreshed, not re-read
                view = VectorView(store, previous=view)
                fresh = VectorView(store)
            for modality in ("text", "image"):
                for mine, truth in zip(view._rows[modality], fresh._rows[modality]):
                    np.testing.assert_array_equal(mine, truth)
            pks = store.product_pk_array()
            np.testing.assert_array_equal(view.vectors_of(pks)["images"], fresh.vectors_of(pks)["images"])
        assert any("merged_from" in s for s in store.segments("text", commit=store.read_commit()))


def test_replaced_segment_files_are_kept_for_some_commits_and_seconds():
    """A segment no longer named stays on disk until it has been out of use for ``keep_generations`` commits
    *and* ``keep_seconds`` (a replica elsewhere may still be loading the commit that named it)."""
    from indexer.store.segments import retire

    config = VectorIndexConfig(keep_generations=2, keep_seconds=60)
    old = {"segments": {"text": [{"name": "text.1.faiss"}, {"name": "text.2.faiss"}]}}
    retired = retire(old, {"text.3.faiss"}, generation=5, now=1000.0, config=config)  # 1 and 2 merged into 3
    assert {r["name"] for r in retired} == {"text.1.faiss", "text.2.faiss"}
    later = {"segments": {"text": [{"name": "text.3.faiss"}]}, "retired": retired}
    assert len(retire(later, {"text.3.faiss"}, generation=6, now=2000.0, config=config)) == 2  # 1 commit later
    assert len(retire(later, {"text.3.faiss"}, generation=9, now=1010.0, config=config)) == 2  # 10 s later
    assert retire(later, {"text.3.faiss"}, generation=9, now=2000.0, config=config) == []  # both passed: deleted

"""The store against both metadata backends (SQLite in the folder; PostgreSQL, marked ``postgres``)."""

import numpy as np
import pytest

from conftest import BOTH_DATABASES, database_for
from indexer.config import IndexConfig, VectorIndexConfig
from indexer.errors import IndexFormatError
from indexer.pipeline import build_index
from indexer.store.reader import IndexStore
from indexer.store.writer import IndexWriter

#: Segments of any size get the index type asked for (not an exact scan below ``small_segment``).
EVERY_SIZE = VectorIndexConfig(small_segment=0)


@pytest.fixture(params=BOTH_DATABASES)
def database(request):
    return database_for(request)


def test_round_trip_counts_vectors_and_metadata(built_index, tiny_encoder):
    with IndexStore.open(built_index) as store:
        assert store.counts() == {"products": 24, "images": 36, "texts": 24}
        assert store.identity == tiny_encoder.identity
        pks = store.product_pks(["P000", "P001"])
        stored = store.vectors_of([pks["P000"], pks["P001"]])
        np.testing.assert_allclose(np.linalg.norm(stored["text"], axis=1), 1.0, rtol=1e-5)
        expected = tiny_encoder.encode_texts(["red square widget. a square thing in red"])[0]
        np.testing.assert_allclose(stored["text"][0], expected, rtol=1e-5, atol=1e-6)
        meta = store.products([pks["P001"]])[pks["P001"]]
        assert meta["price"] == 11.0 and meta["attributes"] == {"color": "green"} and len(meta["images"]) == 2
        for modality in ("image", "text"):
            assert store.check()[modality] == store.vector_count(modality)


def test_reindexing_skips_unchanged_and_replaces_changed_products(tmp_path, built_index, catalog, tiny_encoder):
    report = build_index(catalog, built_index, encoder=tiny_encoder)
    assert (report.indexed, report.unchanged, report.updated, report.commits) == (0, 24, 0, 0)
    lines = catalog.read_text().splitlines()
    lines[3] = lines[3].replace("widget", "gadget")
    catalog.write_text("\n".join(lines) + "\n")
    (catalog.parent / "images" / "p5_0.png").write_bytes((catalog.parent / "images" / "p6_0.png").read_bytes())
    report = build_index(catalog, built_index, encoder=tiny_encoder)
    assert (report.indexed, report.unchanged, report.updated, report.rows) == (0, 22, 2, 24)
    with IndexStore.open(built_index) as store:
        assert store.counts() == {"products": 24, "images": 36, "texts": 24}
        assert store.commit_info["generation"] == 2
        # the two re-embedded products went to new segments; their old vectors are tombstones
        assert sorted(p.name for p in built_index.glob("*.faiss")) == ["image.1.faiss", "image.3.faiss", "text.2.faiss", "text.4.faiss"]
        summary = store.check()
        assert (summary["text"], summary["text_dead"], summary["text_segments"]) == (24, 2, 2)
        pk = store.product_pks(["P003"])["P003"]
        assert "gadget" in store.products([pk])[pk]["title"]


def test_delete_missing_removes_products_no_longer_in_the_catalog(built_index, catalog, tiny_encoder):
    lines = catalog.read_text().splitlines()
    lines[10] = '{"id": "P010", "title": "kept although its row is now bad", "price": -1}'
    catalog.write_text("\n".join(lines[:20]) + "\n")
    report = build_index(catalog, built_index, encoder=tiny_encoder, delete_missing=True)
    assert (report.deleted, report.skipped, report.unchanged) == (4, 1, 19)
    with IndexStore.open(built_index) as store:
        ids = store.product_ids()
        assert "P010" in ids and "P020" not in ids and len(ids) == 20
        for modality in ("image", "text"):
            assert store.check()[modality] == store.vector_count(modality)


@pytest.mark.parametrize("index_type", ["HNSW16", "IVF4,Flat", "IVF2,PQ4x4"])
def test_approximate_index_types_build_and_reopen(tmp_path, catalog, tiny_encoder, index_type, database):
    folder = tmp_path / "idx"
    build_index(catalog, folder, encoder=tiny_encoder, config=IndexConfig(index_type=index_type, vectors=EVERY_SIZE, database=database))
    with IndexStore.open(folder) as store:
        assert store.index_type == index_type and store.factory("image") == index_type
        assert store.check()["image"] == 36


def test_small_segments_of_a_fixed_type_are_exact_scans(tmp_path, catalog, tiny_encoder, database):
    folder = tmp_path / "idx"
    build_index(catalog, folder, encoder=tiny_encoder, config=IndexConfig(index_type="HNSW16", database=database))
    with IndexStore.open(folder) as store:
        assert store.index_type == "HNSW16" and store.factory("image") == "Flat"  # 36 vectors: a graph costs more


def test_invalid_factory_string_is_refused_before_anything_is_written(tmp_path, catalog, tiny_encoder):
    with pytest.raises(IndexFormatError, match="invalid FAISS index type"):
        build_index(catalog, tmp_path / "idx", encoder=tiny_encoder, config=IndexConfig(index_type="Bogus99"))
    assert not (tmp_path / "idx").exists()


def test_open_refuses_non_index_folders_and_torn_files(tmp_path, built_index):
    with pytest.raises(IndexFormatError, match="not an index folder"):
        IndexStore.open(tmp_path)
    path = next(built_index.glob("image.*.faiss"))
    path.write_bytes(path.read_bytes()[:-10])
    with IndexStore.open(built_index) as store, pytest.raises(IndexFormatError, match="repair"):
        store.check()


def test_commit_is_all_or_nothing_when_writing_faiss_fails(built_index, monkeypatch, tiny_encoder, catalog):
    from indexer.store import vectors

    with IndexStore.open(built_index) as store:
        before = store.counts(), store.commit_info
    def boom(index, path):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(vectors, "write_atomic", boom)
    extra = catalog.parent / "extra.jsonl"
    extra.write_text('{"id": "NEW-1", "title": "a new product"}\n')
    from indexer.errors import IndexWriteError

    with pytest.raises(IndexWriteError, match="no space left on the device"):  # a domain error saying what to do
        build_index(extra, built_index, encoder=tiny_encoder)
    with IndexStore.open(built_index) as store:
        assert (store.counts(), store.commit_info) == before
        assert store.check()["text"] == 24


def test_bad_images_are_reported_and_the_run_goes_on(tmp_path, tiny_encoder):
    import json

    (tmp_path / "bad.jpg").write_bytes(b"not an image at all")
    (tmp_path / "empty.png").write_bytes(b"")
    rows = [
        {"id": "a", "title": "has text", "images": ["bad.jpg"]},
        {"id": "b", "images": ["empty.png", "missing.png"]},
        {"id": "c", "title": "fine"},
    ]
    catalog = tmp_path / "c.jsonl"
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = build_index(catalog, tmp_path / "idx", encoder=tiny_encoder)
    assert (report.indexed, report.failed, report.skipped, report.rows) == (2, 1, 0, 3)
    reasons = {(p.product_id, p.image and p.image.rsplit("/", 1)[-1]): p for p in report.problems}
    assert "not an image" in reasons[("a", "bad.jpg")].reason
    assert reasons[("a", "bad.jpg")].outcome == "indexed without this image"
    assert "empty" in reasons[("b", "empty.png")].reason and reasons[("b", "empty.png")].outcome == "failed"
    assert "not found" in reasons[("b", "missing.png")].reason


@pytest.mark.parametrize("index_type", ["Flat", "HNSW16", "IVF4,Flat"])
def test_query_view_gives_the_stored_vectors(tmp_path, catalog, tiny_encoder, index_type, database):
    from search.vector_view import VectorView

    folder = tmp_path / "idx"
    build_index(catalog, folder, encoder=tiny_encoder, config=IndexConfig(index_type=index_type, vectors=EVERY_SIZE, database=database))
    with IndexStore.open(folder) as store:
        view = VectorView(store)
        pks = np.array(sorted(store.product_pks([f"P{i:03d}" for i in (7, 0, 13)]).values()), dtype=np.int64)[::-1].copy()
        mine, truth = view.vectors_of(pks), store.vectors_of(pks.tolist())
        order = lambda d: np.lexsort((d["image_position"], d["image_owner"]))
        for key in ("text", "has_text"):
            np.testing.assert_array_equal(mine[key], truth[key])
        for key in ("images", "image_owner", "image_position"):
            np.testing.assert_array_equal(mine[key][order(mine)], truth[key][order(truth)])
        image_pks, owners, _, _ = store.image_owners()
        np.testing.assert_array_equal(view.owners_of(image_pks), owners)


def test_flipped_bytes_are_caught_by_the_checksum(built_index):
    path = next(built_index.glob("text.*.faiss"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with IndexStore.open(built_index) as store, pytest.raises(IndexFormatError, match="checksum.*vitrina repair"):
        store.check()


def test_a_second_writer_is_refused_while_readers_go_on(built_index, tiny_encoder):
    from indexer.errors import IndexLockedError
    from search import SearchEngine

    with IndexStore.open(built_index, writable=True) as first, IndexWriter(first):
        with IndexStore.open(built_index, writable=True) as second, pytest.raises(IndexLockedError, match=r"another writer \((server )?pid \d+\)"):
            IndexWriter(second)
        with SearchEngine.open(built_index, encoder=tiny_encoder) as engine:
            assert len(engine.search("red", k=3)) == 3
    with IndexStore.open(built_index, writable=True) as third, IndexWriter(third):
        pass  # the lock was released


def test_full_text_index_stays_in_step_with_products(built_index, catalog, tiny_encoder):
    with IndexStore.open(built_index) as store:
        pks, scores = store.lexical(["brand1"])
        assert len(pks) == 8 and (scores > 0).all()
    lines = catalog.read_text().splitlines()
    lines[1] = lines[1].replace("Brand1", "Zephyr")
    catalog.write_text("\n".join(lines[:20]) + "\n")
    build_index(catalog, built_index, encoder=tiny_encoder, delete_missing=True)
    with IndexStore.open(built_index) as store:
        assert len(store.lexical(["brand1"])[0]) == 6  # P001 renamed, P022 deleted
        [pk] = store.lexical(["zephyr"])[0]
        assert store.products([int(pk)])[int(pk)]["id"] == "P001"
        assert store.word_counts(["brand1", "zephyr", "nowhere"]) == {"brand1": 6, "zephyr": 1}
        table = "products_fts" if store.backend.kind == "sqlite" else "product_words"
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() == 20


def test_query_view_array_helpers_match_numpy():
    from search.sorted_ids import member, ranges as _ranges

    rng = np.random.default_rng(0)
    for _ in range(200):
        ids = np.unique(rng.integers(0, 50, rng.integers(0, 20)))
        values = rng.integers(0, 50, rng.integers(0, 30))
        np.testing.assert_array_equal(member(values, ids), np.isin(values, ids))
        starts = rng.integers(0, 100, rng.integers(0, 10))
        counts = rng.integers(0, 4, len(starts))
        expected = np.concatenate([np.arange(s, s + c) for s, c in zip(starts, counts)]) if counts.sum() else np.empty(0, np.int64)
        np.testing.assert_array_equal(_ranges(starts, counts), expected)

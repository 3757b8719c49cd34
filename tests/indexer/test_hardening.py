"""Hardening of the write path: no catalog row or image crashes a run, reads stay consistent under writers,
writer errors say what to do.

Each test is a case that failed before (a crash, a hang, a wrong photo or a traceback); the families they
stand for are named in each docstring.  The HTTP side is in tests/search/test_hardening_http.py.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import corrupt_exif_images, draw_product, encoded, open_built_engine, write_catalog
from indexer.catalog import iter_products
from indexer.config import ImageLimits
from indexer.errors import (CatalogError, ImageError, ImageTooLargeError, IndexFormatError, IndexLockedError,
                            IndexWriteError)
from indexer.media.images import decode_image
from indexer.pipeline import build_index
from indexer.store import sqlite_backend
from indexer.store.lock import WriteLock
from indexer.store.reader import IndexStore
from search import SearchEngine
from search.web.app import create_app


# -- images: decode errors and memory or time bombs ----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(corrupt_exif_images()))
def test_a_corrupt_exif_block_is_ignored_and_the_pixels_kept(name):
    """Family: metadata parsed outside decode_image's error handling (EXIF, XMP) escaped as SyntaxError/ValueError."""
    image = decode_image(corrupt_exif_images()[name], name=name)
    assert image.size == (12, 8) and image.mode == "RGB"


def test_orientation_is_applied_once_even_when_decoded_twice():
    image = Image.new("RGB", (20, 10))
    exif = image.getexif()
    exif[0x0112] = 6
    first = decode_image(encoded(image, "PNG", exif=exif), name="o")
    from indexer.media.images import to_rgb

    assert first.size == (10, 20) and to_rgb(first).size == (10, 20)


@pytest.mark.parametrize("size", [(100_000, 1), (400_000, 1), (1, 60_000), (5_100, 100)])
def test_extreme_aspect_ratios_are_refused_from_the_header(size):
    """A 370-byte 100000x1 PNG cost 10 s and 2.7 GB in the model's resize; 400000x1 raised MemoryError."""
    data = encoded(Image.new("L", size), "PNG")
    assert len(data) < 4000
    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="aspect ratio"):
        decode_image(data, name="strip.png", min_size=224)
    assert time.perf_counter() - started < 0.5


def test_decoded_size_is_capped_before_decoding():
    data = encoded(Image.new("RGBA", (600, 600)), "PNG")
    with pytest.raises(ImageTooLargeError, match="MiB decoded"):
        decode_image(data, name="big.png", limits=ImageLimits(max_decoded_bytes=1024 * 1024))
    assert decode_image(data, name="big.png").size == (600, 600)


def test_large_pngs_are_reduced_to_what_the_model_needs():
    """A 105 KB 6000x6000 PNG reached the model's resize at full size (1.5-3 s, 0.5 GB per upload)."""
    data = encoded(Image.new("RGB", (6000, 6000), (10, 120, 200)), "PNG")
    image = decode_image(data, name="huge.png", min_size=224)
    assert 448 <= min(image.size) < 900 and image.getpixel((5, 5)) == (10, 120, 200)


def test_unexpected_pillow_errors_become_image_errors(monkeypatch):
    """Family: whatever Pillow raises on hostile bytes (struct.error, IndexError...) ends as ImageError."""
    import struct

    def broken(self, *args):
        raise struct.error("unpack requires a buffer of 4 bytes")

    data = encoded(Image.new("RGB", (4, 4)), "PNG")
    from PIL import PngImagePlugin as png

    monkeypatch.setattr(png.PngImageFile, "load", broken)
    with pytest.raises(ImageError, match="cannot decode"):
        decode_image(data, name="x.png")


# -- catalogs: one bad row never stops a run -------------------------------------------------------------------------
def test_csv_cells_over_the_csv_module_limit_are_read_and_truncated(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text("id,title,description\nA,first,x\nB,long," + "y" * 131_073 + "\nC,third,z\n")
    problems = []
    assert [p.id for p in iter_products(path, on_error=problems.append)] == ["A", "B", "C"]
    assert [(p.row, p.fatal) for p in problems] == [(2, False)] and "truncated" in problems[0].reason


def test_hostile_jsonl_rows_are_reported_and_the_rest_is_indexed(tmp_path, tiny_encoder):
    """Family: values a row parser let through that crash later (float() overflow, lone surrogates in the writer,
    Python's int digit limit, deep nesting, NUL in paths) and a BOM that swallowed the first row."""
    rows = [
        '{"id": "FIRST", "title": "first row after a byte-order mark"}',
        '{"id": "HUGE", "title": "big price", "price": 1' + "0" * 400 + "}",
        '{"id": "SURR", "title": "lone \\ud800 surrogate"}',
        '{"id": "NESTED", "title": "t", "tags": ["ok", "\\udfff"]}',
        '{"id": "KEY", "title": "t", "\\ud83d": 1}',
        '{"id": "DIGITS", "title": "t", "n": 1' + "0" * 5000 + "}",
        "[" * 50_000 + "]" * 50_000,
        '{"id": "NUL", "title": "t", "images": ["img/a\\u0000b.png"]}',
        '{"id": "BIGINT", "title": "an attribute beyond 64 bits", "serial": 1' + "0" * 30 + "}",
        '{"id": "LAST", "title": "last row"}',
    ]
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_bytes(b"\xef\xbb\xbf" + "\n".join(rows).encode())
    report = build_index(catalog, tmp_path / "index", encoder=tiny_encoder)
    skipped = {p.row: p.reason for p in report.problems if p.outcome == "skipped"}
    assert sorted(skipped) == [2, 3, 4, 5, 6, 7, 8], report.problems
    assert "price" in skipped[2] and "digits" in skipped[2] and "UTF-8" in skipped[3] and "UTF-8" in skipped[4]
    assert "UTF-8" in skipped[5] and "digits" in skipped[6] and "nested" in skipped[7] and "NUL" in skipped[8]
    assert "set_int_max_str_digits" not in skipped[6]  # no advice about Python internals
    assert report.indexed == 3 and report.rows == len(rows)
    with IndexStore.open(tmp_path / "index") as store:
        assert store.product_ids() == {"FIRST", "BIGINT", "LAST"}
        bigint = store.products(list(store.product_pks(["BIGINT"]).values()))
        assert next(iter(bigint.values()))["attributes"]["serial"] == "1" + "0" * 30


def test_a_run_refused_for_its_catalog_leaves_no_index_folder(tmp_path, tiny_encoder):
    folder = tmp_path / "index"
    with pytest.raises(CatalogError, match="not found"):
        build_index(tmp_path / "missing.jsonl", folder, encoder=tiny_encoder)
    (tmp_path / "catalog.txt").write_text("x")
    with pytest.raises(CatalogError, match="format"):
        build_index(tmp_path / "catalog.txt", folder, encoder=tiny_encoder)
    assert not folder.exists()


# -- consistency: images, re-runs, concurrent readers ----------------------------------------------------------------
@pytest.fixture
def broken_image_catalog(tmp_path) -> Path:
    """P000 lists [good, broken, good]: the broken one fails to decode, the third is the one a photo matches."""
    folder = tmp_path / "catalog"
    catalog = write_catalog(folder, n=12)
    images = folder / "images"
    draw_product(images / "mix_0.png", "blue", "circle", seed=1)
    (images / "mix_1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    draw_product(images / "mix_2.png", "yellow", "triangle", seed=2)
    row = {"id": "MIX", "title": "mixed photos", "images": ["images/mix_0.png", "images/mix_1.png", "images/mix_2.png"]}
    catalog.write_text(catalog.read_text() + json.dumps(row) + "\n")
    return catalog


def test_hits_name_the_photo_that_matched_when_an_earlier_one_failed(tmp_path, broken_image_catalog, tiny_encoder):
    """The stored positions followed the catalog row (0, 2) while products() listed only the images that loaded:
    a hit on the third photo raised IndexError (HTTP 500) or showed the wrong photo."""
    photo = (broken_image_catalog.parent / "images" / "mix_2.png").read_bytes()
    with open_built_engine(tmp_path / "index", broken_image_catalog, tiny_encoder) as engine:
        assert engine.product("MIX")["images"][1].endswith("mix_2.png")
        hits = engine.search(image=photo, k=20, image_share=1.0, lexical_weight=0.0, rerank=False)
        mix = next(h for h in hits if h.product_id == "MIX")
        assert mix.image_index == 1 and mix.image.endswith("mix_2.png")
        with TestClient(create_app(engine)) as client:
            body = client.post("/search/image", files={"photo": ("q.png", photo, "image/png")},
                               data={"k": "20", "image_share": "1"})
            assert body.status_code == 200, body.text
            hit = next(h for h in body.json()["hits"] if h["product_id"] == "MIX")
            assert hit["image"] == "/products/MIX/images/1"
            assert client.get(hit["image"]).content == photo
            assert client.get("/products/MIX/similar", params={"k": 20}).status_code == 200
            assert client.get("/products/P001/similar", params={"k": 20}).status_code == 200


def test_an_image_unreadable_on_a_rerun_keeps_the_stored_product(tmp_path, tiny_encoder):
    """A missing file changed the content hash and re-stored the product without that photo."""
    catalog = write_catalog(tmp_path / "catalog", n=4)
    folder = tmp_path / "index"
    build_index(catalog, folder, encoder=tiny_encoder)
    (catalog.parent / "images" / "p1_1.png").unlink()  # P001 has two photos
    report = build_index(catalog, folder, encoder=tiny_encoder)
    assert (report.indexed, report.updated, report.unchanged) == (0, 0, 4)
    [problem] = report.problems
    assert problem.product_id == "P001" and problem.outcome == "kept the stored version" and "p1_1.png" in problem.image
    with IndexStore.open(folder) as store:
        stored = store.products(list(store.product_pks(["P001"]).values()))
        assert len(next(iter(stored.values()))["images"]) == 2
    new = catalog.parent / "more.jsonl"  # a new product is still indexed without its unreadable photo
    new.write_text(json.dumps({"id": "NEW", "title": "new", "images": ["images/p1_1.png", "images/p0_0.png"]}) + "\n")
    report = build_index(new, folder, encoder=tiny_encoder)
    assert report.indexed == 1 and report.problems[0].outcome == "indexed without this image"


def test_more_concurrent_snapshots_than_the_old_pool_held(built_index):
    """Pool 5 + 10: the 16th concurrent search waited 30 s for a connection, then HTTP 500."""
    threads = 24
    barrier = threading.Barrier(threads, timeout=20)
    with IndexStore.open(built_index) as store:
        def read(_: int) -> int:
            with store.snapshot():
                barrier.wait()  # every thread holds its snapshot (and connection) at once
                return store.counts()["products"]

        with ThreadPoolExecutor(threads) as pool:
            assert list(pool.map(read, range(threads))) == [24] * threads


# -- writers: locks, full disks, races, read-only copies -------------------------------------------------------------
def _changed_catalog(catalog: Path) -> Path:
    changed = catalog.parent / "changed.jsonl"
    changed.write_text(catalog.read_text().replace("widget", "gizmo"))
    return changed


def test_a_writer_waits_for_another_process_sqlite_write_transaction(built_index, catalog, tiny_encoder):
    """Without BEGIN IMMEDIATE the writer failed at once ("database is locked", a traceback with SQL and data)."""
    other = sqlite3.connect(built_index / "vitrina.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE index_meta SET value = value WHERE key = 'created_at'")
    timer = threading.Timer(1.0, lambda: other.execute("COMMIT"))
    timer.start()
    try:
        report = build_index(_changed_catalog(catalog), built_index, encoder=tiny_encoder)
    finally:
        timer.join()
        other.close()
    assert report.updated == 24


def test_a_write_lock_held_too_long_is_a_clear_index_locked_error(built_index, catalog, tiny_encoder, monkeypatch):
    monkeypatch.setattr(sqlite_backend, "BUSY_TIMEOUT_S", 0.3)
    other = sqlite3.connect(built_index / "vitrina.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(IndexLockedError, match="another process holds the index database's write lock") as caught:
            build_index(_changed_catalog(catalog), built_index, encoder=tiny_encoder)
    finally:
        other.execute("ROLLBACK")
        other.close()
    message = str(caught.value)
    assert "INSERT" not in message and "SELECT" not in message and "gizmo" not in message and caught.value.__cause__ is None


def test_a_full_disk_under_sqlite_is_a_clear_error_and_the_last_commit_stays(built_index, catalog, tiny_encoder, monkeypatch):
    with IndexStore.open(built_index) as store:
        before = store.counts(), store.commit_info
    pages = sqlite3.connect(built_index / "vitrina.db").execute("PRAGMA page_count").fetchone()[0]
    make_engine = sqlite_backend.make_engine

    def full_engine(folder, *, readonly):
        engine = make_engine(folder, readonly=readonly)
        from sqlalchemy import event

        @event.listens_for(engine, "connect")
        def _cap(dbapi_connection, _record):
            dbapi_connection.execute(f"PRAGMA max_page_count={pages + 1}")  # the next pages do not fit: SQLITE_FULL

        return engine

    monkeypatch.setattr("indexer.store.sqlite_backend.make_engine", full_engine)
    more = catalog.parent / "more.jsonl"
    more.write_text("".join(json.dumps({"id": f"N{i}", "title": "x" * 3000, "description": "y" * 20000}) + "\n" for i in range(40)))
    with pytest.raises(IndexWriteError, match="disk is full") as caught:
        build_index(more, built_index, encoder=tiny_encoder)
    assert "[SQL" not in str(caught.value) and "xxxx" not in str(caught.value)
    monkeypatch.undo()
    with IndexStore.open(built_index) as store:
        assert (store.counts(), store.commit_info) == before


def test_a_faiss_write_failure_is_a_clear_error(built_index, catalog, tiny_encoder, monkeypatch):
    import faiss

    def no_space(index, path):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("Error in faiss::FileIOWriter::operator() ret == nitems failed: write error")

    monkeypatch.setattr(faiss, "write_index", no_space)
    with pytest.raises(IndexWriteError, match="cannot write the FAISS file .* MiB free"):
        build_index(_changed_catalog(catalog), built_index, encoder=tiny_encoder)
    assert not list(built_index.glob("*.tmp"))


def test_creating_an_index_waits_for_no_one_and_refuses_clearly_while_another_creates_it(tmp_path, catalog, tiny_encoder):
    """Two writers racing on a new folder: one of them read a half-created database ("rebuild the index") or
    hit "database is locked"."""
    folder = tmp_path / "new-index"
    folder.mkdir()
    with WriteLock(folder):  # another writer is creating it right now (tables made, metadata not yet)
        sqlite3.connect(folder / "vitrina.db").execute("CREATE TABLE products (pk INTEGER)").connection.close()
        with pytest.raises(IndexLockedError, match="another writer"):
            build_index(catalog, folder, encoder=tiny_encoder)
    shutil.rmtree(folder)
    outcomes: list[str] = []
    barrier = threading.Barrier(3, timeout=30)

    def run() -> None:
        barrier.wait()
        try:
            build_index(catalog, folder, encoder=tiny_encoder)
            outcomes.append("ok")
        except IndexLockedError:
            outcomes.append("locked")
        except IndexFormatError as exc:  # the old failure: a half-made database read as another format
            outcomes.append(f"format: {exc}")

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert "ok" in outcomes and set(outcomes) <= {"ok", "locked"}, outcomes
    with IndexStore.open(folder) as store:
        assert store.counts()["products"] == 24


@pytest.fixture
def read_only_copy(built_index):
    """A finished index copied into a folder this process cannot write (read as the user nobody)."""
    root = Path(tempfile.mkdtemp(prefix="vitrina-ro-"))
    os.chmod(root, 0o755)
    copy = root / "index"
    shutil.copytree(built_index, copy, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    for path in copy.iterdir():
        path.chmod(0o444)
    copy.chmod(0o555)
    yield copy
    copy.chmod(0o755)
    shutil.rmtree(root)


@pytest.mark.skipif(os.geteuid() != 0, reason="switches to the user nobody to lose write access")
def test_a_read_only_copy_of_a_finished_index_can_be_searched_and_served(read_only_copy, tiny_encoder, engine):
    engine.search("red square", k=3)  # every lazy import done while this process can still read everything
    os.seteuid(65534)
    try:
        assert not os.access(read_only_copy, os.W_OK, effective_ids=True)
        with SearchEngine.open(read_only_copy, encoder=tiny_encoder) as copy:
            assert [h.product_id for h in copy.search("red square", k=3)] == \
                [h.product_id for h in engine.search("red square", k=3)]
            with TestClient(create_app(copy)) as client:
                assert client.get("/healthz").json()["status"] == "ok"
                assert client.post("/search", json={"text": "blue circle", "k": 2}).status_code == 200
    finally:
        os.seteuid(0)
    assert sorted(p.name for p in read_only_copy.iterdir()) == sorted(p.name for p in read_only_copy.iterdir()
                                                                      if not p.name.endswith(("-wal", "-shm")))

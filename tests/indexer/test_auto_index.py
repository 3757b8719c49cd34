"""``--index-type auto``: the FAISS type follows the vector count and the memory budget, commit by commit,
with search settings tuned against exact search; ``vitrina info`` reports it."""

import json

import pytest
from click.testing import CliRunner

from indexer.config import IndexConfig, VectorIndexConfig
from indexer.pipeline import build_index
from indexer.store.reader import IndexStore
from search import SearchEngine
from vitrina.cli import cli
from vitrina.options import parse_size


@pytest.fixture
def small_flat_limit(tiny_encoder):
    """An IndexConfig allowing exact scans up to 30 vectors (instead of 64 MiB of them), so the tiny catalog
    outgrows Flat: its 24 text vectors stay exact, its 36 image vectors do not."""
    return IndexConfig(vectors=VectorIndexConfig(flat_scan_bytes=30 * tiny_encoder.identity.dim * 4, small_segment=0))


#: Segments of any size get the type asked for (not an exact scan below ``small_segment``).
EVERY_SIZE = VectorIndexConfig(small_segment=0)


def _types(folder):
    """Each modality's type and its largest segment's record."""
    with IndexStore.open(folder) as store:
        largest = {m: max(store.segments(m), key=lambda s: s["ntotal"]) for m in ("text", "image")}
        return {m: store.factory(m) for m in ("text", "image")}, largest


def test_auto_is_the_default_and_small_indexes_stay_exact(built_index):
    types, files = _types(built_index)
    assert types == {"text": "Flat", "image": "Flat"}
    assert files["image"]["recall"] == 1.0 and "tuning" not in files["image"]


def test_auto_moves_a_modality_to_hnsw_when_it_outgrows_an_exact_scan(tmp_path, catalog, tiny_encoder, small_flat_limit):
    lines = catalog.read_text().splitlines()
    catalog.write_text("\n".join(lines[:12]) + "\n")  # 12 texts, 18 images: both exact
    folder = tmp_path / "idx"
    build_index(catalog, folder, encoder=tiny_encoder, config=small_flat_limit)
    assert _types(folder)[0] == {"text": "Flat", "image": "Flat"}
    with SearchEngine.open(folder, encoder=tiny_encoder, rerank=False) as engine:
        before = [h.product_id for h in engine.search("red circle widget", k=5).hits]

    catalog.write_text("\n".join(lines) + "\n")  # 24 texts, 36 images: the images outgrow the exact limit
    report = build_index(catalog, folder, encoder=tiny_encoder, config=small_flat_limit)
    assert report.commits == 2  # the new products' segments, then the merge a run that changed half the index ends with
    types, files = _types(folder)  # merged: the type was re-chosen for the merged size
    assert types == {"text": "Flat", "image": "HNSW32"}
    assert files["image"]["ntotal"] == 36
    assert files["image"]["recall"] >= 0.95 and files["image"]["tuning"]["ef_search"] >= 16
    with IndexStore.open(folder) as store:
        assert store.check()["products"] == 24
        assert store.tuning("image").ef_search == files["image"]["tuning"]["ef_search"]
    with SearchEngine.open(folder, encoder=tiny_encoder, rerank=False) as engine:
        assert engine.info()["vector_indexes"] == {"text": "Flat", "image": "HNSW32"}
        after = engine.search("red circle widget", k=5).hits
        assert len(after) == 5 and set(before) <= {h.product_id for h in engine.search("red circle widget", k=24).hits}
        photo = catalog.parent / "images" / "p7_0.png"
        assert engine.search(image=photo, image_share=1.0, k=3).hits[0].product_id == "P007"


def test_auto_under_a_tight_memory_budget_compresses_the_vectors(tmp_path, catalog, tiny_encoder):
    folder = tmp_path / "idx"
    build_index(catalog, folder, encoder=tiny_encoder, config=IndexConfig(max_memory=2000, vectors=EVERY_SIZE))
    types, files = _types(folder)
    assert types == {"text": "SQ8", "image": "SQ8"}  # too few vectors to train IVF-PQ, and Flat/HNSW do not fit
    assert files["text"]["recall"] >= 0.95
    with SearchEngine.open(folder, encoder=tiny_encoder, rerank=False) as engine:
        photo = catalog.parent / "images" / "p7_0.png"
        hit = engine.search(image=photo, image_share=1.0, k=3).hits[0]
        assert hit.product_id == "P007" and hit.scores["image_cosine"] == pytest.approx(1.0, abs=1e-4)  # re-scored exactly


def test_a_fixed_factory_string_is_kept_and_tuned(tmp_path, catalog, tiny_encoder):
    folder = tmp_path / "idx"
    build_index(catalog, folder, encoder=tiny_encoder, config=IndexConfig(index_type="IVF4,Flat", vectors=EVERY_SIZE))
    types, files = _types(folder)
    assert types == {"text": "IVF4,Flat", "image": "IVF4,Flat"}
    assert 1 <= files["image"]["tuning"]["nprobe"] <= 4 and files["image"]["recall"] >= 0.95


def test_info_shows_types_memory_and_measured_recall(tmp_path, catalog, tiny_encoder, small_flat_limit):
    folder = tmp_path / "idx"
    build_index(catalog, folder, encoder=tiny_encoder, config=small_flat_limit)
    runner = CliRunner()
    result = runner.invoke(cli, ["info", "--index", str(folder)])
    assert result.exit_code == 0, result.output
    assert "index type auto" in result.output
    assert "text     Flat, 24 vectors" in result.output and "exact search" in result.output
    assert "image    HNSW32, 36 vectors" in result.output and "recall@10" in result.output
    data = json.loads(runner.invoke(cli, ["info", "--index", str(folder), "--json"]).output)
    assert data["vector_indexes"]["image"]["type"] == "HNSW32" and data["vector_indexes"]["image"]["bytes"] > 0
    assert data["vector_indexes"]["image"]["recall_at_10"] >= 0.95


def test_max_memory_option_parses_sizes_and_refuses_nonsense(tmp_path, catalog):
    assert parse_size("512MB") == 512 * 10**6 and parse_size("2GiB") == 2 * 2**30 and parse_size("1000") == 1000
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")
    result = CliRunner().invoke(cli, ["index", str(catalog), "--index", str(tmp_path / "i"), "--max-memory", "lots"])
    assert result.exit_code == 2 and "not a size" in result.output


def test_compressed_codes_are_tuned_with_a_rescoring_depth(tmp_path, catalog, tiny_encoder):
    folder = tmp_path / "idx"
    vectors = VectorIndexConfig(rescore_depths=(10, 36), small_segment=0)  # 4-bit PQ codes over 32-d: coarse
    build_index(catalog, folder, encoder=tiny_encoder, config=IndexConfig(index_type="IVF2,PQ4x4", vectors=vectors))
    _, files = _types(folder)
    image = files["image"]
    assert image["tuning"]["rescore"] in (10, 36) and image["recall"] >= 0.95
    with IndexStore.open(folder) as store:
        assert store.tuning("image").rescore == image["tuning"]["rescore"]
    with SearchEngine.open(folder, encoder=tiny_encoder, rerank=False) as engine:
        photo = catalog.parent / "images" / "p7_0.png"
        hit = engine.search(image=photo, image_share=1.0, k=3).hits[0]
        assert hit.product_id == "P007" and hit.scores["image_cosine"] == pytest.approx(1.0, abs=1e-4)

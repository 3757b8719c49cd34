"""Precomputed vectors in: a .npz vectors file through build_index and `vitrina index --vectors`, and index_vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from indexer import IndexStore, ProductRecord, VectorsFile, VectorsFileError, index_vectors, read_vectors_file
from indexer.catalog import iter_products
from indexer.pipeline import build_index
from search import SearchEngine
from vitrina.cli import cli

DIM = 32  # the tiny test model's
LISTED = [f"P{i:03d}" for i in range(12)]  # half of the 24-product test catalog


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def write_vectors(path: Path, ids=LISTED, *, seed: int = 0, dim: int = DIM, text: bool = True, image: bool = True,
                  **arrays) -> Path:
    rng = np.random.default_rng(seed)
    data = {"ids": np.array(ids)}
    if text:
        data["text"] = rng.normal(size=(len(ids), dim)).astype(np.float32)
    if image:
        data["image"] = rng.normal(size=(len(ids), dim)).astype(np.float32)
    np.savez(path, **{**data, **arrays})
    return path


def build(catalog: Path, folder: Path, encoder, vectors: VectorsFile | None = None):
    return build_index(catalog, folder, encoder=encoder, model_spec={"name": encoder.identity.name, "pretrained": None},
                       vectors=vectors)


def stored(folder: Path, product_id: str) -> dict:
    with IndexStore.open(folder) as store:
        pk = store.product_pks([product_id])[product_id]
        return {**store.vectors_of([pk]), "product": store.products([pk])[pk]}


# -- build_index with a vectors file -------------------------------------------------------------------------------------
def test_listed_products_take_the_files_vectors_and_no_image_is_read(tmp_path, catalog, tiny_encoder):
    path = write_vectors(tmp_path / "vectors.npz")
    vectors = read_vectors_file(path)
    given = np.load(path)
    for pid in LISTED:  # the listed products' images are gone: none of them may be read
        for image in (catalog.parent / "images").glob(f"p{int(pid[1:])}_*.png"):
            image.unlink()
    report = build(catalog, tmp_path / "index", tiny_encoder, vectors)
    assert (report.indexed, report.failed, report.problems) == (24, 0, [])
    assert report.images == 12 + 18  # one per listed product; P012..P023 embed their 18 catalog images
    two_images = stored(tmp_path / "index", "P001")  # two images in the catalog: the vector stands for the first
    assert len(two_images["images"]) == 1 and two_images["has_text"][0]
    np.testing.assert_allclose(two_images["images"][0], unit(given["image"][1]), atol=1e-6)
    np.testing.assert_allclose(two_images["text"][0], unit(given["text"][1]), atol=1e-6)
    assert two_images["product"]["images"][0].endswith("images/p1_0.png")
    assert len(stored(tmp_path / "index", "P013")["images"]) == 2  # not listed: embedded from its images as usual

    with SearchEngine.open(tmp_path / "index", encoder=tiny_encoder) as engine:
        by_image = engine.search(vector=given["image"][3], image_share=1.0, rerank=False)
        assert by_image[0].product_id == "P003" and by_image[0].scores["image_cosine"] == pytest.approx(1.0, abs=1e-5)
        by_text = engine.search(vector=given["text"][5], image_share=0.0, rerank=False)
        assert by_text[0].product_id == "P005" and by_text[0].scores["text_cosine"] == pytest.approx(1.0, abs=1e-5)


def test_a_text_only_file_leaves_the_images_to_the_model(tmp_path, catalog, tiny_encoder):
    path = write_vectors(tmp_path / "vectors.npz", image=False)
    report = build(catalog, tmp_path / "index", tiny_encoder, read_vectors_file(path))
    assert report.indexed == 24 and report.images == 36  # every catalog image embedded
    product = stored(tmp_path / "index", "P001")
    assert len(product["images"]) == 2
    np.testing.assert_allclose(product["text"][0], unit(np.load(path)["text"][1]), atol=1e-6)


def test_a_product_without_images_gets_a_vector_location(tmp_path, tiny_encoder):
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(json.dumps({"id": "A", "title": "a thing"}) + "\n" + json.dumps({"id": "B", "title": "b"}) + "\n")
    path = write_vectors(tmp_path / "vectors.npz", ids=["A"], text=False)
    report = build(catalog, tmp_path / "index", tiny_encoder, read_vectors_file(path))
    assert report.indexed == 2 and report.images == 1
    product = stored(tmp_path / "index", "A")
    assert product["product"]["images"] == ["vector:A"] and product["has_text"][0]  # its text encoded as usual


def test_reruns_skip_unchanged_vectors_and_reindex_changed_ones(tmp_path, catalog, tiny_encoder):
    path = write_vectors(tmp_path / "vectors.npz")
    assert build(catalog, tmp_path / "index", tiny_encoder, read_vectors_file(path)).indexed == 24
    again = build(catalog, tmp_path / "index", tiny_encoder, read_vectors_file(path))
    assert (again.unchanged, again.indexed, again.updated) == (24, 0, 0)

    data = dict(np.load(path))
    data["image"][4] *= -1
    np.savez(path, **data)
    changed = build(catalog, tmp_path / "index", tiny_encoder, read_vectors_file(path))
    assert (changed.unchanged, changed.updated, changed.fields_only) == (23, 1, 0)
    np.testing.assert_allclose(stored(tmp_path / "index", "P004")["images"][0], unit(data["image"][4]), atol=1e-6)

    without = build(catalog, tmp_path / "index", tiny_encoder)  # no file: the listed products are embedded again
    assert (without.unchanged, without.updated) == (12, 12)
    assert len(stored(tmp_path / "index", "P001")["images"]) == 2


def test_ids_not_in_the_catalog_are_reported(tmp_path, catalog, tiny_encoder):
    path = write_vectors(tmp_path / "vectors.npz", ids=["P000", "NOPE"])
    report = build(catalog, tmp_path / "index", tiny_encoder, read_vectors_file(path))
    assert report.rows == 24 and report.indexed == 24
    [problem] = report.problems
    assert problem.product_id == "NOPE" and problem.outcome == "ignored" and "vectors row 1" in problem.reason


def test_another_dimension_is_refused_before_the_index_is_made(tmp_path, catalog, tiny_encoder):
    path = write_vectors(tmp_path / "vectors.npz", dim=16)
    with pytest.raises(VectorsFileError, match=r"vectors\.npz.*16 dimensions.*32"):
        build(catalog, tmp_path / "index", tiny_encoder, read_vectors_file(path))
    assert not (tmp_path / "index").exists()


@pytest.mark.parametrize("change, message", [
    (lambda d: d["text"].__setitem__((2, 5), np.nan), r"text row 2 \(id 'P002'\) is not finite"),
    (lambda d: d["image"].__setitem__((3, 0), np.inf), r"image row 3 \(id 'P003'\) is not finite"),
    (lambda d: d["image"].__setitem__(7, 0.0), r"image row 7 \(id 'P007'\) is all zeros"),
    (lambda d: d["ids"].__setitem__(4, "P000"), r"id 'P000' is repeated \(rows 0 and 4\)"),
    (lambda d: d.update(ids=np.array(LISTED, dtype=object)), r"'ids' is an object array"),
    (lambda d: d.update(ids=np.arange(12)), r"'ids' must be strings"),
    (lambda d: d.update(text=d["text"][:5]), r"'text' must have shape \(12, d\)"),
    (lambda d: d.update(text=d["text"].astype(np.int32)), r"'text' must hold floats"),
    (lambda d: d.update(text=d["text"][:, :16]), r"'text' has 16 dimensions and 'image' 32"),
    (lambda d: d.update(images=d.pop("image")), r"expected arrays 'ids' and 'text' and/or 'image'"),
    (lambda d: (d.pop("text"), d.pop("image")), r"no vectors"),
])
def test_bad_files_are_refused_naming_what_is_wrong(tmp_path, change, message):
    path = write_vectors(tmp_path / "vectors.npz")
    data = {k: v.copy() for k, v in np.load(path).items()}
    change(data)
    np.savez(path, **data)
    with pytest.raises(VectorsFileError, match=message):
        read_vectors_file(path)


def test_vector_rows_are_scaled_safely(tmp_path):
    huge = np.full((2, DIM), 1e300)
    huge[1] = 5e-324  # the smallest subnormal: still a direction
    vectors = VectorsFile(["a", "b"], image=huge)
    np.testing.assert_allclose(np.linalg.norm(vectors.image, axis=1), 1.0, atol=1e-6)
    with pytest.raises(VectorsFileError, match="must be .npz"):
        read_vectors_file(tmp_path / "vectors.parquet")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(VectorsFileError, match="not a readable .npz"):
        read_vectors_file(tmp_path / "broken.npz")


# -- the CLI -------------------------------------------------------------------------------------------------------------
def test_cli_index_takes_a_vectors_file(tmp_path, catalog, tiny_model_dir):
    runner = CliRunner()
    path = write_vectors(tmp_path / "vectors.npz")
    args = ["index", str(catalog), "--index", str(tmp_path / "index"), "--model", str(tiny_model_dir), "--vectors", str(path)]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "24 indexed, 0 updated, 0 unchanged" in first.output and "(30 images embedded)" in first.output
    second = runner.invoke(cli, args)
    assert second.exit_code == 0 and "0 indexed, 0 updated, 24 unchanged" in second.output

    wrong = write_vectors(tmp_path / "wrong.npz", dim=16)
    refused = runner.invoke(cli, [*args[:-1], str(wrong)])
    assert refused.exit_code == 1 and "wrong.npz: the vectors have 16 dimensions" in refused.output
    assert "32" in refused.output and "Traceback" not in refused.output
    assert ".npz" in runner.invoke(cli, ["index", "--help"]).output


# -- index_vectors: no model, no catalog file ----------------------------------------------------------------------------
def test_index_vectors_writes_a_searchable_index_without_an_encoder(tmp_path, tiny_encoder):
    rng = np.random.default_rng(1)
    records = [ProductRecord(id=f"V{i}", row=i + 1, title=f"thing {i}", price=float(i)) for i in range(50)]
    text, image = rng.normal(size=(50, DIM)).astype(np.float32), rng.normal(size=(50, DIM)).astype(np.float32)
    folder = tmp_path / "index"
    report = index_vectors(folder, records, text=text, image=image, identity=tiny_encoder.identity,
                           model_spec={"name": tiny_encoder.identity.name, "pretrained": None})
    assert (report.indexed, report.images, report.commits) == (50, 50, 1)
    assert stored(folder, "V3")["product"]["images"] == ["vector:V3"]
    with SearchEngine.open(folder, encoder=tiny_encoder) as engine:
        hit = engine.search(vector=image[7], image_share=1.0, rerank=False, lexical_weight=0.0)[0]
        assert hit.product_id == "V7" and hit.scores["image_cosine"] == pytest.approx(1.0, abs=1e-5)

    again = index_vectors(folder, records, text=text, image=image, identity=tiny_encoder.identity)
    assert (again.unchanged, again.indexed, again.updated) == (50, 0, 0)
    records[2] = ProductRecord(id="V2", row=3, title="thing 2", price=99.0)
    moved = index_vectors(folder, records, text=text, image=image, identity=tiny_encoder.identity)
    assert (moved.unchanged, moved.updated, moved.fields_only) == (49, 1, 1)
    with pytest.raises(VectorsFileError, match="16 dimensions; the model .* has 32"):
        index_vectors(tmp_path / "other", records, text=text[:, :16], identity=tiny_encoder.identity)


def test_index_vectors_and_a_vectors_file_agree_on_hashes(tmp_path, catalog, tiny_encoder):
    records = list(iter_products(catalog))
    path = write_vectors(tmp_path / "vectors.npz", ids=[r.id for r in records])
    data = np.load(path)
    index_vectors(tmp_path / "index", records, text=data["text"], image=data["image"], identity=tiny_encoder.identity,
                  model_spec={"name": tiny_encoder.identity.name, "pretrained": None})
    report = build(catalog, tmp_path / "index", tiny_encoder, read_vectors_file(path))
    assert (report.unchanged, report.indexed, report.updated) == (24, 0, 0)

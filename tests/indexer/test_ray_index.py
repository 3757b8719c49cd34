"""Indexing on Ray (``--ray``): the same index, report and row problems as a plain run; only changes re-embedded;
IVF segments filled in shards equal to one process's.  One local Ray for the module (starting one takes ~10 s)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import write_catalog
from vitrina.cli import cli

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_session():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("Ray is not installed: pip install 'vitrina[ray]'")
        pytest.skip("Ray is not installed (pip install 'vitrina[ray]')")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="WARNING")
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """12 products with photos, one more whose photo is not an image, and one bad row (row 14)."""
    catalog = write_catalog(tmp_path_factory.mktemp("ray-shop"), n=12)
    (catalog.parent / "images" / "broken.png").write_bytes(b"not a png at all")
    with catalog.open("a") as handle:
        handle.write(json.dumps({"id": "B1", "title": "broken photo widget", "images": ["images/broken.png"], "price": 3}) + "\n")
        handle.write(json.dumps({"id": "X1", "title": "bad price", "price": "cheap"}) + "\n")
    return catalog


def config():
    from indexer.config import IndexConfig

    return IndexConfig(batch_size=4, commit_every=5)


@pytest.fixture(scope="module")
def built(tmp_path_factory, shop, tiny_encoder, tiny_model_dir, ray_session):
    """(plain index, its report, Ray index, its report) of ``shop``."""
    from indexer.config import ModelConfig
    from indexer.distributed import RayOptions
    from indexer.distributed.ray_embedding import build_index_ray
    from indexer.pipeline import build_index

    root = tmp_path_factory.mktemp("ray-built")
    spec = {"name": str(tiny_model_dir), "pretrained": None}
    plain = build_index(shop, root / "plain", encoder=tiny_encoder, config=config(), model_spec=spec)
    on_ray = build_index_ray(shop, root / "ray", model=ModelConfig(name=str(tiny_model_dir)), identity=tiny_encoder.identity,
                             ray=RayOptions(actors=1), config=config(), model_spec=spec)
    return root / "plain", plain, root / "ray", on_ray


def counts(report) -> dict:
    data = report if isinstance(report, dict) else report.to_json()
    return {k: data[k] for k in ("indexed", "unchanged", "updated", "fields_only", "deleted", "skipped", "failed", "images",
                                 "commits", "rows")}


def problems(report) -> list[str]:
    from indexer.pipeline import Problem

    items = report["problems"] if isinstance(report, dict) else [p.__dict__ for p in report.problems]
    return [str(Problem(**p)) for p in items]


def top10(folder: Path, encoder, photo: Path) -> list[list[tuple[str, float]]]:
    from search import SearchEngine

    with SearchEngine.open(folder, encoder=encoder) as engine:
        results = [engine.search(text, k=10) for text in ("red circle widget", "a square thing in blue", "green")]
        results.append(engine.search(image=photo, k=10))
    return [[(h.product_id, round(h.score, 4)) for h in result.hits] for result in results]


def test_the_ray_path_gives_the_plain_index_report_and_row_problems(built, shop, tiny_encoder):
    from indexer.store.reader import IndexStore

    plain_dir, plain, ray_dir, on_ray = built
    assert counts(on_ray) == counts(plain)
    assert counts(on_ray)["indexed"] == 13 and counts(on_ray)["skipped"] == 1 and counts(on_ray)["commits"] >= 3
    assert problems(on_ray) == problems(plain)
    assert any(p.startswith("row 13 'B1' image") and "indexed without this image" in p for p in problems(on_ray))
    assert any(p.startswith("row 14 'X1': price must be a number") for p in problems(on_ray))
    ids = [f"P{i:03d}" for i in range(12)] + ["B1"]
    with IndexStore.open(plain_dir) as a, IndexStore.open(ray_dir) as b:
        assert a.product_pks(ids) == b.product_pks(ids)  # the same SQLite (and so FAISS) ids, in catalog order
        for modality in ("image", "text"):
            assert np.array_equal(a.vector_ids(modality)[0], b.vector_ids(modality)[0])
    photo = shop.parent / "images" / "p5_0.png"
    assert top10(ray_dir, tiny_encoder, photo) == top10(plain_dir, tiny_encoder, photo)


def test_a_second_run_on_ray_via_the_cli_reembeds_only_what_changed(built, shop, tmp_path, tiny_encoder, tiny_model_dir):
    from indexer.pipeline import build_index

    plain_dir, _, ray_dir, _ = built
    catalog = shop.with_name("catalog-v2.jsonl")  # beside the first: the same image paths
    rows = [json.loads(line) for line in shop.read_text().splitlines()]
    rows[1]["title"] = "a new title"  # re-embedded
    rows[2]["price"] = 99.5  # a field-only change: updated in place, no vectors
    del rows[3]  # removed from the catalog (--delete-missing)
    rows[4]["images"][0] = "images/gone.png"  # P005's photo cannot be read: its stored version is kept
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plain_copy, ray_copy = tmp_path / "plain", tmp_path / "ray"
    shutil.copytree(plain_dir, plain_copy)
    shutil.copytree(ray_dir, ray_copy)
    plain = build_index(catalog, plain_copy, encoder=tiny_encoder, config=config(), delete_missing=True)
    result = CliRunner().invoke(cli, ["index", str(catalog), "--index", str(ray_copy), "--model", str(tiny_model_dir),
                                      "--batch-size", "4", "--commit-every", "5", "--delete-missing", "--json",
                                      "--ray", "auto", "--actors", "1"])
    assert result.exit_code == 0, result.output
    on_ray = json.loads(result.stdout)
    assert counts(on_ray) == counts(plain)
    assert (on_ray["indexed"], on_ray["updated"], on_ray["fields_only"], on_ray["deleted"]) == (0, 2, 1, 1)
    assert on_ray["images"] == len(rows[1]["images"])  # only the retitled product's photos were embedded again
    assert problems(on_ray) == problems(plain)
    assert any("kept the stored version" in p for p in problems(on_ray))
    photo = shop.parent / "images" / "p7_0.png"
    assert top10(ray_copy, tiny_encoder, photo) == top10(plain_copy, tiny_encoder, photo)


def test_ivf_shards_on_ray_give_the_single_process_index(ray_session):
    import faiss

    from indexer.config import VectorIndexConfig
    from indexer.distributed.ivf_shards import IvfShardBuilder, add_in_shards, ray_runner, train
    from indexer.store import segments
    from indexer.store import vectors as vector_files

    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((6000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = rng.permutation(1_000_000)[:6000].astype(np.int64)
    queries = vectors[rng.choice(6000, 20, replace=False)]

    with vector_files.threads(1):  # OpenMP threads spin: on 2 busy vCPUs one trains PQ several times faster
        trained = vector_files.make_index("IVF32,PQ8x4", 32)
        train(trained, vectors)
        single = faiss.deserialize_index(faiss.serialize_index(trained))
        single.add_with_ids(vectors, ids)
        sharded = faiss.deserialize_index(faiss.serialize_index(trained))
        add_in_shards(sharded, ids, vectors, shards=3, runner=ray_runner)
        assert np.array_equal(faiss.vector_to_array(sharded.id_map), faiss.vector_to_array(single.id_map))
        tuning = vector_files.SearchTuning(nprobe=8)
        got, want = (vector_files.search(index, queries, 10, tuning=tuning) for index in (sharded, single))
        assert np.array_equal(got[1], want[1]) and np.allclose(got[0], want[0], atol=1e-6)
        assert set(got[1].ravel()) <= set(ids.tolist())  # the merged shards answer with the segment's own ids

        config = VectorIndexConfig(tuning_queries=30)
        build = IvfShardBuilder(shards=2, min_shard_vectors=1000)
        index, info = build(ids, vectors, index_type="IVF32,Flat", dim=32, config=config)
        alone, alone_info = segments.build(ids, vectors, index_type="IVF32,Flat", dim=32, config=config)
        assert info == alone_info and faiss.serialize_index(index).tobytes() == faiss.serialize_index(alone).tobytes()
        flat, flat_info = build(ids, vectors, index_type="Flat", dim=32, config=config)
        assert flat_info["index_type"] == "Flat" and flat.ntotal == 6000  # not IVF: segments.build


def test_too_many_actors_is_a_usage_error_that_says_why(ray_session, shop, tmp_path, tiny_model_dir):
    result = CliRunner().invoke(cli, ["index", str(shop), "--index", str(tmp_path / "index"), "--model", str(tiny_model_dir),
                                      "--ray", "--actors", "2"])
    assert result.exit_code == 2, result.output
    assert "at most 1" in result.output and "one must stay free for Ray Data" in result.output
    assert not (tmp_path / "index").exists()


def test_an_actors_own_error_reaches_the_caller_as_itself(ray_session):
    from indexer.distributed.ray_embedding import _vitrina_cause
    from indexer.errors import ModelError

    wrapped = ray_session.exceptions.RayTaskError("EmbedActor.__call__", "Traceback ...", ModelError("no weights")).as_instanceof_cause()
    assert isinstance(wrapped, ModelError)  # Ray's wrapper is a ModelError too, but its text is a traceback
    cause = _vitrina_cause(wrapped, ray_session.exceptions.RayError)
    assert type(cause) is ModelError and str(cause) == "no weights"
    assert _vitrina_cause(ray_session.exceptions.RayError("lost a node"), ray_session.exceptions.RayError) is None


def test_without_ray_installed_ray_is_a_usage_error_naming_the_extra(monkeypatch, shop, tmp_path):
    from indexer.distributed import RAY_INSTALL, actor_count, ray_missing_message

    assert RAY_INSTALL == "pip install 'vitrina[ray]'" and RAY_INSTALL in ray_missing_message(ImportError("No module named 'ray'"))
    monkeypatch.setitem(sys.modules, "ray", None)  # ``import ray`` now fails, as where it is not installed
    result = CliRunner().invoke(cli, ["index", str(shop), "--index", str(tmp_path / "index"), "--ray"])
    assert result.exit_code == 2 and "pip install 'vitrina[ray]'" in result.output, result.output
    assert not (tmp_path / "index").exists()
    result = CliRunner().invoke(cli, ["index", str(shop), "--index", str(tmp_path / "index"), "--actors", "2"])
    assert result.exit_code == 2 and "--actors and --gpus-per-actor need --ray" in result.output
    assert actor_count(None, cpus=8) == 7 and actor_count(2, cpus=4, gpus=1, gpus_per_actor=0.5) == 2


@pytest.mark.postgres
def test_the_ray_path_writes_into_postgresql_through_the_cli(built, shop, tmp_path, tiny_encoder, tiny_model_dir, pg_url):
    """``--ray`` with ``--db``: the same products, ids and vector answers as the plain run into SQLite."""
    from indexer.store.reader import IndexStore

    plain_dir, _, _, _ = built
    folder = tmp_path / "ray-pg"
    result = CliRunner().invoke(cli, ["index", str(shop), "--index", str(folder), "--model", str(tiny_model_dir),
                                      "--batch-size", "4", "--commit-every", "5", "--db", pg_url, "--ray", "auto",
                                      "--actors", "1", "--json"])
    assert result.exit_code == 0, result.output
    ids = [f"P{i:03d}" for i in range(12)] + ["B1"]
    with IndexStore.open(plain_dir) as a, IndexStore.open(folder) as b:
        assert b.backend.kind == "postgresql" and a.product_pks(ids) == b.product_pks(ids)
    from search import SearchEngine

    def vector_hits(where: Path) -> list[list[tuple[str, float]]]:
        with SearchEngine.open(where, encoder=tiny_encoder, rerank=False) as engine:
            return [[(h.product_id, round(h.score, 4)) for h in engine.search(text, k=10, lexical_weight=0.0).hits]
                    for text in ("red circle widget", "green")]

    assert vector_hits(folder) == vector_hits(plain_dir)

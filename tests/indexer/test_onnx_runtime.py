"""``--runtime onnx``: the image tower exported once to ONNX Runtime gives the torch embeddings; without
onnxruntime the torch encoder is used and the user is told."""

import builtins
import logging
import os

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import draw_product

from indexer.config import IndexConfig, ModelConfig
from indexer.encoders.loading import load_encoder
from indexer.pipeline import build_index
from indexer.store.reader import IndexStore
from vitrina.cli import cli


def need_onnxruntime() -> None:
    """The test extra installs onnxruntime: under CI its absence fails the run instead of skipping."""
    if os.environ.get("CI"):
        import onnxruntime  # noqa: F401
    else:
        pytest.importorskip("onnxruntime", reason="pip install -e '.[test]' installs onnxruntime")


@pytest.fixture
def onnx_encoder(tiny_model_dir, tmp_path):
    need_onnxruntime()
    return load_encoder(ModelConfig(name=str(tiny_model_dir), runtime="onnx", onnx_cache=str(tmp_path / "onnx")))


def test_onnx_image_tower_matches_torch_and_is_cached(onnx_encoder, tiny_encoder, tiny_model_dir, tmp_path):
    from PIL import Image

    assert onnx_encoder.runtime == "onnx" and tiny_encoder.runtime == "torch"
    assert onnx_encoder.identity == tiny_encoder.identity  # same weights: indexes stay interchangeable
    photos = [Image.open(draw_product(tmp_path / f"{i}.png", colour, shape, seed=i))
              for i, (colour, shape) in enumerate([("red", "circle"), ("blue", "square"), ("green", "triangle")])]
    ours, theirs = onnx_encoder.encode_images(photos), tiny_encoder.encode_images(photos)
    assert ours.shape == theirs.shape == (3, tiny_encoder.dim)
    assert float((ours * theirs).sum(axis=1).min()) > 0.9999
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)
    exported = onnx_encoder.model_path
    assert exported.is_file() and exported.parent == tmp_path / "onnx" and not list(exported.parent.glob("*.tmp"))
    stamp = exported.stat().st_mtime_ns
    again = load_encoder(ModelConfig(name=str(tiny_model_dir), runtime="onnx", onnx_cache=str(tmp_path / "onnx")))
    assert again.model_path == exported and exported.stat().st_mtime_ns == stamp  # reused, not re-exported


def test_int8_runtime_stays_close_to_fp32(tiny_model_dir, tiny_encoder, tmp_path):
    need_onnxruntime()
    from PIL import Image

    encoder = load_encoder(ModelConfig(name=str(tiny_model_dir), runtime="onnx-int8", onnx_cache=str(tmp_path)))
    assert encoder.runtime == "onnx-int8" and encoder.model_path.name.endswith("-int8.onnx")
    photos = [Image.open(draw_product(tmp_path / f"{i}.png", colour, "circle", seed=i)) for i, colour in enumerate(["red", "blue"])]
    cosine = (encoder.encode_images(photos) * tiny_encoder.encode_images(photos)).sum(axis=1)
    assert float(cosine.min()) > 0.98


def test_indexing_with_onnx_gives_the_torch_index(onnx_encoder, tiny_encoder, catalog, tmp_path):
    build_index(catalog, tmp_path / "onnx-idx", encoder=onnx_encoder, config=IndexConfig(batch_size=5))
    build_index(catalog, tmp_path / "torch-idx", encoder=tiny_encoder, config=IndexConfig(batch_size=5))
    with IndexStore.open(tmp_path / "onnx-idx") as a, IndexStore.open(tmp_path / "torch-idx") as b:
        pks = sorted(a.product_pks(a.product_ids()).values())
        va, vb = a.vectors_of(pks), b.vectors_of(pks)
        assert float((va["images"] * vb["images"]).sum(axis=1).min()) > 0.9999


def test_without_onnxruntime_the_torch_encoder_is_used(tiny_model_dir, tmp_path, monkeypatch, caplog, catalog):
    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'", name="onnxruntime")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with caplog.at_level(logging.WARNING, logger="indexer.encoders.onnx"):
        encoder = load_encoder(ModelConfig(name=str(tiny_model_dir), runtime="onnx", onnx_cache=str(tmp_path)))
    assert encoder.runtime == "torch" and "onnxruntime is not installed" in caplog.text
    result = CliRunner().invoke(cli, ["index", str(catalog), "--index", str(tmp_path / "i"),
                                      "--model", str(tiny_model_dir), "--runtime", "onnx"])
    assert result.exit_code == 0, result.output
    assert "--runtime onnx: onnxruntime is not installed" in result.output and "24 indexed" in result.output


def test_unknown_runtime_is_refused():
    with pytest.raises(ValueError, match="runtime must be one of torch, onnx, onnx-int8"):
        ModelConfig(runtime="tensorrt")

import time

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_NAME
from indexer.config import ModelConfig
from indexer.encoders.base import Encoder
from indexer.encoders.loading import BUNDLED_MODEL_NAME, load_encoder, resolve_model_name
from indexer.errors import ModelError


def test_vectors_are_unit_float32_and_batch_independent(tiny_encoder):
    assert isinstance(tiny_encoder, Encoder)
    texts = ["red shoe", "a blue bag with a long strap", "hat"]
    batch = tiny_encoder.encode_texts(texts)
    assert batch.dtype == np.float32 and batch.shape == (3, tiny_encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, rtol=1e-5)
    one_by_one = np.concatenate([tiny_encoder.encode_texts([t]) for t in texts])
    np.testing.assert_allclose(batch, one_by_one, atol=1e-5)
    images = [Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("L", (64, 64), 128), Image.new("RGBA", (20, 20))]
    vectors = tiny_encoder.encode_images(images)
    assert vectors.shape == (3, tiny_encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_checkpoint_file_loads_the_same_weights_as_the_folder(tmp_path, tiny_model_dir, tiny_encoder):
    import torch

    checkpoint = tmp_path / "tiny.pt"
    torch.save(tiny_encoder.model.state_dict(), checkpoint)
    encoder = load_encoder(ModelConfig(name=TINY_NAME, pretrained=str(checkpoint)))
    assert encoder.identity.fingerprint == tiny_encoder.identity.fingerprint
    assert encoder.identity.pretrained == str(checkpoint)
    np.testing.assert_allclose(encoder.encode_texts(["x"]), tiny_encoder.encode_texts(["x"]), atol=1e-6)


def test_random_weights_need_saying_so(tiny_model_dir):
    with pytest.raises(ModelError, match="needs weights"):
        load_encoder(ModelConfig(name=TINY_NAME))
    a = load_encoder(ModelConfig(name=TINY_NAME, pretrained="random"))
    b = load_encoder(ModelConfig(name=TINY_NAME, pretrained="random"))
    assert not a.identity.same_model(b.identity)  # two random inits are two different models


@pytest.mark.parametrize("config, message", [
    (ModelConfig(name="ViT-B-32", pretrained="laion2b_s34b_b79k"), "not in the local cache"),
    (ModelConfig(name="hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"), "not in the local cache"),
    (ModelConfig(name="ViT-B-32", pretrained="no_such_tag"), "neither a pretrained tag"),
    (ModelConfig(name="NoSuchNet-7"), "unknown model"),
    (ModelConfig(name="weights.pt"), "goes in --pretrained"),
    (ModelConfig(pretrained="laion2b_s34b_b79k"), "needs --model"),
])
def test_unavailable_weights_fail_fast_with_advice(config, message):
    started = time.perf_counter()
    with pytest.raises(ModelError, match=message):
        load_encoder(config)
    assert time.perf_counter() - started < 20  # no minutes of download retries


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelError, match="not a model folder"):
        resolve_model_name(ModelConfig(name=str(tmp_path)))


def test_default_model_is_the_bundled_one_or_a_clear_error(monkeypatch, tmp_path):
    import indexer.encoders.loading as encoder_module

    monkeypatch.setattr(encoder_module, "BUNDLED_MODEL_DIR", tmp_path / "absent")
    with pytest.raises(ModelError, match="bundled demo model is missing"):
        resolve_model_name(ModelConfig())
    monkeypatch.setattr(encoder_module, "BUNDLED_MODEL_DIR", tmp_path)
    (tmp_path / "open_clip_config.json").write_text("{}")
    assert resolve_model_name(ModelConfig()) == (f"local-dir:{tmp_path}", None)
    assert resolve_model_name(ModelConfig(name=BUNDLED_MODEL_NAME))[0] == f"local-dir:{tmp_path}"

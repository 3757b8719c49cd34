"""The bundled demo model: loads as the default, and clears a smoke check of its quality figures."""

import pytest

from indexer.config import ModelConfig
from indexer.encoders.loading import BUNDLED_MODEL_DIR, BUNDLED_MODEL_NAME, load_encoder
from vitrina.demo.quality import measure_demo_quality


def test_bundled_model_is_shipped_small_and_the_default():
    weights = sum(p.stat().st_size for p in BUNDLED_MODEL_DIR.iterdir())
    assert weights <= 25 * 1024 * 1024
    assert (BUNDLED_MODEL_DIR / "MODEL_CARD.md").is_file()
    encoder = load_encoder(ModelConfig())
    assert encoder.identity.name == BUNDLED_MODEL_NAME
    vectors = encoder.encode_texts(["red striped t-shirt", "blue dotted mug"])
    assert vectors.shape == (2, encoder.dim)


@pytest.mark.slow
def test_bundled_model_quality_smoke(tmp_path):
    # a small catalog from a seed the model never saw; the full figures are in README and the model card
    figures = measure_demo_quality(None, tmp_path, products=120, seed=4242)
    model = figures["model_only"]
    assert model["text/color"] >= 0.9
    assert model["text/color+pattern+category"] >= 0.8
    assert model["photo/top10"] >= 0.8
    assert figures["default_search"]["text/one-or-two-attributes-min"] >= 0.5

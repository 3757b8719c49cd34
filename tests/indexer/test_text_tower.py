"""``encode_text_trimmed`` gives open_clip's padded ``encode_text`` result on the real length."""

from __future__ import annotations

import types

import pytest

torch = pytest.importorskip("torch")

from indexer.encoders.text_tower import can_trim, encode_text_trimmed, real_length

TEXTS = ["red", "a blue striped cotton summer dress with short sleeves", "", "lamp " * 200]


def _cosines(model, tokens):
    with torch.inference_mode():
        padded = model.encode_text(tokens, normalize=True)
        trimmed = encode_text_trimmed(model, tokens, normalize=True)
    assert trimmed.shape == padded.shape and trimmed.dtype == padded.dtype
    return (padded * trimmed).sum(-1)


def test_tiny_model_matches_padded(tiny_encoder):
    model, tokenizer = tiny_encoder.model, tiny_encoder.tokenizer
    assert can_trim(model)
    for texts in (TEXTS, TEXTS[:1], TEXTS[:3], ["x"] * 5):
        assert float(_cosines(model, tokenizer(texts)).min()) >= 0.9999


def test_real_length_is_the_longest_text(tiny_encoder):
    tokens = tiny_encoder.tokenizer(["red", "red shoe"])
    assert real_length(tiny_encoder.model, tokens) == 4  # <sot> red shoe <eot>
    assert real_length(tiny_encoder.model, tiny_encoder.tokenizer(["lamp " * 200])) == tokens.shape[1]


def test_unnormalised_features_match_too(tiny_encoder):
    tokens = tiny_encoder.tokenizer(TEXTS[:2])
    with torch.inference_mode():
        padded = tiny_encoder.model.encode_text(tokens)
        trimmed = encode_text_trimmed(tiny_encoder.model, tokens)
    assert torch.allclose(padded, trimmed, atol=1e-5, rtol=1e-4)


def test_vit_b_32_random_weights_match_padded():
    open_clip = pytest.importorskip("open_clip")
    from open_clip.model import CLIP

    torch.manual_seed(0)
    cfg = open_clip.get_model_config("ViT-B-32")  # ViT-B-32's own text tower; a tiny vision tower keeps this fast
    model = CLIP(embed_dim=cfg["embed_dim"], text_cfg=cfg["text_cfg"],
                 vision_cfg={"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16}).eval()
    tokens = open_clip.get_tokenizer("ViT-B-32")(TEXTS[:3])
    assert tokens.shape[1] == 77 and can_trim(model)
    assert float(_cosines(model, tokens).min()) >= 0.9999


def test_towers_it_cannot_trim_fall_back_to_encode_text(tiny_encoder):
    model = tiny_encoder.model
    tokens = tiny_encoder.tokenizer(["red shoe"])
    calls = []

    class Custom:  # CustomTextCLIP-like: the text tower hides behind .text
        def encode_text(self, text, normalize=False):
            calls.append((text.shape, normalize))
            return model.encode_text(text, normalize=normalize)

    encode_text_trimmed(Custom(), tokens, normalize=True)
    assert calls == [(tokens.shape, True)]

    no_mask = types.SimpleNamespace(**{name: getattr(model, name) for name in (
        "token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection", "text_pool_type")},
        attn_mask=None, encode_text=Custom().encode_text)
    assert not can_trim(no_mask)
    encode_text_trimmed(no_mask, tokens)
    assert len(calls) == 2

    last_pool = types.SimpleNamespace(**vars(no_mask) | {"attn_mask": model.attn_mask, "text_pool_type": "last"})
    assert not can_trim(last_pool)
    full = types.SimpleNamespace(**vars(no_mask) | {"attn_mask": model.attn_mask, "text_pool_type": "argmax"})
    assert can_trim(full)
    bidirectional = types.SimpleNamespace(**vars(full) | {"attn_mask": torch.zeros_like(model.attn_mask)})
    assert not can_trim(bidirectional)

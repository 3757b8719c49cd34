"""Training: a short run learns and writes a loadable model folder; runs repeat; bad input is refused clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_catalog

from indexer.config import ModelConfig
from indexer.encoders.loading import load_encoder
from indexer.errors import CatalogError, ModelError
from indexer.train.run import CARD_JSON, CARD_MD, TrainConfig, TrainEvent, train_model

FAST = dict(batch_size=12, val_fraction=0.2, threads=1, half=False)


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory):
    return write_catalog(tmp_path_factory.mktemp("train-catalog"), 24)


@pytest.fixture(scope="module")
def trained(small_catalog, tmp_path_factory):
    events: list[TrainEvent] = []
    out = tmp_path_factory.mktemp("trained") / "model"
    config = TrainConfig(epochs=6, lr=2e-3, seed=3, augment=False, **FAST)
    report = train_model(small_catalog, out, config=config, progress=events.append)
    return report, events


def test_training_lowers_the_loss_and_reports_each_epoch(trained):
    report, events = trained
    assert [m.epoch for m in report.metrics] == [1, 2, 3, 4, 5, 6]
    assert report.metrics[-1].loss < report.metrics[0].loss
    assert report.products == 19 and report.val_products == 5
    assert report.steps == 12 == sum(e.kind == "step" for e in events)
    assert [e.epoch for e in events if e.kind == "epoch"] == [1, 2, 3, 4, 5, 6]
    final = report.final
    assert final is not None and final.text_r10 is not None and 0.0 <= final.text_r10 <= 1.0
    assert final.image_r10 is not None  # some held-out products have two photos


def test_trained_folder_loads_and_embeds_unit_vectors(trained):
    report, _ = trained
    encoder = load_encoder(ModelConfig(name=str(report.out_dir)))
    texts = encoder.encode_texts(["red square widget", "a circle thing in blue"])
    from PIL import Image

    images = encoder.encode_images([Image.new("RGB", (48, 48), (220, 30, 30)), Image.new("RGB", (80, 60), "blue")])
    assert texts.shape == images.shape == (2, encoder.dim)
    assert texts.dtype == images.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(np.vstack([texts, images]), axis=1), 1.0, atol=1e-5)


def test_model_card_says_how_to_reproduce(trained, small_catalog):
    report, _ = trained
    card = json.loads((report.out_dir / CARD_JSON).read_text())
    assert card["data"]["products"] == 24 and card["data"]["catalog"] == str(small_catalog.resolve())
    assert card["config"]["seed"] == 3 and card["training"]["steps"] == report.steps
    assert len(card["validation"]) == 6 and card["training"]["seconds"] > 0
    assert card["command"].startswith(f"vitrina train --catalog {small_catalog} --out {report.out_dir}")
    assert "--seed 3" in card["command"] and "--epochs 6" in card["command"] and "--lr 0.002" in card["command"]
    assert report.command in (report.out_dir / CARD_MD).read_text()


def _weights(folder):
    from safetensors.numpy import load_file

    return load_file(str(folder / "open_clip_model.safetensors"))


def test_same_seed_gives_identical_weights(small_catalog, tmp_path):
    config = TrainConfig(epochs=1, seed=5, **FAST)
    train_model(small_catalog, tmp_path / "a", config=config)
    train_model(small_catalog, tmp_path / "b", config=config)
    train_model(small_catalog, tmp_path / "c", config=TrainConfig(epochs=1, seed=6, **FAST))
    a, b, c = _weights(tmp_path / "a"), _weights(tmp_path / "b"), _weights(tmp_path / "c")
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_fine_tunes_from_a_model_folder_in_half_precision(small_catalog, tiny_model_dir, tmp_path):
    report = train_model(small_catalog, tmp_path / "ft", config=TrainConfig(
        init=str(tiny_model_dir), epochs=1, batch_size=12, val_fraction=0.0, threads=1, half=True))
    assert report.val_products == 0 and report.final is not None and report.final.text_r10 is None
    assert {str(v.dtype) for v in _weights(tmp_path / "ft").values()} <= {"float16", "int64"}
    encoder = load_encoder(ModelConfig(name=str(tmp_path / "ft")))
    assert encoder.dim == 32  # the architecture of the folder, not "tiny"


def test_products_without_images_or_text_are_skipped_and_counted(tmp_path):
    catalog = write_catalog(tmp_path, 6)
    rows = [json.loads(line) for line in catalog.read_text().splitlines()]
    rows.append({"id": "no-photo", "title": "a photo-less thing"})
    rows.append({"id": "no-text", "images": rows[0]["images"]})
    rows.append({"id": "broken-photo", "title": "broken", "images": ["images/missing.png"]})
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    report = train_model(catalog, tmp_path / "m", config=TrainConfig(epochs=1, val_fraction=0.0, **{
        k: v for k, v in FAST.items() if k != "val_fraction"}))
    assert report.products == 6
    skipped = report.skipped
    assert (skipped.bad_rows, skipped.no_text, skipped.no_images, skipped.bad_images) == (1, 1, 2, 1)


def test_catalog_without_usable_products_is_a_catalog_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(CatalogError, match="nothing to train on"):
        train_model(empty, tmp_path / "m", config=TrainConfig(epochs=1))
    text_only = tmp_path / "text.jsonl"
    text_only.write_text('{"id": "a", "title": "red mug"}\n{"id": "b", "title": "blue mug"}\n')
    with pytest.raises(CatalogError, match="2 without a usable image"):
        train_model(text_only, tmp_path / "m", config=TrainConfig(epochs=1))
    with pytest.raises(CatalogError, match="not found"):
        train_model(tmp_path / "missing.jsonl", tmp_path / "m", config=TrainConfig(epochs=1))


def test_one_product_is_not_enough(tmp_path):
    catalog = write_catalog(tmp_path, 1)
    with pytest.raises(CatalogError, match="at least 2"):
        train_model(catalog, tmp_path / "m", config=TrainConfig(epochs=1))


def test_unknown_model_and_unavailable_init_are_model_errors(small_catalog, tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="unknown model 'ViT-Nope'"):
        train_model(small_catalog, tmp_path / "m", config=TrainConfig(model="ViT-Nope"))
    with pytest.raises(ModelError, match="neither a model folder, a checkpoint file nor a pretrained tag"):
        train_model(small_catalog, tmp_path / "m", config=TrainConfig(model="RN50", init="no-such-tag"))
    not_a_model = tmp_path / "folder"
    not_a_model.mkdir()
    with pytest.raises(ModelError, match="not a model folder"):
        train_model(small_catalog, tmp_path / "m", config=TrainConfig(init=str(not_a_model)))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelError, match="not available offline"):
        train_model(small_catalog, tmp_path / "m", config=TrainConfig(model="RN50", init="openai"))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=1)


def test_hard_batches_group_look_alikes():
    import torch

    from indexer.train.run import hard_batch_order

    # three tight clusters of 4 rows each, shuffled
    centres = torch.eye(3)
    rows = torch.cat([centres[i].repeat(4, 1) + 0.01 * torch.randn(4, 3) for i in range(3)])
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    features = torch.nn.functional.normalize(rows[perm], dim=1)
    cluster = (perm // 4).tolist()
    order = hard_batch_order(features, 4, torch.Generator().manual_seed(1))
    assert sorted(order) == list(range(12))
    for start in range(0, 12, 4):
        assert len({cluster[i] for i in order[start:start + 4]}) == 1


def test_attribute_vocab_lists_each_fields_values_and_labels_products():
    from indexer.train.data import TrainProduct, attribute_vocab

    def product(pid, **attrs):
        return TrainProduct(id=pid, text=pid, title=pid, description="", image_rows=(0,),
                            attributes=tuple((k, v) for k, v in attrs.items()))

    products = [product("a", color="red", category="mug"), product("b", color="blue", category="mug"),
                product("c", color="red", pattern="striped", category="lamp"), product("d", category="lamp")]
    vocab = attribute_vocab(products)
    assert vocab.fields == ("color", "category")  # one pattern value only: nothing to tell apart
    assert vocab.values == (("blue", "red"), ("lamp", "mug"))
    assert vocab.texts == ["blue", "red", "lamp", "mug"]
    assert vocab.labels.tolist() == [[1, 1], [0, 1], [1, 0], [-1, 0]]
    assert attribute_vocab([product("x"), product("y")]) is None


def test_attribute_loss_is_a_recorded_setting(small_catalog, tmp_path):
    with pytest.raises(ValueError, match="attribute_loss"):
        TrainConfig(attribute_loss=-1)
    off = train_model(small_catalog, tmp_path / "off", config=TrainConfig(epochs=1, seed=1, attribute_loss=0, **FAST))
    on = train_model(small_catalog, tmp_path / "on", config=TrainConfig(epochs=1, seed=1, attribute_loss=3.0, **FAST))
    assert on.metrics[0].loss > off.metrics[0].loss  # the same contrastive terms plus the attribute terms
    card = json.loads((tmp_path / "on" / CARD_JSON).read_text())
    assert card["config"]["attribute_loss"] == 3.0


def test_train_command_passes_its_options_and_refuses_bad_ones(small_catalog, tmp_path):
    from click.testing import CliRunner

    from vitrina.cli import cli

    out = tmp_path / "model"
    result = CliRunner().invoke(cli, ["train", "--catalog", str(small_catalog), "--out", str(out), "--epochs", "1",
                                      "--batch-size", "12", "--val-fraction", "0.2", "--threads", "1", "--no-half",
                                      "--attribute-loss", "0.5", "--hard-groups", "0"])
    assert result.exit_code == 0, result.output
    assert "trained on 19 products (5 held out)" in result.output
    config = json.loads((out / CARD_JSON).read_text())["config"]
    assert config["attribute_loss"] == 0.5 and config["hard_groups"] == 0 and config["half"] is False
    bad = CliRunner().invoke(cli, ["train", "--catalog", str(small_catalog), "--out", str(tmp_path / "x"), "--attribute-loss", "-1"])
    assert bad.exit_code == 2 and "--attribute-loss" in bad.output

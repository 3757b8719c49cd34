"""The photo + words combiner: its numpy forward, the pairs it learns from, storage, and the engine's use."""

import json
import random
import shutil

import numpy as np
import pytest
import torch

from conftest import open_built_engine, write_catalog
from indexer.errors import ModelError
from search.composer import COMPOSER_DIR, forward, load_composer, read_composer, save_composer
from search.composer_train import ComposerConfig, _positives, _torch_forward, draw_pairs, kind_field, train_composer


def test_numpy_forward_equals_the_torch_twin():
    rng = np.random.default_rng(0)
    params = {"w1": rng.normal(size=(16, 5)), "b1": rng.normal(size=5), "wg": rng.normal(size=(5, 8)),
              "bg": rng.normal(size=8), "wr": rng.normal(size=(5, 8)), "br": rng.normal(size=8)}
    params = {k: v.astype(np.float32) for k, v in params.items()}
    photo, words = rng.normal(size=(3, 8)).astype(np.float32), rng.normal(size=(3, 8)).astype(np.float32)
    ours = forward(params, photo, words)
    theirs = _torch_forward({k: torch.from_numpy(v) for k, v in params.items()}, torch.from_numpy(photo),
                            torch.from_numpy(words), torch).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)
    assert forward(params, photo[0], words[0]).shape == (8,)


def test_pairs_differ_in_one_field_within_a_kind_and_share_the_most_else():
    values = {"category": ["lamp", "lamp", "lamp", "sofa", "lamp"],
              "colour": ["teal", "ivory", "ivory", "ivory", None],
              "material": ["brass", "brass", "wood", "brass", "brass"]}
    pairs = draw_pairs(values, "category", [0, 1, 2, 3, 4], random.Random(0))
    by = {(p.anchor, p.field): p for p in pairs}
    assert by[(0, "colour")].target == 1 and by[(0, "colour")].value == "ivory"  # row 1 also shares brass
    assert by[(2, "material")].target == 1 and by[(2, "material")].value == "brass"  # same colour as row 2
    assert (3, "colour") not in by and (3, "material") not in by  # the only sofa
    assert all(values["category"][p.anchor] == values["category"][p.target] for p in pairs)
    assert all(values[p.field][p.target] == p.value != values[p.field][p.anchor] for p in pairs)
    assert kind_field({"colour": 0.5, "category": 1.0, "type": 1.0}) == "category"
    mask = _positives(pairs, values, "category")  # every target of the anchor's kind with the named value
    for i, a in enumerate(pairs):
        for j, b in enumerate(pairs):
            expected = values["category"][b.target] == values["category"][a.anchor] and values[a.field][b.target] == a.value
            assert mask[i, j] == expected


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_encoder):
    catalog = write_catalog(tmp_path_factory.mktemp("composer-catalog"))
    with open_built_engine(tmp_path_factory.mktemp("composer") / "index", catalog, tiny_encoder) as opened:
        opened.catalog = catalog
        yield opened


def test_train_save_load_and_use(engine, tiny_encoder):
    composer, report = train_composer(engine.store, tiny_encoder, config=ComposerConfig(epochs=2, pairs=64, hidden=16))
    assert report.kind_field == "category" and report.pairs > 0 and set(report.fields) >= {"category", "color"}
    assert 0.0 <= report.val_accuracy <= 1.0 and 0.0 <= report.baseline_accuracy <= 1.0
    assert report.better == (report.val_accuracy > report.baseline_accuracy)
    folder = save_composer(composer, engine.store.folder)
    assert sorted(p.name for p in folder.iterdir()) == ["composer.json", "weights.npz"]
    loaded = load_composer(engine.store)
    photo, words = tiny_encoder.encode_texts(["a"])[0], tiny_encoder.encode_texts(["in red"])[0]
    np.testing.assert_allclose(loaded.compose(photo, words), composer.compose(photo, words), rtol=1e-6)
    photo_path = engine.catalog.parent / "images" / "p5_0.png"
    engine.composer = None
    plain = engine.search("in red", image=photo_path, k=5)
    engine.composer = loaded
    try:
        composed = engine.search("in red", image=photo_path, k=5)
        text_only = engine.search("in red", k=5)
    finally:
        engine.composer = None
    assert len(plain.weights["terms"]) == 2 and len(composed.weights["terms"]) == 3
    assert composed.weights["terms"][2]["weight"] == 2.0  # the photo and the words together
    assert len(text_only.weights["terms"]) == 1  # no photo: nothing to compose


def test_a_foreign_or_broken_composer_is_refused(engine, tiny_encoder, tmp_path):
    composer, _ = train_composer(engine.store, tiny_encoder, config=ComposerConfig(epochs=1, pairs=32, hidden=8))
    composer.meta["index"] = {**composer.meta["index"], "created_at": 1.0}
    save_composer(composer, engine.store.folder)
    with pytest.raises(ModelError, match="another index"):
        load_composer(engine.store)
    (engine.store.folder / COMPOSER_DIR / "weights.npz").write_bytes(b"not numpy")
    with pytest.raises(ModelError, match="unreadable composer"):
        read_composer(engine.store.folder / COMPOSER_DIR)


def test_train_composer_command(engine):
    from click.testing import CliRunner

    from vitrina.cli import cli

    shutil.rmtree(engine.store.folder / COMPOSER_DIR, ignore_errors=True)
    args = ["train-composer", "--index", str(engine.store.folder), "--epochs", "1", "--pairs", "32", "--hidden", "8"]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["kind_field"] == "category"
    assert (report["saved"] is not None) == (report["val_accuracy"] > report["baseline_accuracy"])
    forced = CliRunner().invoke(cli, [*args, "--force"])
    assert forced.exit_code == 0 and "saved to" in forced.output
    assert (engine.store.folder / COMPOSER_DIR / "composer.json").is_file()
    missing = CliRunner().invoke(cli, ["train-composer", "--index", str(engine.store.folder / "nope")])
    assert missing.exit_code == 1 and "Error" in missing.output

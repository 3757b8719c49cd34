"""The fusion classifier: features, the two architectures, learning, persistence, refusal, engine wiring."""

import json
import shutil

import numpy as np
import pytest

from indexer.errors import ModelError
from indexer.pipeline import build_index
from indexer.store.reader import IndexStore
from conftest import open_built_engine, write_catalog
from search.candidates import Candidates, QueryInfo
from search.evaluation.judgments import JudgedQuery
from search.rerank.storage import FusionReranker, load_reranker, read_reranker, save_reranker
from search.trained_files import index_identity
from search.rerank.train import query_candidates, query_data, train_reranker
from search.rerank.features import QUERY_FEATURES, build_features, channel_columns, feature_names
from search.rerank.model import RerankerConfig, _torch_model, fit, forward, ndcg

COLOURS = ("red", "green", "blue", "yellow")


def synthetic(rng, *, n=30, colour="red", words=None):
    """A text query naming ``colour`` over candidates whose fused score ignores colour; label 3 iff it matches."""
    text, image = rng.uniform(0.1, 0.4, n).astype(np.float32), rng.uniform(0.1, 0.4, n).astype(np.float32)
    text[rng.integers(n)] = np.nan
    colours = rng.choice(COLOURS, n)
    products = [{"id": f"S{i}", "title": f"thing {i}", "description": "a product", "price": float(rng.uniform(5, 50)),
                 "category": "widget", "brand": f"B{i % 3}", "attributes": {"color": str(c)}, "images": []}
                for i, c in enumerate(colours)]
    lexical = np.where(rng.random(n) < 0.3, rng.uniform(1, 5, n), np.nan).astype(np.float32)
    fused = np.where(np.isnan(text), image, 0.5 * text + 0.5 * image).astype(np.float32)
    order = np.argsort(-fused, kind="stable")
    query = QueryInfo(kinds=("text",), weights=(1.0,), words=tuple((words or f"{colour} widget").split()),
                      texts=(words or f"{colour} widget",), image_share=0.5, lexical_weight=0.1)
    candidates = Candidates(
        pks=np.arange(n, dtype=np.int64), text=text, image=image, image_position=np.zeros(n, np.int64),
        image_count=np.ones(n, np.int64), lexical=lexical, lexical_norm=(lexical / np.nanmax(lexical)).astype(np.float32),
        fused=fused, products=products, query=query,
    ).take(order)
    labels = {p["id"]: 3 if p["attributes"]["color"] == colour else 0 for p in candidates.products}
    return candidates, JudgedQuery(query_id=f"q{rng.integers(1e9)}", kind="text", text=f"{colour} widget", labels=labels)


def dataset(seed, count):
    rng = np.random.default_rng(seed)
    return [query_data(c, q, attributes=("color",)) for c, q in (synthetic(rng, colour=COLOURS[i % 4]) for i in range(count))]


def test_features_by_hand_and_independent_of_order_and_cache():
    candidates, _ = synthetic(np.random.default_rng(1))
    rows, query = build_features(candidates, attributes=("color",))
    names = feature_names(("color",))
    assert rows.shape == (30, len(names)) and query.shape == (len(QUERY_FEATURES),) and rows.dtype == np.float32
    col = {n: rows[:, i] for i, n in enumerate(names)}
    red = np.array([p["attributes"]["color"] == "red" for p in candidates.products])
    assert col["match:attr:color"].tolist() == np.where(red, 1.0, -1.0).tolist()
    assert col["attr_match"].tolist() == ((1 + red) / 2).tolist()  # named fields: category ("widget") and color
    assert col["match:category"].tolist() == [1.0] * 30 and col["category_match"].tolist() == [1.0] * 30  # "widget"
    np.testing.assert_allclose(col["fused_gap"], candidates.fused - candidates.fused.max(), atol=1e-6)
    assert col["fused_rank"][0] == 0.0 and np.all(np.diff(col["fused_rank"]) >= 0)
    assert col["text_missing"].sum() == 1 and col["text"][col["text_missing"] == 1] == pytest.approx(np.nanmin(candidates.text))
    top_image = np.argsort(-candidates.image, kind="stable")[:10]
    share = np.mean([candidates.products[j]["attributes"]["color"] == candidates.products[0]["attributes"]["color"] for j in top_image])
    assert col["cons_image:attr:color"][0] == pytest.approx(share)
    perm = np.random.default_rng(2).permutation(30)
    shuffled, _ = build_features(candidates.take(perm), attributes=("color",))
    np.testing.assert_allclose(shuffled, rows[perm], atol=1e-6)
    cache: dict = {}
    for _ in range(2):
        cached, cached_query = build_features(candidates, attributes=("color",), cache=cache)
        np.testing.assert_array_equal(cached, rows)
        np.testing.assert_array_equal(cached_query, query)
    assert len(cache) == 30


@pytest.mark.parametrize("arch", ["concat", "gated"])
def test_numpy_forward_equals_the_torch_model(arch):
    import torch

    attributes = ("color",)
    model = _torch_model(arch, 8, attributes)
    params = {k: v.detach().numpy() for k, v in model.state_dict().items() if k != "channels"}
    data = dataset(3, 4)
    from search.rerank.model import Normaliser, _pad

    norm = Normaliser.fit(data)
    x, q, _, _ = _pad(data, norm)
    with torch.no_grad():
        expected = model(x, q).numpy()
    for i, d in enumerate(data):
        got = forward(arch, params, norm, d.rows, d.query, channel_columns(attributes))
        np.testing.assert_allclose(got, expected[i, : len(d.labels)], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ["concat", "gated"])
def test_classifier_beats_fusion_on_held_out_queries(arch):
    train, val, held = dataset(10, 32), dataset(11, 8), dataset(12, 24)
    result = fit(train, val, RerankerConfig(arch=arch, epochs=6, seed=0), attributes=("color",))
    fused = ndcg(held, [d.fused for d in held])
    reranked = ndcg(held, [forward(arch, result.params, result.norm, d.rows, d.query, channel_columns(("color",))) for d in held])
    assert reranked > fused + 0.25, (arch, fused, reranked)
    assert len(result.epochs) == 6 and 1 <= result.best_epoch <= 6


def test_pointwise_objective_and_skipped_unjudged_candidates_train_too():
    rng = np.random.default_rng(5)
    data = []
    for i in range(24):
        candidates, query = synthetic(rng, colour=COLOURS[i % 4])
        sparse = JudgedQuery(query_id=query.query_id, kind="text", text=query.text, labels=dict(list(query.labels.items())[:10]))
        data.append(query_data(candidates, sparse, attributes=("color",), unjudged="skip"))
    assert all(d.mask.sum() == 10 for d in data)
    result = fit(data, [], RerankerConfig(objective="pointwise", epochs=3, unjudged="skip"), attributes=("color",))
    assert result.best_epoch == 3 and all(np.isfinite(e.loss) for e in result.epochs)


# -- with an index ---------------------------------------------------------------------------------------------
def judged_queries(catalog_dir):
    queries = []
    for i, (colour, shape) in enumerate([("red", "circle"), ("green", "square"), ("blue", "triangle"), ("yellow", "circle")]):
        labels = {f"P{j:03d}": (3 if (j % 4, (j // 4) % 3) == (COLOURS.index(colour), ("square", "circle", "triangle").index(shape))
                                else 1 if j % 4 == COLOURS.index(colour) else 0) for j in range(24)}
        queries.append(JudgedQuery(query_id=f"t{i}", kind="text", text=f"{colour} {shape} widget", labels=labels))
    photo_labels = {f"P{j:03d}": 3 if j == 5 else (1 if j % 4 == 1 else 0) for j in range(24)}
    queries.append(JudgedQuery(query_id="p0", kind="photo", image=catalog_dir / "images" / "p5_0.png", labels=photo_labels))
    queries.append(JudgedQuery(query_id="tp0", kind="text+photo", text="but in blue", image=catalog_dir / "images" / "p5_0.png",
                               labels={f"P{j:03d}": 3 if j % 4 == 2 else 0 for j in range(24)}))
    return queries


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return write_catalog(tmp_path_factory.mktemp("rerank-catalog"))


@pytest.fixture(scope="module")
def module_engine(tmp_path_factory, catalog, tiny_encoder):
    with open_built_engine(tmp_path_factory.mktemp("rerank") / "index", catalog, tiny_encoder) as opened:
        yield opened


@pytest.fixture
def engine(module_engine):
    """The module's engine, without a re-ranker, and its index without a stored one afterwards."""
    module_engine.reranker = None
    yield module_engine
    module_engine.reranker = None
    shutil.rmtree(module_engine.store.folder / "reranker", ignore_errors=True)


@pytest.fixture(scope="module")
def trained(module_engine, catalog):
    reranker, report = train_reranker(module_engine, judged_queries(catalog.parent),
                                      config=RerankerConfig(epochs=3, id_queries=4, val_fraction=0.3, seed=1))
    assert report.train_queries + report.val_queries == 10 and report.best_epoch >= 1
    return reranker


class Recorder:
    def __init__(self, inner):
        self.inner, self.seen = inner, []

    def rerank(self, candidates):
        self.seen.append(candidates)
        return self.inner.rerank(candidates)


def test_features_at_train_time_equal_those_at_query_time(engine, catalog, trained):
    for query in judged_queries(catalog.parent):
        at_train, _ = query_candidates(engine, query, depth=engine.config.rerank_depth)
        train_rows = query_data(at_train, query, attributes=trained.attributes).rows
        engine.reranker = Recorder(trained)
        result = engine.search(**query.search_args(), k=5)
        (at_query,) = engine.reranker.seen
        query_rows, _ = build_features(at_query, attributes=trained.attributes)
        assert at_query.pks.tolist() == at_train.pks.tolist()
        np.testing.assert_array_equal(query_rows, train_rows)
        expected = dict(zip([p["id"] for p in at_train.products], trained.score(at_train)))
        assert [h.scores["rerank"] for h in result] == pytest.approx([expected[h.product_id] for h in result], abs=1e-6)
        assert result.timings["rerank"] >= 0 and [h.score for h in result] == sorted((h.score for h in result), reverse=True)


def test_persistence_round_trip_and_rerank_switch(engine, catalog, trained):
    assert load_reranker(engine.store) is None
    folder = save_reranker(trained, engine.store.folder)
    assert sorted(p.name for p in folder.iterdir()) == ["reranker.json", "weights.npz"]
    meta = json.loads((folder / "reranker.json").read_text())
    assert meta["architecture"] == "concat" and meta["features"] == list(feature_names(meta["attributes"]))
    assert meta["index"]["model_fingerprint"] == engine.store.identity.fingerprint
    assert meta["index"]["created_at"] == index_identity(engine.store)["created_at"] and len(meta["normalisation"]["row_mean"]) == len(meta["features"])
    loaded = load_reranker(engine.store)
    candidates, _ = query_candidates(engine, judged_queries(catalog.parent)[0], depth=50)
    np.testing.assert_allclose(loaded.score(candidates), trained.score(candidates), rtol=1e-6)
    save_reranker(trained, engine.store.folder)  # replacing an existing one
    engine.reranker = loaded
    on = engine.search("red circle widget", k=3)
    off = engine.search("red circle widget", k=3, rerank=False)
    assert "rerank" in on[0].scores and "rerank" in on.timings
    assert "rerank" not in off[0].scores and "rerank" not in off.timings


def test_a_classifier_for_another_index_or_model_is_refused(engine, catalog, trained, tiny_encoder, tmp_path):
    save_reranker(trained, engine.store.folder)
    other = tmp_path / "other-index"
    build_index(write_catalog(tmp_path / "small", n=3), other, encoder=tiny_encoder, model_spec={"name": tiny_encoder.identity.name, "pretrained": None})
    shutil.copytree(engine.store.folder / "reranker", other / "reranker")
    with IndexStore.open(other) as store, pytest.raises(ModelError, match="trained for another index") as info:
        load_reranker(store)
    assert str(other) in str(info.value) and "index created" in str(info.value) and "--no-rerank" in str(info.value)
    meta_file = engine.store.folder / "reranker" / "reranker.json"
    meta = json.loads(meta_file.read_text())
    meta["index"]["model_fingerprint"] = "f00dfeedbeef" * 4
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ModelError) as info:
        load_reranker(engine.store)
    assert "f00dfeedbeef" in str(info.value) and engine.store.identity.fingerprint[:12] in str(info.value)
    meta["index"] = index_identity(engine.store)
    meta["features"] = meta["features"][:-1]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="another feature set"):
        read_reranker(meta_file.parent)
    (meta_file.parent / "weights.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="unreadable|malformed|feature"):
        read_reranker(meta_file.parent)


def test_rerank_of_no_candidates_and_config_checks():
    reranker = FusionReranker(arch="concat", params={}, norm=None, meta={})
    candidates, _ = synthetic(np.random.default_rng(0), n=3)
    empty = candidates.take(np.array([], dtype=np.int64))
    assert reranker.rerank(empty) is empty
    for bad in ({"arch": "tree"}, {"objective": "listwise"}, {"unjudged": "maybe"}, {"epochs": 0}, {"val_fraction": 1.0}):
        with pytest.raises(ValueError):
            RerankerConfig(**bad)


def test_judgments_with_logged_evidence_train_and_store_a_behaviour_prior(engine, catalog):
    queries = [JudgedQuery(query_id=q.query_id, kind=q.kind, text=q.text, image=q.image, labels=q.labels,
                           evidence={p: (float(v > 0), 1.0) for p, v in q.labels.items()})
               for q in judged_queries(catalog.parent) if q.kind == "text"]
    reranker, _ = train_reranker(engine, queries, config=RerankerConfig(epochs=2, id_queries=0, val_fraction=0.25,
                                                                         unjudged="skip"))
    assert reranker.attributes[-1] == "behaviour:rate" and reranker.behaviour
    assert reranker.meta["trained"]["effective"] == {"residual": 1.0, "average": True, "weight_decay": 0.2}
    save_reranker(reranker, engine.store.folder)
    loaded = load_reranker(engine.store)
    assert loaded.behaviour == pytest.approx(reranker.behaviour)
    candidates, _ = query_candidates(engine, queries[0], depth=50)
    np.testing.assert_allclose(loaded.score(candidates), reranker.score(candidates), rtol=1e-6)

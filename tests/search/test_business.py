"""Business signals (search.business): sort, boost and in-stock, pure and through the engine, HTTP, CLI, re-ranker."""

from __future__ import annotations

import csv
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from conftest import COLOURS, SHAPES, draw_product, open_built_engine
from indexer.errors import QueryError
from indexer.store.attributes import typed
from search.business import Business, boost_scores, parse_boost, reranker_attributes, sort_order
from search.evaluation.judgments import JudgedQuery
from search.rerank.features import QUERY_FEATURES, build_features, clipped_z, feature_names, field_number
from search.rerank.model import Normaliser, RerankerConfig
from search.rerank.storage import FusionReranker, load_reranker, reranker_meta, save_reranker
from search.rerank.train import query_candidates, train_reranker
from search.trained_files import index_identity
from search.web.app import create_app
from vitrina.cli import cli

N = 24


def shop_row(i: int) -> dict[str, str]:
    colour, shape = list(COLOURS)[i % 4], SHAPES[(i // 4) % 3]
    return {"id": f"S{i:03d}", "title": f"{colour} {shape} widget", "description": f"a {shape} thing in {colour}",
            "images": f"images/s{i}.png", "price": str(10 + (i * 7) % N), "category": shape, "brand": f"Brand{i % 3}",
            "color": colour, "popularity": "" if i % 7 == 3 else str((i * 5) % 9),  # CSV: numeric text, some blank
            "stock": "0" if i % 3 == 0 else str(i), "margin": f"{((i * 13) % 17) / 10:.1f}"}


@pytest.fixture(scope="module")
def shop_catalog(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shop-catalog")
    (folder / "images").mkdir()
    rows = [shop_row(i) for i in range(N)]
    for i in range(N):
        draw_product(folder / "images" / f"s{i}.png", list(COLOURS)[i % 4], SHAPES[(i // 4) % 3], seed=i)
    path = folder / "catalog.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def shop(tmp_path_factory, shop_catalog, tiny_encoder):
    with open_built_engine(tmp_path_factory.mktemp("shop") / "index", shop_catalog, tiny_encoder) as engine:
        yield engine


def numbers(hits, field):
    return [field_number(h.product, field) for h in hits]


# -- pure functions --------------------------------------------------------------------------------------------
def test_boost_scores_against_numpy():
    rng = np.random.default_rng(0)
    popularity = rng.normal(50, 20, 40)
    popularity[[3, 9]] = np.nan
    popularity[5] = 1e6  # an outlier: clipped to +3
    margin = rng.uniform(0, 1, 40)
    got = boost_scores({"popularity": popularity, "margin": margin}, {"popularity": 0.5, "margin": -2.0})

    def z(v):
        out = (v - np.nanmean(v)) / np.nanstd(v)
        return np.clip(np.nan_to_num(out, nan=0.0), -3, 3)

    np.testing.assert_allclose(got, 0.5 * z(popularity) - 2.0 * z(margin), rtol=1e-5, atol=1e-5)
    assert got.dtype == np.float32 and z(popularity)[5] == 3.0 and got[3] == pytest.approx(-2.0 * z(margin)[3], abs=1e-5)
    assert clipped_z(np.array([4.0, 4.0, np.nan])).tolist() == [0.0, 0.0, 0.0]  # no spread, missing: 0
    assert boost_scores({}, {}).shape == (0,)


def test_sort_order_against_python_sorted():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 5, 50).astype(float)
    values[rng.random(50) < 0.2] = np.nan
    scores = rng.normal(size=50)
    scores[7] = scores[8]  # a tie of scores too: position decides
    for descending in (False, True):
        expected = sorted(range(50), key=lambda i: (math.isnan(values[i]), 0 if math.isnan(values[i]) else
                                                    (-values[i] if descending else values[i]), -scores[i], i))
        assert sort_order(values, scores, descending=descending).tolist() == expected


def test_field_numbers_agree_with_the_typed_attribute_rows():
    for value in (42, "42", " 3.5 ", "1e3", "-7", "abc", "", True, None, [1], 2.5, float("inf"), "1e999", 10**400):
        row = typed(value)
        expected = row[1] if row is not None and row[1] is not None else None
        got = field_number({"attributes": {"x": value}}, "x")
        assert (math.isnan(got) if expected is None else got == expected), value
    assert field_number({"price": 12.5, "attributes": {}}, "price") == 12.5 and math.isnan(field_number({}, "price"))


def test_parsing_refuses_malformed_signals():
    assert parse_boost(["margin=0.5", "popularity=-1,stock=2"]) == {"margin": 0.5, "popularity": -1.0, "stock": 2.0}
    assert parse_boost(['{"margin": 1}']) == {"margin": 1}
    for bad in (["margin"], ["=1"], ["margin=high"], ["margin=nan"], ["{not json"]):
        with pytest.raises(QueryError, match="boost"):
            parse_boost(bad)
    assert Business.parse("-popularity").sort == "popularity" and Business.parse("-popularity").descending
    assert Business.parse(" price ").sort == "price" and not Business.parse("+price").descending
    assert Business.parse(boost={"margin": 0}).boost == ()  # a zero weight boosts nothing
    for kwargs in ({"sort": ""}, {"sort": "-"}, {"sort": 5}, {"boost": ["margin"]}, {"boost": {"margin": True}},
                   {"boost": {"margin": 1e9}}, {"boost": {"margin": float("nan")}}, {"boost": {"": 1}},
                   {"boost": {f"f{i}": 1 for i in range(17)}}, {"in_stock": "yes"}):
        with pytest.raises(QueryError):
            Business.parse(**kwargs)


# -- the engine ------------------------------------------------------------------------------------------------
def test_sort_by_price_both_ways(shop):
    plain = shop.search("widget", k=N)
    up = shop.search("widget", k=N, sort="price")
    down = shop.search("widget", k=N, sort="-price")
    assert {h.product_id for h in up} == {h.product_id for h in plain}  # the same products, in another order
    assert numbers(up, "price") == sorted(numbers(plain, "price"))
    assert numbers(down, "price") == sorted(numbers(plain, "price"), reverse=True)
    assert [h.score for h in up] != sorted((h.score for h in up), reverse=True)  # hits keep their relevance score
    pages = shop.search("widget", k=5, sort="price").hits + shop.search("widget", k=5, offset=5, sort="price").hits
    assert [h.product_id for h in pages] == [h.product_id for h in up][:10]


def test_sort_by_a_numeric_text_attribute_of_a_csv_catalog(shop):
    hits = shop.search("red widget", k=N, sort="-popularity").hits
    values = numbers(hits, "popularity")
    assert isinstance(hits[0].product["attributes"]["popularity"], str)  # CSV text, sorted as numbers
    present = [v for v in values if not math.isnan(v)]
    assert values[:len(present)] == sorted(present, reverse=True) and all(math.isnan(v) for v in values[len(present):])
    assert len(present) < len(values)  # products without popularity come last
    for a, b in zip(hits, hits[1:]):  # ties in relevance order
        if field_number(a.product, "popularity") == field_number(b.product, "popularity"):
            assert a.score >= b.score


def test_sort_depth_bounds_the_sorted_head(shop):
    engine = shop
    saved = engine.config
    try:
        engine.config = replace(saved, sort_depth=5)
        plain = engine.search("widget", k=10)
        sorted_head = engine.search("widget", k=10, sort="price")
        assert numbers(sorted_head[:5], "price") == sorted(numbers(plain[:5], "price"))
        assert [h.product_id for h in sorted_head[5:]] == [h.product_id for h in plain[5:]]  # deeper: relevance order
    finally:
        engine.config = saved


def test_boost_moves_hits_the_expected_way_and_shows_in_scores(shop):
    plain = shop.search("widget", k=N)
    up = shop.search("widget", k=N, boost={"margin": 10.0})
    down = shop.search("widget", k=N, boost={"margin": -10.0})
    margins = {h.product_id: field_number(h.product, "margin") for h in plain}
    best = max(margins.values())
    assert margins[up[0].product_id] == best and margins[down[0].product_id] == min(margins.values())
    z = dict(zip(margins, clipped_z(np.array(list(margins.values())))))  # every product is a candidate here
    fused = {h.product_id: h.scores["fused"] for h in plain}
    for hit in up:
        assert hit.scores["boost"] == pytest.approx(10.0 * z[hit.product_id], abs=1e-4)
        assert hit.scores["fused"] == pytest.approx(fused[hit.product_id] + hit.scores["boost"], abs=1e-4)
        assert list(hit.scores).index("boost") < list(hit.scores).index("fused")
    assert "boost" not in plain[0].scores
    def margin_vs_rank(result):  # negative: higher margins rank higher
        return np.corrcoef([margins[h.product_id] for h in result], range(N))[0, 1]

    mild = shop.search("widget", k=N, boost={"margin": 0.3})
    assert margin_vs_rank(up) < margin_vs_rank(mild) < margin_vs_rank(plain) < margin_vs_rank(down)


def test_in_stock_filters_and_combines_with_where(shop):
    hits = shop.search("widget", k=N, in_stock=True).hits
    assert len(hits) == sum(1 for i in range(N) if i % 3) and all(field_number(h.product, "stock") > 0 for h in hits)
    cheap = shop.search("widget", k=N, in_stock=True, where={"price": {"lt": 20}}).hits
    assert cheap and all(h.product["price"] < 20 and field_number(h.product, "stock") > 0 for h in cheap)
    both = shop.search("widget", k=N, in_stock=True, where={"stock": {"lt": 10}}).hits  # the same field, ANDed
    assert {field_number(h.product, "stock") for h in both} <= set(range(1, 10)) and both
    assert len(shop.search("widget", k=N, in_stock=False)) == N
    assert len(shop.similar("S001", k=N, in_stock=True, sort="price")) == len(hits) - 1


def test_unknown_or_text_fields_and_a_catalog_without_stock_are_refused(shop, engine):
    with pytest.raises(QueryError, match="'nope'.*is not a field.*margin, popularity, price, stock"):
        shop.search("widget", sort="nope")
    with pytest.raises(QueryError, match="boost by 'color': it has no numeric values"):
        shop.search("widget", boost={"color": 1.0})
    with pytest.raises(QueryError, match="in_stock needs a 'stock' field"):
        engine.search("widget", in_stock=True)  # the shared test catalog has no stock
    info = shop.info()
    assert info["sort_fields"] == ["margin", "popularity", "price", "stock"] and info["stock_field"] == "stock"
    assert engine.info()["stock_field"] is None


# -- HTTP and CLI ------------------------------------------------------------------------------------------------
def test_http_sort_boost_in_stock(shop, shop_catalog):
    with TestClient(create_app(shop)) as client:
        body = {"text": "widget", "k": 10, "sort": "-popularity", "boost": {"margin": 1.0}, "in_stock": True}
        response = client.post("/search", json=body)
        assert response.status_code == 200, response.text
        hits = response.json()["hits"]
        popularity = [float(h["product"]["attributes"].get("popularity", "nan")) for h in hits]
        assert all(float(h["product"]["attributes"]["stock"]) > 0 for h in hits) and "boost" in hits[0]["scores"]
        assert [p for p in popularity if p == p] == sorted((p for p in popularity if p == p), reverse=True)
        for bad, needle in (({"sort": "nope"}, "nope"), ({"boost": {"color": 1}}, "color"), ({"in_stock": "maybe"}, "in_stock"),
                            ({"boost": {"margin": "high"}}, "boost")):
            refused = client.post("/search", json={"text": "widget", **bad})
            assert refused.status_code == 422 and needle in refused.json()["detail"], refused.text
        photo = (shop_catalog.parent / "images" / "s5.png").read_bytes()
        upload = client.post("/search/image", files={"photo": ("p.png", photo, "image/png")},
                             data={"sort": "price", "in_stock": "true", "boost": "margin=0.5", "k": "5"})
        assert upload.status_code == 200, upload.text
        prices = [h["product"]["price"] for h in upload.json()["hits"]]
        assert prices == sorted(prices) and all("boost" in h["scores"] for h in upload.json()["hits"])
        assert client.get("/stats").json()["sort_fields"] == ["margin", "popularity", "price", "stock"]

        anchor = hits[0]["product_id"]  # "more like this" takes the same signals, in the query string
        similar = client.get(f"/products/{anchor}/similar", params={"k": 6, "sort": "-price", "in_stock": "true",
                                                                      "boost": "margin=0.5"})
        assert similar.status_code == 200, similar.text
        alike = similar.json()["hits"]
        assert alike and anchor not in [h["product_id"] for h in alike]
        assert [h["product"]["price"] for h in alike] == sorted((h["product"]["price"] for h in alike), reverse=True)
        assert all(float(h["product"]["attributes"]["stock"]) > 0 and "boost" in h["scores"] for h in alike)
        plain = client.get(f"/products/{anchor}/similar", params={"k": 6}).json()["hits"]
        assert any(float(h["product"]["attributes"]["stock"]) == 0 for h in plain)  # in_stock did filter something
        for bad, needle in (({"sort": "nope"}, "nope"), ({"boost": "margin=high"}, "boost"), ({"in_stock": "maybe"}, "in_stock")):
            refused = client.get(f"/products/{anchor}/similar", params=bad)
            assert refused.status_code == 422 and needle in refused.json()["detail"], refused.text


def test_cli_sort_boost_in_stock(shop):
    runner = CliRunner()
    base = ["search", "widget", "--index", str(shop.store.folder), "--json", "-k", "6"]
    result = runner.invoke(cli, [*base, "--sort", "-popularity", "--boost", "margin=0.5", "--in-stock"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)["hits"]
    popularity = [float(h["product"]["attributes"].get("popularity", "nan")) for h in hits]
    assert [p for p in popularity if p == p] == sorted((p for p in popularity if p == p), reverse=True)
    assert all(float(h["product"]["attributes"]["stock"]) > 0 for h in hits) and "boost" in hits[0]["scores"]
    refused = runner.invoke(cli, [*base, "--sort=nope"])
    assert refused.exit_code != 0 and "nope" in refused.output and "popularity" in refused.output
    refused = runner.invoke(cli, [*base, "--boost", "margin"])
    assert refused.exit_code != 0 and "FIELD=WEIGHT" in refused.output


# -- the re-ranker -----------------------------------------------------------------------------------------------
def shop_queries() -> list[JudgedQuery]:
    queries = []
    for i, colour in enumerate(COLOURS):
        labels = {f"S{j:03d}": (3 if j % 4 == i and (j * 5) % 9 > 4 else 1 if j % 4 == i else 0) for j in range(N)}
        queries.append(JudgedQuery(query_id=f"b{i}", kind="text", text=f"{colour} widget", labels=labels))
    return queries


def test_a_reranker_with_business_fields_stores_and_uses_them(shop):
    attributes = reranker_attributes(shop.store, ["popularity", "margin"], max_attributes=2)
    assert attributes == ("color", "margin", "business:popularity", "business:margin")
    with pytest.raises(QueryError, match="'color' is not price or a numeric attribute"):
        reranker_attributes(shop.store, ["color"])
    reranker, _ = train_reranker(shop, shop_queries(), config=RerankerConfig(epochs=2, id_queries=2, attributes=attributes))
    folder = shop.store.folder
    try:
        save_reranker(reranker, folder)
        meta = json.loads((folder / "reranker" / "reranker.json").read_text())
        assert meta["business"] == ["popularity", "margin"]
        assert meta["features"][-4:] == ["z:business:popularity", "missing:business:popularity", "z:business:margin",
                                         "missing:business:margin"]
        assert "z:business:margin" in meta["channels"]
        loaded = load_reranker(shop.store)
        assert loaded is not None and loaded.business == ("popularity", "margin")
        candidates, _ = query_candidates(shop, shop_queries()[0], depth=20)
        rows, _ = build_features(candidates, attributes=loaded.attributes)
        names = feature_names(loaded.attributes)
        popularity = np.array([field_number(p, "popularity") for p in candidates.products])
        np.testing.assert_allclose(rows[:, names.index("z:business:popularity")], clipped_z(popularity), atol=1e-6)
        assert rows[:, names.index("missing:business:popularity")].tolist() == np.isnan(popularity).astype(float).tolist()
        before = loaded.score(candidates)
        changed = [{**p, "attributes": {**p["attributes"], "margin": str(9 - i)}} for i, p in enumerate(candidates.products)]
        assert not np.allclose(loaded.score(replace(candidates, products=changed)), before)  # the classifier reads them
        shop.reranker = loaded
        hits = shop.search("red widget", k=5, sort="price", boost={"margin": 0.5})
        assert "rerank" in hits[0].scores and numbers(hits, "price") == sorted(numbers(hits, "price"))
    finally:
        shop.reranker = None
        shutil.rmtree(folder / "reranker", ignore_errors=True)


def test_an_old_reranker_without_business_fields_still_loads(shop):
    attributes = ("color",)
    width = len(feature_names(attributes))
    rng = np.random.default_rng(0)
    norm = Normaliser(row_mean=np.zeros(width, np.float32), row_std=np.ones(width, np.float32),
                      query_mean=np.zeros(len(QUERY_FEATURES), np.float32), query_std=np.ones(len(QUERY_FEATURES), np.float32))
    meta = reranker_meta(RerankerConfig(hidden=0), attributes=attributes, depth=20, identity=index_identity(shop.store),
                         norm=norm, trained={})
    del meta["business"]  # as written before business fields existed
    params = {"w2": rng.normal(size=(width + len(QUERY_FEATURES), 1)).astype(np.float32), "b2": np.zeros(1, np.float32)}
    try:
        save_reranker(FusionReranker(arch="concat", params=params, norm=norm, meta=meta), shop.store.folder)
        stored = json.loads((shop.store.folder / "reranker" / "reranker.json").read_text())
        assert "business" not in stored and stored["features"] == list(feature_names(attributes))
        loaded = load_reranker(shop.store)
        assert loaded is not None and loaded.business == () and loaded.attributes == attributes
        shop.reranker = loaded
        hits = shop.search("red widget", k=5, boost={"popularity": 1.0})
        assert "rerank" in hits[0].scores and "boost" in hits[0].scores
    finally:
        shop.reranker = None
        shutil.rmtree(shop.store.folder / "reranker", ignore_errors=True)


def test_train_reranker_cli_business_fields(shop, tmp_path):
    folder = tmp_path / "index"
    shutil.copytree(shop.store.folder, folder)
    runner = CliRunner()
    base = ["train-reranker", "--index", str(folder), "--pseudo-queries", "12", "--epochs", "1", "--id-queries", "2"]
    result = runner.invoke(cli, [*base, "--business-fields", "popularity,margin"])
    assert result.exit_code == 0, result.output
    meta = json.loads((folder / "reranker" / "reranker.json").read_text())
    assert meta["business"] == ["popularity", "margin"] and meta["attributes"][-2:] == ["business:popularity", "business:margin"]
    refused = runner.invoke(cli, [*base, "--business-fields", "color"])
    assert refused.exit_code != 0 and "'color' is not price or a numeric attribute" in refused.output

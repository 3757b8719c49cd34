"""The HTTP API (search.web.app) through FastAPI's TestClient on the 24-product test index."""

from __future__ import annotations

import base64
import io
import json
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import draw_product, open_built_engine, write_catalog
from search import SearchEngine
from search.facets import count_facets, nice_edges, price_buckets
from search.web.app import create_app
from search.web.models import parse_refine
from search.web.service import ImageRoots, WebConfig

CAP = WebConfig().max_upload_bytes


@pytest.fixture(scope="module")
def web_catalog(tmp_path_factory) -> Path:
    return write_catalog(tmp_path_factory.mktemp("web-catalog"))


@pytest.fixture(scope="module")
def web_engine(tmp_path_factory, web_catalog, tiny_encoder):
    with open_built_engine(tmp_path_factory.mktemp("web") / "index", web_catalog, tiny_encoder) as engine:
        yield engine


@pytest.fixture(scope="module")
def client(web_engine):
    with TestClient(create_app(web_engine)) as test_client:
        yield test_client


def photo(catalog: Path, name: str = "p5_0.png") -> bytes:
    return (catalog.parent / "images" / name).read_bytes()


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def upload(client, data: bytes, name: str = "photo.png", **fields):
    return client.post("/search/image", files={"photo": (name, data, "application/octet-stream")},
                       data={k: str(v) for k, v in fields.items()})


def refused(response, status: int, *needles: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["detail"], str) and "Traceback" not in response.text
    for needle in needles:
        assert needle in body["detail"], body["detail"]
    return body


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [h["product_id"] for h in response.json()["hits"]]


# -- the page, health and stats ------------------------------------------------------------------
def test_page_static_files_and_openapi(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'role="alert"' in page.text and 'type="file"' in page.text and "script-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/search", "/search/image", "/products/{product_id}", "/products/{product_id}/similar",
            "/products/{product_id}/images/{n}", "/healthz", "/stats"} <= set(spec["paths"])
    form = spec["paths"]["/search/image"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["photo"] and {"text", "image_weight", "where", "facets"} <= set(form["properties"])


def test_healthz_and_stats(client, web_engine):
    assert client.get("/healthz").json() == {"status": "ok", "products": 24, "model": web_engine.encoder.identity.name,
                                          "generation": 1}
    stats = client.get("/stats").json()
    assert stats["counts"] == {"products": 24, "images": 36, "texts": 24}
    assert stats["index_type"] == "auto" and stats["vector_indexes"] == {"text": "Flat", "image": "Flat"}
    assert stats["model"]["dim"] == 32 and "folder" not in stats
    assert stats["facet_fields"] == ["category", "brand", "price", "color"]
    assert {c["value"]: c["count"] for c in stats["catalog"]["category"]} == {"square": 8, "circle": 8, "triangle": 8}
    assert stats["catalog"]["price"] == {"min": 10.0, "max": 33.0} and stats["limits"]["max_upload_bytes"] == CAP


def test_healthz_is_503_when_the_index_does_not_answer(web_engine, monkeypatch):
    with TestClient(create_app(web_engine)) as test_client:
        monkeypatch.setattr(web_engine.store, "counts", lambda: (_ for _ in ()).throw(OSError("gone")))
        response = test_client.get("/healthz")
    assert response.status_code == 503 and response.json() == {"status": "unavailable"}


# -- POST /search ----------------------------------------------------------------------------------
def test_text_search_pages_and_facets_over_the_top_results(client, web_engine):
    first = client.post("/search", json={"text": "red square widget", "k": 5, "facets": ["category", "brand", "price", "color"]}).json()
    expected = [h.product_id for h in web_engine.search("red square widget", k=10)]
    assert [h["product_id"] for h in first["hits"]] == expected[:5] and first["has_more"] is True
    assert [h["rank"] for h in first["hits"]] == [1, 2, 3, 4, 5]
    hit = first["hits"][0]
    assert {"rank", "product_id", "score", "scores", "image", "image_index", "product"} <= set(hit)
    assert hit["image"] == f"/products/{hit['product_id']}/images/{hit['image_index']}"
    assert all(url.startswith(f"/products/{hit['product_id']}/images/") for url in hit["product"]["images"])
    assert first["facet_depth"] == 24  # the whole little catalog is within the facet depth
    facets = first["facets"]
    assert sum(f["count"] for f in facets["category"]) == 24 and sum(f["count"] for f in facets["price"]) == 24
    assert {f["value"] for f in facets["color"]} == {"red", "green", "blue", "yellow"}
    assert all({"min", "max", "value", "count"} <= set(b) for b in facets["price"])
    second = client.post("/search", json={"text": "red square widget", "k": 5, "offset": 5}).json()
    assert [h["product_id"] for h in second["hits"]] == expected[5:10] and second["facets"] == {}
    last = client.post("/search", json={"text": "red square widget", "k": 5, "offset": 20, "facets": ["brand"]}).json()
    assert len(last["hits"]) == 4 and last["has_more"] is False


def test_facets_count_the_top_n_not_the_catalog(web_engine):
    with TestClient(create_app(web_engine, config=WebConfig(facet_depth=6))) as small:
        body = small.post("/search", json={"text": "circle", "k": 3, "offset": 4, "facets": ["category"]}).json()
    assert body["facet_depth"] == 6 and sum(f["count"] for f in body["facets"]["category"]) == 6
    assert len(body["hits"]) == 3 and body["has_more"] is True  # the page came from its own search past the depth


def test_filters_narrow_hits_and_facets(client):
    body = client.post("/search", json={"text": "widget", "k": 20, "where": {"category": "circle", "price": {"lt": 25}},
                                        "facets": ["category", "brand"]}).json()
    assert body["hits"] and all(h["product"]["category"] == "circle" and h["product"]["price"] < 25 for h in body["hits"])
    assert body["facets"]["category"] == [{"value": "circle", "count": len(body["hits"])}]


def test_facet_counting_is_pure_and_round():
    products = [{"category": "mug", "brand": "A", "price": 6.5, "attributes": {"color": "red"}},
                {"category": "mug", "brand": None, "price": 24.0, "attributes": {"color": "blue"}},
                {"category": "lamp", "brand": "A", "price": None, "attributes": {}}]
    facets = count_facets(products, ["category", "brand", "color", "price", "category"])
    assert list(facets) == ["category", "brand", "color", "price"]
    assert facets["category"] == [{"value": "mug", "count": 2}, {"value": "lamp", "count": 1}]
    assert facets["brand"] == [{"value": "A", "count": 2}] and len(facets["color"]) == 2
    assert facets["price"] == [{"value": "5-10", "min": 5, "max": 10, "count": 1}, {"value": "20-25", "min": 20, "max": 25, "count": 1}]
    assert nice_edges(6.99, 399.5) == [0, 100, 200, 300, 400] and nice_edges(5, 5)[0] <= 5 < nice_edges(5, 5)[-1]
    assert price_buckets([5, 20, 50], edges=[10, 40]) == [
        {"value": "under 10", "min": None, "max": 10, "count": 1}, {"value": "10-40", "min": 10, "max": 40, "count": 1},
        {"value": "40 and up", "min": 40, "max": None, "count": 1}]
    assert count_facets([], ["price", "brand"]) == {"price": [], "brand": []}


@pytest.mark.parametrize(("text", "positive", "negative"), [
    ("but in red -striped", "but in red", ["striped"]),
    ('red dress -"v neck" \u2212lace', "red dress", ["v neck", "lace"]),
    ("t-shirt - -- ", "t-shirt", []),
    ('"open quote', "open quote", []),
    ("-only", "", ["only"]),
])
def test_refine_syntax(text, positive, negative):
    assert parse_refine(text) == (positive, negative)


def test_minus_words_become_negative_text_terms(client, web_engine):
    body = client.post("/search", json={"text": 'widget -"red square widget"', "k": 24, "image_share": 0.0}).json()
    assert body["query"] == [{"kind": "text", "value": "widget", "weight": 1.0},
                             {"kind": "text", "value": "red square widget", "weight": -0.5}]
    expected = web_engine.search(terms=[("widget", 1.0), ("red square widget", -0.5)], k=24, image_share=0.0)
    assert [h["product_id"] for h in body["hits"]] == [h.product_id for h in expected]
    plain = ids(client.post("/search", json={"text": "widget", "k": 24, "image_share": 0.0}))
    assert [h["product_id"] for h in body["hits"]].index("P000") > plain.index("P000")


def test_terms_take_base64_images_products_and_weights(client, web_catalog):
    data = base64.b64encode(photo(web_catalog)).decode()
    for image in (data, "data:image/png;base64," + data):
        body = client.post("/search", json={"terms": [{"image": image}], "image_share": 1.0, "k": 3}).json()
        assert body["hits"][0]["product_id"] == "P005" and body["hits"][0]["scores"]["image_cosine"] == pytest.approx(1.0, abs=1e-5)
    mixed = client.post("/search", json={"image": data, "weights": {"image": 1.0, "text": 0.3}, "text": "red",
                                         "terms": [{"product": "P002", "weight": 0.5}, {"text": "blue", "weight": -0.2}],
                                         "exclude": ["P005"], "k": 5}).json()
    assert [q["kind"] for q in mixed["query"]] == ["text", "image", "product", "text"]
    assert "P005" not in [h["product_id"] for h in mixed["hits"]] and len(mixed["hits"]) == 5


def test_rerank_is_passed_only_to_an_engine_that_takes_it(web_engine):
    class Proxy:
        def __init__(self, inner):
            self.inner, self.seen = inner, []

        def __getattr__(self, name):
            return getattr(self.inner, name)

    class Plain(Proxy):
        def search(self, *args, **kwargs):  # no rerank parameter
            self.seen.append(kwargs)
            return self.inner.search(*args, **{k: v for k, v in kwargs.items() if k != "rerank"})

    class Reranking(Proxy):
        def search(self, *args, rerank=None, **kwargs):
            self.seen.append(rerank)
            return self.inner.search(*args, **kwargs)

    plain, reranking = Plain(web_engine), Reranking(web_engine)
    with TestClient(create_app(plain)) as test_client:
        assert test_client.post("/search", json={"text": "red", "rerank": True}).json()["rerank"] == {"requested": True, "supported": False}
    assert plain.seen and all("rerank" not in kwargs for kwargs in plain.seen)
    with TestClient(create_app(reranking)) as test_client:
        assert test_client.post("/search", json={"text": "red", "rerank": False}).json()["rerank"] == {"requested": False, "supported": True}
        test_client.post("/search", json={"text": "red"})  # not given: the engine's default
    assert reranking.seen == [False, None]


# -- POST /search/image --------------------------------------------------------------------------
def test_upload_finds_the_photographed_product(client, web_catalog):
    # image_share 1: the tiny test model is random, so its text side is noise that the default share still weighs
    body = upload(client, photo(web_catalog), image_weight=1, image_share=1, k=3, facets="category,price").json()
    hit = body["hits"][0]
    assert hit["product_id"] == "P005" and hit["scores"]["image_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert hit["score"] == pytest.approx(hit["scores"]["image"]) and hit["scores"]["text"] == 0.0
    default = upload(client, photo(web_catalog), image_weight=1, k=3).json()
    assert default["hits"][0]["score"] == pytest.approx(default["hits"][0]["scores"]["fused"])
    assert body["query"] == [{"kind": "image", "value": "photo", "weight": 1.0}] and set(body["facets"]) == {"category", "price"}


def test_upload_refined_by_text_with_negatives(client, web_catalog, web_engine):
    body = upload(client, photo(web_catalog), text="red -circle", image_weight=0.6, k=5,
                  where=json.dumps({"brand": {"ne": "Brand1"}})).json()
    assert body["query"] == [{"kind": "text", "value": "red", "weight": pytest.approx(0.4)},
                             {"kind": "text", "value": "circle", "weight": pytest.approx(-0.2)},
                             {"kind": "image", "value": "photo", "weight": 0.6}]
    path = web_catalog.parent / "images" / "p5_0.png"
    expected = web_engine.search(terms=[("red", 0.4), ("circle", -0.2), (path, 0.6)], image_share=0.6, k=5,
                                 where={"brand": {"ne": "Brand1"}})
    assert [h["product_id"] for h in body["hits"]] == [h.product_id for h in expected]
    assert all(h["product"]["brand"] != "Brand1" for h in body["hits"])


def test_accepted_formats(client, web_catalog):
    with Image.open(web_catalog.parent / "images" / "p5_0.png") as source:
        image = source.convert("RGB")
    frames = [image, image.rotate(90)]
    for fmt, data in [("JPEG", encoded(image, "JPEG")), ("WEBP", encoded(image, "WEBP")), ("BMP", encoded(image, "BMP")),
                      ("GIF", encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]))]:
        assert upload(client, data, name=f"photo.{fmt.lower()}", k=1).status_code == 200, fmt


# -- GET /products/... -------------------------------------------------------------------------------
def test_product_similar_and_images(client, web_catalog):
    product = client.get("/products/P003").json()
    assert product["id"] == "P003" and product["images"] == ["/products/P003/images/0", "/products/P003/images/1"]
    image = client.get("/products/P003/images/1")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == photo(web_catalog, "p3_1.png")
    similar = client.get("/products/P003/similar", params={"k": 5, "facets": "category,brand"}).json()
    assert len(similar["hits"]) == 5 and "P003" not in [h["product_id"] for h in similar["hits"]]
    assert similar["query"] == [{"kind": "product", "value": "P003", "weight": 1.0}] and set(similar["facets"]) == {"category", "brand"}
    filtered = client.get("/products/P003/similar", params={"k": 24, "where": json.dumps({"category": "circle"})}).json()
    assert filtered["hits"] and {h["product"]["category"] for h in filtered["hits"]} == {"circle"}
    refused(client.get("/products/NOPE"), 404, "NOPE")
    refused(client.get("/products/NOPE/similar"), 404, "NOPE")
    refused(client.get("/products/NOPE/images/0"), 404)
    refused(client.get("/products/P003/images/2"), 404, "no image 2")
    refused(client.get("/products/P003/images/-1"), 404)
    refused(client.get("/products/P003/similar", params={"where": "{nope"}), 422, "where")
    refused(client.get("/products/P003/similar", params={"where": json.dumps({"nope": 1})}), 422, "'nope'")


def test_images_are_served_only_from_the_catalog_folders(tmp_path, tiny_encoder):
    from indexer.pipeline import build_index

    outside = draw_product(tmp_path / "secret.png", "red", "circle")
    folder = tmp_path / "shop"
    (folder / "images").mkdir(parents=True)
    draw_product(folder / "images" / "a.png", "blue", "square")
    draw_product(folder / "images" / "b.png", "green", "square")
    draw_product(folder / "images" / "link.png", "blue", "circle")
    rows = [{"id": "SKU/1", "title": "blue square", "images": ["images/a.png", "images/link.png"]},
            {"id": "SKU 2", "title": "green square", "images": ["images/b.png"]}]
    (folder / "catalog.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_index(folder / "catalog.jsonl", tmp_path / "idx", encoder=tiny_encoder, model_spec={"name": tiny_encoder.identity.name, "pretrained": None})
    with sqlite3.connect(tmp_path / "idx" / "vitrina.db") as db:  # as if the catalog had named a URL
        db.execute("UPDATE images SET location = 'https://img.example.com/b.png' WHERE location LIKE '%b.png'")
    db.close()
    (folder / "images" / "link.png").unlink()
    (folder / "images" / "link.png").symlink_to(outside)  # swapped for a link out of the folder after indexing
    with SearchEngine.open(tmp_path / "idx", encoder=tiny_encoder) as engine, TestClient(create_app(engine)) as test_client:
        assert test_client.get("/products/SKU%2F1/images/0").content == (folder / "images" / "a.png").read_bytes()
        refused(test_client.get("/products/SKU%2F1/images/1"), 404, "not available")  # a symlink out of the folder
        assert test_client.get("/products/SKU%2F1").json()["images"] == ["/products/SKU%2F1/images/0", "/products/SKU%2F1/images/1"]
        assert [h["product_id"] for h in test_client.get("/products/SKU%2F1/similar").json()["hits"]] == ["SKU 2"]
        moved = test_client.get("/products/SKU%202/images/0", follow_redirects=False)
        assert moved.status_code == 307 and moved.headers["location"] == "https://img.example.com/b.png"


def test_image_roots_are_the_outermost_folders(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "c").mkdir()
    roots = ImageRoots([str(tmp_path / "a" / "x.jpg"), str(tmp_path / "a" / "b" / "y.jpg"), str(tmp_path / "c" / "z.jpg"),
                         "https://example.com/q.jpg"])
    assert roots.roots == (tmp_path / "a", tmp_path / "c") or set(roots.roots) == {tmp_path / "a", tmp_path / "c"}
    (tmp_path / "a" / "x.jpg").write_bytes(b"x")
    assert roots.file(str(tmp_path / "a" / "b" / ".." / "x.jpg")) == tmp_path / "a" / "x.jpg"
    assert roots.file(str(tmp_path / "a" / ".." / "d.jpg")) is None and roots.file(str(tmp_path / "a" / "nope.jpg")) is None

"""Hardening of the read path and the HTTP API: values that reached SQL or numpy unchecked, uploads (corrupt
EXIF, bombs, concurrency, health) and the API contract.  Each test is a case that gave a 500 before."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import corrupt_exif_images, encoded, open_built_engine, post_json, write_catalog
from indexer.errors import (QueryError)
from indexer.pipeline import build_index
from search.filters import compile_where, parse_where
from search.web.app import create_app
from search.web.service import WebConfig


# -- values that reached SQL or numpy unchecked ----------------------------------------------------------------------
def test_filter_values_sql_cannot_bind_are_refused_or_converted():
    fields = {"size"}
    for where in ({"price": {"lt": True}}, {"price": {"gte": None}}, {"size": {"gt": False}}, {"size": "\ud800"},
                  {"size": {"in": ["a", "\udfff"]}}, {"price": 10**400}):
        with pytest.raises(QueryError):
            compile_where(where, attribute_fields=fields)
    assert compile_where({"price": {"lt": 2**64}, "size": -(2**70)}, attribute_fields=fields)


def test_a_numeric_looking_filter_matches_a_text_attribute(tmp_path, tiny_encoder):
    """``--where size=42`` parsed 42 as a number; a CSV catalog stores the text "42": nothing matched."""
    folder = tmp_path / "catalog"
    folder.mkdir()
    rows = ["id,title,size", "A,shoe a,42", "B,shoe b,43", "C,shoe c,M", "D,shoe d,41.5"]
    (folder / "catalog.csv").write_text("\n".join(rows) + "\n")
    jsonl = folder / "more.jsonl"
    jsonl.write_text(json.dumps({"id": "E", "title": "shoe e", "size": 42}) + "\n")
    with open_built_engine(tmp_path / "index", folder / "catalog.csv", tiny_encoder) as engine:
        build_index(jsonl, tmp_path / "index", encoder=tiny_encoder)
        found = lambda *where: sorted(h.product_id for h in engine.search("shoe", k=10, where=parse_where(list(where))))  # noqa: E731
        assert found("size=42") == ["A", "E"]
        assert found("size=42,M") == ["A", "C", "E"]
        assert found("size<42") == ["D"]
        assert found("size>=42") == ["A", "B", "E"]
        assert found("size!=42") == ["B", "C", "D"]


def test_weights_beyond_float32_are_refused_not_scored_as_null(engine):
    with pytest.raises(QueryError, match="weight"):
        engine.search("red", weights={"text": 1e39})
    with pytest.raises(QueryError, match="Unicode"):
        engine.search("red \ud800")
    with pytest.raises(QueryError, match="unknown product"):
        engine.product("\ud800")
    assert engine.search("red", k=3, exclude=["\ud800"]).hits


@pytest.fixture(scope="module")
def hard_client(tmp_path_factory, tiny_encoder):
    with open_built_engine(tmp_path_factory.mktemp("hard") / "index", write_catalog(tmp_path_factory.mktemp("c")),
                           tiny_encoder) as engine:
        with TestClient(create_app(engine)) as client:
            yield client


@pytest.mark.parametrize("body, field", [
    ('{"text": "red", "where": {"price": {"lt": true}}}', "price"),
    ('{"text": "red", "where": {"price": {"lt": null}}}', "price"),
    ('{"text": "red", "where": {"category": "\\ud800"}}', "Unicode"),
    ('{"text": "red", "exclude": ["\\ud800"]}', "exclude"),
    ('{"text": "\\ud800 red"}', "text"),
    ('{"terms": [{"product": "\\udfff"}]}', "product"),
    ('{"text": "red", "weights": {"text": 1e39}}', "weights.text"),
    ('{"terms": [{"text": "red", "weight": -1e300}]}', "weight"),
    ('{"text": "red", "k": true}', "k"),
    ('{"text": "red", "offset": false}', "offset"),
    ('{"text": "red", "image_share": true}', "image_share"),
    ('{"text": "red", "offset": 9991, "k": 10}', "offset + k"),
    ('{"text": "red", "\\ud800": 1}', "body"),
])
def test_values_that_reached_sql_or_numpy_unchecked_are_422(hard_client, body, field):
    response = post_json(hard_client, body)
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], str) and field in response.json()["detail"]


def test_big_integers_in_filters_are_compared_not_a_500(hard_client):
    for where in ({"price": {"lt": 2**63}}, {"price": {"gt": -(2**64)}}, {"color": 2**70}):
        response = hard_client.post("/search", json={"text": "red", "where": where})
        assert response.status_code == 200, response.text
    assert len(hard_client.post("/search", json={"text": "red", "where": {"price": {"lt": 2**63}}}).json()["hits"]) == 10


def test_the_last_page_within_offset_plus_k_is_served(hard_client):
    """offset 9990 + k 10 = 10000 is within the limit; the server asked the engine for k + 1 and got a 422."""
    response = hard_client.post("/search", json={"text": "red", "offset": 9990, "k": 10})
    assert response.status_code == 200, response.text
    assert response.json()["hits"] == [] and response.json()["has_more"] is False
    similar = hard_client.get("/products/P001/similar", params={"offset": 9990, "k": 10})
    assert similar.status_code == 200, similar.text


def test_surrogates_in_product_paths_are_404(hard_client):
    assert hard_client.get("/products/%ED%A0%80").status_code == 404
    assert hard_client.get("/products/%ED%A0%80/similar").status_code == 404


# -- uploads: corrupt EXIF, bombs, concurrency, health ---------------------------------------------------------------
def upload(client: TestClient, data: bytes, name: str = "photo.png"):
    return client.post("/search/image", files={"photo": (name, data, "application/octet-stream")}, data={"k": "3"})


@pytest.mark.parametrize("name", sorted(corrupt_exif_images()))
def test_uploads_with_a_corrupt_exif_block_are_searched(hard_client, name):
    response = upload(hard_client, corrupt_exif_images()[name])
    assert response.status_code == 200, response.text


def test_pixel_strips_are_413_before_any_resize(hard_client):
    for size in ((100_000, 1), (400_000, 1)):
        response = upload(hard_client, encoded(Image.new("L", size), "PNG"))
        assert response.status_code == 413 and "aspect ratio" in response.json()["detail"]


def test_health_answers_while_every_search_thread_is_busy(web_engine_factory):
    """/healthz waited 9.7 s behind 8 slow uploads in the same thread pool."""
    engine, app = web_engine_factory(WebConfig(search_threads=2))
    release = threading.Event()
    with TestClient(app) as client:
        service = app.state.service
        blockers = [service.pool.submit(release.wait, 30) for _ in range(4)]
        try:
            started = time.perf_counter()
            response = client.get("/healthz")
            assert response.status_code == 200 and time.perf_counter() - started < 5
        finally:
            release.set()
            for blocker in blockers:
                blocker.result(timeout=30)


def test_concurrent_decodes_are_bounded(web_engine_factory, monkeypatch):
    import search.web.service as web

    engine, app = web_engine_factory(WebConfig(search_threads=6, decode_threads=2))
    lock, active, peak = threading.Lock(), [0], [0]
    real = web.decode_image

    def slow_decode(*args, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.1)
            return real(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(web, "decode_image", slow_decode)
    data = encoded(Image.new("RGB", (64, 64), (200, 30, 30)), "PNG")
    with TestClient(app) as client, ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda _: upload(client, data).status_code, range(6)))
    assert statuses == [200] * 6 and peak[0] == 2


@pytest.fixture
def web_engine_factory(tmp_path, tiny_encoder):
    opened = []

    def make(config: WebConfig):
        engine = open_built_engine(tmp_path / f"index{len(opened)}", write_catalog(tmp_path / f"c{len(opened)}", n=6), tiny_encoder)
        opened.append(engine)
        return engine, create_app(engine, config=config)

    yield make
    for engine in opened:
        engine.close()


# -- the API contract ------------------------------------------------------------------------------------------------
def test_the_schema_documents_errors_limits_and_media_types(hard_client):
    schema = hard_client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    assert components["ValidationErrorOut"]["properties"]["detail"]["type"] == "string"
    assert "HTTPValidationError" not in components  # FastAPI's default said detail is an array: it is not
    expected = {("/search", "post"): {"400", "413", "415", "422", "503"},
                ("/search/image", "post"): {"400", "413", "415", "422", "503"},
                ("/products/{product_id}/similar", "get"): {"404", "422", "503"},
                ("/products/{product_id}/images/{n}", "get"): {"307", "404", "422", "503"},
                ("/products/{product_id}", "get"): {"404", "503"}, ("/healthz", "get"): {"503"}, ("/stats", "get"): {"503"}}
    for (path, method), codes in expected.items():
        responses = schema["paths"][path][method]["responses"]
        assert codes <= set(responses), (path, set(responses))
        for code in codes - {"307"}:
            ref = responses[code]["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[1] in {"ErrorOut", "ValidationErrorOut", "HealthOut"}
    search = components["SearchIn"]["properties"]
    assert search["k"]["minimum"] == 1 and search["k"]["maximum"] == WebConfig().max_k
    assert search["offset"]["maximum"] == 9999 and "offset + k" in search["offset"]["description"]
    assert search["terms"]["maxItems"] == WebConfig().max_terms
    upload_schema = schema["paths"]["/search/image"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert upload_schema["properties"]["k"]["maximum"] == WebConfig().max_k
    image = schema["paths"]["/products/{product_id}/images/{n}"]["get"]["responses"]["200"]["content"]
    assert {"image/png", "image/jpeg", "image/webp"} <= set(image) and "application/json" not in image
    bad = hard_client.post("/search", json={"k": 0})
    assert bad.status_code == 422 and set(bad.json()) == {"detail", "errors"} and isinstance(bad.json()["errors"], list)


def test_images_are_served_with_the_media_type_of_their_content(tmp_path, tiny_encoder):
    folder = tmp_path / "catalog"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "photo.jpg").write_bytes(encoded(Image.new("RGB", (16, 16), (1, 2, 3)), "PNG"))  # a PNG named .jpg
    (folder / "images" / "noext").write_bytes(encoded(Image.new("RGB", (16, 16), (4, 5, 6)), "WEBP"))
    (folder / "catalog.jsonl").write_text(json.dumps({"id": "A", "title": "a", "images": ["images/photo.jpg", "images/noext"]}) + "\n")
    with open_built_engine(tmp_path / "index", folder / "catalog.jsonl", tiny_encoder) as engine:
        with TestClient(create_app(engine)) as client:
            assert client.get("/products/A/images/0").headers["content-type"] == "image/png"
            assert client.get("/products/A/images/1").headers["content-type"] == "image/webp"

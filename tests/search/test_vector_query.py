"""Querying by vector: the vector term, engine.search(vector=...), POST /search with "vector", `vitrina search --vector`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from conftest import open_built_engine, post_json, write_catalog
from indexer.errors import QueryError
from search.query import MAX_VECTOR_DIMS, Term, build_terms, term_from
from search.web.app import create_app
from vitrina.cli import cli

DIM = 32  # the tiny test model's


def product_vector(engine, product_id: str) -> np.ndarray:
    """A stored product as a query vector, as the engine makes one: mean of its image vectors plus its text vector."""
    with engine.store.snapshot():
        pk = engine.store.product_pks([product_id])[product_id]
        stored = engine.store.vectors_of([pk])
    mean = stored["images"].mean(axis=0)
    total = mean / np.linalg.norm(mean) + (stored["text"][0] if stored["has_text"][0] else 0)
    return (total / np.linalg.norm(total)).astype(np.float32)


def image_vector(engine, product_id: str) -> np.ndarray:
    """A stored product's first image vector (the test catalog repeats texts: its images tell products apart)."""
    with engine.store.snapshot():
        pk = engine.store.product_pks([product_id])[product_id]
        stored = engine.store.vectors_of([pk])
    return stored["images"][int(np.argmin(stored["image_position"]))]


# -- the term ------------------------------------------------------------------------------------------------------------
def test_a_vector_term_is_a_read_only_unit_vector():
    term = Term(kind="vector", value=[3.0, 4.0], weight=0.5)
    np.testing.assert_allclose(term.value, [0.6, 0.8], atol=1e-7)
    assert term.value.dtype == np.float32 and not term.value.flags.writeable
    assert term.describe() == "vector (2 dims) x 0.5"
    tiny = Term(kind="vector", value=np.array([5e-324, 0.0])).value  # scaled before normalising: no underflow
    huge = Term(kind="vector", value=[1e308, 1e308]).value  # nor an overflow
    np.testing.assert_allclose(tiny, [1.0, 0.0])
    np.testing.assert_allclose(huge, [math.sqrt(0.5)] * 2, atol=1e-6)
    assert term_from(np.ones(4)).kind == "vector" and term_from({"vector": [1, 2], "weight": 2}).weight == 2
    terms = build_terms(text="red", vector=[1.0, 0.0], weights={"vector": 0.25})
    assert [(t.kind, t.weight) for t in terms] == [("text", 1.0), ("vector", 0.25)]


@pytest.mark.parametrize("value, message", [
    ([], "1 to"), ([0.0, 0.0], "all zeros"), ([1.0, float("nan")], "finite"), ([float("inf"), 1.0], "finite"),
    ("0.1 0.2", "list or array"), ({"a": 1.0}, "list or array"), (None, "list or array"), ([[1.0, 2.0]], "1-D"),
    ([1.0, "a"], "1-D"), ([1.0, [2.0]], "1-D"), (np.zeros((2, 2)), "1-D"), ([10**400], "1-D"),
    ([1.0] * (MAX_VECTOR_DIMS + 1), f"1 to {MAX_VECTOR_DIMS}"),
])
def test_bad_vector_terms_are_query_errors(value, message):
    with pytest.raises(QueryError, match=message):
        Term(kind="vector", value=value)


def test_vector_weights_follow_the_other_kinds():
    with pytest.raises(QueryError, match="at least one term with a positive weight"):
        build_terms(vector=[1.0, 2.0], weights={"vector": -1.0})
    with pytest.raises(QueryError, match="'text', 'image' and 'vector'"):
        build_terms(vector=[1.0], weights={"vectors": 1.0})


# -- the engine ----------------------------------------------------------------------------------------------------------
def test_a_products_vector_scores_as_the_product_term(engine):
    vector = product_vector(engine, "P014")
    options = {"k": 24, "rerank": False, "field_weight": 0.0}  # the field part: more-like-this adds the product's own values
    by_product = engine.search(terms=[{"product": "P014"}], **options)
    by_vector = engine.search(vector=vector, **options)
    assert [h.product_id for h in by_vector] == [h.product_id for h in by_product]
    np.testing.assert_allclose([h.score for h in by_vector], [h.score for h in by_product], atol=1e-5)
    as_term = engine.search(terms=[{"vector": vector.tolist(), "weight": 1.0}], **options)
    np.testing.assert_allclose([h.score for h in as_term], [h.score for h in by_vector], atol=1e-6)


def test_a_vector_weighs_with_other_terms(engine):
    photo = image_vector(engine, "P014")
    found = engine.search(vector=photo, image_share=1.0, rerank=False)
    assert found[0].product_id == "P014" and found[0].scores["image_cosine"] == pytest.approx(1.0, abs=1e-5)
    options = {"k": 24, "rerank": False}
    mixed = engine.search("blue square widget", vector=photo, weights={"text": 0.2, "vector": 1.0}, **options)
    assert [t["weight"] for t in mixed.weights["terms"]] == [0.2, 1.0]
    as_terms = engine.search(terms=[("blue square widget", 0.2), (photo, 1.0)], **options)
    assert [(h.product_id, h.score) for h in as_terms] == [(h.product_id, h.score) for h in mixed]
    cosine = {w: {h.product_id: h.scores["image_cosine"] for h in engine.search("blue square widget", terms=[(photo, w)], **options)}
              for w in (0.5, -0.5)}
    assert cosine[-0.5]["P014"] < cosine[0.5]["P014"]  # a negative vector term pushes its own product away


def test_a_vector_of_another_dimension_is_refused_naming_both(engine):
    with pytest.raises(QueryError, match=f"a vector term has 16 dimensions; the index's model has {DIM}"):
        engine.search(vector=np.ones(16))
    with pytest.raises(QueryError, match="has 64 dimensions"):
        engine.search("red", terms=[{"vector": [1.0] * 64}])


# -- the HTTP API ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vector_engine(tmp_path_factory, tiny_encoder):
    catalog = write_catalog(tmp_path_factory.mktemp("vector-catalog"))
    with open_built_engine(tmp_path_factory.mktemp("vector") / "index", catalog, tiny_encoder) as opened:
        yield opened


@pytest.fixture(scope="module")
def client(vector_engine):
    with TestClient(create_app(vector_engine)) as test_client:
        yield test_client


def test_post_search_takes_a_vector_and_vector_terms(client, vector_engine):
    vector = image_vector(vector_engine, "P009").tolist()
    response = client.post("/search", json={"vector": vector, "k": 3, "rerank": False, "image_share": 1})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["hits"][0]["product_id"] == "P009"
    assert body["query"] == [{"kind": "vector", "value": f"{DIM} dims", "weight": 1.0}]
    weighted = client.post("/search", json={"vector": vector, "weights": {"vector": 2.0}, "text": "red", "k": 3})
    assert weighted.status_code == 200 and {"kind": "vector", "value": f"{DIM} dims", "weight": 2.0} in weighted.json()["query"]
    terms = client.post("/search", json={"terms": [{"vector": vector, "weight": 1}], "k": 3, "rerank": False, "image_share": 1})
    assert terms.status_code == 200 and terms.json()["hits"][0]["product_id"] == "P009"


@pytest.mark.parametrize("body, field", [
    ({"vector": []}, "vector"),
    ({"vector": [0.0] * DIM}, "vector: Value error, a vector must not be all zeros"),
    ({"vector": ["a"] * DIM}, "vector.0"),
    ({"vector": [True] * DIM}, "vector.0"),
    ({"vector": [[1.0]] * DIM}, "vector.0"),
    ({"vector": "1,2,3"}, "vector"),
    ({"vector": [1.0] * (MAX_VECTOR_DIMS + 1)}, "vector"),
    ({"terms": [{"vector": [1.0] * DIM, "text": "red"}]}, "terms.0"),
    ({"terms": [{"vector": [0.0, 0.0]}]}, "terms.0.vector"),
    ({"vector": [1.0] * DIM, "weights": {"vector": 1e9}}, "weights.vector"),
])
def test_bad_vector_bodies_are_422_naming_the_field(client, body, field):
    response = client.post("/search", json=body)
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"] and "Traceback" not in response.text


def test_non_finite_and_mis_sized_vectors_are_422(client):
    nan = post_json(client, '{"vector": [NaN' + ", 1.0" * (DIM - 1) + "]}")
    assert nan.status_code == 422 and "vector.0" in nan.json()["detail"]
    wrong = client.post("/search", json={"vector": [1.0] * 16})
    assert wrong.status_code == 422 and wrong.json()["detail"] == f"a vector term has 16 dimensions; the index's model has {DIM}"


def test_the_schema_documents_the_vector(client):
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    vector = components["SearchIn"]["properties"]["vector"]
    array = next(v for v in vector["anyOf"] if v.get("type") == "array")
    assert array["minItems"] == 1 and array["maxItems"] == MAX_VECTOR_DIMS and "dimension" in vector["description"]
    assert "vector" in components["TermIn"]["properties"] and "vector" in components["Weights"]["properties"]
    assert "Query by vector" in schema["info"]["description"]


# -- the CLI -------------------------------------------------------------------------------------------------------------
def test_cli_search_takes_a_vector_file(tmp_path, vector_engine):
    runner = CliRunner()
    folder = str(vector_engine.store.folder)
    vector = image_vector(vector_engine, "P006")
    np.save(tmp_path / "query.npy", vector)
    (tmp_path / "query.json").write_text(json.dumps(vector.tolist()))
    for name in ("query.npy", "query.json"):
        result = runner.invoke(cli, ["search", "--index", folder, "--vector", str(tmp_path / name), "--json", "-k", "2",
                                     "--no-rerank", "--image-share", "1"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["hits"][0]["product_id"] == "P006"
    np.save(tmp_path / "short.npy", vector[:16])
    short = runner.invoke(cli, ["search", "--index", folder, "--vector", str(tmp_path / "short.npy")])
    assert short.exit_code == 2 and f"16 dimensions; the index's model has {DIM}" in short.output
    (tmp_path / "zeros.json").write_text("[0, 0]")
    zeros = runner.invoke(cli, ["search", "--index", folder, "--vector", str(tmp_path / "zeros.json")])
    assert zeros.exit_code == 2 and "all zeros" in zeros.output

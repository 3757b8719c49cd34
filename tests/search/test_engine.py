import io

import numpy as np
import pytest
from PIL import Image

from indexer.config import IndexConfig, SearchConfig
from indexer.encoders.base import ModelIdentity
from indexer.errors import ModelError, QueryError
from indexer.pipeline import build_index
from indexer.store.reader import IndexStore
from search import SearchEngine
from search.fusion import modality_scores
from conftest import BOTH_DATABASES, database_for


@pytest.fixture(params=BOTH_DATABASES)
def database(request):
    """Every test here runs on SQLite and on PostgreSQL (``postgres`` marker)."""
    return database_for(request)


def _z(cos, reference):
    return (cos - reference.mean()) / reference.std()


def test_fused_scores_match_numpy_on_stored_vectors(engine, tiny_encoder):
    """Each part is a z-score of the term's cosine against the reference sample (here every product, as the
    index has fewer than 256), weighted by the image share; fused is the sum of the parts."""
    result = engine.search("red square widget", k=5, image_share=0.3, lexical_weight=0.0, field_weight=0.0)
    assert len(result) == 5
    q = tiny_encoder.encode_texts(["red square widget"])[0]
    with IndexStore.open(engine.store.folder) as store:
        everything = store.vectors_of(list(range(1, 25)))
        pk_of = store.product_pks([f"P{i:03d}" for i in range(24)])
    text_cos, image_cos, _ = modality_scores(q, everything["text"], everything["has_text"], everything["images"],
                                             everything["image_owner"])
    np.testing.assert_allclose(text_cos, everything["text"] @ q, rtol=1e-5)
    fused = 0.3 * _z(image_cos, image_cos) + 0.7 * _z(text_cos, text_cos)
    by_id = {pid: fused[pk - 1] for pid, pk in pk_of.items()}
    assert [h.product_id for h in result] == sorted(by_id, key=lambda p: (-by_id[p], pk_of[p]))[:5]
    for hit in result:
        pk = pk_of[hit.product_id]
        assert hit.score == pytest.approx(by_id[hit.product_id], rel=1e-4)
        assert hit.scores["image"] == pytest.approx(0.3 * _z(image_cos, image_cos)[pk - 1], rel=1e-4)
        assert hit.scores["text_cosine"] == pytest.approx(text_cos[pk - 1], rel=1e-5)
        parts = hit.scores["image"] + hit.scores["text"] + hit.scores["lexical"] + hit.scores["field"]
        assert hit.scores["fused"] == pytest.approx(parts, rel=1e-6)
        assert hit.image in hit.product["images"] and hit.product["images"][hit.image_index] == hit.image
    assert result.weights["terms"] == [{"weight": 1.0, "image_share": 0.3}]
    assert result.weights["lexical_weight"] == 0.0 and result.weights["field_weight"] == 0.0


def test_two_terms_are_scored_each_on_its_own_scale(engine, catalog, tiny_encoder):
    photo = catalog.parent / "images" / "p5_0.png"
    result = engine.search("green", image=photo, weights={"text": 0.5, "image": 1.0}, k=24, image_share=0.4,
                           lexical_weight=0.0, field_weight=0.0)
    e_text = tiny_encoder.encode_texts(["green"])[0]
    from PIL import Image as PILImage
    e_photo = tiny_encoder.encode_images([PILImage.open(photo).convert("RGB")])[0]
    with IndexStore.open(engine.store.folder) as store:
        everything = store.vectors_of(list(range(1, 25)))
        pk_of = store.product_pks([f"P{i:03d}" for i in range(24)])
    fused = np.zeros(24)
    for weight, e in ((0.5, e_text), (1.0, e_photo)):
        text_cos, image_cos, _ = modality_scores(e, everything["text"], everything["has_text"], everything["images"],
                                                 everything["image_owner"])
        fused += weight / 1.5 * (0.4 * _z(image_cos, image_cos) + 0.6 * _z(text_cos, text_cos))
    for hit in result:
        assert hit.scores["fused"] == pytest.approx(fused[pk_of[hit.product_id] - 1], abs=2e-3)


def test_lexical_match_adds_its_bm25_z_score_and_finds_ids(engine):
    result = engine.search("P017", k=3)
    assert result[0].product_id == "P017" and result[0].scores["lexical"] > 0
    plain = {h.product_id: h for h in engine.search("green circle widget", k=24, lexical_weight=0.0, field_weight=0.0)}
    with_words = engine.search("green circle widget", k=24, lexical_weight=0.5, field_weight=0.0)
    for hit in with_words:
        assert hit.score == pytest.approx(plain[hit.product_id].score + hit.scores["lexical"], abs=1e-5)
        assert (hit.scores["lexical"] > 0) <= (hit.scores["bm25"] is not None)
        assert 0.0 <= hit.scores["lexical"] <= 0.5 * 8
    assert with_words[0].product["attributes"]["color"] == "green"
    with pytest.raises(QueryError, match="lexical_weight"):
        engine.search("x", lexical_weight=2)


def test_words_naming_a_field_value_boost_that_kind_and_say_so(engine):
    """"circle" is a value of the catalog's category field (shapes here), "green" of its colour attribute."""
    result = engine.search("green circle", k=24)
    assert {(f["field"], f["value"]) for f in result.fields} == {("category", "circle"), ("color", "green")}
    top = result[0]
    assert top.product["category"] == "circle" and top.product["attributes"]["color"] == "green"
    assert top.matched == {"category": pytest.approx(5.0), "color": pytest.approx(2.5)}  # kind first: 5 x 1.0, 5 x 0.5
    circles = [h for h in result if h.product["category"] == "circle"]
    assert [h.product_id for h in result[: len(circles)]] == [h.product_id for h in circles]  # every circle first
    off = engine.search("green circle", k=24, field_weight=0.0)
    assert all(h.scores["field"] == 0.0 and h.matched == {} for h in off)
    negated = engine.search("circle without green", k=8)
    assert negated[0].product["attributes"]["color"] != "green"
    for hit in negated:
        assert hit.matched.get("color", 0.0) == (pytest.approx(-2.5) if hit.product["attributes"]["color"] == "green" else 0.0)


def test_text_image_and_weighted_terms(engine, catalog):
    photo = catalog.parent / "images" / "p5_0.png"
    by_path = engine.search(image=photo, k=3, image_share=1.0)
    assert by_path[0].product_id == "P005" and by_path[0].scores["image_cosine"] == pytest.approx(1.0, abs=1e-5)
    by_bytes = engine.search(image=photo.read_bytes(), k=3, image_share=1.0)
    by_pil = engine.search(image=Image.open(photo), k=3, image_share=1.0)
    assert [h.product_id for h in by_bytes] == [h.product_id for h in by_pil] == [h.product_id for h in by_path]
    combined = engine.search("green", image=photo, weights={"text": 0.5, "image": 1.0}, k=3)
    terms = engine.search(terms=[("green", 0.5), (photo, 1.0)], k=3)
    assert [h.score for h in combined] == pytest.approx([h.score for h in terms])


def test_negative_weight_lowers_matching_products(engine):
    plain = engine.search(terms=[("widget", 1.0)], k=24, image_share=0.0)
    minus_red = engine.search(terms=[("widget", 1.0), ("red square widget", -0.8)], k=24, image_share=0.0)
    rank = lambda result, pid: [h.product_id for h in result].index(pid)
    assert rank(minus_red, "P000") > rank(plain, "P000")


def test_selective_filter_still_returns_k_hits(engine):
    # 2 of 24 products match; a post-filter over the top 10 candidates would usually miss them
    result = engine.search("blue circle", where={"brand": "Brand0", "price": {"lt": 23}, "color": "red"}, k=2)
    ids = sorted(h.product_id for h in result)
    assert ids == ["P000", "P012"]
    assert all(h.product["brand"] == "Brand0" and h.product["price"] < 23 for h in result)
    assert len(engine.search("x", where={"category": {"in": ["circle", "triangle"]}}, k=16)) == 16
    assert engine.search("x", where={"category": "nothing"}, k=5).hits == []


@pytest.mark.parametrize("index_type", ["HNSW16", "IVF4,Flat"])
def test_filters_on_approximate_indexes_return_k(tmp_path, catalog, tiny_encoder, index_type, database):
    folder = tmp_path / "idx"
    build_index(catalog, folder, encoder=tiny_encoder, config=IndexConfig(index_type=index_type, database=database))
    with SearchEngine.open(folder, encoder=tiny_encoder, config=SearchConfig(min_candidates=2, candidate_factor=1)) as eng:
        assert len(eng.search("red", where={"category": "circle"}, k=8)) == 8
        assert len(eng.search("red", k=20)) >= 2


def test_similar_excludes_the_product_itself(engine):
    result = engine.similar("P005", k=23)
    ids = [h.product_id for h in result]
    assert "P005" not in ids and len(ids) == 23
    with pytest.raises(QueryError, match="unknown product id"):
        engine.similar("nope")


def test_offset_pages_through_the_same_ranking(engine):
    full = [h.product_id for h in engine.search("triangle", k=10)]
    page = [h.product_id for h in engine.search("triangle", k=5, offset=5)]
    assert page == full[5:]


@pytest.mark.parametrize("kwargs, message", [
    ({}, "empty query"),
    ({"text": "  "}, "non-empty"),
    ({"text": "x", "k": 0}, "positive integer"),
    ({"text": "x", "k": 10**6}, "at most"),
    ({"text": "x", "offset": -1}, "non-negative"),
    ({"text": "x", "image_share": 2}, "image_share"),
    ({"terms": [("x", -1.0)]}, "positive weight"),
    ({"terms": [("x", float("nan"))]}, "finite"),
    ({"terms": [(3, 1.0)]}, "cannot make a query term"),
    ({"text": "x", "weights": {"txt": 1}}, "weights take"),
    ({"text": "x", "where": {"colour": "red"}}, "unknown filter field"),
    ({"text": "x" * 5000}, "limit"),
    ({"terms": [("same", 1.0), ("same", -1.0), ("other", 0.0)]}, "cancel"),
])
def test_invalid_queries_raise_query_error(engine, kwargs, message):
    with pytest.raises(QueryError, match=message):
        engine.search(**kwargs)


def test_bad_query_image_raises_image_error(engine):
    from indexer.errors import ImageError

    with pytest.raises(ImageError, match="not an image"):
        engine.search(image=b"plain text, not a photo")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="TIFF")
    with pytest.raises(ImageError, match="TIFF"):
        engine.search(image=buffer.getvalue())


def test_model_mismatch_is_refused(built_index, tiny_encoder):
    class OtherModel:
        identity = ModelIdentity(name="other", pretrained=None, fingerprint="0" * 64, dim=tiny_encoder.dim)
        dim = tiny_encoder.dim

    with pytest.raises(ModelError, match="built with"):
        SearchEngine.open(built_index, encoder=OtherModel())


def test_reopening_gives_the_same_results_and_loads_the_model_itself(built_index, engine):
    first = [(h.product_id, round(h.score, 6)) for h in engine.search("green circle", k=5)]
    with SearchEngine.open(built_index) as reopened:  # loads the model folder recorded in the index
        again = [(h.product_id, round(h.score, 6)) for h in reopened.search("green circle", k=5)]
    assert first == again


def test_reader_picks_up_a_new_commit(engine, tmp_path, tiny_encoder):
    import json

    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"id": "NEW", "title": "brand new purple gadget"}) + "\n")
    assert engine.search(terms=[{"product": "P000"}], k=30).hits[-1]
    build_index(extra, engine.store.folder, encoder=tiny_encoder)
    assert "NEW" in [h.product_id for h in engine.search("brand new purple gadget", k=30)]


def test_words_in_too_many_products_stay_out_of_the_bm25_query(built_index, tiny_encoder):
    """(Field matching off: with it, "red" names the colour field and is not counted again by BM25.)"""
    with IndexStore.open(built_index) as store:
        assert store.word_counts(["widget", "red", "nowhere"]) == {"widget": 24, "red": 6}
    config = SearchConfig(lexical_max_docs=10, field_weight=0.0)  # "widget" is in all 24 products, "red" in 6
    with SearchEngine.open(built_index, encoder=tiny_encoder, config=config, rerank=False) as engine:
        hits = engine.search("red widget", k=24).hits
        matched = {h.product_id for h in hits if h.scores["bm25"] is not None}
        assert len(matched) == 6 and all(h.product["attributes"]["color"] == "red" for h in hits if h.product_id in matched)
    with SearchEngine.open(built_index, encoder=tiny_encoder, config=SearchConfig(field_weight=0.0), rerank=False) as engine:
        hits = engine.search("red widget", k=24).hits
        assert sum(h.scores["bm25"] is not None for h in hits) == 24



def test_more_like_this_puts_the_products_own_kind_first(engine):
    """A stored product as a query term brings its own field values (at half weight): the same kind first."""
    result = engine.similar("P000", k=7)
    source = engine.product("P000")
    assert "P000" not in [h.product_id for h in result]
    kinds = [h.product["category"] for h in result]  # 8 squares, circles and triangles each; random tiny model
    plain = engine.search(terms=[{"product": "P000"}], exclude=["P000"], k=7, field_weight=0.0)
    assert kinds[:4] == [source["category"]] * 4
    assert kinds.count(source["category"]) > [h.product["category"] for h in plain].count(source["category"])
    assert result[0].matched["category"] == pytest.approx(5.0 * 0.5)

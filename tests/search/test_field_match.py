"""Field-aware words on a catalog written here (nothing from the demo generator's vocabulary)."""

import numpy as np
import pytest

from search.field_match import (build_vocabulary, field_evidence, field_scores, match_query, matchable_values,
                                merge_evidence, photo_evidence, stem, tokens)

CATEGORIES = ["Sofa", "Sofa", "Sofa", "Sofa", "Lamp", "Lamp", "Lamp", "Lamp", "Kettle", "Kettle"]
COLOURS = ["teal", "mustard", "teal", None, "mustard", "teal", "ivory", "ivory", "teal", "ivory"]
TITLES = ["Teal velvet couch", "Mustard linen couch", "Teal corner couch", "Grey couch",
          "Mustard reading lamp", "Teal desk lamp", "Ivory floor lamp", "Ivory arc lamp",
          "Teal stovetop kettle", "Ivory electric kettle"]
IDS = [f"SKU-{i}" for i in range(10)]


def vocabulary(**options):
    return build_vocabulary({"category": CATEGORIES, "colour": COLOURS, "id": IDS}, TITLES, **options)


def test_plurals_and_case_meet():
    assert stem("sofas") == "sofa" and stem("boxes") == "box" and stem("dress") == "dress" and stem("berries") == "berry"
    assert tokens("Teal SOFAS!") == ["teal", "sofa"]


def test_only_fields_a_query_can_name_are_matchable():
    assert matchable_values(CATEGORIES) == ("Kettle", "Lamp", "Sofa")
    assert matchable_values(IDS) is None  # every value distinct: an id, not a field to name
    assert matchable_values(["x", "x", None]) is None  # one value
    assert set(vocabulary().fields) == {"category", "colour"}


def test_values_plurals_and_the_kind_first():
    vocab = vocabulary()
    matches, rest = match_query(["teal sofas for my flat"], vocab)
    assert {(m.field, m.value) for m in matches} == {("category", "Sofa"), ("colour", "teal")}
    assert rest == ["flat"]
    assert vocab.priors["category"] == 1.0 and vocab.priors["colour"] == 0.5


def test_synonyms_are_learned_from_the_catalog_titles():
    vocab = vocabulary()
    matches, _ = match_query(["mustard couches"], vocab)
    couch = [m for m in matches if m.words == "couch"]
    assert couch and couch[0].field == "category" and couch[0].value == "Sofa" and couch[0].source == "catalog-synonym"
    assert 0.5 < couch[0].strength < 1.0  # 4 of 4 titles with "couch" are sofas: 4 / (4 + 1)
    # "lamp" is itself a value, so it is not mined again; a word on few titles is no synonym
    assert not [m for m in match_query(["velvet"], vocab)[0]]


def test_declared_synonyms_join_the_catalogs_own():
    vocab = vocabulary(synonyms={"settee": ("category", "Sofa"), "nonsense": ("category", "Bed")})
    assert [(m.field, m.value, m.source) for m in match_query(["settee"], vocab)[0]] == [("category", "Sofa", "declared-synonym")]
    assert match_query(["nonsense"], vocab)[0] == []  # a value the catalog does not have is ignored


def test_without_makes_negative_evidence():
    vocab = vocabulary()
    matches, _ = match_query(["lamp without teal"], vocab)
    evidence = field_evidence(matches)
    assert evidence["category"] == {"Lamp": 1.0} and evidence["colour"] == {"teal": -1.0}


def test_field_scores_sum_priors_times_evidence_per_product():
    vocab = vocabulary()
    evidence = field_evidence(match_query(["teal lamp"], vocab)[0])
    total, parts = field_scores(evidence, {"category": CATEGORIES, "colour": COLOURS}, vocab.priors, 10)
    expect_category = np.array([c == "Lamp" for c in CATEGORIES], np.float32) * 1.0
    expect_colour = np.array([c == "teal" for c in COLOURS], np.float32) * 0.5
    np.testing.assert_allclose(parts["category"], expect_category)
    np.testing.assert_allclose(parts["colour"], expect_colour)
    np.testing.assert_allclose(total, expect_category + expect_colour)
    assert int(np.argmax(total)) == 5  # the teal lamp


def test_a_photo_decides_the_kind_and_words_change_one_property():
    photo = photo_evidence({"category": ["Lamp"] * 8 + ["Sofa"] * 2, "colour": ["ivory"] * 10})
    assert photo["category"] == {"Lamp": 0.8, "Sofa": 0.2}
    words = field_evidence(match_query(["but in teal"], vocabulary())[0])
    merged = merge_evidence(photo, words)
    assert merged["category"] == photo["category"] and merged["colour"] == {"teal": 1.0}


@pytest.mark.parametrize("text", ["", "the", "!!!"])
def test_nothing_to_match(text):
    assert match_query([text], vocabulary())[0] == []

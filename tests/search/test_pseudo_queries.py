"""Pseudo-queries drawn from the catalog itself: the pure grading rules by hand, the queries graded kind first on
conftest's tiny catalog, reproducible for a seed, and ``train-reranker`` training on them without judgments."""

import json
import random
import re

import click
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import write_catalog
from indexer.store.reader import IndexStore
from search.rerank.pseudo import (capped_labels, code_words, field_priority, grade, grade_columns, kind_field,
                                  local_image, pseudo_queries)
from search.rerank.storage import read_reranker
from vitrina.commands.rerank import register


# -- the pure rules, by hand ----------------------------------------------------------------------------------
def test_kind_field_and_priority():
    fields = {"Colour": ("red", "blue"), "size": ("S", "M", "L"), "brand": ("A", "B", "C", "D"),
              "Material": ("wool", "silk"), "type": ("mug", "cap")}
    assert kind_field(fields) == "type"  # a kind-like name wins over more distinct values
    assert field_priority(fields) == ["type", "Colour", "Material", "size", "brand"]
    assert kind_field({**fields, "category": ("x", "y")}) == "category"  # category before type
    no_kind = {"brand": ("A", "B", "C", "D", "E"), "color": ("r", "g", "b"), "size": ("S", "M", "L", "XL")}
    assert kind_field(no_kind) == "brand"  # else: the most distinct values
    assert field_priority(no_kind) == ["brand", "color", "size"]
    assert kind_field({"b": ("1", "2"), "a": ("3", "4")}) == "a"  # ties by name
    assert kind_field({}) is None and field_priority({}) == []
    assert field_priority(no_kind, kind="size") == ["size", "color", "brand"]


def test_grade_counts_the_matched_prefix_kind_first():
    intent = [("category", "mug"), ("color", "red"), ("pattern", "striped"), ("material", "ceramic")]
    mug = {"category": "mug", "color": "red", "pattern": "striped", "material": "ceramic"}
    assert grade(intent, mug) == 3  # all four match: capped at 3
    assert grade(intent, {**mug, "material": "glass"}) == 3  # kind + colour + pattern
    assert grade(intent, {**mug, "pattern": "solid"}) == 2  # kind + colour
    assert grade(intent, {**mug, "color": "blue"}) == 1  # the right kind only, however much else matches
    assert grade(intent, {**mug, "category": "cap"}) == 0  # wrong kind: 0 whatever else matches
    assert grade(intent, {"category": "mug", "color": None}) == 1  # a missing value is a miss
    assert grade(intent, mug, cap=2) == 2 and grade([], mug) == 0
    assert grade([("category", "mug")], mug) == 1


def test_grade_columns_equals_grade_product_by_product():
    rng = random.Random(0)
    domains = {"category": ["mug", "cap", "bag"], "color": ["red", "blue", None], "brand": ["A", "B"]}
    products = [{f: rng.choice(vs) for f, vs in domains.items()} for _ in range(200)]
    columns = {f: np.array([p[f] for p in products], dtype=object) for f in domains}
    for _ in range(20):
        intent = [(f, rng.choice([v for v in domains[f] if v])) for f in ("category", "color", "brand") if rng.random() < 0.8]
        for cap in (2, 3):
            expected = [grade(intent, p, cap=cap) for p in products]
            assert grade_columns(intent, columns, len(products), cap=cap).tolist() == expected
    assert grade_columns([("unknown", "x")], columns, 3).tolist() == [0, 0, 0]


def test_demo_judgments_grade_in_the_same_order():
    """The demo generator's text grading: kind > colour > pattern > material > brand, like grade()."""
    from dataclasses import replace

    from vitrina.demo.catalog import _grade, _make_products

    p = replace(_make_products(1, 0, (1, 1))[0], category="mug", colour="red", pattern="striped", material="ceramic",
                brand="Aurora", model="AUR-123")
    ccp = {"category": "mug", "colour": "red", "pattern": "striped"}
    assert _grade(p, **ccp) == 3 and _grade(replace(p, material="glass"), **ccp) == 3
    assert _grade(replace(p, pattern="solid"), **ccp) == 2  # kind + colour
    assert _grade(replace(p, colour="blue"), **ccp) == 1  # the right kind only, even with the pattern
    assert _grade(replace(p, category="cap"), **ccp) == 0  # wrong kind
    assert _grade(p, **ccp, material="ceramic") == 3 and _grade(replace(p, material="glass"), **ccp, material="ceramic") == 3
    assert _grade(p, category="mug", colour="red") == 2 and _grade(p, category="mug") == 1
    assert _grade(p, category="mug", material="ceramic") == 2 and _grade(replace(p, material="glass"), category="mug", material="ceramic") == 1
    assert _grade(p, colour="red") == 1 and _grade(replace(p, colour="blue"), colour="red") == 0
    assert _grade(p, brand="Aurora", category="mug") == 2 and _grade(replace(p, brand="Bolt"), brand="Aurora", category="mug") == 1
    assert _grade(p, brand="Aurora") == 1 and _grade(replace(p, brand="Bolt"), brand="Aurora") == 0
    model = {"model": "AUR-123", "brand": "Aurora", "category": "mug"}
    assert _grade(p, **model) == 3 and _grade(replace(p, model="AUR-124"), **model) == 1
    assert _grade(replace(p, model="AUR-124", category="cap"), **model) == 0
    assert _grade(replace(p, model="BOL-1", brand="Bolt"), **model) == 0


def test_capped_labels_drop_whole_levels_from_the_lowest():
    ids = ["a", "b", "c", "d", "e", "f"]
    labels = np.array([3, 2, 2, 1, 1, 0])
    rng = random.Random(0)
    assert capped_labels(ids, labels, 10, rng) == {"a": 3, "b": 2, "c": 2, "d": 1, "e": 1}
    assert capped_labels(ids, labels, 4, rng) == {"a": 3, "b": 2, "c": 2}  # level 1 would not fit whole
    assert capped_labels(ids, labels, 1, rng) == {"a": 3}
    top = capped_labels(ids, np.array([2, 2, 2, 2, 1, 0]), 3, random.Random(5))
    assert len(top) == 3 and set(top.values()) == {2} and set(top) <= {"a", "b", "c", "d"}
    assert top == capped_labels(ids, np.array([2, 2, 2, 2, 1, 0]), 3, random.Random(5))


def test_code_words_are_rare_words_with_digits():
    titles = ["Aurora AUR-123 red mug", "Bolt B-77 cap (2-pack)", "Aurora aur-123 blue mug", "mug 500ml", "cap, 500ML!", "x 42"]
    assert code_words(titles) == [[], ["B-77", "2-pack"], [], [], [], []]  # shared (any case) or short: not codes


def test_local_image(tmp_path):
    photo = tmp_path / "a b.png"
    photo.write_bytes(b"x")
    assert local_image(str(photo)) == photo
    assert local_image("file://" + str(photo).replace(" ", "%20")) == photo
    assert local_image("https://shop.example/a.png") is None
    assert local_image("images/a.png") is None  # relative: no root to resolve it against
    assert local_image(str(tmp_path / "missing.png")) is None


# -- on conftest's tiny catalog -------------------------------------------------------------------------------
def _catalog_rows(catalog):
    """conftest's catalog as {product id: fields}; its matchable fields are category, color and brand."""
    out = {}
    for line in catalog.read_text().splitlines():
        r = json.loads(line)
        out[r["id"]] = {"category": r["category"], "color": r["color"], "brand": r["brand"], "title": r["title"],
                        "images": r["images"]}
    return out


PRIORITY = ("category", "color", "brand")


def _expected(query, rows):
    """The labels of ``query`` recomputed from the catalog rows, by the rules in search.rerank.pseudo."""
    labels = {}
    if query.image is not None:
        anchor = "P%03d" % int(re.match(r"p(\d+)_", query.image.name).group(1))
        own = rows[anchor]
        if query.text is None:  # photo: all of its fields; it is 3, the others at most 2
            intent = [(f, own[f]) for f in PRIORITY]
            labels = {pid: grade(intent, r, cap=2) for pid, r in rows.items()}
            labels[anchor] = 3
        else:  # photo + "in <value>": kind, the named value, then its other fields; the shown one is 0
            value = query.text.split()[-1]
            field = "color" if value in {r["color"] for r in rows.values()} else "brand"
            intent = [("category", own["category"]), (field, value)] + [(f, own[f]) for f in PRIORITY[1:] if f != field]
            labels = {pid: grade(intent, r) for pid, r in rows.items()}
            labels[anchor] = 0
    elif query.text.endswith("widget"):  # a title: its product 3 (the first one with it), the others at most 2
        anchors = [pid for pid, r in rows.items() if r["title"] == query.text]
        own = rows[anchors[0]]
        intent = [(f, own[f]) for f in PRIORITY]
        labels = {pid: grade(intent, r, cap=2) for pid, r in rows.items()}
        assert [pid for pid in anchors if query.labels.get(pid) == 3], query
        labels.update({pid: query.labels[pid] for pid in anchors if query.labels.get(pid) == 3})
    else:  # field values: exactly the named ones, in priority order
        words = query.text.split()
        named = {f: w for w in words for f in PRIORITY if w in {r[f] for r in rows.values()}}
        assert len(named) == len(words) and "category" in named, query.text
        labels = {pid: grade([(f, named[f]) for f in PRIORITY if f in named], r) for pid, r in rows.items()}
    return {pid: v for pid, v in labels.items() if v > 0}


def test_pseudo_queries_are_graded_kind_first_and_reproducible(built_index, catalog):
    rows = _catalog_rows(catalog)
    store = IndexStore.open(built_index)
    try:
        queries = pseudo_queries(store, count=80, seed=3)
        again = pseudo_queries(store, count=80, seed=3)
        other = pseudo_queries(store, count=80, seed=4)
        capped = pseudo_queries(store, count=20, seed=3, max_labels=10)
    finally:
        store.close()
    assert queries == again and queries != other  # the same for a seed
    assert len(queries) == 80 and len({q.query_id for q in queries}) == 80
    assert {q.kind for q in queries} == {"text", "photo", "text+photo"}
    assert len({(q.text, q.image) for q in queries}) == 80
    kinds = {"title": 0, "fields": 0}
    for q in queries:
        assert q.labels == _expected(q, rows), (q.text, q.image)
        assert q.labels and max(q.labels.values()) >= 1
        # kind first: every product with a label shares one category
        assert len({rows[pid]["category"] for pid in q.labels}) == 1, (q.text, q.image)
        if q.image is not None:
            assert q.image.is_absolute() and q.image.is_file()
        if q.kind == "text":
            kinds["title" if q.text.endswith("widget") else "fields"] += 1
    assert min(kinds.values()) > 0
    for q in capped:
        assert len(q.labels) <= 10 and set(q.labels.items()) <= set(_expected(q, rows).items())
        full = _expected(q, rows)
        if len(full) > 10:  # whole levels dropped from the lowest
            assert min(q.labels.values()) > min(full.values()) or len(set(full.values())) == 1


def test_code_queries_find_their_product(tmp_path, tiny_encoder):
    from indexer.pipeline import build_index

    catalog = write_catalog(tmp_path / "catalog", n=12)
    rows = [json.loads(line) for line in catalog.read_text().splitlines()]
    for i, r in enumerate(rows):
        r["title"] += f" {r['brand'][:2].upper()}-{100 + i}" if i % 2 == 0 else ""
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_index(catalog, tmp_path / "index", encoder=tiny_encoder, model_spec={"name": tiny_encoder.identity.name, "pretrained": None})
    store = IndexStore.open(tmp_path / "index")
    try:
        queries = pseudo_queries(store, count=20, seed=0, mix={"code": 1.0})
    finally:
        store.close()
    codes = {r["title"].split()[-1] for r in rows if "-" in r["title"]}
    assert len(codes) == 6 and {q.text.split()[-1] for q in queries} == codes  # every coded product, nothing else
    assert len(queries) <= 12 and {q.kind for q in queries} == {"text"}  # the code alone or after the brand
    by_id = {r["id"]: r for r in rows}
    for q in queries:
        code = q.text.split()[-1]
        anchor = next(r["id"] for r in rows if r["title"].endswith(" " + code))
        assert q.text in (code, f"{by_id[anchor]['brand']} {code}")
        assert q.labels == {r["id"]: 3 if r["id"] == anchor else 1 for r in rows
                            if r["category"] == by_id[anchor]["category"]}


def test_pseudo_queries_arguments(built_index):
    store = IndexStore.open(built_index)
    try:
        assert pseudo_queries(store, count=0) == []
        photos_only = pseudo_queries(store, count=10, seed=1, mix={"photo": 1.0})
        assert len(photos_only) == 10 and {q.kind for q in photos_only} == {"photo"}
        with pytest.raises(ValueError):
            pseudo_queries(store, count=5, mix={"clicks": 1.0})
        with pytest.raises(ValueError):
            pseudo_queries(store, count=5, max_labels=5)
        with pytest.raises(ValueError):
            pseudo_queries(store, count=5, kind="title")  # not a matchable field
    finally:
        store.close()


# -- the command ----------------------------------------------------------------------------------------------
@pytest.fixture
def cli():
    @click.group()
    def group() -> None:
        """Test group holding the re-ranker commands."""

    register(group)
    return group


def test_train_reranker_without_judgments_trains_on_pseudo_queries(cli, built_index, tiny_encoder, monkeypatch):
    monkeypatch.setattr("search.engine.load_encoder", lambda config: tiny_encoder)
    runner = CliRunner()
    result = runner.invoke(cli, ["train-reranker", "--index", str(built_index), "--pseudo-queries", "40", "--epochs", "2",
                                 "--id-queries", "4", "--seed", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["sources"] == {"judged": 0, "pseudo": 40}
    assert report["train_queries"] + report["val_queries"] + report["skipped"] == 44
    meta = read_reranker(report["reranker"]).meta
    assert meta["trained"]["sources"] == {"judged": 0, "pseudo": 40} and meta["trained"]["queries"] == 44
    refused = runner.invoke(cli, ["train-reranker", "--index", str(built_index), "--unjudged", "skip", "--epochs", "1"])
    assert refused.exit_code == 2 and "--unjudged skip" in refused.output
    assert "--pseudo-queries" in runner.invoke(cli, ["train-reranker", "--help"]).output

"""The demo catalog generator: determinism, variety, drawn colours, and judgments that match the catalog."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitrina.demo.catalog import (
    BRANDS,
    CATEGORIES,
    COLOUR_SPECS,
    COLOURS,
    MATERIALS,
    PATTERNS,
    DemoCatalogReport,
    generate_catalog,
)
from vitrina.demo.drawing import SHAPE_NAMES

SIZE = 96
PALETTE = np.array([c.rgb for c in COLOUR_SPECS], dtype=np.float32)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoCatalogReport:
    return generate_catalog(tmp_path_factory.mktemp("demo"), products=30, seed=3, image_size=SIZE, queries=40)


@pytest.fixture(scope="module")
def catalog(demo: DemoCatalogReport) -> list[dict]:
    return _rows(demo.catalog)


def test_constants_are_rich_enough() -> None:
    assert len(CATEGORIES) >= 12 and len(set(CATEGORIES)) == len(CATEGORIES)
    assert set(CATEGORIES) == set(SHAPE_NAMES)  # every category has its own silhouette
    assert len(COLOURS) >= 12 and len(PATTERNS) >= 4 and len(MATERIALS) >= 5 and len(BRANDS) >= 12
    assert all(c == c.lower() for c in CATEGORIES + COLOURS + PATTERNS + MATERIALS)
    assert all(c.synonyms for c in COLOUR_SPECS)
    # the palette stays distinguishable: no two colours closer than 60 in RGB
    d = np.sqrt(((PALETTE[:, None] - PALETTE[None]) ** 2).sum(-1)) + np.eye(len(PALETTE)) * 1e3
    assert d.min() > 60


def test_report_and_catalog_rows(demo: DemoCatalogReport, catalog: list[dict]) -> None:
    assert demo.products == len(catalog) == 30
    assert demo.images == sum(len(r["images"]) for r in catalog)
    keys = {"id", "title", "description", "images", "price", "category", "brand", "color", "pattern", "material"}
    for r in catalog:
        assert set(r) == keys
        assert r["category"] in CATEGORIES and r["color"] in COLOURS
        assert r["pattern"] in PATTERNS and r["material"] in MATERIALS and r["brand"] in BRANDS
        assert isinstance(r["price"], float) and r["price"] > 0 and round(r["price"], 2) == r["price"]
        assert r["brand"] in r["description"] and r["material"] in r["description"]
    assert len({r["id"] for r in catalog}) == 30


def test_photos_exist_decode_and_differ(demo: DemoCatalogReport, catalog: list[dict]) -> None:
    root = demo.catalog.parent
    for r in catalog:
        assert 2 <= len(r["images"]) <= 4
        digests = set()
        arrays = []
        for rel in r["images"]:
            assert rel.startswith(f"images/{r['id']}_")
            path = root / rel
            digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
            with Image.open(path) as im:
                assert im.size == (SIZE, SIZE) and im.mode == "RGB"
                arrays.append(np.asarray(im, dtype=np.float32))
        assert len(digests) == len(r["images"])
        # different pose/background/lighting, not just different noise
        assert np.abs(arrays[0] - arrays[1]).mean() > 10


def test_same_seed_is_byte_identical(demo: DemoCatalogReport, tmp_path: Path) -> None:
    again = generate_catalog(tmp_path, products=30, seed=3, image_size=SIZE, queries=40)
    assert again == DemoCatalogReport(catalog=tmp_path / "catalog.jsonl", products=demo.products,
                                      images=demo.images, query_photos=demo.query_photos,
                                      judgments_train=tmp_path / "judgments-train.jsonl",
                                      judgments_heldout=tmp_path / "judgments-heldout.jsonl")
    assert _digest(tmp_path) == _digest(demo.catalog.parent)


def test_other_seed_gives_disjoint_ids_and_other_images(catalog: list[dict], demo: DemoCatalogReport,
                                                          tmp_path: Path) -> None:
    other = generate_catalog(tmp_path, products=30, seed=4, image_size=SIZE, queries=0)
    rows = _rows(other.catalog)
    assert not {r["id"] for r in rows} & {r["id"] for r in catalog}
    mine = set(_digest(demo.catalog.parent / "images").values())
    assert not mine & set(_digest(tmp_path / "images").values())


def test_variety_over_200_products(tmp_path: Path) -> None:
    done: list[int] = []
    report = generate_catalog(tmp_path, products=200, seed=0, image_size=32, photos_per_product=(1, 1), queries=0,
                              progress=done.append)
    assert sum(done) == 200 and report.images == 200 and report.query_photos == 0
    rows = _rows(report.catalog)
    assert len({r["category"] for r in rows}) >= 12
    assert len({r["color"] for r in rows}) >= 12
    assert len({r["pattern"] for r in rows}) >= 4
    assert len({r["material"] for r in rows}) >= 8 and len({r["brand"] for r in rows}) >= 12
    titles = [r["title"] for r in rows]
    assert len(set(titles)) >= 150
    starts_with_brand = sum(any(t.startswith(b) for b in BRANDS) for t in titles)
    assert 0.1 * len(titles) < starts_with_brand < 0.9 * len(titles)
    assert len({len(t.split()) for t in titles}) >= 4
    # synonyms appear: some titles name the colour by another word than the canonical one
    assert sum(r["color"] not in r["title"].lower() for r in rows) >= 20
    per_category = Counter(r["category"] for r in rows)
    assert max(per_category.values()) - min(per_category.values()) <= 1  # categories are balanced


def _sq_dist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared distances between the rows of x (n, 3) and y (m, 3), as an (n, m) matrix."""
    return (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T


def _dominant_colour(path: Path) -> str:
    """The palette colour most object pixels are nearest to; background = close to some border pixel."""
    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB"), dtype=np.float32)
    ring = np.concatenate([a[:2].reshape(-1, 3), a[-2:].reshape(-1, 3), a[:, :2].reshape(-1, 3),
                           a[:, -2:].reshape(-1, 3)])[::3]
    px = a[::2, ::2].reshape(-1, 3)  # every other pixel is plenty, and 4x cheaper
    obj = px[_sq_dist(px, ring).min(1) >= 40.0**2]
    assert len(obj) > 0.05 * len(px), f"{path} shows almost no object"
    nearest = _sq_dist(obj, PALETTE).argmin(1)
    return COLOURS[int(np.bincount(nearest, minlength=len(COLOURS)).argmax())]


def test_product_colour_is_the_dominant_drawn_colour(demo: DemoCatalogReport, catalog: list[dict]) -> None:
    root = demo.catalog.parent
    checks = [(r["color"], _dominant_colour(root / rel)) for r in catalog for rel in r["images"]]
    hits = sum(want == got for want, got in checks)
    assert hits >= 0.85 * len(checks), [c for c in checks if c[0] != c[1]]
    # and it is not luck: against shuffled labels the same check fails
    shuffled = [c[0] for c in checks][7:] + [c[0] for c in checks][:7]
    assert sum(s == got for s, (_, got) in zip(shuffled, checks)) < 0.5 * len(checks)


def test_judgments(demo: DemoCatalogReport, catalog: list[dict]) -> None:
    assert demo.judgments_train.exists() and demo.judgments_heldout.exists()
    ids = {r["id"] for r in catalog}
    catalog_images = {rel for r in catalog for rel in r["images"]}
    catalog_digests = {hashlib.sha256((demo.catalog.parent / rel).read_bytes()).hexdigest()
                       for rel in catalog_images}
    queries: list[set[str]] = []
    kinds: set[str] = set()
    texts: list[set[str]] = []
    photos = set()
    for path in (demo.judgments_train, demo.judgments_heldout):
        rows = _rows(path)
        assert rows
        by_query: dict[str, list[dict]] = {}
        for row in rows:
            assert set(row) == {"query_id", "text", "image", "kind", "product_id", "label"}
            assert row["product_id"] in ids and row["label"] in (0, 1, 2, 3)
            assert row["kind"] in ("text", "photo", "text+photo")
            assert (row["text"] is not None) == (row["kind"] != "photo")
            assert (row["image"] is not None) == (row["kind"] != "text")
            if row["image"] is not None:
                image = path.parent / row["image"]
                assert row["image"] not in catalog_images and image.is_file()
                assert hashlib.sha256(image.read_bytes()).hexdigest() not in catalog_digests
                photos.add(row["image"])
            by_query.setdefault(row["query_id"], []).append(row)
        for qid, qrows in by_query.items():
            assert len({(r["text"], r["image"], r["kind"]) for r in qrows}) == 1, qid
            assert len({r["product_id"] for r in qrows}) == len(qrows), qid
            assert max(r["label"] for r in qrows) >= 1, qid
            assert 1 <= sum(r["label"] == 0 for r in qrows) <= 5, qid
        queries.append(set(by_query))
        kinds |= {r["kind"] for r in rows}
        texts.append({r["text"] for r in rows if r["kind"] == "text"})
    assert not queries[0] & queries[1]
    assert abs(len(queries[0]) - len(queries[1])) <= 1 and len(queries[0]) + len(queries[1]) == 40
    assert not texts[0] & texts[1]
    assert kinds == {"text", "photo", "text+photo"}
    assert demo.query_photos == len(photos)


def test_photo_query_labels_follow_attributes(demo: DemoCatalogReport, catalog: list[dict]) -> None:
    by_id = {r["id"]: r for r in catalog}
    rows = _rows(demo.judgments_train) + _rows(demo.judgments_heldout)
    photo = [r for r in rows if r["kind"] == "photo"]
    assert photo
    anchors = {r["query_id"]: by_id[r["product_id"]] for r in photo if r["label"] == 3}
    assert set(anchors) == {r["query_id"] for r in photo}  # exactly one shown product per photo query
    for r in photo:
        a, p = anchors[r["query_id"]], by_id[r["product_id"]]
        if r["label"] in (1, 2):
            assert (p["category"], p["color"]) == (a["category"], a["color"])
            assert (p["pattern"] == a["pattern"]) == (r["label"] == 2)
        elif r["label"] == 0:
            assert (p["category"], p["color"]) != (a["category"], a["color"])
    for r in rows:
        if r["kind"] == "text+photo" and r["label"] == 3:
            colour = by_id[r["product_id"]]["color"]
            assert colour in r["text"] or any(s in r["text"] for c in COLOUR_SPECS if c.name == colour
                                              for s in c.synonyms)


@pytest.mark.parametrize("kwargs", [{"products": 0}, {"photos_per_product": (3, 2)}, {"image_size": 8},
                                    {"seed": -1}, {"queries": -1}])
def test_bad_arguments_raise(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        generate_catalog(tmp_path, **kwargs)

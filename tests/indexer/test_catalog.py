import json

import pytest

from indexer.catalog import RowError, iter_products
from indexer.errors import CatalogError


def read(path):
    errors: list[RowError] = []
    return list(iter_products(path, on_error=errors.append)), errors


def test_jsonl_fields_attributes_and_relative_images(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({
        "id": "A1", "title": " Red shoe ", "description": "nice", "images": ["img/a.jpg", "https://x.test/b.png"],
        "price": "12.50", "category": "shoes", "brand": "Acme", "color": "red", "sizes": [40, 41],
    }) + "\n")
    (products, errors) = read(path)
    assert errors == []
    [p] = products
    assert (p.id, p.title, p.price, p.category, p.brand) == ("A1", "Red shoe", 12.5, "shoes", "Acme")
    assert p.images == (str(tmp_path / "img/a.jpg"), "https://x.test/b.png")
    assert p.attributes == {"color": "red", "sizes": "[40, 41]"}
    assert p.text == "Red shoe. nice"


def test_csv_pipe_separated_images_and_extra_columns(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("id,title,image,price,material\nB1,Bag,a.jpg|b.jpg,5,leather\nB2,Hat,,,\n")
    products, errors = read(path)
    assert errors == []
    assert products[0].images == (str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"))
    assert products[0].attributes == {"material": "leather"}
    assert products[1].images == () and products[1].price is None and products[1].attributes == {}


def test_bad_rows_are_reported_with_row_numbers_and_do_not_stop(tmp_path):
    path = tmp_path / "c.jsonl"
    lines = [
        json.dumps({"id": "ok1", "title": "fine"}),
        json.dumps({"title": "no id"}),
        "{not json",
        json.dumps({"id": "ok1", "title": "duplicate"}),
        json.dumps({"id": "p", "title": "t", "price": "cheap"}),
        json.dumps({"id": "n", "title": "t", "price": -3}),
        json.dumps({"id": "nan", "title": "t", "price": float("nan")}),
        json.dumps({"id": "empty"}),
        json.dumps(["a list"]),
        json.dumps({"id": "ftp", "title": "t", "image": "ftp://host/a.jpg"}),
        json.dumps({"id": "ok2", "title": "fine too"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    products, errors = read(path)
    assert [p.id for p in products] == ["ok1", "ok2"]
    by_row = {e.row: e.reason for e in errors}
    assert set(by_row) == {2, 3, 4, 5, 6, 7, 8, 9, 10}
    assert "missing id" in by_row[2]
    assert "invalid JSON" in by_row[3]
    assert "duplicate" in by_row[4]
    assert "price" in by_row[5] and "negative" in by_row[6] and "finite" in by_row[7]
    assert "nothing to index" in by_row[8]
    assert "http" in by_row[10]


def test_csv_row_with_too_many_cells_is_reported(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("id,title\nA,a,extra\nB,b\n")
    products, errors = read(path)
    assert [p.id for p in products] == ["B"]
    assert errors[0].row == 1 and "more cells" in errors[0].reason


def test_unreadable_catalogs_raise_catalog_error(tmp_path):
    with pytest.raises(CatalogError, match="not found"):
        list(iter_products(tmp_path / "missing.jsonl"))
    (tmp_path / "c.xml").write_text("<x/>")
    with pytest.raises(CatalogError, match="unknown catalog format"):
        list(iter_products(tmp_path / "c.xml"))
    (tmp_path / "noid.csv").write_text("title\nx\n")
    with pytest.raises(CatalogError, match="'id' column"):
        list(iter_products(tmp_path / "noid.csv"))

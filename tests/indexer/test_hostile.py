"""A hostile catalog, generated here, indexed in one run: every row accounted for, no crash."""

import csv
import io
import os

import pytest
from PIL import Image

from indexer.pipeline import build_index
from indexer.store.reader import IndexStore
from search import SearchEngine


def png(mode="RGB", size=(16, 16), colour=(200, 30, 30), **params) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format=params.pop("fmt", "PNG"), **params)
    return buffer.getvalue()


@pytest.fixture
def hostile(tmp_path):
    root = tmp_path / "shop"
    img = root / "img"
    img.mkdir(parents=True)
    (tmp_path / "outside.png").write_bytes(png())
    files = {
        "good.jpg": png(fmt="JPEG"),
        "zero.jpg": b"",
        "text.jpg": b"this is not an image\n",
        "drawing.svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
        "scan.tiff": png(fmt="TIFF"),
        "doc.pdf": b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n",
        "truncated.jpg": png(size=(64, 64), fmt="JPEG")[:200],
        "bomb.png": png(mode="1", size=(12000, 12000), colour=0),
        "cmyk.jpg": png(mode="CMYK", colour=(0, 255, 255, 0), fmt="JPEG"),
        "palette.gif": png(mode="P", colour=3, fmt="GIF", transparency=3),
        "deep.png": png(mode="I;16", colour=40000),
        "grey-alpha.png": png(mode="LA", colour=(90, 128)),
        "photo.webp": png(fmt="WEBP"),
        "old.bmp": png(fmt="BMP"),
    }
    for name, data in files.items():
        (img / name).write_bytes(data)
    os.symlink(tmp_path / "outside.png", img / "link-out.png")
    rows = [
        {"id": "ok", "title": "plain good product", "image": "img/good.jpg", "price": "10"},
        {"id": "", "title": "no id"},
        {"id": "ok", "title": "duplicate of the first"},
        {"id": "up", "title": "parent path", "image": "../outside.png"},
        {"id": "abs", "title": "absolute path", "image": str(tmp_path / "outside.png")},
        {"id": "sym", "title": "symlink out", "image": "img/link-out.png"},
        {"id": "long", "title": "x" * 5000, "image": "img/good.jpg"},
        {"id": "nan", "title": "nan price", "price": "nan"},
        {"id": "neg", "title": "negative price", "price": "-5"},
        {"id": "zero", "image": "img/zero.jpg"},
        {"id": "txt", "title": "text as jpg", "image": "img/text.jpg"},
        {"id": "svg", "title": "svg", "image": "img/drawing.svg"},
        {"id": "tiff", "title": "tiff", "image": "img/scan.tiff"},
        {"id": "pdf", "title": "pdf", "image": "img/doc.pdf"},
        {"id": "trunc", "title": "truncated", "image": "img/truncated.jpg"},
        {"id": "bomb", "title": "bomb", "image": "img/bomb.png"},
        {"id": "cmyk", "title": "cmyk", "image": "img/cmyk.jpg"},
        {"id": "gif", "title": "palette with transparency", "image": "img/palette.gif"},
        {"id": "deep", "title": "16-bit", "image": "img/deep.png"},
        {"id": "la", "title": "grey alpha", "image": "img/grey-alpha.png"},
        {"id": "webp", "title": "webp", "image": "img/photo.webp"},
        {"id": "bmp", "title": "bmp", "image": "img/old.bmp"},
        {"id": "many", "title": "many images", "image": "img/good.jpg|img/zero.jpg|img/missing.png|img/cmyk.jpg"},
        {"id": "url", "title": "metadata address", "image": "http://169.254.169.254/latest/meta-data/x.png"},
        {"id": "ftp", "title": "ftp url", "image": "ftp://example.com/a.png"},
        {"id": "'; DROP TABLE products; --", "title": "injection in the id"},
    ]
    path = root / "catalog.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "title", "image", "price"])
        writer.writeheader()
        writer.writerows(rows)
    with path.open("ab") as handle:
        handle.write(b"latin,caf\xe9 cr\xe8me,,3\n")  # not UTF-8
    return path, len(rows) + 1


def test_every_hostile_row_is_accounted_for(tmp_path, hostile, tiny_encoder):
    catalog, n_rows = hostile
    report = build_index(catalog, tmp_path / "idx", encoder=tiny_encoder)
    assert report.rows == n_rows
    problems = {}
    for p in report.problems:
        problems.setdefault(p.product_id, []).append(p)
    reason = lambda pid: " | ".join(p.reason for p in problems[pid])
    assert (report.skipped, report.failed) == (6, 1), report.to_json()
    assert any("missing id" in p.reason for p in report.problems)
    assert "duplicate" in reason("ok")
    for pid in ("up", "abs", "sym"):
        assert "outside the catalog's folder" in reason(pid)
    assert "truncated to 1000" in reason("long")
    assert "finite" in reason("nan") and "negative" in reason("neg")
    assert "empty" in reason("zero") and problems["zero"][-1].outcome == "failed"
    assert "not an image" in reason("txt") and "not an image" in reason("svg") and "not an image" in reason("pdf")
    assert "TIFF images are not accepted" in reason("tiff")
    assert "cannot decode" in reason("trunc")
    assert "pixel limit" in reason("bomb") or "bomb" in reason("bomb")
    assert "link-local" in reason("url") or "refused" in reason("url")
    assert "http" in reason("ftp")
    assert "UTF-8" in reason("latin")
    with IndexStore.open(tmp_path / "idx") as store:
        store.check()
        stored = store.product_ids()
        pks = store.product_pks(["cmyk", "gif", "deep", "la", "webp", "bmp", "many"])
        images = {pid: store.products([pk])[pk]["images"] for pid, pk in pks.items()}
    assert {"ok", "long", "cmyk", "gif", "deep", "la", "webp", "bmp", "many", "'; DROP TABLE products; --"} <= stored
    assert all(len(images[p]) == 1 for p in ("cmyk", "gif", "deep", "la", "webp", "bmp"))
    assert len(images["many"]) == 2
    with SearchEngine.open(tmp_path / "idx", encoder=tiny_encoder) as engine:
        hit = engine.search("x", where={"id": "'; DROP TABLE products; --"}, k=1)
        assert [h.product_id for h in hit] == ["'; DROP TABLE products; --"]
        assert len(engine.search("product", k=50)) == len(stored)

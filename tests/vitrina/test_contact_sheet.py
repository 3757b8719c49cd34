"""The contact sheet: a PNG of the right size, thumbnails in the right cells, placeholders for missing images."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
from PIL import Image

from vitrina.demo.contact_sheet import PLACEHOLDER, render_contact_sheet, sheet_layout

COLOURS = [(220, 30, 30), (30, 170, 60), (30, 60, 220), (240, 210, 40), (150, 40, 170), (20, 170, 190), (240, 120, 20)]
MISSING, NO_PRICE, CORRUPT = 2, 4, 5


def _close(pixel: tuple[int, ...], colour: tuple[int, int, int], tol: int = 24) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(pixel, colour))


def _hits(folder: Path) -> list[dict]:
    sizes = [(120, 80), (80, 120), (64, 64), (200, 50), (90, 90), (60, 60), (100, 70)]
    hits = []
    for i, (colour, size) in enumerate(zip(COLOURS, sizes)):
        path = folder / f"p{i}.{'jpg' if i % 2 else 'png'}"
        Image.new("RGB", size, colour).save(path)
        hits.append({
            "product_id": f"p{i:03d}", "score": 0.9 - 0.05 * i,
            "scores": {"image": 0.7, "text": 0.5, "fused": 0.9 - 0.05 * i},
            "image": str(path), "image_index": 0,
            "product": {"title": f"Product {i} with a fairly long title, Café × 日本 edition", "price": 10.0 * i,
                        "images": [str(path)]},
        })
    hits[MISSING]["image"] = str(folder / "gone.jpg")
    hits[NO_PRICE]["product"]["price"] = None
    hits[NO_PRICE]["scores"] = {"image": None, "text": None, "fused": None}
    (folder / "corrupt.png").write_bytes(b"not an image at all")
    hits[CORRUPT]["image"] = None  # falls back to product["images"][0], which is unreadable
    hits[CORRUPT]["product"]["images"] = [str(folder / "corrupt.png")]
    return hits


def _colours(image: Image.Image) -> int:
    return len(image.getcolors(image.width * image.height) or [])


def _centre(box: tuple[int, int, int, int]) -> tuple[int, int]:
    return (box[0] + box[2]) // 2, (box[1] + box[3]) // 2


def test_sheet_places_thumbnails_and_placeholders(tmp_path: Path) -> None:
    query = Image.new("RGB", (50, 40), (10, 200, 200))
    out = render_contact_sheet(
        _hits(tmp_path), tmp_path / "nested" / "sheet.png", query_text='"red dress" ×1.0  − "sleeveless" ×0.3',
        query_image=query, title="vitrina test", columns=3, thumb=96,
    )
    assert out == tmp_path / "nested" / "sheet.png"
    with Image.open(out) as opened:
        assert opened.format == "PNG"
        sheet = opened.convert("RGB")

    layout = sheet_layout(7, columns=3, thumb=96)
    rows = math.ceil(7 / 3)
    assert layout.rows == rows
    grid_h = rows * layout.card_h + (rows - 1) * layout.pad
    assert sheet.size == (layout.width, layout.header_h + 4 * layout.pad + grid_h)
    assert layout.card_box(6)[3] < sheet.height and layout.card_box(2)[2] < sheet.width

    assert _close(sheet.getpixel(_centre(layout.query_thumb_box())), (10, 200, 200))
    header = sheet.crop((0, 0, sheet.width, layout.header_h))
    assert _colours(header) > 10  # query photo and text were drawn

    for i, colour in enumerate(COLOURS):
        box = layout.thumb_box(i)
        centre = sheet.getpixel(_centre(box))
        if i in (MISSING, CORRUPT):
            assert sheet.getpixel((box[0] + 2, box[1] + 2)) == PLACEHOLDER
            assert not _close(centre, colour)
        else:
            assert _close(centre, colour), (i, centre, colour)


def test_letterbox_keeps_aspect(tmp_path: Path) -> None:
    wide = Image.new("RGB", (200, 50), (30, 60, 220))
    hit = {"product_id": "w", "score": 0.5, "scores": {}, "image": None, "product": {"title": "Wide", "price": 1.0,
                                                                                   "images": []}}
    buffer = io.BytesIO()
    wide.save(buffer, format="PNG")
    out = render_contact_sheet([hit], tmp_path / "wide.png", query_image=buffer.getvalue(), columns=1, thumb=100)
    layout = sheet_layout(1, columns=1, thumb=100)
    with Image.open(out) as sheet:
        left, top, right, bottom = layout.query_thumb_box()
        qx, qy = _centre((left, top, right, bottom))
        assert _close(sheet.getpixel((qx, qy)), (30, 60, 220))
        assert not _close(sheet.getpixel((qx, top + 2)), (30, 60, 220))  # letterboxed, not stretched
        assert sheet.getpixel((layout.thumb_box(0)[0] + 2, layout.thumb_box(0)[1] + 2)) == PLACEHOLDER


def test_zero_hits(tmp_path: Path) -> None:
    out = render_contact_sheet([], tmp_path / "empty.png", query_text='"nothing"')
    layout = sheet_layout(0)
    with Image.open(out) as sheet:
        assert sheet.size == (layout.width, layout.height)
        assert layout.rows == 0
        body = sheet.convert("RGB").crop((0, layout.header_h + 1, sheet.width, sheet.height))
        assert _colours(body) > 2  # the "no hits" message


def test_rejects_bad_geometry(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        render_contact_sheet([], tmp_path / "x.png", columns=0)

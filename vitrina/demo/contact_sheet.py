"""A contact sheet: one PNG that shows a query and its hits, so a person can look at results instead of ids.

:func:`render_contact_sheet` takes hits as ``Hit.to_json()`` mappings and draws a header band (title, query photo,
query description, hit count) over a grid of cards. A card shows the product's best-matching image letterboxed into
a square, its rank, id, price, a title of at most two lines and the score parts. An image that is missing or cannot be
read becomes a grey "no image" placeholder; nothing here touches the network. Text uses PIL's default font only;
characters that font has no glyph for are spelled in ASCII (``×`` → ``x``, ``é`` → ``e``) or shown as ``?``.
:func:`sheet_layout` is the pure geometry, so callers and tests can find each card's thumbnail.
"""

from __future__ import annotations

import io
import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from PIL import Image, ImageDraw, ImageFont, ImageOps

ImageSource = Union[str, Path, Image.Image, bytes, None]
Box = tuple[int, int, int, int]
Font = Union[ImageFont.FreeTypeFont, ImageFont.ImageFont]

BACKGROUND = (236, 238, 241)
HEADER = (255, 255, 255)
CARD = (255, 255, 255)
BORDER = (205, 209, 215)
LETTERBOX = (250, 250, 250)
PLACEHOLDER = (200, 200, 200)
INK = (33, 37, 41)
MUTED = (108, 117, 125)
ACCENT = (13, 110, 253)
_ASCII = {"×": "x", "−": "-", "–": "-", "—": "-", "…": "...", "‘": "'", "’": "'", "“": '"', "”": '"'}


@dataclass(frozen=True, kw_only=True)
class SheetLayout:
    """Pixel geometry of a sheet; every box is ``(left, top, right, bottom)``, right/bottom exclusive."""

    columns: int
    rows: int
    thumb: int
    pad: int
    card_w: int
    card_h: int
    header_h: int
    width: int
    height: int

    def card_box(self, index: int) -> Box:
        row, col = divmod(index, self.columns)
        left = self.pad * 2 + col * (self.card_w + self.pad)
        top = self.header_h + self.pad * 2 + row * (self.card_h + self.pad)
        return left, top, left + self.card_w, top + self.card_h

    def thumb_box(self, index: int) -> Box:
        left, top, _, _ = self.card_box(index)
        return left + self.pad, top + self.pad, left + self.pad + self.thumb, top + self.pad + self.thumb

    def query_thumb_box(self) -> Box:
        size = self.header_h - 2 * self.pad
        return self.pad * 2, self.pad, self.pad * 2 + size, self.pad + size


class _Fonts:
    """The default font at two sizes, with glyph checks so missing characters never draw as boxes."""

    def __init__(self, thumb: int):
        self.body = _default_font(max(10, round(thumb / 12)))
        self.big = _default_font(max(13, round(thumb / 8)))
        self.line, self.big_line = _line_height(self.body), _line_height(self.big)
        self._known: dict[tuple[int, str], bool] = {(id(f), " "): True for f in (self.body, self.big)}

    def clean(self, text: str, font: Font) -> str:
        return "".join(self._char(ch, font) for ch in " ".join(str(text).split()))

    def _char(self, ch: str, font: Font) -> str:
        if self._has(ch, font):
            return ch
        if ch in _ASCII:
            return _ASCII[ch]
        plain = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
        return plain if plain and all(self._has(c, font) for c in plain) else "?"

    def _has(self, ch: str, font: Font) -> bool:
        key = (id(font), ch)
        return self._known[key] if key in self._known else self._known.setdefault(key, _has_glyph(font, ch))


def sheet_layout(n_hits: int, *, columns: int = 5, thumb: int = 160) -> SheetLayout:
    """The geometry of a sheet for ``n_hits`` cards (zero hits leaves room for a one-line message)."""
    if columns < 1 or thumb < 32:
        raise ValueError("columns must be >= 1 and thumb >= 32")
    fonts = _Fonts(thumb)
    pad = max(6, thumb // 20)
    card_w = thumb + 2 * pad
    card_h = pad + thumb + pad // 2 + 4 * fonts.line + pad
    header_h = max(thumb * 3 // 4, fonts.big_line + 3 * fonts.line + pad) + 2 * pad
    rows = math.ceil(n_hits / columns)
    width = 4 * pad + columns * card_w + (columns - 1) * pad
    body = rows * card_h + (rows - 1) * pad if rows else fonts.big_line + 2 * pad
    return SheetLayout(columns=columns, rows=rows, thumb=thumb, pad=pad, card_w=card_w, card_h=card_h,
                       header_h=header_h, width=width, height=header_h + 4 * pad + body)


def render_contact_sheet(
    hits: Sequence[Mapping[str, Any]],
    out_path: str | Path,
    *,
    query_text: str | None = None,
    query_image: ImageSource = None,
    title: str | None = None,
    columns: int = 5,
    thumb: int = 160,
) -> Path:
    """Draw the query and its hits (``Hit.to_json()`` mappings, best first) into a PNG; return its path."""
    layout = sheet_layout(len(hits), columns=columns, thumb=thumb)
    fonts = _Fonts(thumb)
    sheet = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    _draw_header(sheet, draw, fonts, layout, title=title, query_text=query_text, query_image=query_image,
                 n_hits=len(hits))
    if not hits:
        draw.text((2 * layout.pad, layout.header_h + 2 * layout.pad), "no hits", font=fonts.big, fill=MUTED)
    for index, hit in enumerate(hits):
        _draw_card(sheet, draw, fonts, layout, index, hit)
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
    return path


def _draw_header(sheet: Image.Image, draw: ImageDraw.ImageDraw, fonts: _Fonts, layout: SheetLayout, *,
                 title: str | None, query_text: str | None, query_image: ImageSource, n_hits: int) -> None:
    pad = layout.pad
    draw.rectangle((0, 0, layout.width - 1, layout.header_h - 1), fill=HEADER)
    draw.line((0, layout.header_h - 1, layout.width - 1, layout.header_h - 1), fill=BORDER)
    x = 2 * pad
    if query_image is not None:
        box = layout.query_thumb_box()
        _paste_thumb(sheet, draw, fonts, box, _load(query_image, box[2] - box[0]))
        draw.rectangle((box[0] - 1, box[1] - 1, box[2], box[3]), outline=BORDER)
        x = box[2] + 2 * pad
    width = layout.width - x - 2 * pad
    y = pad
    heading = fonts.clean(title or "vitrina search", fonts.big)
    draw.text((x, y), _fit(draw, heading, fonts.big, width), font=fonts.big, fill=INK)
    y += fonts.big_line + pad // 2
    query = fonts.clean(f"query: {query_text}" if query_text else "query: (no text)", fonts.body)
    for line in _wrap(draw, query, fonts.body, width, max_lines=2):
        draw.text((x, y), line, font=fonts.body, fill=INK)
        y += fonts.line
    draw.text((x, y), f"{n_hits} hit{'' if n_hits == 1 else 's'}", font=fonts.body, fill=MUTED)


def _draw_card(sheet: Image.Image, draw: ImageDraw.ImageDraw, fonts: _Fonts, layout: SheetLayout, index: int,
               hit: Mapping[str, Any]) -> None:
    left, top, right, bottom = layout.card_box(index)
    draw.rectangle((left, top, right - 1, bottom - 1), fill=CARD, outline=BORDER)
    box = layout.thumb_box(index)
    _paste_thumb(sheet, draw, fonts, box, _load(_hit_image(hit), layout.thumb))
    font, width, x = fonts.body, layout.thumb, box[0]
    y = box[3] + layout.pad // 2
    product = hit.get("product") or {}
    price = _num(product.get("price"), 2, "n/a")
    price_w = round(draw.textlength(price, font=font))
    rank = f"#{index + 1} "
    draw.text((x, y), rank, font=font, fill=ACCENT)
    rank_w = round(draw.textlength(rank, font=font))
    ident = _fit(draw, fonts.clean(str(hit.get("product_id", "?")), font), font, width - rank_w - price_w - 6)
    draw.text((x + rank_w, y), ident, font=font, fill=INK)
    draw.text((x + width - price_w, y), price, font=font, fill=INK)
    y += fonts.line
    for line in _wrap(draw, fonts.clean(str(product.get("title") or "(untitled)"), font), font, width, max_lines=2):
        draw.text((x, y), line, font=font, fill=INK)
        y += fonts.line
    y = box[3] + layout.pad // 2 + 3 * fonts.line
    parts = _score_parts(hit)
    line = "  ".join(parts)
    if draw.textlength(line, font=font) > width:  # tighten before cutting, so the rerank part survives
        line = " ".join(parts).replace(" 0.", " .")
    draw.text((x, y), _fit(draw, line, font, width), font=font, fill=MUTED)


def _hit_image(hit: Mapping[str, Any]) -> str | None:
    if hit.get("image"):
        return str(hit["image"])
    images = (hit.get("product") or {}).get("images") or []
    return str(images[0]) if images and images[0] else None


def _score_parts(hit: Mapping[str, Any]) -> list[str]:
    scores = hit.get("scores") or {}
    parts = [_num(hit.get("score", scores.get("fused")), 3)]
    for key, label in (("image", "img"), ("text", "txt"), ("rerank", "rr")):
        if scores.get(key) is not None:
            parts.append(f"{label} {_num(scores[key], 2)}")
    return parts


def _num(value: Any, digits: int, missing: str = "-") -> str:
    try:
        return f"{float(value):,.{digits}f}"
    except (TypeError, ValueError):
        return missing


def _load(source: ImageSource, size: int) -> Image.Image | None:
    """The source as an RGB image at most ``size`` square, or None when it is missing or unreadable."""
    if source is None:
        return None
    try:
        if isinstance(source, Image.Image):
            image = source.copy()
        else:
            if isinstance(source, (str, Path)) and not Path(source).is_file():
                return None
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as opened:
                opened.draft("RGB", (size, size))
                image = opened.copy()
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, LETTERBOX)
            image.paste(rgba, mask=rgba.getchannel("A"))
        image = image.convert("RGB")
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        return image
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _paste_thumb(sheet: Image.Image, draw: ImageDraw.ImageDraw, fonts: _Fonts, box: Box,
                 image: Image.Image | None) -> None:
    left, top, right, bottom = box
    if image is None:
        draw.rectangle((left, top, right - 1, bottom - 1), fill=PLACEHOLDER)
        x0, y0, x1, y1 = draw.textbbox((0, 0), "no image", font=fonts.body)
        centre = ((left + right - x1 - x0) // 2, (top + bottom - y1 - y0) // 2)
        draw.text(centre, "no image", font=fonts.body, fill=MUTED)
        return
    draw.rectangle((left, top, right - 1, bottom - 1), fill=LETTERBOX)
    sheet.paste(image, (left + (right - left - image.width) // 2, top + (bottom - top - image.height) // 2))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Font, width: int, *, max_lines: int) -> list[str]:
    """Greedy word wrap into at most ``max_lines`` lines; over-long words break; the last line ends in '...'."""
    lines: list[str] = []
    rest = text.split()
    while rest and len(lines) < max_lines:
        line = rest.pop(0)
        while draw.textlength(line, font=font) > width and len(line) > 1:  # one word too wide: break it
            cut = len(line) - 1
            while cut > 1 and draw.textlength(line[:cut], font=font) > width:
                cut -= 1
            rest.insert(0, line[cut:])
            line = line[:cut]
        while rest and draw.textlength(f"{line} {rest[0]}", font=font) <= width:
            line = f"{line} {rest.pop(0)}"
        lines.append(line)
    if rest and lines:
        lines[-1] = _fit(draw, f"{lines[-1]} {' '.join(rest)}", font, width)
    return lines


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Font, width: int) -> str:
    """``text`` cut to ``width`` pixels, ending in '...' when cut."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text.rstrip() + "..."


def _default_font(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: scalable
    except (TypeError, ImportError, OSError, AttributeError):
        return ImageFont.load_default()


def _line_height(font: Font) -> int:
    if isinstance(font, ImageFont.FreeTypeFont):
        ascent, descent = font.getmetrics()
        return ascent + descent + 2
    return font.getbbox("Ag")[3] + 3


def _has_glyph(font: Font, ch: str) -> bool:
    try:
        mask = bytes(font.getmask(ch))
    except (UnicodeError, ValueError, OSError):
        return False
    if not isinstance(font, ImageFont.FreeTypeFont):
        return True
    return mask != bytes(font.getmask("\ue000"))  # a private-use character draws the font's "missing" box

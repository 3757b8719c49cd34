"""Procedural product photos for the demo catalog, drawn with PIL shapes only.

A :class:`Look` is what one product looks like (category silhouette, colours, pattern, finish); it is fixed for the
product, so all its photos show the same item. :func:`render_photo` draws one photo of a look with a random pose,
background, lighting and noise taken from the generator it is given, so the same generator state gives the same
pixels. Shapes are described in a unit box (x right, y down) and pushed through one affine pose, so patterns stay
painted on the object and are masked to its silhouette. Drawing happens at twice the size and is reduced once, for
antialiased edges.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Union

# "cast" is a local name in render_photo (the colour cast), hence the alias
from typing import cast as typing_cast

import numpy as np
from PIL import Image, ImageChops, ImageDraw

RGB = tuple[int, int, int]
# Paint of a primitive: "body" adds to the silhouette (patterned), "cut" removes from it; a detail paint is drawn
# on top: ("shade", factor of the primary), ("contrast",) the pattern's secondary colour, ("rgb", colour).
Paint = Union[str, tuple[Any, ...]]

SHAPE_NAMES: tuple[str, ...]  # the drawable categories, set below from _SHAPES
FINISHES = ("matte", "grain", "gloss")


@dataclass(frozen=True, kw_only=True)
class Look:
    """The product-level appearance, shared by all photos of one product."""

    category: str
    primary: RGB
    secondary: RGB
    pattern: str  # one of solid, striped, dotted, checked, zigzag
    pattern_period: float = 0.14  # in units of the shape box
    pattern_angle: float = 0.0  # degrees, in the object's frame
    pattern_phase: float = 0.0
    finish: str = "matte"
    stretch: tuple[float, float] = (1.0, 1.0)


def random_look(rng: random.Random, *, category: str, rgb: RGB, pattern: str, glossy: bool) -> Look:
    """A product's look: its colour jittered a little, a contrasting secondary colour (light on dark colours, dark
    on light ones) for the pattern, the pattern's scale and angle, and a finish (glossy materials shine)."""
    r, g, b = (min(255, max(0, c + rng.randint(-12, 12))) for c in rgb)
    dark = 0.299 * r + 0.587 * g + 0.114 * b < 150
    secondary = rng.choice([(246, 246, 240), (250, 238, 214)] if dark else [(28, 28, 32), (52, 36, 30)])
    finish = "gloss" if glossy else ("grain" if rng.random() < 0.6 else "matte")
    return Look(category=category, primary=(r, g, b), secondary=secondary, pattern=pattern,
                pattern_period=rng.uniform(0.12, 0.17), pattern_angle=rng.choice([0.0, 0.0, 90.0, 45.0]),
                pattern_phase=rng.random(), finish=finish,
                stretch=(rng.uniform(0.92, 1.08), rng.uniform(0.92, 1.08)))


@dataclass(frozen=True, kw_only=True)
class _Prim:
    kind: str  # "poly" | "line"
    points: np.ndarray  # (n, 2) unit coordinates
    paint: Paint = "body"
    width: float = 0.0  # lines only, in units of the shape box


def _poly(*pts: tuple[float, float], paint: Paint = "body") -> _Prim:
    return _Prim(kind="poly", points=np.array(pts, dtype=np.float64), paint=paint)


def _ell(cx: float, cy: float, rx: float, ry: float, paint: Paint = "body", a0: float = 0.0, a1: float = 360.0,
         n: int = 28) -> _Prim:
    t = np.radians(np.linspace(a0, a1, n, endpoint=(a1 - a0) < 360.0))
    return _Prim(kind="poly", points=np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1), paint=paint)


def _line(*pts: tuple[float, float], w: float, paint: Paint = "body") -> _Prim:
    return _Prim(kind="line", points=np.array(pts, dtype=np.float64), paint=paint, width=w)


def _vase_profile() -> _Prim:
    ys = np.linspace(0.08, 0.94, 18)
    r = 0.10 + 0.26 * np.exp(-((ys - 0.64) / 0.2) ** 2) + 0.05 * (ys < 0.16)
    right = np.stack([0.5 + r, ys], axis=1)
    left = np.stack([0.5 - r, ys], axis=1)[::-1]
    return _Prim(kind="poly", points=np.concatenate([right, left]), paint="body")


def _cushion() -> _Prim:
    t = np.linspace(0.0, 1.0, 9)[:-1]
    bow = 0.06 * np.sin(np.pi * t)
    top = np.stack([0.1 + 0.8 * t, 0.1 + bow], axis=1)
    right = np.stack([0.9 - bow, 0.1 + 0.8 * t], axis=1)
    bottom = np.stack([0.9 - 0.8 * t, 0.9 - bow], axis=1)
    left = np.stack([0.1 + bow, 0.9 - 0.8 * t], axis=1)
    return _Prim(kind="poly", points=np.concatenate([top, right, bottom, left]), paint="body")


_SHAPES: dict[str, tuple[_Prim, ...]] = {
    "t-shirt": (
        _poly((0.36, 0.08), (0.64, 0.08), (0.93, 0.24), (0.83, 0.44), (0.72, 0.38), (0.72, 0.94), (0.28, 0.94),
              (0.28, 0.38), (0.17, 0.44), (0.07, 0.24)),
        _ell(0.5, 0.07, 0.09, 0.07, paint="cut"),
        _line((0.29, 0.90), (0.71, 0.90), w=0.02, paint=("shade", 0.7)),
    ),
    "dress": (
        _poly((0.37, 0.05), (0.42, 0.05), (0.44, 0.19), (0.56, 0.19), (0.58, 0.05), (0.63, 0.05), (0.65, 0.25),
              (0.60, 0.42), (0.90, 0.95), (0.10, 0.95), (0.40, 0.42), (0.35, 0.25)),
        _line((0.40, 0.42), (0.60, 0.42), w=0.03, paint=("shade", 0.6)),
    ),
    "trousers": (
        _poly((0.27, 0.05), (0.73, 0.05), (0.78, 0.95), (0.56, 0.95), (0.50, 0.36), (0.44, 0.95), (0.22, 0.95)),
        _poly((0.27, 0.05), (0.73, 0.05), (0.734, 0.11), (0.266, 0.11), paint=("shade", 0.7)),
        _line((0.50, 0.11), (0.50, 0.30), w=0.015, paint=("shade", 0.6)),
    ),
    "sneakers": (
        _poly((0.04, 0.70), (0.06, 0.52), (0.22, 0.46), (0.40, 0.32), (0.56, 0.30), (0.62, 0.42), (0.80, 0.50),
              (0.95, 0.60), (0.96, 0.70)),
        _poly((0.02, 0.68), (0.98, 0.68), (0.97, 0.78), (0.04, 0.79), paint=("contrast",)),
        _line((0.42, 0.40), (0.50, 0.46), w=0.02, paint=("contrast",)),
        _line((0.48, 0.36), (0.56, 0.42), w=0.02, paint=("contrast",)),
        _line((0.54, 0.32), (0.61, 0.38), w=0.02, paint=("contrast",)),
    ),
    "boots": (
        _poly((0.30, 0.04), (0.62, 0.04), (0.63, 0.54), (0.88, 0.70), (0.93, 0.86), (0.22, 0.86), (0.27, 0.50)),
        _poly((0.20, 0.86), (0.94, 0.86), (0.94, 0.95), (0.20, 0.95), paint=("shade", 0.3)),
        _poly((0.30, 0.04), (0.62, 0.04), (0.62, 0.11), (0.30, 0.11), paint=("shade", 0.7)),
    ),
    "handbag": (
        _poly((0.17, 0.40), (0.83, 0.40), (0.93, 0.93), (0.07, 0.93)),
        _line((0.30, 0.42), (0.33, 0.18), (0.50, 0.09), (0.67, 0.18), (0.70, 0.42), w=0.055),
        _poly((0.17, 0.40), (0.83, 0.40), (0.79, 0.58), (0.50, 0.67), (0.21, 0.58), paint=("shade", 0.78)),
        _ell(0.5, 0.64, 0.035, 0.035, paint=("rgb", (212, 175, 55))),
    ),
    "backpack": (
        _ell(0.5, 0.32, 0.31, 0.22),
        _poly((0.19, 0.32), (0.81, 0.32), (0.82, 0.93), (0.18, 0.93)),
        _line((0.42, 0.12), (0.44, 0.04), (0.56, 0.04), (0.58, 0.12), w=0.035),
        _poly((0.29, 0.58), (0.71, 0.58), (0.72, 0.88), (0.28, 0.88), paint=("shade", 0.75)),
        _line((0.30, 0.63), (0.70, 0.63), w=0.015, paint=("contrast",)),
    ),
    "cap": (
        _ell(0.44, 0.64, 0.36, 0.42, a0=180.0, a1=360.0, n=20),
        _poly((0.64, 0.56), (0.97, 0.60), (0.95, 0.70), (0.62, 0.66)),
        _line((0.09, 0.61), (0.79, 0.61), w=0.035, paint=("shade", 0.7)),
        _ell(0.44, 0.23, 0.04, 0.025, paint=("shade", 0.6)),
    ),
    "mug": (
        _poly((0.18, 0.18), (0.70, 0.18), (0.70, 0.86), (0.64, 0.92), (0.24, 0.92), (0.18, 0.86)),
        _ell(0.74, 0.53, 0.17, 0.21),
        _ell(0.76, 0.53, 0.08, 0.12, paint="cut"),
        _ell(0.44, 0.18, 0.26, 0.045, paint=("shade", 0.45)),
    ),
    "lamp": (
        _poly((0.31, 0.06), (0.69, 0.06), (0.88, 0.50), (0.12, 0.50)),
        _line((0.50, 0.50), (0.50, 0.88), w=0.05),
        _ell(0.5, 0.90, 0.22, 0.055),
        _line((0.14, 0.48), (0.86, 0.48), w=0.02, paint=("shade", 0.7)),
    ),
    "chair": (
        _poly((0.26, 0.05), (0.74, 0.05), (0.76, 0.48), (0.24, 0.48)),
        _poly((0.19, 0.46), (0.81, 0.46), (0.87, 0.59), (0.13, 0.59)),
        _line((0.17, 0.58), (0.15, 0.96), w=0.05),
        _line((0.83, 0.58), (0.85, 0.96), w=0.05),
        _line((0.33, 0.58), (0.34, 0.86), w=0.04),
        _line((0.67, 0.58), (0.66, 0.86), w=0.04),
        _line((0.26, 0.47), (0.74, 0.47), w=0.02, paint=("shade", 0.65)),
    ),
    "vase": (
        _vase_profile(),
        _ell(0.5, 0.085, 0.15, 0.03, paint=("shade", 0.45)),
    ),
    "cushion": (
        _cushion(),
        _ell(0.5, 0.5, 0.035, 0.035, paint=("shade", 0.6)),
    ),
    "watch": (
        _poly((0.36, 0.01), (0.64, 0.01), (0.64, 0.99), (0.36, 0.99)),
        _ell(0.5, 0.5, 0.27, 0.27),
        _ell(0.5, 0.5, 0.18, 0.18, paint=("contrast",)),
        _line((0.5, 0.5), (0.5, 0.37), w=0.025, paint=("shade", 0.5)),
        _line((0.5, 0.5), (0.6, 0.55), w=0.02, paint=("shade", 0.5)),
    ),
    "sunglasses": (
        _ell(0.27, 0.52, 0.22, 0.17),
        _ell(0.73, 0.52, 0.22, 0.17),
        _line((0.44, 0.44), (0.50, 0.41), (0.56, 0.44), w=0.04),
        _line((0.06, 0.44), (0.02, 0.36), w=0.035),
        _line((0.94, 0.44), (0.98, 0.36), w=0.035),
        _line((0.17, 0.46), (0.24, 0.42), w=0.025, paint=("rgb", (245, 245, 245))),
        _line((0.63, 0.46), (0.70, 0.42), w=0.025, paint=("rgb", (245, 245, 245))),
    ),
}
SHAPE_NAMES = tuple(_SHAPES)

_BACKGROUNDS: tuple[RGB, ...] = (
    (246, 245, 241), (236, 231, 222), (222, 226, 232), (206, 206, 204), (238, 228, 214), (226, 236, 240),
    (242, 232, 236), (188, 196, 190), (150, 150, 148), (96, 98, 104), (62, 64, 72), (118, 106, 94), (40, 42, 46),
    (170, 180, 196),
)


def _dist(a: RGB, b: RGB) -> float:
    return math.dist(a, b)


def _paint_colour(paint: tuple[Any, ...], look: Look) -> RGB:
    if paint[0] == "shade":
        return tuple(int(round(c * paint[1])) for c in look.primary)  # type: ignore[return-value]
    if paint[0] == "contrast":
        return look.secondary
    return typing_cast(RGB, paint[1])


class _Pose:
    """Affine map from unit shape coordinates to pixels: p = (u - 0.5) @ A.T + c."""

    def __init__(self, a: np.ndarray, c: np.ndarray) -> None:
        self.a, self.c = a, c
        self.scale = math.sqrt(abs(np.linalg.det(a)))

    def apply(self, pts: np.ndarray, extra: np.ndarray | None = None) -> list[tuple[float, float]]:
        a = self.a if extra is None else self.a @ extra
        out = (pts - 0.5) @ a.T + self.c
        return [tuple(p) for p in out.tolist()]


def _choose_pose(look: Look, shape: tuple[_Prim, ...], width: int, rng: np.random.Generator) -> _Pose:
    theta = math.radians(rng.uniform(-20.0, 20.0))
    flip = -1.0 if rng.random() < 0.5 else 1.0
    sx = look.stretch[0] * rng.uniform(0.96, 1.04)
    sy = look.stretch[1] * rng.uniform(0.96, 1.04)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    base = rot @ np.diag([flip * sx, sy])
    body = np.concatenate([p.points for p in shape if p.paint != "cut"]) - 0.5
    ext = body @ base.T
    lo, hi = ext.min(axis=0), ext.max(axis=0)
    extent = float((hi - lo).max())
    scale = rng.uniform(0.6, 0.9) * width / extent
    lo, hi = lo * scale, hi * scale
    margin = 0.04 * width
    cx = rng.uniform(margin - lo[0], max(margin - lo[0], width - margin - hi[0]))
    cy = rng.uniform(margin - lo[1], max(margin - lo[1], width - margin - hi[1]))
    return _Pose(base * scale, np.array([cx, cy]))


def _draw_pattern(draw: ImageDraw.ImageDraw, look: Look, pose: _Pose) -> None:
    p = look.pattern_period
    t = math.radians(look.pattern_angle)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    ph = look.pattern_phase * p
    n = int(1.8 / p) + 2
    starts = [-0.4 + ph + k * p for k in range(n)]
    col = look.secondary
    if look.pattern == "striped":
        for v in starts:
            quad = np.array([(-0.4, v), (1.4, v), (1.4, v + 0.3 * p), (-0.4, v + 0.3 * p)])
            draw.polygon(pose.apply(quad, rot), fill=col)
    elif look.pattern == "dotted":
        r = 0.25 * p * pose.scale
        for j, v in enumerate(starts):
            off = 0.5 * p if j % 2 else 0.0
            centres = np.array([(u + off, v) for u in starts])
            for x, y in pose.apply(centres, rot):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=col)
    elif look.pattern == "checked":  # a windowpane check: thin bands both ways, about a third of the area
        w = 0.16 * p
        for v in starts:
            band = np.array([(-0.4, v), (1.4, v), (1.4, v + w), (-0.4, v + w)])
            draw.polygon(pose.apply(band, rot), fill=col)
            draw.polygon(pose.apply(band[:, ::-1], rot), fill=col)
    elif look.pattern == "zigzag":
        t = 0.2 * p  # band thickness, measured vertically
        xs = [-0.4 + k * 0.5 * p for k in range(2 * n)]
        for v in starts:
            top = [(x, v + (0.4 * p if k % 2 else 0.0)) for k, x in enumerate(xs)]
            band = np.array(top + [(x, y + t) for x, y in reversed(top)])
            draw.polygon(pose.apply(band, rot), fill=col)


def _background(size: int, primary: RGB, rng: np.random.Generator) -> Image.Image:
    ok = [c for c in _BACKGROUNDS if _dist(c, primary) > 110.0] or list(_BACKGROUNDS)
    c1 = np.array(ok[int(rng.integers(len(ok)))], dtype=np.float32)
    c2 = np.clip(c1 + rng.uniform(-28.0, 28.0), 0, 255)
    ramp = _ramp(8, rng.uniform(0.0, 2 * math.pi)) + 0.5
    small = np.clip(c1 + (c2 - c1) * ramp[..., None] + 0.5, 0, 255).astype(np.uint8)
    bg = Image.fromarray(small, "RGB").resize((size, size), Image.Resampling.BILINEAR)
    if rng.random() < 0.35:  # a table top under the object
        top = int(size * rng.uniform(0.62, 0.8))
        table = ok[int(rng.integers(len(ok)))]
        dim = rng.uniform(0.85, 1.0)
        ImageDraw.Draw(bg).rectangle((0, top, size, size), fill=tuple(int(c * dim) for c in table))
    return bg


def _ramp(size: int, angle: float) -> np.ndarray:
    """A linear ramp in [-0.5, 0.5] across a square along ``angle``."""
    g = np.linspace(-0.5, 0.5, size, dtype=np.float32) * np.float32(math.sqrt(0.5))
    ramp: np.ndarray = math.cos(angle) * g[None, :] + math.sin(angle) * g[:, None]
    return ramp


_BANK_SIDE = 512


@lru_cache(maxsize=None)
def _noise_bank(sigma: float, mono: bool) -> Image.Image:
    """A fixed image of 128 + Gaussian noise; photos add random crops of it (much cheaper than fresh noise)."""
    rng = np.random.default_rng(20240607 + int(sigma * 10) + 1000 * mono)
    n = rng.standard_normal((_BANK_SIDE, _BANK_SIDE, 1 if mono else 3), dtype=np.float32)
    n = np.repeat(n, 3, axis=2) if mono else n
    return Image.fromarray(np.clip(128.5 + sigma * n, 0, 255).astype(np.uint8), "RGB")


def _add_noise(img: Image.Image, sigma: float, rng: np.random.Generator, *, mono: bool = False) -> Image.Image:
    size = img.size[0]
    reps = -(-size // _BANK_SIDE)
    bank = _noise_bank(sigma, mono)
    if reps > 1:  # very large photos: tile the bank
        tiled = Image.new("RGB", (reps * _BANK_SIDE, reps * _BANK_SIDE))
        for i in range(reps):
            for j in range(reps):
                tiled.paste(bank, (i * _BANK_SIDE, j * _BANK_SIDE))
        bank = tiled
    x, y = (int(v) for v in rng.integers(0, bank.size[0] - size + 1, size=2))
    return ImageChops.add(img, bank.crop((x, y, x + size, y + size)), offset=-128)


def _lut(contrast: float, gain: float, cast: np.ndarray) -> list[int]:
    v = np.arange(256, dtype=np.float64)
    out = ((v - 128.0) * contrast + 128.0) * gain
    table: list[int] = np.clip(out[None, :] + cast[:, None] + 0.5, 0, 255).astype(np.uint8).ravel().tolist()
    return table


def render_photo(look: Look, *, size: int, rng: np.random.Generator) -> Image.Image:
    """Draw one ``size`` x ``size`` RGB photo of ``look`` with a pose and lighting drawn from ``rng``."""
    shape = _SHAPES[look.category]
    big = 2 * size
    pose = _choose_pose(look, shape, big, rng)
    layer = Image.new("RGB", (big, big), look.primary)
    if look.pattern != "solid":
        _draw_pattern(ImageDraw.Draw(layer), look, pose)
    mask = Image.new("L", (big, big), 0)
    mdraw, ldraw = ImageDraw.Draw(mask), ImageDraw.Draw(layer)
    for prim in shape:
        pts = pose.apply(prim.points)
        detail = isinstance(prim.paint, tuple)
        fill = 0 if prim.paint == "cut" else 255
        if prim.kind == "poly":
            mdraw.polygon(pts, fill=fill)
            if detail:
                ldraw.polygon(pts, fill=_paint_colour(typing_cast("tuple[Any, ...]", prim.paint), look))
        else:
            w = max(1, int(round(prim.width * pose.scale)))
            joint = "curve" if len(pts) > 2 else None
            mdraw.line(pts, fill=fill, width=w, joint=joint)
            if detail:
                ldraw.line(pts, fill=_paint_colour(typing_cast("tuple[Any, ...]", prim.paint), look), width=w, joint=joint)
    if look.finish == "gloss":
        hl = Image.new("L", (big, big), 0)
        ImageDraw.Draw(hl).polygon(pose.apply(_GLOSS.points), fill=70)
        layer = Image.composite(Image.new("RGB", (big, big), (255, 255, 255)), layer, hl)
    layer, mask = layer.reduce(2), mask.reduce(2)
    if look.finish == "grain":
        layer = _add_noise(layer, 7.0, rng, mono=True)

    bg = _background(size, look.primary, rng)
    # a soft drop shadow: the mask, blurred by a down/up resize, shifted, at 30% darkness
    small = max(4, size // 12)
    shadow = mask.resize((small, small), Image.Resampling.BILINEAR).resize((size, size), Image.Resampling.BILINEAR)
    dx, dy = (int(v) for v in rng.integers(1, max(2, size // 40) + 1, size=2))
    shifted = Image.new("L", (size, size), 0)
    shifted.paste(shadow.point(_SHADOW_LUT), (dx, dy))
    bg = Image.composite(Image.new("RGB", (size, size), (0, 0, 0)), bg, shifted)
    img = Image.composite(layer, bg, mask)

    # lighting: contrast, brightness and a slight colour cast as lookup tables; a directional ramp by blending a
    # darker and a lighter version along a gradient; then sensor noise
    contrast, brightness = rng.uniform(0.85, 1.15), rng.uniform(0.88, 1.12)
    slope = rng.uniform(0.05, 0.2)
    cast = rng.uniform(-8.0, 8.0, size=3)
    ramp = _ramp(size, rng.uniform(0.0, 2 * math.pi))
    blend = Image.fromarray(((ramp + 0.5) * 255.0 + 0.5).astype(np.uint8), "L")
    lo = img.point(_lut(contrast, brightness * (1.0 - slope / 2), cast))
    hi = img.point(_lut(contrast, brightness * (1.0 + slope / 2), cast))
    img = Image.composite(hi, lo, blend)
    return _add_noise(img, float(rng.choice(_SIGMAS)), rng)


_GLOSS = _ell(0.36, 0.34, 0.1, 0.05)
_SHADOW_LUT = [int(v * 0.3) for v in range(256)]
_SIGMAS = (1.5, 3.0, 4.5)

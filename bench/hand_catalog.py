"""A small hand-written catalog (not drawn by the demo generator) for ``python -m bench ranking``.

48 products with real-world words the bundled demo model never saw in training, across six categories, with
``category``, ``brand`` and ``color`` as fields, and two simple PIL drawings each. Every product has its own
(shape, colour) pair, so a catalog photo has exactly one product that looks like it; the two photos of a product
differ by a small shift and a background tint. Adapted from exp12's ``proto/hand_catalog.py`` (same items, more
shapes so that no two products look alike).

    from bench.hand_catalog import write_hand_catalog
    catalog = write_hand_catalog(Path("hand"))   # hand/catalog.jsonl + hand/img/*.png
"""

from __future__ import annotations

import json
import random
from pathlib import Path

#: Bump when the items or the drawings change: cached indexes of the hand catalog are rebuilt.
VERSION = 2

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 40), "blue": (40, 110, 215), "green": (40, 150, 60), "black": (25, 25, 28),
    "white": (240, 240, 236), "yellow": (240, 205, 40), "grey": (135, 135, 138), "brown": (125, 75, 40),
}
SHAPES = ("rect", "circle", "triangle", "diamond", "ring", "cross", "bar", "star")

ITEMS: tuple[tuple[str, str, str], ...] = (  # title, category, brand
    ("Stainless steel electric kettle", "kitchen", "Brevik"), ("Cast iron skillet", "kitchen", "Forgewell"),
    ("Bamboo cutting board", "kitchen", "Greenleaf"), ("Ceramic teapot with infuser", "kitchen", "Brevik"),
    ("Chef's knife, 8 inch", "kitchen", "Forgewell"), ("Silicone baking mat", "kitchen", "Greenleaf"),
    ("Espresso machine with milk frother", "kitchen", "Brevik"), ("Glass storage jars, set of 3", "kitchen", "Clearview"),
    ("Oak bookshelf, five shelves", "furniture", "Nordhaus"), ("Velvet armchair", "furniture", "Nordhaus"),
    ("Folding camping stool", "furniture", "Trailmark"), ("Walnut coffee table", "furniture", "Nordhaus"),
    ("Rattan laundry basket", "furniture", "Greenleaf"), ("Standing desk converter", "furniture", "Ergoline"),
    ("Memory foam office chair", "furniture", "Ergoline"), ("Shoe rack, three tiers", "furniture", "Trailmark"),
    ("Wooden train set", "toys", "Puzzlewood"), ("Plush teddy bear", "toys", "Cuddleco"),
    ("Jigsaw puzzle, 1000 pieces", "toys", "Puzzlewood"), ("Remote control racing car", "toys", "Zoomix"),
    ("Building blocks bucket", "toys", "Zoomix"), ("Kite with rainbow tail", "toys", "Skyline"),
    ("Wooden xylophone", "toys", "Puzzlewood"), ("Bouncy ball pack", "toys", "Zoomix"),
    ("Garden hose, 30 m", "garden", "Greenleaf"), ("Pruning shears", "garden", "Forgewell"),
    ("Terracotta plant pot", "garden", "Greenleaf"), ("Solar lantern", "garden", "Skyline"),
    ("Watering can, 5 litres", "garden", "Greenleaf"), ("Bird feeder", "garden", "Skyline"),
    ("Wheelbarrow", "garden", "Trailmark"), ("Hammock with stand", "garden", "Trailmark"),
    ("Wireless headphones", "electronics", "Sonora"), ("Bluetooth speaker", "electronics", "Sonora"),
    ("USB-C charging cable", "electronics", "Voltix"), ("Mechanical keyboard", "electronics", "Voltix"),
    ("Smart thermostat", "electronics", "Voltix"), ("Action camera", "electronics", "Sonora"),
    ("E-reader with backlight", "electronics", "Clearview"), ("Power bank, 20000 mAh", "electronics", "Voltix"),
    ("Yoga mat", "sports", "Trailmark"), ("Tennis racket", "sports", "Skyline"),
    ("Adjustable dumbbells", "sports", "Ergoline"), ("Cycling helmet", "sports", "Trailmark"),
    ("Jump rope", "sports", "Zoomix"), ("Swimming goggles", "sports", "Clearview"),
    ("Football", "sports", "Skyline"), ("Climbing chalk bag", "sports", "Trailmark"),
)

#: Words a "title word" query leaves out: function words and units.
STOP_WORDS = frozenset({"and", "the", "with", "for", "set", "inch", "of", "from", "by", "in", "on", "to", "mah", "litres"})


def _assign_looks(seed: int = 5) -> list[tuple[str, str]]:
    """One (shape, colour) per item, no two alike: the shape cycles, the colour is drawn until the pair is new."""
    rng = random.Random(f"bench-hand/{seed}")
    used: set[tuple[str, str]] = set()
    looks = []
    for i in range(len(ITEMS)):
        shape = SHAPES[i % len(SHAPES)]
        colour = rng.choice(sorted(COLOURS))
        while (shape, colour) in used:
            colour = rng.choice(sorted(COLOURS))
        used.add((shape, colour))
        looks.append((shape, colour))
    return looks


def draw(shape: str, rgb: tuple[int, int, int], seed: str, size: int = 128):
    """A flat drawing of ``shape`` in ``rgb`` on a light background, shifted and tinted a little by ``seed``."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    tint = rng.randint(-8, 8)
    img = Image.new("RGB", (size, size), (228 + tint, 226 + tint, 220 + tint))
    d = ImageDraw.Draw(img)
    s = size / 128
    j, k = rng.randint(-8, 8), rng.randint(-6, 6)

    def box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        return ((x0 + j) * s, (y0 + k) * s, (x1 + j) * s, (y1 + k) * s)

    def pts(*xy: tuple[float, float]) -> list[tuple[float, float]]:
        return [((x + j) * s, (y + k) * s) for x, y in xy]

    if shape == "rect":
        d.rectangle(box(24, 34, 104, 96), fill=rgb)
    elif shape == "circle":
        d.ellipse(box(28, 28, 100, 100), fill=rgb)
    elif shape == "triangle":
        d.polygon(pts((64, 20), (20, 104), (108, 104)), fill=rgb)
    elif shape == "diamond":
        d.polygon(pts((64, 16), (108, 64), (64, 112), (20, 64)), fill=rgb)
    elif shape == "ring":
        d.ellipse(box(24, 24, 104, 104), outline=rgb, width=int(16 * s))
    elif shape == "cross":
        d.rectangle(box(52, 18, 76, 110), fill=rgb)
        d.rectangle(box(18, 52, 110, 76), fill=rgb)
    elif shape == "bar":
        d.rectangle(box(14, 54, 114, 74), fill=rgb)
        d.rectangle(box(14, 84, 114, 96), fill=rgb)
    elif shape == "star":
        d.polygon(pts((64, 14), (76, 50), (114, 50), (84, 72), (95, 110), (64, 87), (33, 110), (44, 72), (14, 50),
                      (52, 50)), fill=rgb)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return img


def write_hand_catalog(folder: Path, *, images_per_product: int = 2) -> Path:
    """``folder/catalog.jsonl`` and ``folder/img/h<nnn>_<k>.png``; returns the catalog path."""
    folder = Path(folder)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, ((title, category, brand), (shape, colour)) in enumerate(zip(ITEMS, _assign_looks())):
        paths = []
        for k in range(images_per_product):
            rel = f"img/h{i:03d}_{k}.png"
            draw(shape, COLOURS[colour], f"{i}/{k}").save(folder / rel)
            paths.append(rel)
        rows.append({"id": f"H{i:03d}", "title": title, "description": f"{title} in {colour}. By {brand}.",
                     "images": paths, "category": category, "brand": brand, "color": colour})
    path = folder / "catalog.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def title_words(title: str) -> list[str]:
    """The query words of a title: lower-cased alphabetic words of 3+ letters that are not stop words, once each."""
    import re

    words = [w for w in re.findall(r"[a-z]+", title.lower()) if len(w) >= 3 and w not in STOP_WORDS]
    return list(dict.fromkeys(words))

"""A procedural demo catalog with known ground truth, for training a small CLIP model and evaluating search.

:func:`generate_catalog` writes, under ``out_dir``::

    catalog.jsonl             one product a line: id, title, description, images, price, category, brand,
                              color, pattern, material (image paths are relative to this file)
    images/<id>_<n>.jpg       2-4 photos per product (a few are PNG), drawn by vitrina.demo.drawing
    queries/q<nnnnn>.jpg      query photos: fresh renders of catalog products, never catalog images
    judgments-train.jsonl     {"query_id", "text", "image", "kind", "product_id", "label"} rows; labels 0..3,
    judgments-heldout.jsonl   the relevant products (label >= 1) and ~5 sampled label-0 negatives per query

Query kinds: ``text`` (colour/pattern/category/material/brand/model phrasings with synonyms; graded kind first,
then colour > pattern > material > brand: see ``_grade``), ``photo`` (3: that product, 2: same
category+colour+pattern, 1: same category+colour) and ``text+photo`` ("this one but in red": the same category in
the named colour with the shown pattern is 3, in the named colour 2, the same category 1, the shown product 0).
Everything is seeded per item (``random.Random`` with a string seed, ``numpy`` ``default_rng`` with a key), so
the same arguments give byte-identical files and a different seed gives disjoint product ids.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from vitrina.demo.drawing import Look, random_look, render_photo
from vitrina.demo.vocabulary import (BRAND_CODES, BRANDS, CATEGORIES, CATEGORY_SPECS, COLOUR_SPECS, COLOURS, MATERIALS,
                                     PATTERN_PHRASES, PATTERN_WORDS, PATTERNS, Category, Colour)

__all__ = ["BRANDS", "CATEGORIES", "CATEGORY_SPECS", "COLOURS", "COLOUR_SPECS", "MATERIALS", "PATTERNS",
           "Category", "Colour", "DemoCatalogReport", "generate_catalog"]

T = TypeVar("T")
_CAT = {c.name: c for c in CATEGORY_SPECS}
_COL = {c.name: c for c in COLOUR_SPECS}
_PLURAL = {"trousers", "sneakers", "boots", "sunglasses"}
_GLOSSY = {"leather", "ceramic", "porcelain", "glass", "metal", "plastic"}
_PATTERN_WEIGHTS = (0.32, 0.17, 0.17, 0.17, 0.17)


@dataclass(frozen=True, kw_only=True)
class DemoCatalogReport:
    catalog: Path  # the catalog.jsonl path
    products: int
    images: int
    query_photos: int
    judgments_train: Path
    judgments_heldout: Path


@dataclass(frozen=True, kw_only=True)
class _Product:
    id: str
    title: str
    description: str
    price: float
    category: str
    brand: str
    model: str
    colour: str
    pattern: str
    material: str
    look: Look
    photos: int


def _pick(rng: random.Random, canonical: str, synonyms: tuple[str, ...], p_syn: float = 0.4) -> str:
    return rng.choice(synonyms) if rng.random() < p_syn else canonical


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _a(phrase: str, plural: bool) -> str:
    """The phrase with its article: "a pair of" for plural products, "an" before a vowel."""
    if plural:
        return f"a pair of {phrase}"
    return f"{'an' if phrase[:1] in 'aeiou' else 'a'} {phrase}"


def _cycled(n: int, items: Sequence[T], rng: random.Random) -> list[T]:
    """``n`` items in shuffled rounds, so every item appears before any repeats."""
    out: list[T] = []
    while len(out) < n:
        block = list(items)
        rng.shuffle(block)
        out.extend(block)
    return out[:n]


def _texts(rng: random.Random, *, cat: Category, colour: str, pattern: str, material: str, brand: str, model: str,
           secondary_word: str) -> tuple[str, str]:
    c = _pick(rng, colour, _COL[colour].synonyms)
    w = _pick(rng, cat.name, cat.synonyms, 0.3)
    pa = rng.choice(PATTERN_WORDS[pattern])
    pa_opt = "" if pattern == "solid" and rng.random() < 0.6 else pa + " "
    bm = f"{brand} {model}" if rng.random() < 0.3 else brand
    title = rng.choice((
        f"{brand} {model} {c} {pa_opt}{w}",
        f"{c} {pa_opt}{material} {w}",
        f"{bm} {material} {w} in {c}",
        f"{pa} {w} - {c}, {material}",
        f"{bm} {w}, {c} {pa}",
        f"{material} {w} by {bm} ({c})",
    ))
    phrase = rng.choice(PATTERN_PHRASES[pattern]).format(sec=secondary_word)
    c2 = _pick(rng, colour, _COL[colour].synonyms)
    pl = cat.name in _PLURAL
    intro = rng.choice((
        f"{_cap(_a(f'{c2} {w}', pl))} with {phrase}, made from {material}.",
        f"{'These' if pl else 'This'} {material} {w} {'come' if pl else 'comes'} in {c2} with {phrase}.",
        f"{brand}'s {cat.name} in {c2}: {phrase}, {material} throughout.",
        f"Meet the {brand} {model}, {_a(f'{pa} {c2} {cat.name}', pl)} in {material}.",
    ))
    outro = rng.choice((f"Model {model} by {brand}.", f"Designed by {brand} (model {model}).",
                        f"From {brand}, model number {model}."))
    extra = rng.choice(("", "", " Ships in recyclable packaging.", " Backed by a two-year warranty."))
    return _cap(title), f"{intro} {rng.choice(cat.blurbs)} {outro}{extra}"


def _make_products(n: int, seed: int, photos: tuple[int, int]) -> list[_Product]:
    order = random.Random(f"vitrina-demo/{seed}/order")
    cats, cols = _cycled(n, CATEGORIES, order), _cycled(n, COLOURS, order)
    used_models: set[str] = set()
    out = []
    for i in range(n):
        rng = random.Random(f"vitrina-demo/{seed}/product/{i}")
        cat, colour = _CAT[cats[i]], cols[i]
        pattern = rng.choices(PATTERNS, weights=_PATTERN_WEIGHTS)[0]
        material = rng.choice(cat.materials)
        brand = rng.choice(BRANDS)
        model = f"{BRAND_CODES[brand]}-{rng.randint(100, 999)}"
        while model in used_models:
            model = f"{BRAND_CODES[brand]}-{rng.randint(1000, 9999)}"
        used_models.add(model)
        look = random_look(rng, category=cat.name, rgb=_COL[colour].rgb, pattern=pattern,
                           glossy=material in _GLOSSY)
        title, description = _texts(rng, cat=cat, colour=colour, pattern=pattern, material=material, brand=brand,
                                    model=model, secondary_word="white" if sum(look.secondary) > 400 else "black")
        lo, hi = cat.price
        price = round(int(rng.uniform(lo, hi)) + rng.choice((0.99, 0.95, 0.5, 0.0)), 2)
        out.append(_Product(id=f"P{seed:03d}-{i:05d}", title=title, description=description, price=price,
                            category=cat.name, brand=brand, model=model, colour=colour, pattern=pattern,
                            material=material, look=look, photos=rng.randint(*photos)))
    return out


def _grade(p: _Product, *, category: str | None = None, colour: str | None = None, pattern: str | None = None,
           material: str | None = None, brand: str | None = None, model: str | None = None) -> int:
    """Graded relevance of ``p`` to a text intent, the kind of product first: how many of the named attributes
    ``p`` matches in the order category > colour > pattern > material > brand, stopping at the first it misses,
    at most 3.  For "red striped mug": another kind 0, a mug only 1, a red mug 2, a red striped mug 3; for
    "leather bag" (category + material) a bag 1, a leather bag 2; for "Aurora bag" a bag 1, an Aurora bag 2; an
    intent without a category starts at its first named attribute ("red": 1 for every red product, "Aurora": 1
    for the brand).  A similar colour counts as another colour.  A model number is 3 for that product and 1 for
    the same brand's other products of its category."""
    if model is not None:
        if p.model == model:
            return 3
        return 1 if p.brand == brand and p.category == category else 0
    named = ((category, p.category), (colour, p.colour), (pattern, p.pattern), (material, p.material), (brand, p.brand))
    label = 0
    for wanted, value in named:
        if not wanted:
            continue
        if value != wanted:
            break
        label += 1
    return min(label, 3)


def _same_look(p: _Product, a: _Product) -> int:
    """Relevance of ``p`` to a photo of ``a``: 2 for the same category, colour and pattern, 1 for category+colour."""
    if p.category != a.category or p.colour != a.colour:
        return 0
    return 2 if p.pattern == a.pattern else 1


def _text_query(rng: random.Random, a: _Product) -> tuple[str, dict[str, str | None]]:
    """A text query anchored on product ``a`` (so it has at least one label-3 product), and its intent."""
    cat = _CAT[a.category]
    c = _pick(rng, a.colour, _COL[a.colour].synonyms)
    w = _pick(rng, cat.name, cat.synonyms)
    pa = rng.choice(PATTERN_WORDS[a.pattern])
    form = rng.choices(("ccp", "cc", "cat", "col", "pc", "mc", "brand", "model"),
                       weights=(30, 20, 8, 7, 8, 8, 9, 10))[0]
    if form == "ccp":
        text = rng.choice((f"{c} {pa} {w}", f"{pa} {w} in {c}"))
        return text, {"category": a.category, "colour": a.colour, "pattern": a.pattern}
    if form == "cc":
        return rng.choice((f"{c} {w}", f"{w} in {c}")), {"category": a.category, "colour": a.colour}
    if form == "cat":
        return w, {"category": a.category}
    if form == "col":
        return c, {"colour": a.colour}
    if form == "pc":
        return f"{pa} {w}", {"category": a.category, "pattern": a.pattern}
    if form == "mc":
        return f"{a.material} {w}", {"category": a.category, "material": a.material}
    if form == "brand":
        if rng.random() < 0.5:
            return a.brand, {"brand": a.brand}
        return f"{a.brand} {w}", {"brand": a.brand, "category": a.category}
    text = rng.choice((f"{a.brand} {a.model}", a.model))
    return text, {"model": a.model, "brand": a.brand, "category": a.category}


@dataclass(frozen=True, kw_only=True)
class _Query:
    id: str
    kind: str
    text: str | None
    photo_of: _Product | None
    labels: dict[str, int]  # relevant products and sampled negatives (label 0)


def _with_negatives(rng: random.Random, products: list[_Product], labels: dict[str, int], anchor: _Product,
                    extra: tuple[str, ...] = ()) -> dict[str, int]:
    rel = {pid: g for pid, g in labels.items() if g > 0}
    zeros = [p for p in products if p.id not in rel and p.id not in extra]
    hard = [p for p in zeros if p.category == anchor.category or p.colour == anchor.colour]
    chosen = set(extra) | {p.id for p in rng.sample(hard, min(2, len(hard)))}
    rest = [p for p in zeros if p.id not in chosen]
    chosen |= {p.id for p in rng.sample(rest, min(max(0, 5 - len(chosen)), len(rest)))}
    return {**rel, **{pid: 0 for pid in chosen}}


def _make_queries(products: list[_Product], total: int, seed: int) -> tuple[list[_Query], list[_Query]]:
    rng = random.Random(f"vitrina-demo/{seed}/queries")
    anchors = _cycled(max(total, 1), tuple(range(len(products))), rng)
    by_cat: dict[str, set[str]] = {}
    for p in products:
        by_cat.setdefault(p.category, set()).add(p.colour)
    used_texts: set[str] = set()
    splits: list[list[_Query]] = [[], []]
    counter = 0
    for split, n in enumerate(((total + 1) // 2, total // 2)):
        n_text, n_photo = round(0.5 * n), round(0.3 * n)
        kinds = ["text"] * n_text + ["photo"] * n_photo + ["text+photo"] * (n - n_text - n_photo)
        rng.shuffle(kinds)
        for kind in kinds:
            qid, a = f"q{counter:05d}", products[anchors[counter]]
            counter += 1
            others = sorted(by_cat[a.category] - {a.colour})
            if kind == "text+photo" and not others:
                kind = "photo"
            photo: _Product | None = a
            if kind == "text":
                for _ in range(30):
                    text, intent = _text_query(rng, a)
                    if text not in used_texts:
                        break
                    a = rng.choice(products)
                used_texts.add(text)
                photo, labels = None, {p.id: _grade(p, **intent) for p in products}
            elif kind == "photo":
                text, labels = None, {p.id: 3 if p.id == a.id else _same_look(p, a) for p in products}
            else:  # "this one but in <colour>": the shown product itself becomes a hard negative
                target = rng.choice(others)
                c = _pick(rng, target, _COL[target].synonyms)
                text = rng.choice((f"this one but in {c}", f"same but {c}", f"like this in {c}",
                                   f"{c} version of this", f"this in {c} please"))
                labels = {p.id: _grade(p, category=a.category, colour=target, pattern=a.pattern) for p in products}
            labels = _with_negatives(rng, products, labels, a, extra=(a.id,) if kind == "text+photo" else ())
            splits[split].append(_Query(id=qid, kind=kind, text=text, photo_of=photo, labels=labels))
    return splits[0], splits[1]


def _write_judgments(path: Path, queries: list[_Query]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for q in queries:
            image = f"queries/{q.id}.jpg" if q.photo_of is not None else None
            for pid, label in sorted(q.labels.items(), key=lambda kv: (-kv[1], kv[0])):
                row = {"query_id": q.id, "text": q.text, "image": image, "kind": q.kind, "product_id": pid,
                       "label": label}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _save(img: Image.Image, path: Path) -> None:
    if path.suffix == ".png":
        img.save(path, "PNG", compress_level=3)
    else:
        img.save(path, "JPEG", quality=90, subsampling=0)


def generate_catalog(out_dir: str | Path, *, products: int = 1000, seed: int = 0, image_size: int = 224,
                     photos_per_product: tuple[int, int] = (2, 4), queries: int = 200,
                     progress: Callable[[int], None] | None = None) -> DemoCatalogReport:
    """Write a demo catalog, its photos, query photos and train/held-out judgments under ``out_dir``.

    Files already in ``out_dir`` with the same names are overwritten; others are left alone.
    ``progress`` is called with the number of products finished since its last call.
    """
    lo, hi = photos_per_product
    if products < 1 or queries < 0 or seed < 0 or not 1 <= lo <= hi or not 32 <= image_size <= 4096:
        raise ValueError(f"bad demo catalog arguments: products={products} queries={queries} seed={seed} "
                         f"photos_per_product={photos_per_product} image_size={image_size}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "queries").mkdir(parents=True, exist_ok=True)
    items = _make_products(products, seed, (lo, hi))
    n_images = 0
    with (out / "catalog.jsonl").open("w", encoding="utf-8", newline="\n") as f:
        for i, p in enumerate(items):
            paths = []
            for k in range(p.photos):
                rel = f"images/{p.id}_{k}.{'png' if i % 25 == 7 and k == 1 else 'jpg'}"
                _save(render_photo(p.look, size=image_size, rng=np.random.default_rng([seed, 1, i, k])), out / rel)
                paths.append(rel)
            n_images += len(paths)
            row = {"id": p.id, "title": p.title, "description": p.description, "images": paths, "price": p.price,
                   "category": p.category, "brand": p.brand, "color": p.colour, "pattern": p.pattern,
                   "material": p.material}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            if progress is not None:
                progress(1)
    train, heldout = _make_queries(items, queries, seed)
    n_photos = 0
    for q in train + heldout:
        if q.photo_of is not None:
            rng = np.random.default_rng([seed, 2, int(q.id[1:])])
            _save(render_photo(q.photo_of.look, size=image_size, rng=rng), out / "queries" / f"{q.id}.jpg")
            n_photos += 1
    _write_judgments(out / "judgments-train.jsonl", train)
    _write_judgments(out / "judgments-heldout.jsonl", heldout)
    return DemoCatalogReport(catalog=out / "catalog.jsonl", products=len(items), images=n_images,
                             query_photos=n_photos, judgments_train=out / "judgments-train.jsonl",
                             judgments_heldout=out / "judgments-heldout.jsonl")

"""Training data for ``indexer.train.run``: a catalog read once into memory, and batched augmentation.

Every product photo is loaded once, passed through the model's own *inference* transform (resize,
centre crop) and kept as a uint8 tensor, so an epoch costs no decoding and the un-augmented training
input is exactly what the index will see.  Augmentation then works on whole batches of those tensors
(one affine warp for crop/zoom, rotation and flip; brightness, contrast and saturation jitter that
leaves hue alone, since colour is what shoppers search by).  Texts come in a few variants per product
(the indexed text, the title, the description, an attribute phrase) and one is drawn per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.catalog import ProductRecord, RowError, iter_products
from indexer.errors import CatalogError, ImageError
from indexer.media.images import load_image

#: Attribute fields, in the order people say them ("red striped cotton t-shirt"), with the column names read.
ATTRIBUTE_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("color", ("color", "colour")), ("pattern", ("pattern",)), ("material", ("material",)), ("category", ("category",)),
)
#: How often each text variant is drawn: indexed text, title, description, attribute phrase.
TEXT_VARIANT_WEIGHTS = (0.35, 0.15, 0.1, 0.4)


@dataclass(frozen=True, kw_only=True)
class TrainProduct:
    """One usable product: its id, texts, attribute phrase words and the rows of its cached photos."""

    id: str
    text: str
    title: str
    description: str
    attributes: tuple[tuple[str, str], ...]  # (field, value) pairs of ATTRIBUTE_FIELDS, in speaking order
    image_rows: tuple[int, ...]

    @property
    def phrase_words(self) -> tuple[str, ...]:
        return tuple(value for _, value in self.attributes)


@dataclass(frozen=True, kw_only=True)
class SkipCounts:
    """Catalog rows and photos that could not be used for training, by reason."""

    bad_rows: int = 0
    no_text: int = 0
    no_images: int = 0
    bad_images: int = 0

    @property
    def products(self) -> int:
        return self.bad_rows + self.no_text + self.no_images


@dataclass(frozen=True, kw_only=True)
class TrainData:
    """Products with their photos cached as one uint8 tensor ``(n_images, 3, H, W)``."""

    products: tuple[TrainProduct, ...]
    pixels: Any
    skipped: SkipCounts = field(default_factory=SkipCounts)


def read_products(
    catalog: str | Path, *, max_products: int | None = None
) -> tuple[list[ProductRecord], SkipCounts]:
    """The products of ``catalog`` that have both text and at least one local photo, in file order."""
    errors: list[RowError] = []
    records: list[ProductRecord] = []
    no_text = no_images = 0
    for record in iter_products(catalog, on_error=errors.append):
        local = tuple(p for p in record.images if not p.lower().startswith(("http://", "https://")))
        if not record.text:
            no_text += 1
        elif not local:
            no_images += 1
        else:
            records.append(record)
            if max_products is not None and len(records) >= max_products:
                break
    return records, SkipCounts(bad_rows=len(errors), no_text=no_text, no_images=no_images)


def load_train_data(
    records: list[ProductRecord],
    *,
    transform: Callable[[Any], Any],
    skipped: SkipCounts,
    progress: Callable[[int], None] | None = None,
) -> TrainData:
    """Decode every photo of ``records`` through ``transform`` (a PIL → uint8 CHW tensor function)."""
    import torch

    products: list[TrainProduct] = []
    tensors: list[Any] = []
    bad_images = no_images = 0
    for record in records:
        rows = []
        for location in record.images:
            if location.lower().startswith(("http://", "https://")):
                continue
            try:
                image = load_image(location)
            except ImageError:
                bad_images += 1
                continue
            rows.append(len(tensors))
            tensors.append(transform(image))
        if progress:
            progress(1)
        if not rows:
            no_images += 1
            continue
        products.append(TrainProduct(
            id=record.id, text=record.text, title=record.title, description=record.description,
            attributes=product_attributes(record), image_rows=tuple(rows),
        ))
    if not products:
        raise CatalogError(
            "no product has both text and a readable photo "
            f"({skipped.bad_rows} bad rows, {skipped.no_text} without text, "
            f"{skipped.no_images + no_images} without a usable image): nothing to train on"
        )
    counts = SkipCounts(bad_rows=skipped.bad_rows, no_text=skipped.no_text,
                        no_images=skipped.no_images + no_images, bad_images=bad_images)
    return TrainData(products=tuple(products), pixels=torch.stack(tensors), skipped=counts)


def product_attributes(record: ProductRecord) -> tuple[tuple[str, str], ...]:
    """The (field, value) attribute pairs a shopper would type, in speaking order; empty when the catalog has none."""
    values = {**{k.lower(): v for k, v in record.attributes.items()}, "category": record.category}
    pairs: list[tuple[str, str]] = []
    for name, columns in ATTRIBUTE_FIELDS:
        value = next((values[c] for c in columns if isinstance(values.get(c), str) and values[c].strip()), None)
        if value is not None and value.strip().lower() not in [v for _, v in pairs]:
            pairs.append((name, value.strip().lower()))
    return tuple(pairs)


@dataclass(frozen=True, kw_only=True)
class AttributeVocab:
    """The values of each attribute field, and each product's value index (-1 where it has none)."""

    fields: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]
    labels: Any  # int64 tensor (n_products, n_fields)

    @property
    def texts(self) -> list[str]:
        return [value for values in self.values for value in values]


def attribute_vocab(products: tuple[TrainProduct, ...] | list[TrainProduct]) -> AttributeVocab | None:
    """Fields with at least two values among ``products``; None when there are none (no attributes to learn)."""
    import torch

    found: dict[str, set[str]] = {}
    for product in products:
        for name, value in product.attributes:
            found.setdefault(name, set()).add(value)
    fields = tuple(name for name, _ in ATTRIBUTE_FIELDS if len(found.get(name, ())) >= 2)
    if not fields:
        return None
    values = tuple(tuple(sorted(found[name])) for name in fields)
    index = [{value: i for i, value in enumerate(vals)} for vals in values]
    labels = torch.full((len(products), len(fields)), -1, dtype=torch.long)
    for row, product in enumerate(products):
        given = dict(product.attributes)
        for col, name in enumerate(fields):
            if name in given:
                labels[row, col] = index[col][given[name]]
    return AttributeVocab(fields=fields, values=values, labels=labels)


def training_text(product: TrainProduct, variant: int, coins: list[float]) -> str:
    """Text variant ``variant`` (0 indexed text, 1 title, 2 description, 3 attribute phrase) of a product.

    The attribute phrase is a random non-empty subset of the attribute words, in speaking order: its size is
    uniform (from ``coins[0]``), the words kept are those with the smallest of ``coins[1:]``.  A variant the
    product lacks falls back to the indexed text.
    """
    if variant == 1 and product.title:
        return product.title
    if variant == 2 and product.description:
        return product.description
    if variant == 3 and product.phrase_words:
        words = product.phrase_words
        size = 1 + min(int(coins[0] * len(words)), len(words) - 1)
        kept = sorted(range(len(words)), key=lambda i: coins[1 + i % (len(coins) - 1)])[:size]
        return " ".join(words[i] for i in sorted(kept))
    return product.text


def uint8_transform(preprocess_cfg: dict[str, Any]) -> tuple[Callable[[Any], Any], tuple[float, ...], tuple[float, ...]]:
    """open_clip's inference transform without its final Normalize, giving uint8 CHW tensors; and mean, std."""
    import torch
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    cfg = PreprocessCfg(**merge_preprocess_dict(PreprocessCfg(), preprocess_cfg))
    val = image_transform_v2(cfg, is_train=False)
    steps = list(getattr(val, "transforms", [val]))
    if not steps or type(steps[-1]).__name__ != "Normalize":
        raise RuntimeError("unexpected open_clip transform: no final Normalize")
    head = steps[:-1]

    def to_uint8(image: Any) -> Any:
        for step in head:
            image = step(image)
        return (image * 255.0).round_().clamp_(0, 255).to(torch.uint8)

    return to_uint8, tuple(cfg.mean), tuple(cfg.std)


@dataclass(frozen=True, kw_only=True)
class Augmentation:
    """Batched photo augmentation; the defaults keep hue (colour names) intact."""

    min_scale: float = 0.55  # smallest crop, as a fraction of the image area
    max_ratio: float = 1.2  # crop aspect ratio within [1/r, r]
    max_rotation: float = 10.0  # degrees
    flip: bool = True
    brightness: float = 0.15
    contrast: float = 0.15
    saturation: float = 0.1


def augment(pixels: Any, *, generator: Any, aug: Augmentation) -> Any:
    """Random crop/zoom, rotation, flip and light colour jitter of a float batch in [0, 1], shape (N, 3, H, W)."""
    import torch
    import torch.nn.functional as F

    n = pixels.shape[0]

    def uniform(lo: float, hi: float) -> Any:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    area = uniform(aug.min_scale, 1.0)
    log_ratio = uniform(-math.log(aug.max_ratio), math.log(aug.max_ratio))
    sx = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
    sy = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    tx, ty = uniform(-1.0, 1.0) * (1 - sx), uniform(-1.0, 1.0) * (1 - sy)
    angle = uniform(-aug.max_rotation, aug.max_rotation) * (math.pi / 180.0)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if aug.flip else torch.ones(n)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([
        torch.stack([sx * cos * flip, -sy * sin, tx], dim=1),
        torch.stack([sx * sin * flip, sy * cos, ty], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    out = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)

    shape = (n, 1, 1, 1)
    grey = (0.299 * out[:, 0:1] + 0.587 * out[:, 1:2] + 0.114 * out[:, 2:3])
    out = out * uniform(1 - aug.brightness, 1 + aug.brightness).view(shape)
    mean = grey.mean(dim=(2, 3), keepdim=True)
    out = (out - mean) * uniform(1 - aug.contrast, 1 + aug.contrast).view(shape) + mean
    grey = (0.299 * out[:, 0:1] + 0.587 * out[:, 1:2] + 0.114 * out[:, 2:3])
    out = (out - grey) * uniform(1 - aug.saturation, 1 + aug.saturation).view(shape) + grey
    return out.clamp_(0.0, 1.0)

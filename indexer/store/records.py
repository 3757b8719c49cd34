"""What flows into the store: embedded products and images, and what a commit reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer.catalog import ProductRecord

if TYPE_CHECKING:
    pass


MODALITIES = ("image", "text")


@dataclass(frozen=True, kw_only=True)
class EmbeddedImage:
    position: int
    location: str
    vector: np.ndarray


@dataclass(frozen=True, kw_only=True)
class EmbeddedProduct:
    """A catalog record with its unit vectors, ready to be stored."""

    record: ProductRecord
    text_vector: np.ndarray | None
    images: tuple[EmbeddedImage, ...] = ()
    content_hash: str | None = None
    #: Hash of what was embedded (text, image locations and bytes); see ``schema.Product.embed_hash``.
    embed_hash: str | None = None


@dataclass(frozen=True, kw_only=True)
class CommitInfo:
    generation: int
    #: The live segments of each modality after the commit (see ``indexer.store.segments``).
    files: dict[str, list[dict[str, Any]]]
    products: int
    images: int

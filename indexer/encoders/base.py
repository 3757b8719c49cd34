"""What every encoder is: the ``Encoder`` protocol, the model identity an index remembers, unit rows.

Every vector that leaves an encoder is float32 and L2-normalised, so inner product is cosine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image



CONFIG_FILE = "open_clip_config.json"


@dataclass(frozen=True, kw_only=True)
class ModelIdentity:
    """What an index remembers about the model that embedded it.

    ``name``/``pretrained`` say how to load the model again; ``fingerprint`` (a hash of
    the weights) and ``dim`` say whether another model is the same one.
    """

    name: str
    pretrained: str | None
    fingerprint: str
    dim: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelIdentity:
        return cls(name=data["name"], pretrained=data.get("pretrained"), fingerprint=data["fingerprint"], dim=int(data["dim"]))

    def describe(self) -> str:
        weights = f" + {self.pretrained}" if self.pretrained else ""
        return f"{self.name}{weights} (dim {self.dim}, weights {self.fingerprint[:12]})"

    def same_model(self, other: ModelIdentity) -> bool:
        return self.fingerprint == other.fingerprint and self.dim == other.dim


@runtime_checkable
class Encoder(Protocol):
    """Turns texts and images into unit vectors of one shared space."""

    identity: ModelIdentity

    @property
    def dim(self) -> int: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, np.maximum(norms, 1e-12), out=x)
    return x

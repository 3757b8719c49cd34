"""Precomputed vectors: a ``.npz`` file of product ids with their text and/or image vectors, read and checked.

    import numpy as np
    np.savez("vectors.npz", ids=np.array(["SKU-1", "SKU-2"]), text=text_matrix, image=image_matrix)  # (n, d) floats
    vectors = read_vectors_file("vectors.npz")   # VectorsFileError names the file, and the row and id when one is bad
    build_index("catalog.jsonl", "my-index", encoder=encoder, vectors=vectors)

The file holds ``ids`` (a string array of n catalog ids) and ``text`` and/or ``image`` (float arrays of shape
(n, d), d the model's dimension).  For a product listed there, ``build_index`` takes its text vector from ``text``
(when the file has it; else its text is encoded as usual) and one image vector from ``image`` standing for its
first image (stored with the catalog's first image location, or ``vector:<id>`` when the row has no image): none of
its images is read or decoded.  The vectors' bytes enter the product's embed hash, so a changed vector re-indexes
the product and an unchanged file leaves it unchanged.  Vectors are stored at unit length; a row that is not
finite or is all zeros, a repeated id, or another dimension than the model's is refused.  ``.npz`` is the only
format (Parquet would need pyarrow, which vitrina does not depend on).
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.catalog import ProductRecord
from indexer.errors import VectorsFileError
from indexer.store.records import EmbeddedImage

MODALITIES = ("text", "image")
#: Rows normalised at a time (bounds the float64 working copy of a large file).
_CHUNK = 8192


@dataclass(frozen=True, kw_only=True, eq=False)
class Given:
    """What precomputed vectors give one product: its text vector and its images (``None``: embed as usual)."""

    text: np.ndarray | None = None
    images: tuple[EmbeddedImage, ...] | None = None


NOTHING_GIVEN = Given()


class VectorsFile:
    """Checked precomputed vectors by product id (unit length, float32); see the module's docstring."""

    def __init__(self, ids: Sequence[str] | np.ndarray, *, text: Any = None, image: Any = None, source: str = "vectors"):
        self.source = source
        self.ids = check_ids(ids, source=source)
        if text is None and image is None:
            raise VectorsFileError(f"{source}: no vectors: give 'text' and/or 'image' (arrays of shape (n, d))")
        self.text = None if text is None else unit_matrix(text, name="text", ids=self.ids, source=source)
        self.image = None if image is None else unit_matrix(image, name="image", ids=self.ids, source=source)
        if self.text is not None and self.image is not None and self.text.shape[1] != self.image.shape[1]:
            raise VectorsFileError(f"{source}: 'text' has {self.text.shape[1]} dimensions and 'image' {self.image.shape[1]}; "
                                   "both must have the model's")
        self.rows = {pid: i for i, pid in enumerate(self.ids)}

    @classmethod
    def read(cls, path: str | Path) -> VectorsFile:
        """Read and check a ``.npz`` file (``ids``, ``text`` and/or ``image``); ``VectorsFileError`` says what is wrong."""
        path = Path(path)
        if path.suffix.lower() != ".npz":
            raise VectorsFileError(f"{path}: a vectors file must be .npz (arrays ids, text and/or image); "
                                   "Parquet is not supported (pyarrow is not installed)")
        if not path.is_file():
            raise VectorsFileError(f"{path}: vectors file not found")
        try:
            with np.load(path, allow_pickle=False) as data:
                names = set(data.files)
                unknown = names - {"ids", *MODALITIES}
                if unknown or "ids" not in names:
                    raise VectorsFileError(f"{path}: expected arrays 'ids' and 'text' and/or 'image', found {sorted(names)}")
                arrays = {name: _array(data, name, path) for name in sorted(names)}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise VectorsFileError(f"{path}: not a readable .npz file ({exc})") from None
        return cls(arrays["ids"], text=arrays.get("text"), image=arrays.get("image"), source=str(path))

    @property
    def dim(self) -> int:
        matrix = self.text if self.text is not None else self.image
        assert matrix is not None
        return int(matrix.shape[1])

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if getattr(self, m) is not None)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, product_id: object) -> bool:
        return product_id in self.rows

    def check_dim(self, dim: int, *, model: str = "the index's model") -> None:
        """``VectorsFileError`` unless the vectors have ``dim`` dimensions."""
        if self.dim != dim:
            raise VectorsFileError(f"{self.source}: the vectors have {self.dim} dimensions; {model} has {dim}")

    def covers_images(self, product_id: str) -> bool:
        """Whether the file gives this product's image vector (then none of its images is read)."""
        return self.image is not None and product_id in self.rows

    def given(self, record: ProductRecord) -> Given:
        """The vectors the file gives ``record`` (``NOTHING_GIVEN`` when it is not listed)."""
        row = self.rows.get(record.id)
        return NOTHING_GIVEN if row is None else self.given_at(row, record)

    def given_at(self, row: int, record: ProductRecord) -> Given:
        """The vectors of ``row`` given to ``record``."""
        return Given(text=None if self.text is None else self.text[row],
                     images=None if self.image is None else (image_of(record, self.image[row]),))

    def mix(self, product_id: str, images_digest: str) -> str:
        """``images_digest`` with the product's vectors added (unchanged when it is not listed): the digest its
        embed hash is made of."""
        row = self.rows.get(product_id)
        return images_digest if row is None else self.mix_at(row, images_digest)

    def mix_at(self, row: int, images_digest: str) -> str:
        digest = vectors_digest(None if self.text is None else self.text[row], None if self.image is None else self.image[row])
        return f"{images_digest}+vectors:{digest}"

    def unknown(self, catalog_ids: Collection[str]) -> list[tuple[int, str]]:
        """(row in the file, id) of the listed products that are not in ``catalog_ids``."""
        return [(i, pid) for i, pid in enumerate(self.ids) if pid not in catalog_ids]


def read_vectors_file(path: str | Path) -> VectorsFile:
    """``VectorsFile.read``: a checked ``.npz`` of precomputed vectors."""
    return VectorsFile.read(path)


def image_of(record: ProductRecord, vector: np.ndarray) -> EmbeddedImage:
    """A precomputed image vector as the record's first image (``vector:<id>`` when it has none)."""
    return EmbeddedImage(position=0, location=record.images[0] if record.images else f"vector:{record.id}", vector=vector)


def vectors_digest(text: np.ndarray | None, image: np.ndarray | None) -> str:
    """SHA-256 over a product's precomputed vectors (float32 bytes; a missing one counts as missing)."""
    digest = hashlib.sha256()
    for name, vector in (("text", text), ("image", image)):
        digest.update(name.encode())
        digest.update(b"-" if vector is None else np.ascontiguousarray(vector, dtype=np.float32).tobytes())
    return digest.hexdigest()


def check_ids(ids: Sequence[str] | np.ndarray, *, source: str) -> tuple[str, ...]:
    """Product ids as stripped, non-empty, distinct strings."""
    array = np.asarray(ids)
    if array.ndim != 1:
        raise VectorsFileError(f"{source}: 'ids' must be one-dimensional, got shape {array.shape}")
    if array.dtype.kind == "S":
        try:
            out = tuple(v.decode("utf-8").strip() for v in array.tolist())
        except UnicodeDecodeError:
            raise VectorsFileError(f"{source}: 'ids' are bytes that are not UTF-8") from None
    elif array.dtype.kind == "U" or (array.dtype.kind == "O" and all(isinstance(v, str) for v in array.tolist())):
        out = tuple(str(v).strip() for v in array.tolist())
    else:
        raise VectorsFileError(f"{source}: 'ids' must be strings (np.array(ids, dtype=str)), got {array.dtype}")
    if not out:
        raise VectorsFileError(f"{source}: no ids")
    seen: dict[str, int] = {}
    for i, pid in enumerate(out):
        if not pid:
            raise VectorsFileError(f"{source}: ids row {i} is empty")
        if pid in seen:
            raise VectorsFileError(f"{source}: id {pid!r} is repeated (rows {seen[pid]} and {i})")
        seen[pid] = i
    return out


def unit_matrix(matrix: Any, *, name: str, ids: Sequence[str], source: str) -> np.ndarray:
    """``matrix`` (one row per id) checked (2-D floats, finite, no zero row) and scaled to unit rows, float32.

    A bad row is named by its number and id."""
    array = np.asarray(matrix)
    if array.ndim != 2 or array.shape[0] != len(ids) or array.shape[1] < 1:
        raise VectorsFileError(f"{source}: {name!r} must have shape ({len(ids)}, d), one row per id; got {array.shape}")
    if array.dtype.kind != "f":
        raise VectorsFileError(f"{source}: {name!r} must hold floats (float32), got {array.dtype}")
    out = np.empty(array.shape, dtype=np.float32)
    for start in range(0, len(array), _CHUNK):
        chunk = np.asarray(array[start:start + _CHUNK], dtype=np.float64)
        finite = np.isfinite(chunk).all(axis=1)
        if not finite.all():
            row = start + int(np.argmin(finite))
            raise VectorsFileError(f"{source}: {name} row {row} (id {ids[row]!r}) is not finite (NaN or infinity)")
        scale = np.abs(chunk).max(axis=1)  # scaled first: a finite vector's norm may overflow float64
        if not scale.all():
            row = start + int(np.argmin(scale))
            raise VectorsFileError(f"{source}: {name} row {row} (id {ids[row]!r}) is all zeros")
        chunk /= scale[:, None]
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        out[start:start + len(chunk)] = chunk
    return out


def _array(data: Any, name: str, path: Path) -> np.ndarray:
    try:
        return np.asarray(data[name])
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            hint = "np.array(ids, dtype=str)" if name == "ids" else "a float32 array"
            raise VectorsFileError(f"{path}: {name!r} is an object array; save it as {hint}") from None
        raise

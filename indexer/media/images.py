"""Load images safely, for indexing and for queries alike.

Formats are checked by content against an allowlist, the pixel count is checked before
decoding (Pillow's decompression-bomb warning becomes an error), truncated files fail
cleanly, EXIF orientation is applied and every mode ends as 8-bit RGB.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import cast

from PIL import Image, ImageOps, UnidentifiedImageError

from indexer.config import FetchPolicy, ImageLimits
from indexer.media.fetch import fetch_url
from indexer.errors import ImageError, ImageRefusedError, ImageTooLargeError

DEFAULT_LIMITS = ImageLimits()


def load_image(source: str | Path | bytes | Image.Image, *, limits: ImageLimits = DEFAULT_LIMITS) -> Image.Image:
    """An RGB image from a path, an http(s) URL, raw bytes or a PIL image."""
    if isinstance(source, Image.Image):
        return to_rgb(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_image(bytes(source), name="image bytes", limits=limits)
    location = str(source)
    if location.lower().startswith(("http://", "https://")):
        return decode_image(fetch_url(location, policy=FetchPolicy(max_bytes=limits.max_bytes)), name=location, limits=limits)
    return decode_image(read_file(Path(location), limits=limits), name=location, limits=limits)


def read_file(path: Path, *, limits: ImageLimits = DEFAULT_LIMITS) -> bytes:
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ImageTooLargeError(f"{path}: {size} bytes, over the {limits.max_bytes}-byte limit")
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None


def decode_image(data: bytes, *, name: str, limits: ImageLimits = DEFAULT_LIMITS, min_size: int | None = None) -> Image.Image:
    """Decode ``data`` into an RGB image, or raise ``ImageError`` naming ``name`` and the reason.

    With ``min_size``, a JPEG is decoded at the smallest of 1/8, 1/4, 1/2 or full scale that keeps both
    sides >= ``min_size`` (libjpeg's DCT scaling: a 2000 px photo for a 224 px model decodes at 1/8 the
    work); other formats decode in full.
    """
    if not data:
        raise ImageError(f"{name}: empty file")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(f"{name}: {len(data)} bytes, over the {limits.max_bytes}-byte limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=None)
            fmt = image.format or "unknown"
            if fmt not in limits.allowed_formats:
                raise ImageRefusedError(f"{name}: {fmt} images are not accepted (allowed: {', '.join(sorted(limits.allowed_formats))})")
            width, height = image.size
            if width * height > limits.max_pixels:
                raise ImageTooLargeError(f"{name}: {width}x{height} pixels, over the {limits.max_pixels}-pixel limit")
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            if min_size and fmt == "JPEG":
                image.draft(None, (min_size, min_size))
            image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"{name}: refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageRefusedError(f"{name}: not an image (unrecognised content)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name}: cannot decode ({exc})") from None
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB with EXIF orientation applied; transparency composited on white.

    CMYK JPEGs written the Adobe way (inverted) are un-inverted by Pillow's decoder itself.
    """
    image = ImageOps.exif_transpose(image) or image
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda v: v / 257).convert("L") if mode != "I" else _scale_int(image)
        mode = image.mode
    if mode == "P" or mode == "PA":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB") if mode != "RGB" else image


def _scale_int(image: Image.Image) -> Image.Image:
    low, high = cast("tuple[float, float]", image.getextrema())  # one band (mode I): (min, max)
    if high <= 255:
        return image.convert("L")
    return image.point(lambda v: v * (255.0 / 65535.0)).convert("L")


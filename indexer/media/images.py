"""Load images safely, for indexing and for queries alike.

Formats are checked by content against an allowlist, the pixel count, the aspect ratio and the
decoded size are checked before decoding (Pillow's decompression-bomb warning becomes an error),
truncated files fail cleanly, EXIF orientation is applied (a corrupt EXIF block is ignored: the
pixels are still good) and every mode ends as 8-bit RGB.  Whatever goes wrong inside Pillow ends
as an ``ImageError`` naming the image: no input escapes as another exception.
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
    work); other formats decode in full and are then reduced by a whole factor (box filter) that keeps the
    shorter side >= 2 x ``min_size``, so the model's resize never works on much more than that.
    """
    if not data:
        raise ImageError(f"{name}: empty file")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(f"{name}: {len(data)} bytes, over the {limits.max_bytes}-byte limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data), formats=None)
            fmt = image.format or "unknown"
            if fmt not in limits.allowed_formats:
                raise ImageRefusedError(f"{name}: {fmt} images are not accepted (allowed: {', '.join(sorted(limits.allowed_formats))})")
            _check_shape(image, name=name, limits=limits)
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            if min_size and fmt in ("JPEG", "MPO"):
                image.draft(None, (min_size, min_size))
            image.load()
            if min_size:
                image = _reduced(image, min_size)
            image = to_rgb(image)
            if min_size:
                image = _reduced(image, min_size)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"{name}: refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageRefusedError(f"{name}: not an image (unrecognised content)") from None
    except MemoryError:
        raise ImageTooLargeError(f"{name}: not enough memory to decode it") from None
    except Exception as exc:  # noqa: BLE001  hostile input: Pillow raises OSError, SyntaxError, struct.error, IndexError...
        raise ImageError(f"{name}: cannot decode ({type(exc).__name__}: {exc})") from None
    return image


def _check_shape(image: Image.Image, *, name: str, limits: ImageLimits) -> None:
    """Pixel count, aspect ratio and decoded bytes, from the header alone (nothing decoded yet)."""
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"{name}: {width}x{height} pixels: an empty image")
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(f"{name}: {width}x{height} pixels, over the {limits.max_pixels}-pixel limit")
    if max(width, height) > limits.max_aspect_ratio * min(width, height):
        raise ImageTooLargeError(f"{name}: {width}x{height} pixels, an aspect ratio over {limits.max_aspect_ratio:g}:1 "
                                 "(crop it to the product)")
    decoded = width * height * _bytes_per_pixel(image.mode)
    if decoded > limits.max_decoded_bytes:
        raise ImageTooLargeError(f"{name}: {width}x{height} {image.mode} pixels take {decoded // (1024 * 1024)} MiB decoded, "
                                 f"over the {limits.max_decoded_bytes // (1024 * 1024)} MiB limit")


def _bytes_per_pixel(mode: str) -> int:
    if mode in ("I", "F", "RGBX", "RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV") or mode.startswith("I;32"):
        return 4
    if mode.startswith("I;16") or mode in ("LA", "La", "PA"):
        return 2
    if mode in ("RGB",):
        return 3
    return max(1, len(mode))  # "1", "L", "P"


def _reduced(image: Image.Image, min_size: int) -> Image.Image:
    """``image`` shrunk by the largest whole factor keeping its shorter side >= 2 x ``min_size`` (box filter;
    the model's own resize does the last, antialiased step)."""
    factor = min(image.size) // max(1, 2 * min_size)
    if factor < 2:
        return image
    try:
        return image.reduce(factor)
    except ValueError:  # a mode reduce() does not take (P, 1...): reduced after the conversion to RGB
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB with EXIF orientation applied; transparency composited on white.

    CMYK JPEGs written the Adobe way (inverted) are un-inverted by Pillow's decoder itself.
    """
    image = _oriented(image)
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


def _oriented(image: Image.Image) -> Image.Image:
    """EXIF orientation applied; a corrupt EXIF block (Pillow: SyntaxError "not a TIFF file", ValueError on a
    PNG's non-hex "Raw profile type exif", warnings on short tags...) leaves the pixels as they are."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data": not worth a line per photo
            orientation = image.getexif().get(0x0112)
    except Exception:  # noqa: BLE001  any parse failure means: no usable orientation
        return image
    if orientation not in _TRANSPOSE:
        return image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return ImageOps.exif_transpose(image) or image
    except Exception:  # noqa: BLE001  the tag was readable, rewriting the block was not: turn it by hand
        turned = image.transpose(_TRANSPOSE[orientation])
        for key in ("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp"):
            turned.info.pop(key, None)  # never turned twice
        return turned


_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def _scale_int(image: Image.Image) -> Image.Image:
    low, high = cast("tuple[float, float]", image.getextrema())  # one band (mode I): (min, max)
    if high <= 255:
        return image.convert("L")
    return image.point(lambda v: v * (255.0 / 65535.0)).convert("L")


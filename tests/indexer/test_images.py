import io

import pytest
from PIL import Image

from indexer.config import ImageLimits
from indexer.errors import ImageError
from indexer.media.images import decode_image, load_image


def encoded(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def test_modes_become_rgb_with_transparency_on_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert decode_image(encoded(rgba, "PNG"), name="t").getpixel((0, 0)) == (255, 255, 255)
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([10, 20, 30] * 256)
    assert decode_image(encoded(palette, "GIF"), name="g").getpixel((1, 1)) == (10, 20, 30)
    deep = Image.new("I;16", (4, 4), 65535)
    assert decode_image(encoded(deep, "PNG"), name="d").getpixel((0, 0)) == (255, 255, 255)
    grey = Image.new("LA", (4, 4), (0, 255))
    assert decode_image(encoded(grey, "PNG"), name="la").getpixel((0, 0)) == (0, 0, 0)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (20, 10), (0, 0, 255))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    assert decode_image(encoded(image, "JPEG", exif=exif), name="e").size == (10, 20)


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"hello world", "not an image"),
    (encoded(Image.new("RGB", (4, 4)), "TIFF"), "TIFF images are not accepted"),
    (encoded(Image.new("RGB", (64, 64)), "PNG")[:60], "cannot decode"),
])
def test_refused_content_names_the_reason(data, message):
    with pytest.raises(ImageError, match=message):
        decode_image(data, name="upload")


def test_pixel_and_byte_limits():
    data = encoded(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageError, match="pixel limit"):
        decode_image(data, name="big", limits=ImageLimits(max_pixels=5000))
    with pytest.raises(ImageError, match="byte limit"):
        decode_image(data, name="big", limits=ImageLimits(max_bytes=10))


def test_paths_and_urls(tmp_path):
    (tmp_path / "a.png").write_bytes(encoded(Image.new("RGB", (3, 3), (1, 2, 3)), "PNG"))
    assert load_image(tmp_path / "a.png").getpixel((0, 0)) == (1, 2, 3)
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="loopback address"):
        load_image("http://127.0.0.1:9/x.png")


def test_cmyk_jpeg_including_adobe_inverted_comes_out_right():
    cyan = Image.new("CMYK", (8, 8), (255, 0, 0, 0))
    data = encoded(cyan, "JPEG")  # Pillow writes an Adobe APP14 marker with inverted CMYK
    with Image.open(io.BytesIO(data)) as raw:
        assert "adobe" in raw.info
    r, g, b = decode_image(data, name="cmyk").getpixel((4, 4))
    assert r < 20 and g > 235 and b > 235


def test_large_jpegs_decode_at_a_reduced_scale_that_still_covers_the_model_input(tiny_encoder):
    import numpy as np

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)  # smooth-ish content, like a product photo
    photo = Image.fromarray(base).resize((1600, 1200), Image.BICUBIC)
    data = encoded(photo, "JPEG", quality=92)
    full = decode_image(data, name="p.jpg")
    small = decode_image(data, name="p.jpg", min_size=64)
    assert full.size == (1600, 1200) and small.size == (200, 150)  # 1/8 scale: shorter side 150 >= 64
    assert decode_image(data, name="p.jpg", min_size=224).size == (400, 300)  # 1/4: 150 would be < 224
    png = encoded(photo, "PNG")
    assert decode_image(png, name="p.png", min_size=64).size == (178, 134)  # no DCT scaling: reduced 9x (rounded up) after decoding
    a, b = tiny_encoder.preprocess_images([full]), tiny_encoder.preprocess_images([small])
    assert float((a - b).abs().mean()) < 0.05
    va, vb = tiny_encoder.encode_pixels(a)[0], tiny_encoder.encode_pixels(b)[0]
    assert float(va @ vb) > 0.99

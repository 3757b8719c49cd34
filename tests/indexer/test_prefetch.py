"""``prefetch`` keeps order, stays bounded, surfaces errors in turn; ``prepare_images`` keeps failures."""

from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image

from indexer.prefetch import prefetch, prepare_images


def test_results_come_in_order_even_when_later_items_finish_first():
    def slow_first(i):
        time.sleep(0.02 if i % 3 == 0 else 0)
        return i * i

    assert list(prefetch(range(10), slow_first, workers=3, depth=3)) == [i * i for i in range(10)]


def test_lookahead_is_bounded_and_items_are_pulled_in_the_calling_thread():
    caller = threading.get_ident()
    pulled, started = [], []

    def items():
        for i in range(20):
            assert threading.get_ident() == caller
            pulled.append(i)
            yield i

    def prepare(i):
        started.append(i)
        return i

    for consumed, _ in enumerate(prefetch(items(), prepare, workers=2, depth=2), start=1):
        time.sleep(0.005)
        assert len(pulled) <= consumed + 2
    assert sorted(started) == list(range(20))


def test_an_error_is_raised_when_its_turn_comes():
    def prepare(i):
        if i == 3:
            raise ValueError("bad batch 3")
        return i

    stream = prefetch(range(6), prepare, depth=2)
    assert [next(stream), next(stream), next(stream)] == [0, 1, 2]
    with pytest.raises(ValueError, match="bad batch 3"):
        next(stream)


def test_closing_early_stops_the_work():
    started = []

    def prepare(i):
        started.append(i)
        time.sleep(0.01)
        return i

    stream = prefetch(range(1000), prepare, workers=1, depth=2)
    assert next(stream) == 0
    stream.close()
    assert len(started) <= 4


def test_bad_sizes_raise():
    with pytest.raises(ValueError):
        list(prefetch([1], str, workers=0))


def test_prepare_images_preprocesses_what_decodes_and_reports_the_rest(tiny_encoder):
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(buffer, format="JPEG")
    batch = [("a.jpg", buffer.getvalue()), ("b.jpg", b"not an image"), ("c.jpg", buffer.getvalue())]
    prepared = prepare_images(batch, preprocess=tiny_encoder.preprocess_images)
    assert prepared.kept == [0, 2]
    assert [i for i, _ in prepared.errors] == [1] and "b.jpg" in str(prepared.errors[0][1])
    assert tuple(prepared.pixels.shape) == (2, 3, 32, 32)
    vectors = tiny_encoder.encode_pixels(prepared.pixels)
    assert vectors.shape == (2, tiny_encoder.dim)
    assert prepare_images([("b.jpg", b"")], preprocess=tiny_encoder.preprocess_images).pixels is None

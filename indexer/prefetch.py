"""Prepare the next batches in worker threads while the caller runs the model on the current one.

Reading files, decoding JPEG/PNG and the model's resize + normalise are C code that releases the
GIL (Pillow, torch), so a small thread pool overlaps them with the forward pass.  ``prefetch`` is
ordered and bounded: at most ``depth`` prepared batches wait in memory, so prepared batches should
be tensors, not full-size decoded images (a 2000 px photo is 12 MB as RGB; 224 px pixels are 0.6 MB).

    for pixels in prefetch(batches, lambda batch: encoder.preprocess_images(decode(batch))):
        vectors = encoder.encode_pixels(pixels)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from indexer.config import ImageLimits
from indexer.errors import ImageError
from indexer.media.images import DEFAULT_LIMITS, decode_image

T = TypeVar("T")
R = TypeVar("R")


def prefetch(items: Iterable[T], prepare: Callable[[T], R], *, workers: int = 1, depth: int = 2) -> Generator[R, None, None]:
    """``prepare(item)`` for each item, in order, computed up to ``depth`` items ahead in ``workers`` threads.

    ``items`` is consumed in the calling thread (it may be a generator that is not thread-safe);
    an exception raised by ``prepare`` is raised here when its item's turn comes.  Closing the
    iterator early cancels what has not started and waits for what has.
    """
    if workers < 1 or depth < 1:
        raise ValueError(f"workers and depth must be >= 1, got {workers}, {depth}")
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vitrina-prefetch")
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(prepare, item))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class PreparedImages:
    """One batch of images, decoded and preprocessed: ``pixels`` row ``i`` is image ``kept[i]`` of the batch."""

    pixels: Any  # a (len(kept), 3, H, W) tensor, or None when nothing decoded
    kept: list[int] = field(default_factory=list)
    errors: list[tuple[int, ImageError]] = field(default_factory=list)


def prepare_images(images: Sequence[tuple[str, bytes]], *, preprocess: Callable[[Sequence[Any]], Any],
                   limits: ImageLimits = DEFAULT_LIMITS) -> PreparedImages:
    """Decode ``(name, bytes)`` pairs with the safe loader and run ``preprocess`` (e.g.
    ``OpenClipEncoder.preprocess_images``) on those that decode; failures are kept, not raised."""
    decoded, prepared = [], PreparedImages(pixels=None)
    for i, (name, data) in enumerate(images):
        try:
            decoded.append(decode_image(data, name=name, limits=limits))
            prepared.kept.append(i)
        except ImageError as exc:
            prepared.errors.append((i, exc))
    if decoded:
        prepared.pixels = preprocess(decoded)
    return prepared

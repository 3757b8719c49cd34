"""``StageTimes``: seconds spent per stage of a pipeline, summed across threads, and which stage limits it.

The indexer's stages are ``read`` (files and URLs, content hashes), ``decode`` (image decoding and the
model's preprocessing), both in a worker thread, then ``text`` and ``image`` (model forward passes) and
``store`` (SQLite rows, FAISS adds, commits) on the main thread; ``wait`` is the main thread idling for
the worker.  The worker's stages overlap the main thread's, so the slower side sets the pace: the main
thread when ``wait`` is small, the worker's busiest stage otherwise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: Stages that run in the preparing worker (overlapped with the main thread's stages).
WORKER_STAGES = ("read", "decode")
MAIN_STAGES = ("text", "image", "store")


class StageTimes:
    """Thread-safe accumulator of seconds per stage."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}
        self.started = time.perf_counter()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - started)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self.seconds)

    def bottleneck(self) -> str | None:
        """The stage that sets the pace (see the module docstring); None before anything was timed."""
        seconds = self.snapshot()
        main = {s: seconds.get(s, 0.0) for s in MAIN_STAGES}
        worker = {s: seconds.get(s, 0.0) for s in WORKER_STAGES}
        if not any(main.values()) and not any(worker.values()):
            return None
        if seconds.get("wait", 0.0) > 0.5 * sum(main.values()) and any(worker.values()):
            return max(worker, key=worker.__getitem__)
        return max(main, key=main.__getitem__)

    def to_json(self) -> dict[str, float]:
        seconds = self.snapshot()
        seconds["wall"] = time.perf_counter() - self.started
        return {k: round(v, 3) for k, v in seconds.items()}

"""``CommitFollower``: keeps a serving engine on the index's live commit without waiting for a query.

Several ``vitrina serve`` replicas over one database and one shared index folder each run one: every
``interval`` seconds it reads the live commit and, when a writer made a new one, loads its new segments
(``SearchEngine.refresh``) in this background thread, so every replica answers from the new generation
within about ``interval`` plus the load time, and no query pays for the load.  A failed refresh (a
segment file replaced under it, the database briefly unreachable) is logged and tried again.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

__all__ = ["CommitFollower"]

log = logging.getLogger("vitrina.follow")


class _Refreshable(Protocol):
    def refresh(self) -> int: ...


class CommitFollower:
    """A daemon thread calling ``engine.refresh()`` every ``interval`` seconds until ``stop``."""

    def __init__(self, engine: _Refreshable, *, interval: float = 1.0):
        if interval <= 0:
            raise ValueError("the refresh interval must be positive")
        self.engine, self.interval = engine, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vitrina-follow", daemon=True)
        #: The generation loaded by the last successful refresh (None before the first).
        self.generation: int | None = None
        self.failures = 0

    def start(self) -> CommitFollower:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.generation = self.engine.refresh()
            except Exception as exc:  # noqa: BLE001 (a refresh that fails is tried again; queries go on)
                self.failures += 1
                log.warning("could not load the index's latest commit (will retry): %s", exc)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

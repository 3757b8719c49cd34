"""``WriteLock``: one writer per index folder, by an exclusive ``flock`` on ``write.lock``.

The kernel releases the lock when its process dies, even by SIGKILL, so a killed run never leaves
the folder locked.  Creating a new index folder happens under the same lock, so two writers racing
on a new folder get one index and one clear "another writer" error.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from indexer.errors import IndexLockedError, IndexWriteError

LOCK_FILE = "write.lock"


class WriteLock:
    """An exclusive, non-blocking lock on ``folder/write.lock`` holding the owner's pid."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise IndexWriteError(f"{self.path.parent}: cannot write to the index folder ({exc.strerror or exc}); "
                                  "check its permissions and free space") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise IndexLockedError(
                f"{self.path.parent}: another writer (pid {holder}) is updating this index; "
                "wait for it to finish or stop it (searches keep working meanwhile)"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:  # the pid is only a courtesy for the error above; a full disk must not stop here
            pass
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriteLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

"""Run the ``vitrina`` CLI with a SIGKILL planted at one point (for tests/test_faults.py).

    python tests/faultinject.py POINT N -- index CATALOG --index DIR ...

POINT is one of: after-commit (after the Nth commit), encoding (inside the Nth image
batch), faiss-write (half-way through writing the Nth FAISS file), before-sqlite-commit
(the Nth commit's FAISS files renamed into place, its SQLite transaction not yet run).
"""

from __future__ import annotations

import os
import signal
import sys


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def plant(point: str, n: int) -> None:
    import faiss

    from indexer.encoders import open_clip as encoder
    from indexer.store import vectors, writer

    calls = {"count": 0}

    def hit() -> bool:
        calls["count"] += 1
        return calls["count"] == n

    if point == "after-commit":
        original_commit = writer.IndexWriter.commit

        def commit(self):
            info = original_commit(self)
            if hit():
                die()
            return info

        writer.IndexWriter.commit = commit
    elif point == "encoding":
        original_encode = encoder.OpenClipEncoder.encode_pixels

        def encode_pixels(self, pixels):
            if hit():
                die()
            return original_encode(self, pixels)

        encoder.OpenClipEncoder.encode_pixels = encode_pixels
    elif point == "faiss-write":
        original_write = faiss.write_index

        def write_index(index, path):
            original_write(index, path)
            if hit():
                with open(path, "r+b") as handle:
                    handle.truncate(os.path.getsize(path) // 2)
                die()

        vectors.faiss.write_index = write_index
    elif point == "before-sqlite-commit":
        original_atomic = vectors.write_atomic
        written = {"files": 0}

        def write_atomic(index, path):
            result = original_atomic(index, path)
            written["files"] += 1
            if written["files"] % 2 == 0 and hit():  # both files of this commit are in place
                die()
            return result

        vectors.write_atomic = write_atomic
    else:
        raise SystemExit(f"unknown fault point {point!r}")


if __name__ == "__main__":
    point, count, separator, *cli_args = sys.argv[1:]
    assert separator == "--"
    plant(point, int(count))
    from vitrina.cli import cli

    cli(args=cli_args, prog_name="vitrina")

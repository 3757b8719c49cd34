"""Run the ``vitrina`` CLI with a SIGKILL planted at one point (for tests/test_faults.py).

    python tests/faultinject.py POINT N -- index CATALOG --index DIR ...

POINT is one of: after-commit (after the Nth commit), encoding (inside the Nth image
batch), faiss-write (half-way through writing the Nth FAISS file), before-sqlite-commit
(the Nth commit's segment files renamed into place, its SQLite transaction not yet run),
merge-write (half-way through writing the Nth merged segment), merge-before-sqlite-commit
(the Nth commit's merged segment in place, its transaction not yet run), before-cleanup (the Nth
commit done, the files it replaced not yet removed).  The merge points make every commit merge
all segments (the tiered policy would wait for ten).
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
    elif point in ("before-sqlite-commit", "merge-before-sqlite-commit", "merge-write", "before-cleanup"):
        from sqlalchemy.orm import Session

        from indexer.store import segments

        if point.startswith("merge"):
            segments.plan_merge = lambda states, config: [s.number for s in states] if len(states) > 1 else []
        original_merge = writer.IndexWriter._merge
        merging = {"now": False, "done": False}

        def merge(self, *args, **kwargs):
            merging["now"] = True
            try:
                number = original_merge(self, *args, **kwargs)
            finally:
                merging["now"] = False
            merging["done"] = merging["done"] or bool(self.merged)
            return number

        writer.IndexWriter._merge = merge
        if point == "merge-write":
            original_write = faiss.write_index

            def write_index(index, path):
                original_write(index, path)
                if merging["now"] and hit():
                    with open(path, "r+b") as handle:
                        handle.truncate(os.path.getsize(path) // 2)
                    die()

            vectors.faiss.write_index = write_index
        else:
            original_session_commit = Session.commit

            def session_commit(self):
                if point != "before-cleanup" and (point == "before-sqlite-commit" or merging["done"]) and hit():
                    die()
                original_session_commit(self)
                merging["done"] = False

            Session.commit = session_commit
            if point == "before-cleanup":
                original_glob = writer.Path.glob

                def glob(self, pattern):
                    if pattern.startswith("image.") and hit():
                        die()
                    return original_glob(self, pattern)

                writer.Path.glob = glob
    else:
        raise SystemExit(f"unknown fault point {point!r}")


if __name__ == "__main__":
    point, count, separator, *cli_args = sys.argv[1:]
    assert separator == "--"
    plant(point, int(count))
    from vitrina.cli import cli

    cli(args=cli_args, prog_name="vitrina")

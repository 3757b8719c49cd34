"""A throwaway PostgreSQL cluster for tests and benchmarks: ``initdb`` + ``pg_ctl`` in a temporary folder.

Unix socket only (no TCP port), ``fsync=off``, started in ~2 s.  ``initdb`` refuses to run as root, so as
root the cluster is made and run by the ``postgres`` user through ``runuser``.  Nothing here is used by
the library itself::

    with PostgresCluster.start() as cluster:
        url = cluster.create_database("shop")   # postgresql+psycopg://postgres@/shop?host=/tmp/...
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

__all__ = ["PostgresCluster", "PostgresUnavailable", "find_binaries"]

_SEARCH = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")


class PostgresUnavailable(RuntimeError):
    """``initdb``/``pg_ctl`` are not installed (or the cluster did not start)."""


def find_binaries() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    for folder in _SEARCH:
        if (Path(folder) / "initdb").exists():
            return Path(folder)
    raise PostgresUnavailable("PostgreSQL is not installed (no initdb/pg_ctl): `apt-get install postgresql`")


class PostgresCluster:
    """A running throwaway cluster; ``stop()`` (or leaving the ``with``) shuts it down and deletes it."""

    def __init__(self, root: Path, bin_dir: Path, user: str | None):
        self.root, self.bin_dir, self.user = root, bin_dir, user
        self.data = root / "data"
        self.socket_dir = root / "socket"

    @classmethod
    def start(cls, *, timeout_s: float = 60.0) -> PostgresCluster:
        bin_dir = find_binaries()
        user = "postgres" if os.geteuid() == 0 else None
        root = Path(tempfile.mkdtemp(prefix="vitrina-pg-"))
        cluster = cls(root, bin_dir, user)
        try:
            cluster.socket_dir.mkdir()
            if user is not None:
                shutil.chown(root, user)
                shutil.chown(cluster.socket_dir, user)
            cluster._run("initdb", "-D", str(cluster.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                         "--locale=C.UTF-8", "--no-sync")
            options = f"-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c listen_addresses='' " \
                      f"-c unix_socket_directories={cluster.socket_dir} -c max_connections=200"
            cluster._run("pg_ctl", "-D", str(cluster.data), "-l", str(root / "server.log"), "-o", options, "-w",
                         "-t", str(int(timeout_s)), "start")
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return cluster

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresUnavailable(f"{program} failed ({done.returncode}): {done.stderr.strip()[-2000:]} {tail}")

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` over the cluster's socket."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (a fresh name when None); its URL."""
        import psycopg  # the [postgres] extra: only who starts a cluster needs it

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host=str(self.socket_dir), user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(host=str(self.socket_dir), user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except PostgresUnavailable:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

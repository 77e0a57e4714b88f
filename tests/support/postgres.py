"""A real, throw-away PostgreSQL server for tests (Debian's ``postgresql`` package, no mock).

``initdb`` and ``postgres`` refuse to run as root, so when the tests run as root the cluster is created and
run as the ``postgres`` system user (``runuser``); otherwise as the current user. The data directory and the
unix socket live in a fresh temporary directory; the server listens on 127.0.0.1 at a free port with
``fsync=off`` (test data only) and trust authentication for the cluster's superuser ``oncohabitat``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg

SUPERUSER = "oncohabitat"


def postgres_bindir() -> Path | None:
    """The directory holding ``initdb``/``pg_ctl`` (newest Debian cluster version first), or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


class PostgresServer:
    """A started cluster; :meth:`create_database` hands out an empty database URL per test."""

    def __init__(self, port: int) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self._bindir = bindir
        self.port = port
        self._root = Path(tempfile.mkdtemp(prefix="oncohabitat-pg-"))
        self._data = self._root / "data"
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self._root, user="postgres")
            self._prefix = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self._data), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--no-sync")
        self._options = f"-k {self._root} -c listen_addresses=127.0.0.1 -p {port} -c fsync=off -c max_connections=200"
        self.start()

    def start(self) -> None:
        """Start the (stopped) server and wait until it accepts connections."""
        log = str(self._root / "server.log")
        self._run("pg_ctl", "-D", str(self._data), "-o", self._options, "-l", log, "-w", "start")

    def crash(self) -> None:
        """Stop the server at once (``immediate``: every connection is cut, as in a crash); :meth:`start` again."""
        self._run("pg_ctl", "-D", str(self._data), "-m", "immediate", "stop")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._prefix, str(self._bindir / tool), *args], check=True, capture_output=True, timeout=120)

    def url(self, database: str = "postgres") -> str:
        """Connection URI of ``database`` as the superuser over loopback TCP."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server at once and delete its files."""
        try:
            self._run("pg_ctl", "-D", str(self._data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self._root, ignore_errors=True)


def start_server_or_fail() -> PostgresServer:
    """A started server, or a test failure naming what to install (never a skip: CI must run these)."""
    import pytest

    from tests.conftest import free_port

    if postgres_bindir() is None:
        pytest.fail("PostgreSQL not found: the test command installs it (scripts/bootstrap.sh: apt postgresql)")
    return PostgresServer(free_port())

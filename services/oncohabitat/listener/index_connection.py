"""The study index's SQLite file: one locked writer connection, a pool of readers, clean-close marker.

One connection (WAL; ``synchronous=FULL`` or ``NORMAL``), guarded by a lock, serves every thread
for writes and range queries; every write is one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction.
Point lookups on the receive path use a pool of read-only connections: in WAL mode they read the
last commit without waiting for a writer or for each other.

A marker file (``<index>`` + :data:`CLEAN_SUFFIX`) is written by :meth:`IndexConnection.close`
after a checkpoint and removed at open: its absence at open means the index was not closed
cleanly (:attr:`IndexConnection.unclean_start`), so the last commits before a power loss may be
missing with ``synchronous=NORMAL`` and the store re-indexes its durable files.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from oncohabitat.listener.errors import StudyIndexError
from oncohabitat.listener.index_schema import migrate

# The study index's one logger, whichever of its modules logs.
_LOG = logging.getLogger("oncohabitat.listener.index")

__all__ = ["CLEAN_SUFFIX", "IndexConnection"]

#: Suffix of the marker file that says the index was closed cleanly.
CLEAN_SUFFIX = ".clean"


class IndexConnection:
    """Open (create, migrate) the index file; serialised transactions and queries on it.

    Args:
        db_path: the SQLite file (its directory must exist).
        busy_timeout_s: how long a statement waits for a lock held by another connection, in s.
        synchronous: ``"FULL"`` (every commit fsynced) or ``"NORMAL"`` (WAL; see module doc).

    Raises:
        ValueError: ``synchronous`` is neither FULL nor NORMAL.
        StudyIndexError: the file is not a usable index (corrupt, newer schema).
    """

    def __init__(
        self,
        db_path: Path,
        *,
        busy_timeout_s: float = 10.0,
        synchronous: str = "FULL",
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        self.db_path = db_path
        self.synchronous = synchronous
        self._lock = threading.Lock()
        self._clean_marker = db_path.with_name(db_path.name + CLEAN_SUFFIX)
        self.unclean_start = not self._clean_marker.exists()
        try:
            self._conn = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_s)
            mode = str(self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            if mode.lower() != "wal":
                _LOG.warning("study index cannot use WAL on this file system (journal mode %s)", mode)
            self._conn.execute(f"PRAGMA synchronous={synchronous}")
            self._conn.execute("PRAGMA foreign_keys=ON")
            migrate(self._conn, db_path.name)
            # The reader pool grows to the number of concurrent lookups (at most the association limit).
            self._busy_timeout_s = busy_timeout_s
            self._idle_readers: list[sqlite3.Connection] = []
            self._all_readers: list[sqlite3.Connection] = []
            self._reader_lock = threading.Lock()
        except sqlite3.DatabaseError as exc:
            raise StudyIndexError(f"study index {db_path.name} cannot be opened: {exc}") from exc
        self._may_mark_clean = not self.unclean_start
        if not self.unclean_start:
            self._clean_marker.unlink()  # until close() says otherwise, a crash is assumed

    def mark_reconciled(self) -> None:
        """The store re-indexed its files after an unclean start: a clean close may be recorded."""
        self._may_mark_clean = True

    def close(self) -> None:
        """Checkpoint (fsync), close the connection and mark the shutdown clean (further calls fail)."""
        with self._reader_lock:
            for reader in self._all_readers:
                reader.close()
            self._all_readers.clear()
            self._idle_readers.clear()
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                _LOG.error("study index checkpoint failed at close: %s", type(exc).__name__)
                self._conn.close()
                return
            self._conn.close()
        if self._may_mark_clean:
            self._clean_marker.touch()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """Serialised write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``, rollback on error)."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """All rows of ``sql`` on the writer connection (sees this process's last commit)."""
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    def _read_one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The first row of ``sql`` on a pooled read-only connection (last committed state), if any."""
        reader = self._borrow_reader()
        try:
            row: tuple[Any, ...] | None = reader.execute(sql, params).fetchone()
        finally:
            with self._reader_lock:
                self._idle_readers.append(reader)
        return row

    def _borrow_reader(self) -> sqlite3.Connection:
        """An idle read-only connection of the pool, or a new one."""
        with self._reader_lock:
            if self._idle_readers:
                return self._idle_readers.pop()
        reader = sqlite3.connect(
            self.db_path, check_same_thread=False, isolation_level=None, timeout=self._busy_timeout_s
        )
        reader.execute("PRAGMA query_only=1")
        with self._reader_lock:
            self._all_readers.append(reader)
        return reader

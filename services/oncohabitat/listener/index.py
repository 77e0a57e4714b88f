"""SQLite index of received studies and instances (WAL, ``synchronous=FULL``).

One connection, guarded by a lock, serves every thread (association handlers, completion
monitor, outbox). A committed row is durable: it survives a crash or ``kill -9``.

Times are Unix epoch seconds (``float``, wall clock) so that quiet periods and hand-off backoff
survive a restart. Study states follow ``oncohabitat.v1.StudyState``::

    RECEIVING --quiet period--> COMPLETE --hand-off ok--> HANDED_OFF
                                 COMPLETE --hand-off refused--> REJECTED

A new (not duplicate) instance for a COMPLETE, HANDED_OFF or REJECTED study reopens it to
RECEIVING (first version): it completes again after a new quiet period and is handed off again
with a new content digest. ``job_id`` keeps the previous job until the next hand-off.

No patient names, IDs, birth dates or accession numbers are stored: only UIDs, opaque keys,
SOP class, modality, file paths relative to the store root, sizes and SHA-256 digests.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from oncohabitat.listener.errors import StudyIndexError
from oncohabitat.listener.identifiers import content_digest

_LOG = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study_key         TEXT PRIMARY KEY,
    study_uid         TEXT NOT NULL UNIQUE,
    state             TEXT NOT NULL
                      CHECK (state IN ('RECEIVING', 'COMPLETE', 'HANDED_OFF', 'REJECTED')),
    first_received_at REAL NOT NULL,
    last_received_at  REAL NOT NULL,
    instance_count    INTEGER NOT NULL DEFAULT 0,
    bytes_stored      INTEGER NOT NULL DEFAULT 0,
    completed_at      REAL,
    handed_off_at     REAL,
    job_id            TEXT,
    reason            TEXT NOT NULL DEFAULT '',
    content_digest    TEXT,
    handoff_attempts  INTEGER NOT NULL DEFAULT 0,
    next_handoff_at   REAL,
    conflicts         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS studies_by_state ON studies (state, last_received_at);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid       TEXT PRIMARY KEY,
    study_key     TEXT NOT NULL REFERENCES studies (study_key),
    series_key    TEXT NOT NULL,
    series_uid    TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    modality      TEXT NOT NULL,
    path          TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    size          INTEGER NOT NULL,
    received_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_by_study ON instances (study_key);
"""


class StudyState(StrEnum):
    """Life-cycle state of a study (names match ``oncohabitat.v1.StudyState`` without prefix)."""

    RECEIVING = "RECEIVING"
    COMPLETE = "COMPLETE"
    HANDED_OFF = "HANDED_OFF"
    REJECTED = "REJECTED"


class AddOutcome(StrEnum):
    """What :meth:`StudyIndex.add_instance` did with an instance."""

    STORED = "stored"  # new row committed
    IDENTICAL = "identical"  # same SOP Instance UID and same bytes already indexed: nothing changed
    CONFLICT = "conflict"  # same SOP Instance UID, different bytes: first kept, conflict counted


@dataclass(frozen=True)
class InstanceRecord:
    """One stored instance. ``path`` is POSIX, relative to the store root; times in epoch s."""

    sop_uid: str
    study_key: str
    series_key: str
    series_uid: str
    sop_class_uid: str
    modality: str
    path: str
    sha256: str
    size: int
    received_at: float


@dataclass(frozen=True)
class StudyRecord:
    """One study row. Times are epoch seconds; ``bytes_stored`` counts Part-10 file bytes."""

    study_key: str
    study_uid: str
    state: StudyState
    first_received_at: float
    last_received_at: float
    instance_count: int
    bytes_stored: int
    completed_at: float | None
    handed_off_at: float | None
    job_id: str | None
    reason: str
    content_digest: str | None
    handoff_attempts: int
    next_handoff_at: float | None
    conflicts: int


@dataclass(frozen=True)
class AddResult:
    """Result of :meth:`StudyIndex.add_instance`; ``reopened_from`` is the state left, if any."""

    outcome: AddOutcome
    reopened_from: StudyState | None = None


_STUDY_COLUMNS = (
    "study_key, study_uid, state, first_received_at, last_received_at, instance_count, bytes_stored, "
    "completed_at, handed_off_at, job_id, reason, content_digest, handoff_attempts, next_handoff_at, "
    "conflicts"
)
_INSTANCE_COLUMNS = (
    "sop_uid, study_key, series_key, series_uid, sop_class_uid, modality, path, sha256, size, received_at"
)


def _study(values: tuple[Any, ...]) -> StudyRecord:
    return StudyRecord(
        study_key=str(values[0]),
        study_uid=str(values[1]),
        state=StudyState(str(values[2])),
        first_received_at=float(values[3]),
        last_received_at=float(values[4]),
        instance_count=int(values[5]),
        bytes_stored=int(values[6]),
        completed_at=None if values[7] is None else float(values[7]),
        handed_off_at=None if values[8] is None else float(values[8]),
        job_id=None if values[9] is None else str(values[9]),
        reason=str(values[10]),
        content_digest=None if values[11] is None else str(values[11]),
        handoff_attempts=int(values[12]),
        next_handoff_at=None if values[13] is None else float(values[13]),
        conflicts=int(values[14]),
    )


def _instance(row: tuple[Any, ...]) -> InstanceRecord:
    return InstanceRecord(
        sop_uid=str(row[0]),
        study_key=str(row[1]),
        series_key=str(row[2]),
        series_uid=str(row[3]),
        sop_class_uid=str(row[4]),
        modality=str(row[5]),
        path=str(row[6]),
        sha256=str(row[7]),
        size=int(row[8]),
        received_at=float(row[9]),
    )


class StudyIndex:
    """Durable study/instance index in one SQLite file (created on first use).

    Args:
        db_path: the SQLite file (its directory must exist).
        busy_timeout_s: how long a statement waits for a lock held by another connection, in s.
    """

    def __init__(self, db_path: Path, *, busy_timeout_s: float = 10.0) -> None:
        self.db_path = db_path
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_s)
            mode = str(self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            if mode.lower() != "wal":
                _LOG.warning("study index cannot use WAL on this file system (journal mode %s)", mode)
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
            if version not in (0, SCHEMA_VERSION):
                raise StudyIndexError(
                    f"study index {db_path.name} has schema version {version}, expected {SCHEMA_VERSION}"
                )
            self._conn.executescript(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise StudyIndexError(f"study index {db_path.name} cannot be opened: {exc}") from exc

    def close(self) -> None:
        """Close the connection (further calls fail)."""
        with self._lock:
            self._conn.close()

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
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    # ---- instances -------------------------------------------------------------------------

    def get_instance(self, sop_uid: str) -> InstanceRecord | None:
        """The indexed instance with this SOP Instance UID, if any."""
        rows = self._query(f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE sop_uid = ?", (sop_uid,))
        return _instance(rows[0]) if rows else None

    def add_instance(self, record: InstanceRecord, study_uid: str) -> AddResult:
        """Commit an instance row (its file must already be durable) and update its study.

        A new instance for a study that is not RECEIVING reopens the study (see module doc).
        An already indexed SOP Instance UID changes nothing (``IDENTICAL``) or, with different
        bytes, only increments the study's ``conflicts`` counter (``CONFLICT``).
        """
        with self._transaction() as cur:
            existing = cur.execute(
                "SELECT sha256, study_key FROM instances WHERE sop_uid = ?", (record.sop_uid,)
            ).fetchone()
            if existing is not None:
                if existing[0] == record.sha256:
                    return AddResult(AddOutcome.IDENTICAL)
                cur.execute("UPDATE studies SET conflicts = conflicts + 1 WHERE study_key = ?", (existing[1],))
                return AddResult(AddOutcome.CONFLICT)
            now = record.received_at
            study = cur.execute("SELECT state FROM studies WHERE study_key = ?", (record.study_key,)).fetchone()
            reopened: StudyState | None = None
            if study is None:
                cur.execute(
                    "INSERT INTO studies (study_key, study_uid, state, first_received_at, last_received_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (record.study_key, study_uid, StudyState.RECEIVING.value, now, now),
                )
            elif study[0] != StudyState.RECEIVING.value:
                reopened = StudyState(study[0])
                cur.execute(
                    "UPDATE studies SET state = ?, completed_at = NULL, content_digest = NULL,"
                    " handoff_attempts = 0, next_handoff_at = NULL, reason = ? WHERE study_key = ?",
                    (
                        StudyState.RECEIVING.value,
                        f"reopened: new instance after {reopened.value}",
                        record.study_key,
                    ),
                )
            cur.execute(
                f"INSERT INTO instances ({_INSTANCE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.sop_uid,
                    record.study_key,
                    record.series_key,
                    record.series_uid,
                    record.sop_class_uid,
                    record.modality,
                    record.path,
                    record.sha256,
                    record.size,
                    record.received_at,
                ),
            )
            cur.execute(
                "UPDATE studies SET instance_count = instance_count + 1, bytes_stored = bytes_stored + ?,"
                " last_received_at = MAX(last_received_at, ?) WHERE study_key = ?",
                (record.size, now, record.study_key),
            )
        return AddResult(AddOutcome.STORED, reopened)

    def record_conflict(self, study_key: str) -> None:
        """Count one re-sent instance whose bytes differ from the stored first version."""
        with self._transaction() as cur:
            cur.execute("UPDATE studies SET conflicts = conflicts + 1 WHERE study_key = ?", (study_key,))

    def instances(self, study_key: str) -> list[InstanceRecord]:
        """All instances of a study, ordered by series key then SOP Instance UID."""
        rows = self._query(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE study_key = ? ORDER BY series_key, sop_uid",
            (study_key,),
        )
        return [_instance(row) for row in rows]

    # ---- studies ---------------------------------------------------------------------------

    def get_study(self, study_key: str) -> StudyRecord | None:
        """The study with this key, if any."""
        rows = self._query(f"SELECT {_STUDY_COLUMNS} FROM studies WHERE study_key = ?", (study_key,))
        return _study(rows[0]) if rows else None

    def list_studies(self, state: StudyState | None = None, limit: int = 100) -> list[StudyRecord]:
        """Studies (optionally in one state), most recently received first, at most ``limit``."""
        if state is None:
            rows = self._query(f"SELECT {_STUDY_COLUMNS} FROM studies ORDER BY last_received_at DESC LIMIT ?", (limit,))
        else:
            rows = self._query(
                f"SELECT {_STUDY_COLUMNS} FROM studies WHERE state = ? ORDER BY last_received_at DESC LIMIT ?",
                (state.value, limit),
            )
        return [_study(row) for row in rows]

    def studies_due_for_completion(self, cutoff: float) -> list[str]:
        """Keys of RECEIVING studies whose last instance arrived at or before ``cutoff`` (epoch s)."""
        rows = self._query(
            "SELECT study_key FROM studies WHERE state = ? AND last_received_at <= ? ORDER BY last_received_at",
            (StudyState.RECEIVING.value, cutoff),
        )
        return [str(row[0]) for row in rows]

    def complete_study(self, study_key: str, cutoff: float, now: float) -> str | None:
        """Mark a quiet RECEIVING study COMPLETE; returns its content digest.

        Returns None (and changes nothing) when the study is not RECEIVING or received an
        instance after ``cutoff`` in the meantime. The study becomes due for hand-off at ``now``.
        """
        with self._transaction() as cur:
            row = cur.execute(
                "SELECT state, last_received_at FROM studies WHERE study_key = ?", (study_key,)
            ).fetchone()
            if row is None or row[0] != StudyState.RECEIVING.value or row[1] > cutoff:
                return None
            pairs = cur.execute("SELECT sop_uid, sha256 FROM instances WHERE study_key = ?", (study_key,)).fetchall()
            digest = content_digest((str(sop), str(sha)) for sop, sha in pairs)
            cur.execute(
                "UPDATE studies SET state = ?, completed_at = ?, content_digest = ?, handoff_attempts = 0,"
                " next_handoff_at = ?, reason = '' WHERE study_key = ?",
                (StudyState.COMPLETE.value, now, digest, now, study_key),
            )
        return digest

    def studies_due_for_handoff(self, now: float, limit: int = 100) -> list[StudyRecord]:
        """COMPLETE studies whose next hand-off attempt is due at ``now`` (epoch s), oldest first."""
        rows = self._query(
            f"SELECT {_STUDY_COLUMNS} FROM studies WHERE state = ? AND next_handoff_at <= ?"
            " ORDER BY next_handoff_at LIMIT ?",
            (StudyState.COMPLETE.value, now, limit),
        )
        return [_study(row) for row in rows]

    def count_in_state(self, state: StudyState) -> int:
        """Number of studies in ``state``."""
        return int(self._query("SELECT COUNT(*) FROM studies WHERE state = ?", (state.value,))[0][0])

    def mark_handed_off(self, study_key: str, digest: str, job_id: str, now: float) -> bool:
        """COMPLETE -> HANDED_OFF with ``job_id``; False when the study changed (reopened) meanwhile."""
        with self._transaction() as cur:
            cur.execute(
                "UPDATE studies SET state = ?, handed_off_at = ?, job_id = ?, reason = '',"
                " next_handoff_at = NULL WHERE study_key = ? AND state = ? AND content_digest = ?",
                (StudyState.HANDED_OFF.value, now, job_id, study_key, StudyState.COMPLETE.value, digest),
            )
            return cur.rowcount == 1

    def record_handoff_failure(self, study_key: str, digest: str, reason: str, next_attempt_at: float) -> int | None:
        """Count a failed hand-off and schedule the next attempt (epoch s); returns attempts so far.

        Returns None when the study is no longer COMPLETE with this digest.
        """
        with self._transaction() as cur:
            cur.execute(
                "UPDATE studies SET handoff_attempts = handoff_attempts + 1, next_handoff_at = ?,"
                " reason = ? WHERE study_key = ? AND state = ? AND content_digest = ?",
                (next_attempt_at, reason, study_key, StudyState.COMPLETE.value, digest),
            )
            if cur.rowcount != 1:
                return None
            row = cur.execute("SELECT handoff_attempts FROM studies WHERE study_key = ?", (study_key,)).fetchone()
            return int(row[0])

    def mark_rejected(self, study_key: str, reason: str, digest: str | None = None) -> bool:
        """Mark a study REJECTED with a curated ``reason`` (only if its digest is ``digest``, if given)."""
        with self._transaction() as cur:
            if digest is None:
                cur.execute(
                    "UPDATE studies SET state = ?, reason = ?, next_handoff_at = NULL WHERE study_key = ?",
                    (StudyState.REJECTED.value, reason, study_key),
                )
            else:
                cur.execute(
                    "UPDATE studies SET state = ?, reason = ?, next_handoff_at = NULL"
                    " WHERE study_key = ? AND content_digest = ?",
                    (StudyState.REJECTED.value, reason, study_key, digest),
                )
            return cur.rowcount == 1

    def requeue(self, study_key: str, now: float) -> str | None:
        """Queue a COMPLETE, HANDED_OFF or REJECTED study for hand-off again at ``now``.

        Recomputes the content digest and returns it; None when the study is unknown or still
        RECEIVING (it will be handed off when it completes).
        """
        with self._transaction() as cur:
            row = cur.execute("SELECT state FROM studies WHERE study_key = ?", (study_key,)).fetchone()
            if row is None or row[0] == StudyState.RECEIVING.value:
                return None
            pairs = cur.execute("SELECT sop_uid, sha256 FROM instances WHERE study_key = ?", (study_key,)).fetchall()
            digest = content_digest((str(sop), str(sha)) for sop, sha in pairs)
            cur.execute(
                "UPDATE studies SET state = ?, completed_at = COALESCE(completed_at, ?), content_digest = ?,"
                " handoff_attempts = 0, next_handoff_at = ?, reason = 'resubmitted' WHERE study_key = ?",
                (StudyState.COMPLETE.value, now, digest, now, study_key),
            )
        _LOG.info("study %s requeued for hand-off", study_key)
        return digest

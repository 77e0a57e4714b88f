"""SQLite index of received studies and instances (WAL; ``synchronous=FULL`` or ``NORMAL``).

One connection, guarded by a lock, serves every thread (association handlers, completion
monitor, outbox). A committed row survives a crash or ``kill -9`` of the process in both modes;
with ``synchronous=FULL`` every commit is also fsynced (survives power loss). With ``NORMAL`` the
last commits before a power loss may be lost; the store then re-indexes its durable instance
files (:meth:`~.recovery.StoreRecovery.reconcile`) because the index was not closed cleanly
(:attr:`StudyIndex.unclean_start`: a marker file is written by :meth:`StudyIndex.close` after a
checkpoint and removed at open).

The study state machine (states, transitions, late policy) is :mod:`.studies`; this module is its
SQL: each transition is one transaction, guarded by the state (and content digest) it starts from.

Contract about "acknowledged": a row is committed only once its file was written in full (renamed
into place). On the direct path the file is synced first, so the committed row is the
acknowledgement; rows of journaled instances (acknowledged by their journal entry) are committed by
the materialiser after the reply, and their files are synced before the journal checkpoint passes
their entries.

No patient names, IDs, birth dates or accession numbers are stored: only UIDs, opaque keys, SOP
class, modality, series number/description, file paths relative to the store root, sizes and
SHA-256 digests. Schema version 2 adds the late-arrival counters, the DCE classification and the
audit table to version 1; a version-1 index is migrated in place when opened.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oncohabitat.dicomio.identifiers import content_digest
from oncohabitat.listener.errors import StudyIndexError
from oncohabitat.listener.studies import (
    AddOutcome,
    AddResult,
    LateAction,
    LatePolicy,
    StudyState,
    end_of_receiving,
    late_action,
)

_LOG = logging.getLogger(__name__)

__all__ = [
    "CLEAN_SUFFIX",
    "SCHEMA_VERSION",
    "AddOutcome",
    "AddResult",
    "AuditEvent",
    "InstanceRecord",
    "LatePolicy",
    "SeriesCount",
    "StudyIndex",
    "StudyRecord",
    "StudyState",
]

SCHEMA_VERSION = 2
#: Suffix of the marker file that says the index was closed cleanly.
CLEAN_SUFFIX = ".clean"

_SCHEMA_V1 = (
    """CREATE TABLE IF NOT EXISTS studies (
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
)""",
    """CREATE INDEX IF NOT EXISTS studies_by_state ON studies (state, last_received_at)""",
    """CREATE TABLE IF NOT EXISTS instances (
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
)""",
    """CREATE INDEX IF NOT EXISTS instances_by_study ON instances (study_key)""",
)

_MIGRATION_V2 = (
    "ALTER TABLE studies ADD COLUMN late_instances INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE studies ADD COLUMN updates INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE studies ADD COLUMN classification TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE studies ADD COLUMN eligible INTEGER",
    "ALTER TABLE instances ADD COLUMN series_number INTEGER",
    "ALTER TABLE instances ADD COLUMN series_description TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE instances ADD COLUMN transfer_syntax TEXT NOT NULL DEFAULT ''",
    """CREATE TABLE IF NOT EXISTS audit_events (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        at        REAL NOT NULL,
        event     TEXT NOT NULL,
        study_key TEXT NOT NULL DEFAULT '',
        detail    TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX IF NOT EXISTS audit_by_study ON audit_events (study_key, id)",
)


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
    series_number: int | None = None
    series_description: str = ""
    transfer_syntax: str = ""


@dataclass(frozen=True)
class StudyRecord:
    """One study row. Times are epoch seconds; ``bytes_stored`` counts Part-10 file bytes.

    ``classification`` is the JSON of the DCE classification made at completion ("" before);
    ``eligible`` is None until then.
    """

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
    late_instances: int = 0
    updates: int = 0
    classification: str = ""
    eligible: bool | None = None


@dataclass(frozen=True)
class SeriesCount:
    """Instances stored per series of a study (for expected-series completion rules)."""

    series_key: str
    series_description: str
    modality: str
    instance_count: int


@dataclass(frozen=True)
class AuditEvent:
    """A persisted audit event (``detail`` is JSON without patient data)."""

    at: float
    event: str
    study_key: str
    detail: dict[str, Any]


_STUDY_COLUMNS = (
    "study_key, study_uid, state, first_received_at, last_received_at, instance_count, bytes_stored, "
    "completed_at, handed_off_at, job_id, reason, content_digest, handoff_attempts, next_handoff_at, "
    "conflicts, late_instances, updates, classification, eligible"
)
_INSTANCE_COLUMNS = (
    "sop_uid, study_key, series_key, series_uid, sop_class_uid, modality, path, sha256, size, received_at, "
    "series_number, series_description, transfer_syntax"
)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _study(values: tuple[Any, ...]) -> StudyRecord:
    return StudyRecord(
        study_key=str(values[0]),
        study_uid=str(values[1]),
        state=StudyState(str(values[2])),
        first_received_at=float(values[3]),
        last_received_at=float(values[4]),
        instance_count=int(values[5]),
        bytes_stored=int(values[6]),
        completed_at=_opt_float(values[7]),
        handed_off_at=_opt_float(values[8]),
        job_id=None if values[9] is None else str(values[9]),
        reason=str(values[10]),
        content_digest=None if values[11] is None else str(values[11]),
        handoff_attempts=int(values[12]),
        next_handoff_at=_opt_float(values[13]),
        conflicts=int(values[14]),
        late_instances=int(values[15]),
        updates=int(values[16]),
        classification=str(values[17]),
        eligible=None if values[18] is None else bool(values[18]),
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
        series_number=None if row[10] is None else int(row[10]),
        series_description=str(row[11]),
        transfer_syntax=str(row[12]),
    )


def _instance_values(record: InstanceRecord) -> tuple[Any, ...]:
    return (
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
        record.series_number,
        record.series_description,
        record.transfer_syntax,
    )


class StudyIndex:
    """Durable study/instance index in one SQLite file (created on first use).

    Args:
        db_path: the SQLite file (its directory must exist).
        busy_timeout_s: how long a statement waits for a lock held by another connection, in s.
        late_policy: what a new instance does to a completed study (see module doc).
        secondary: a second handle of another process (the materialiser worker) on an index the
            listener opened: no clean-shutdown marker handling, no checkpoint at close.

    Raises:
        StudyIndexError: the file is not a usable index (corrupt, newer schema).
    """

    def __init__(
        self,
        db_path: Path,
        *,
        busy_timeout_s: float = 10.0,
        late_policy: LatePolicy = LatePolicy.RERUN,
        synchronous: str = "FULL",
        secondary: bool = False,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        self.db_path = db_path
        self.late_policy = late_policy
        self.synchronous = synchronous
        self._lock = threading.Lock()
        self._clean_marker = db_path.with_name(db_path.name + CLEAN_SUFFIX)
        self._secondary = secondary
        self.unclean_start = not secondary and not self._clean_marker.exists()
        try:
            self._conn = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_s)
            mode = str(self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            if mode.lower() != "wal":
                _LOG.warning("study index cannot use WAL on this file system (journal mode %s)", mode)
            self._conn.execute(f"PRAGMA synchronous={synchronous}")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            # Point lookups on the receive path use a pool of read-only connections: in WAL mode they
            # read the last commit without waiting for a writer or for each other. The pool grows to
            # the number of concurrent lookups (at most the association limit).
            self._busy_timeout_s = busy_timeout_s
            self._idle_readers: list[sqlite3.Connection] = []
            self._all_readers: list[sqlite3.Connection] = []
            self._reader_lock = threading.Lock()
        except sqlite3.DatabaseError as exc:
            raise StudyIndexError(f"study index {db_path.name} cannot be opened: {exc}") from exc
        self._may_mark_clean = not self.unclean_start and not secondary
        if not self.unclean_start and not secondary:
            self._clean_marker.unlink()  # until close() says otherwise, a crash is assumed

    def mark_reconciled(self) -> None:
        """The store re-indexed its files after an unclean start: a clean close may be recorded."""
        self._may_mark_clean = True

    def _migrate(self) -> None:
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version not in (0, 1, SCHEMA_VERSION):
            raise StudyIndexError(
                f"study index {self.db_path.name} has schema version {version}, expected <= {SCHEMA_VERSION}"
            )
        if version == SCHEMA_VERSION:
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in (*(_SCHEMA_V1 if version == 0 else ()), *_MIGRATION_V2):
                self._conn.execute(statement)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        if version == 1:
            _LOG.info("study index migrated from schema 1 to %d", SCHEMA_VERSION)

    def close(self) -> None:
        """Checkpoint (fsync), close the connection and mark the shutdown clean (further calls fail)."""
        with self._reader_lock:
            for reader in self._all_readers:
                reader.close()
            self._all_readers.clear()
            self._idle_readers.clear()
        if self._secondary:
            with self._lock:
                self._conn.close()
            return
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
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    # ---- instances -------------------------------------------------------------------------

    def indexed_paths(self) -> set[str]:
        """Store-relative paths of every indexed instance file."""
        return {str(row[0]) for row in self._query("SELECT path FROM instances")}

    def get_instance(self, sop_uid: str) -> InstanceRecord | None:
        """The indexed instance with this SOP Instance UID, if any (last committed state)."""
        reader = self._borrow_reader()
        try:
            row = reader.execute(f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE sop_uid = ?", (sop_uid,)).fetchone()
        finally:
            with self._reader_lock:
                self._idle_readers.append(reader)
        return _instance(row) if row is not None else None

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

    def add_instance(self, record: InstanceRecord, study_uid: str) -> AddResult:
        """Commit an instance row (its file must already be durable) and update its study.

        A new instance for a study that is not RECEIVING follows :attr:`late_policy`. An already
        indexed SOP Instance UID changes nothing (``IDENTICAL``) or, with different bytes, only
        increments the study's ``conflicts`` counter (``CONFLICT``).
        """
        with self._transaction() as cur:
            return self._add(cur, record, study_uid)

    def add_instances(self, items: Sequence[tuple[InstanceRecord, str]]) -> list[AddResult]:
        """:meth:`add_instance` for ``(record, study_uid)`` pairs, in order, in one transaction.

        Used by the background materialiser (one commit per batch instead of per instance).
        """
        with self._transaction() as cur:
            return [self._add(cur, record, study_uid) for record, study_uid in items]

    def _add(self, cur: sqlite3.Cursor, record: InstanceRecord, study_uid: str) -> AddResult:
        existing = cur.execute(
            "SELECT sha256, study_key FROM instances WHERE sop_uid = ?", (record.sop_uid,)
        ).fetchone()
        if existing is not None:
            if existing[0] == record.sha256:
                return AddResult(AddOutcome.IDENTICAL)
            cur.execute("UPDATE studies SET conflicts = conflicts + 1 WHERE study_key = ?", (existing[1],))
            return AddResult(AddOutcome.CONFLICT)
        study = cur.execute("SELECT state FROM studies WHERE study_key = ?", (record.study_key,)).fetchone()
        if study is None:
            cur.execute(
                "INSERT INTO studies (study_key, study_uid, state, first_received_at, last_received_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (record.study_key, study_uid, StudyState.RECEIVING.value, record.received_at, record.received_at),
            )
            result = AddResult(AddOutcome.STORED)
        else:
            result = self._late_arrival(cur, record.study_key, StudyState(str(study[0])), AddOutcome.STORED)
        cur.execute(
            f"INSERT INTO instances ({_INSTANCE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _instance_values(record),
        )
        self._count_instance(cur, record, record.size, 1, result)
        return result

    def replace_instance(self, record: InstanceRecord) -> AddResult:
        """Point an indexed SOP Instance UID at a new file (duplicate policy "replace").

        Counts a conflict, keeps the study's instance count, and treats the study like a late
        arrival when it already completed. Returns ``IDENTICAL`` when the bytes did not change.
        """
        with self._transaction() as cur:
            existing = cur.execute(
                "SELECT sha256, study_key, size FROM instances WHERE sop_uid = ?", (record.sop_uid,)
            ).fetchone()
            if existing is None:
                raise StudyIndexError("replace_instance called for an instance that is not indexed")
            if existing[0] == record.sha256:
                return AddResult(AddOutcome.IDENTICAL)
            study = cur.execute("SELECT state FROM studies WHERE study_key = ?", (existing[1],)).fetchone()
            result = self._late_arrival(cur, str(existing[1]), StudyState(str(study[0])), AddOutcome.REPLACED)
            cur.execute(
                "UPDATE instances SET path = ?, sha256 = ?, size = ?, received_at = ?, transfer_syntax = ?"
                " WHERE sop_uid = ?",
                (record.path, record.sha256, record.size, record.received_at, record.transfer_syntax, record.sop_uid),
            )
            cur.execute("UPDATE studies SET conflicts = conflicts + 1 WHERE study_key = ?", (existing[1],))
            self._count_instance(cur, record, record.size - int(existing[2]), 0, result)
        return result

    def _late_arrival(self, cur: sqlite3.Cursor, study_key: str, state: StudyState, outcome: AddOutcome) -> AddResult:
        """Apply the late policy to a study receiving new content in ``state``."""
        action = late_action(state, self.late_policy)
        if action is LateAction.NONE:
            return AddResult(outcome)
        if action is LateAction.HOLD:
            cur.execute(
                "UPDATE studies SET late_instances = late_instances + 1, updates = updates + 1,"
                " reason = 'updated after ' || state || ': ' || (late_instances + 1) ||"
                " ' late instance(s) held (late policy hold); ResubmitStudy re-runs the study'"
                " WHERE study_key = ?",
                (study_key,),
            )
            return AddResult(outcome, held_in=state)
        cur.execute(
            "UPDATE studies SET state = ?, completed_at = NULL, content_digest = NULL, handoff_attempts = 0,"
            " next_handoff_at = NULL, eligible = NULL, updates = updates + 1, reason = ? WHERE study_key = ?",
            (StudyState.RECEIVING.value, f"reopened: new instance after {state.value}", study_key),
        )
        return AddResult(outcome, reopened_from=state)

    @staticmethod
    def _count_instance(cur: sqlite3.Cursor, record: InstanceRecord, size: int, count: int, result: AddResult) -> None:
        held = result.held_in is not None
        cur.execute(
            "UPDATE studies SET instance_count = instance_count + ?, bytes_stored = bytes_stored + ?,"
            " last_received_at = CASE WHEN ? THEN last_received_at ELSE MAX(last_received_at, ?) END"
            " WHERE study_key = ?",
            (count, size, held, record.received_at, record.study_key),
        )

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

    def series_counts(self, study_key: str) -> list[SeriesCount]:
        """Instances per series of a study, by series key."""
        rows = self._query(
            "SELECT series_key, MAX(series_description), MAX(modality), COUNT(*) FROM instances"
            " WHERE study_key = ? GROUP BY series_key ORDER BY series_key",
            (study_key,),
        )
        return [SeriesCount(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]

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

    def receiving_studies(self) -> list[tuple[str, float]]:
        """``(study_key, last_received_at)`` of every RECEIVING study, oldest activity first."""
        rows = self._query(
            "SELECT study_key, last_received_at FROM studies WHERE state = ? ORDER BY last_received_at",
            (StudyState.RECEIVING.value,),
        )
        return [(str(r[0]), float(r[1])) for r in rows]

    def studies_due_for_completion(self, cutoff: float) -> list[str]:
        """Keys of RECEIVING studies whose last instance arrived at or before ``cutoff`` (epoch s)."""
        rows = self._query(
            "SELECT study_key FROM studies WHERE state = ? AND last_received_at <= ? ORDER BY last_received_at",
            (StudyState.RECEIVING.value, cutoff),
        )
        return [str(row[0]) for row in rows]

    def complete_study(
        self,
        study_key: str,
        cutoff: float,
        now: float,
        *,
        classification: str = "",
        eligible: bool | None = None,
        reject_reason: str | None = None,
    ) -> str | None:
        """End a quiet RECEIVING study; returns its content digest.

        Without ``reject_reason`` the study becomes COMPLETE and due for hand-off at ``now``; with
        one it becomes REJECTED with that (curated) reason. ``classification`` (JSON) and
        ``eligible`` are stored either way. Returns None (and changes nothing) when the study is
        not RECEIVING or received an instance after ``cutoff`` in the meantime.
        """
        with self._transaction() as cur:
            row = cur.execute(
                "SELECT state, last_received_at FROM studies WHERE study_key = ?", (study_key,)
            ).fetchone()
            if row is None or row[0] != StudyState.RECEIVING.value or row[1] > cutoff:
                return None
            pairs = cur.execute("SELECT sop_uid, sha256 FROM instances WHERE study_key = ?", (study_key,)).fetchall()
            digest = content_digest((str(sop), str(sha)) for sop, sha in pairs)
            state = end_of_receiving(eligible=reject_reason is None)
            cur.execute(
                "UPDATE studies SET state = ?, completed_at = ?, content_digest = ?, handoff_attempts = 0,"
                " next_handoff_at = ?, reason = ?, classification = ?, eligible = ? WHERE study_key = ?",
                (
                    state.value,
                    now,
                    digest,
                    now if reject_reason is None else None,
                    reject_reason or "",
                    classification,
                    None if eligible is None else int(eligible),
                    study_key,
                ),
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

        Recomputes the content digest (held late instances included), clears the late-instance
        count and returns the digest; None when the study is unknown or still RECEIVING (it will
        be handed off when it completes).
        """
        with self._transaction() as cur:
            row = cur.execute("SELECT state FROM studies WHERE study_key = ?", (study_key,)).fetchone()
            if row is None or row[0] == StudyState.RECEIVING.value:
                return None
            pairs = cur.execute("SELECT sop_uid, sha256 FROM instances WHERE study_key = ?", (study_key,)).fetchall()
            digest = content_digest((str(sop), str(sha)) for sop, sha in pairs)
            cur.execute(
                "UPDATE studies SET state = ?, completed_at = COALESCE(completed_at, ?), content_digest = ?,"
                " handoff_attempts = 0, next_handoff_at = ?, late_instances = 0, reason = 'resubmitted'"
                " WHERE study_key = ?",
                (StudyState.COMPLETE.value, now, digest, now, study_key),
            )
        _LOG.info("study %s requeued for hand-off", study_key)
        return digest

    # ---- audit -----------------------------------------------------------------------------

    def add_audit(self, at: float, event: str, study_key: str = "", detail: dict[str, Any] | None = None) -> None:
        """Persist an audit event (``detail`` must not hold patient data)."""
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO audit_events (at, event, study_key, detail) VALUES (?, ?, ?, ?)",
                (at, event, study_key, json.dumps(detail or {}, sort_keys=True)),
            )

    def audit_events(self, study_key: str | None = None, limit: int = 100) -> list[AuditEvent]:
        """The most recent audit events (of one study, if given), oldest first."""
        if study_key is None:
            rows = self._query(
                "SELECT at, event, study_key, detail FROM audit_events ORDER BY id DESC LIMIT ?", (limit,)
            )
        else:
            rows = self._query(
                "SELECT at, event, study_key, detail FROM audit_events WHERE study_key = ? ORDER BY id DESC LIMIT ?",
                (study_key, limit),
            )
        return [AuditEvent(float(r[0]), str(r[1]), str(r[2]), json.loads(str(r[3]))) for r in reversed(rows)]

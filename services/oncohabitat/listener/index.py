"""SQLite index of received studies and instances: :class:`StudyIndex`, the one handle every thread uses.

The SQL of the study state machine (:mod:`.studies`): every write is one ``BEGIN IMMEDIATE``
transaction on one locked writer connection (WAL), each transition guarded by the state (and content
digest) it starts from; receive-path lookups use a pool of read-only connections that wait for no one.

A committed row survives a crash of the process, with ``synchronous=FULL`` also a power loss. With
``NORMAL`` the last commits before a power loss may be lost: a marker file (``<index>`` +
:data:`CLEAN_SUFFIX`), written by :meth:`StudyIndex.close` after a checkpoint and removed at open,
makes the store re-index its durable files after an unclean stop (:attr:`StudyIndex.unclean_start`).

A row is committed only once its file was written in full (direct path: after its fsync, the row being
the acknowledgement; journaled instances: by the materialiser after the reply). No patient names, IDs,
birth dates or accession numbers are stored. Tables, rows, migration: :mod:`.index_schema` (re-exported).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from oncohabitat.dicomio.identifiers import content_digest
from oncohabitat.listener.errors import StudyIndexError
from oncohabitat.listener.index_schema import (
    INSTANCE_COLUMNS,
    SCHEMA_VERSION,
    STUDY_COLUMNS,
    AuditEvent,
    InstanceRecord,
    SeriesCount,
    StudyRecord,
    instance_from_row,
    instance_row_values,
    migrate,
    study_from_row,
)
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

#: Suffix of the marker file that says the index was closed cleanly.
CLEAN_SUFFIX = ".clean"
#: How long a statement waits for a lock held by another connection, s.
_BUSY_TIMEOUT_S = 10.0


class StudyIndex:
    """Durable study/instance index in one SQLite file (created or migrated on open; its directory must exist).

    ``late_policy``: see :mod:`.studies`; ``synchronous``: ``"FULL"`` (every commit fsynced) or ``"NORMAL"``.

    Raises:
        ValueError: ``synchronous`` is neither FULL nor NORMAL.
        StudyIndexError: the file is not a usable index (corrupt, newer schema).
    """

    def __init__(self, db_path: Path, *, late_policy: LatePolicy = LatePolicy.RERUN, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        self.db_path = db_path
        self.late_policy = late_policy
        self._lock = threading.Lock()
        self._clean_marker = db_path.with_name(db_path.name + CLEAN_SUFFIX)
        self.unclean_start = not self._clean_marker.exists()
        # The reader pool grows to the number of concurrent lookups (at most the association limit).
        self._idle_readers: list[sqlite3.Connection] = []
        self._all_readers: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        try:
            self._conn = _connect(db_path)
            mode = str(self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            if mode.lower() != "wal":
                _LOG.warning("study index cannot use WAL on this file system (journal mode %s)", mode)
            self._conn.execute(f"PRAGMA synchronous={synchronous}")
            self._conn.execute("PRAGMA foreign_keys=ON")
            migrate(self._conn, db_path.name)
        except sqlite3.DatabaseError as exc:
            raise StudyIndexError(f"study index {db_path.name} cannot be opened: {exc}") from exc
        self._may_mark_clean = not self.unclean_start
        if not self.unclean_start:
            self._clean_marker.unlink()  # until close() says otherwise, a crash is assumed

    def mark_reconciled(self) -> None:
        """The store re-indexed its files after an unclean start: a clean close may be recorded."""
        self._may_mark_clean = True

    def close(self) -> None:
        """Checkpoint (fsync), close the connections and mark the shutdown clean (further calls fail)."""
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
                return
            finally:
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
        with self._reader_lock:
            reader = self._idle_readers.pop() if self._idle_readers else None
        if reader is None:
            reader = _connect(self.db_path)
            reader.execute("PRAGMA query_only=1")
            with self._reader_lock:
                self._all_readers.append(reader)
        try:
            row: tuple[Any, ...] | None = reader.execute(sql, params).fetchone()
        finally:
            with self._reader_lock:
                self._idle_readers.append(reader)
        return row

    def indexed_paths(self) -> set[str]:
        """Store-relative paths of every indexed instance file."""
        return {str(row[0]) for row in self._query("SELECT path FROM instances")}

    def get_instance(self, sop_uid: str) -> InstanceRecord | None:
        """The indexed instance with this SOP Instance UID, if any (last committed state)."""
        row = self._read_one(f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE sop_uid = ?", (sop_uid,))
        return instance_from_row(row) if row is not None else None

    def add_instance(self, record: InstanceRecord, study_uid: str) -> AddResult:
        """Commit an instance row (its file must already be durable) and update its study.

        A new instance of a study not RECEIVING follows :attr:`late_policy`; an indexed SOP Instance UID
        changes nothing (``IDENTICAL``) or, with other bytes, only counts a study conflict (``CONFLICT``).
        """
        with self._transaction() as cur:
            return self._add_row(cur, record, study_uid)

    def add_instances(self, items: Sequence[tuple[InstanceRecord, str]]) -> list[AddResult]:
        """:meth:`add_instance` for ``(record, study_uid)`` pairs, in order, in one transaction."""
        with self._transaction() as cur:
            return [self._add_row(cur, record, study_uid) for record, study_uid in items]

    def replace_instance(self, record: InstanceRecord) -> AddResult:
        """Point an indexed SOP Instance UID at a new file (policy "replace"); ``IDENTICAL`` if bytes are unchanged.

        Counts a conflict, keeps the instance count, and treats a completed study like a late arrival.

        Raises:
            StudyIndexError: the SOP Instance UID is not indexed.
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
            _count_conflict(cur, str(existing[1]))
            _count_instance(cur, record, record.size - int(existing[2]), 0, result)
            return result

    def record_conflict(self, study_key: str) -> None:
        """Count one re-sent instance whose bytes differ from the stored first version."""
        with self._transaction() as cur:
            _count_conflict(cur, study_key)

    def instances(self, study_key: str) -> list[InstanceRecord]:
        """All instances of a study, ordered by series key then SOP Instance UID."""
        rows = self._query(
            f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE study_key = ? ORDER BY series_key, sop_uid",
            (study_key,),
        )
        return [instance_from_row(row) for row in rows]

    def series_counts(self, study_key: str) -> list[SeriesCount]:
        """Instances per series of a study, by series key."""
        rows = self._query(
            "SELECT series_key, MAX(series_description), MAX(modality), COUNT(*) FROM instances"
            " WHERE study_key = ? GROUP BY series_key ORDER BY series_key",
            (study_key,),
        )
        return [SeriesCount(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]

    def _add_row(self, cur: sqlite3.Cursor, record: InstanceRecord, study_uid: str) -> AddResult:
        """:meth:`add_instance` in the caller's transaction; creates the RECEIVING study on first sight."""
        existing = cur.execute(
            "SELECT sha256, study_key FROM instances WHERE sop_uid = ?", (record.sop_uid,)
        ).fetchone()
        if existing is not None:
            if existing[0] == record.sha256:
                return AddResult(AddOutcome.IDENTICAL)
            _count_conflict(cur, str(existing[1]))
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
            f"INSERT INTO instances ({INSTANCE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            instance_row_values(record),
        )
        _count_instance(cur, record, record.size, 1, result)
        return result

    def _late_arrival(self, cur: sqlite3.Cursor, study_key: str, state: StudyState, outcome: AddOutcome) -> AddResult:
        """Apply :attr:`late_policy` to a study receiving new content in ``state``."""
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

    def _studies(self, clause: str, params: tuple[Any, ...]) -> list[StudyRecord]:
        """The studies selected by ``clause`` (WHERE / ORDER BY / LIMIT)."""
        return [study_from_row(row) for row in self._query(f"SELECT {STUDY_COLUMNS} FROM studies {clause}", params)]

    def get_study(self, study_key: str) -> StudyRecord | None:
        """The study with this key, if any."""
        found = self._studies("WHERE study_key = ?", (study_key,))
        return found[0] if found else None

    def list_studies(self, state: StudyState | None = None, limit: int = 100) -> list[StudyRecord]:
        """Studies (optionally in one state), most recently received first, at most ``limit``."""
        where, params = ("WHERE state = ?", (state.value,)) if state is not None else ("", ())
        return self._studies(f"{where} ORDER BY last_received_at DESC LIMIT ?", (*params, limit))

    def receiving_studies(self) -> list[tuple[str, float]]:
        """``(study_key, last_received_at)`` of every RECEIVING study, oldest activity first."""
        rows = self._query(
            "SELECT study_key, last_received_at FROM studies WHERE state = ? ORDER BY last_received_at",
            (StudyState.RECEIVING.value,),
        )
        return [(str(r[0]), float(r[1])) for r in rows]

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

        COMPLETE and due for hand-off at ``now`` without ``reject_reason``, else REJECTED with that curated
        reason; ``classification`` (JSON) and ``eligible`` stored either way. None (nothing changed) when
        the study is not RECEIVING or received an instance after ``cutoff`` (epoch s).
        """
        with self._transaction() as cur:
            row = cur.execute(
                "SELECT state, last_received_at FROM studies WHERE study_key = ?", (study_key,)
            ).fetchone()
            if row is None or row[0] != StudyState.RECEIVING.value or row[1] > cutoff:
                return None
            digest = _content_digest(cur, study_key)
            state = end_of_receiving(eligible=reject_reason is None)
            due_at = now if reject_reason is None else None
            stored_eligible = None if eligible is None else int(eligible)
            cur.execute(
                "UPDATE studies SET state = ?, completed_at = ?, content_digest = ?, handoff_attempts = 0,"
                " next_handoff_at = ?, reason = ?, classification = ?, eligible = ? WHERE study_key = ?",
                (state.value, now, digest, due_at, reject_reason or "", classification, stored_eligible, study_key),
            )
        return digest

    def studies_due_for_handoff(self, now: float, limit: int = 100) -> list[StudyRecord]:
        """COMPLETE studies whose next hand-off attempt is due at ``now`` (epoch s), oldest first."""
        return self._studies(
            "WHERE state = ? AND next_handoff_at <= ? ORDER BY next_handoff_at LIMIT ?",
            (StudyState.COMPLETE.value, now, limit),
        )

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

    def record_handoff_failure(self, study_key: str, digest: str, reason: str, next_attempt_at: float) -> bool:
        """Count a failed hand-off, next try at ``next_attempt_at`` (epoch s); False: not COMPLETE with ``digest``."""
        with self._transaction() as cur:
            cur.execute(
                "UPDATE studies SET handoff_attempts = handoff_attempts + 1, next_handoff_at = ?,"
                " reason = ? WHERE study_key = ? AND state = ? AND content_digest = ?",
                (next_attempt_at, reason, study_key, StudyState.COMPLETE.value, digest),
            )
            return cur.rowcount == 1

    def mark_rejected(self, study_key: str, reason: str, digest: str) -> bool:
        """Mark a study REJECTED with a curated ``reason``; False when its digest is no longer ``digest``."""
        with self._transaction() as cur:
            cur.execute(
                "UPDATE studies SET state = ?, reason = ?, next_handoff_at = NULL"
                " WHERE study_key = ? AND content_digest = ?",
                (StudyState.REJECTED.value, reason, study_key, digest),
            )
            return cur.rowcount == 1

    def requeue(self, study_key: str, now: float) -> str | None:
        """Queue a COMPLETE, HANDED_OFF or REJECTED study for hand-off at ``now``; its recomputed digest.

        Held late instances are included and their count cleared. None when the study is unknown or
        still RECEIVING (it is handed off when it completes).
        """
        with self._transaction() as cur:
            row = cur.execute("SELECT state FROM studies WHERE study_key = ?", (study_key,)).fetchone()
            if row is None or row[0] == StudyState.RECEIVING.value:
                return None
            digest = _content_digest(cur, study_key)
            cur.execute(
                "UPDATE studies SET state = ?, completed_at = COALESCE(completed_at, ?), content_digest = ?,"
                " handoff_attempts = 0, next_handoff_at = ?, late_instances = 0, reason = 'resubmitted'"
                " WHERE study_key = ?",
                (StudyState.COMPLETE.value, now, digest, now, study_key),
            )
        _LOG.info("study %s requeued for hand-off", study_key)
        return digest

    def add_audit(self, at: float, event: str, study_key: str = "", detail: dict[str, Any] | None = None) -> None:
        """Persist an audit event (``detail`` must not hold patient data)."""
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO audit_events (at, event, study_key, detail) VALUES (?, ?, ?, ?)",
                (at, event, study_key, json.dumps(detail or {}, sort_keys=True)),
            )

    def audit_events(self, study_key: str | None = None, limit: int = 100) -> list[AuditEvent]:
        """The most recent audit events (of one study, if given), oldest first."""
        where, params = ("WHERE study_key = ?", (study_key,)) if study_key is not None else ("", ())
        rows = self._query(
            f"SELECT at, event, study_key, detail FROM audit_events {where} ORDER BY id DESC LIMIT ?", (*params, limit)
        )
        return [AuditEvent(float(r[0]), str(r[1]), str(r[2]), json.loads(str(r[3]))) for r in reversed(rows)]


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=_BUSY_TIMEOUT_S)


def _content_digest(cur: sqlite3.Cursor, study_key: str) -> str:
    """The content digest of a study's indexed instances (inside the caller's transaction)."""
    pairs = cur.execute("SELECT sop_uid, sha256 FROM instances WHERE study_key = ?", (study_key,)).fetchall()
    return content_digest((str(sop), str(sha)) for sop, sha in pairs)


def _count_conflict(cur: sqlite3.Cursor, study_key: str) -> None:
    cur.execute("UPDATE studies SET conflicts = conflicts + 1 WHERE study_key = ?", (study_key,))


def _count_instance(cur: sqlite3.Cursor, record: InstanceRecord, size: int, count: int, result: AddResult) -> None:
    """Add ``count`` instances and ``size`` bytes to the study; a held arrival keeps its quiet period."""
    held = result.held_in is not None
    cur.execute(
        "UPDATE studies SET instance_count = instance_count + ?, bytes_stored = bytes_stored + ?,"
        " last_received_at = CASE WHEN ? THEN last_received_at ELSE MAX(last_received_at, ?) END"
        " WHERE study_key = ?",
        (count, size, held, record.received_at, record.study_key),
    )

"""The job store's logic in portable SQL, shared by the SQLite and PostgreSQL back ends.

:class:`SqlJobStore` implements every :class:`~oncohabitat.orchestrator.jobstore.JobStore` call with ``?``
placeholders and name-addressed rows; a back end supplies the transactions (:meth:`SqlJobStore._write`,
:meth:`SqlJobStore._read`), row locking (:attr:`SqlJobStore._LOCK_ROW`, :attr:`SqlJobStore._CLAIM_LOCK`) and the
few dialect-specific fragments (:meth:`SqlJobStore._serialise_content`, :meth:`SqlJobStore._model_condition`).

Leases and fencing: a worker id is unique per process start (``replica:pid:nonce:n``), so it is the fencing
token: a fenced call (``worker_id=...``) runs only while the job is RUNNING under that owner; once a lease
expired and another worker claimed the job, the old worker's stage result, finish or retry is refused
(:class:`LeaseLostError`), so each stage result is stored exactly once and the job finishes once.
"""

from __future__ import annotations

import builtins
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, ClassVar

from oncohabitat.orchestrator.jobs import (
    ACTIVE_STATES,
    FINISH_STATES,
    InvalidJobError,
    Job,
    JobEvent,
    JobNotFoundError,
    JobState,
    LeaseLostError,
    format_rfc3339,
)
from oncohabitat.orchestrator.jobstore_common import (
    DIGEST_RE,
    DUE_CONDITION,
    JOB_COLUMNS,
    MAX_LIST_LIMIT,
    JobFilter,
    check_seconds,
    check_text,
    clip,
    decode_page_token,
    encode_json,
    job_from_row,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Conn = Any  # sqlite3.Connection or the PostgreSQL adapter: ``execute(sql, params)`` -> cursor


class SqlJobStore:
    """Portable job store logic; see the module docstring. Subclasses provide the transactions."""

    _LOCK_ROW: ClassVar[str] = ""  # appended to the job row read inside a write (PostgreSQL: FOR UPDATE)
    _CLAIM_LOCK: ClassVar[str] = ""  # appended to the claim query (PostgreSQL: FOR UPDATE SKIP LOCKED)

    _clock: Clock

    # ------------------------------------------------------------------ back-end hooks

    def _write(self) -> AbstractContextManager[Conn]:
        """One write transaction (serialised against other writers of the same rows)."""
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Conn]:
        """Reads, each statement on a consistent snapshot."""
        raise NotImplementedError

    def _serialise_content(self, conn: Conn, study_key: str, content_digest: str) -> None:
        """Serialise concurrent submissions of one content (SQLite: the write lock already does)."""

    def _model_condition(self) -> str:
        """SQL condition on ``jobs`` with two ``?`` (the model id twice): the job requested or ran the model."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers

    def _now(self) -> datetime:
        return self._clock()

    def _now_text(self) -> str:
        return format_rfc3339(self._now())

    def _lock_job(self, conn: Conn, job_id: str) -> Mapping[str, Any]:
        """The job's row inside a write transaction, locked against concurrent writers."""
        row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?{self._LOCK_ROW}", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError()
        return row

    @staticmethod
    def _append_event(conn: Conn, job_id: str, state: JobState, stage: str, reason: str, at: str) -> None:
        conn.execute(
            "INSERT INTO job_events (job_id, seq, state, stage, reason, at) "
            "SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ? FROM job_events WHERE job_id = ?",
            (job_id, state.value, stage, reason, at, job_id),
        )

    @staticmethod
    def _fence(row: Mapping[str, Any], worker_id: str | None) -> None:
        """Raise LeaseLostError unless ``worker_id`` is None or holds the RUNNING job's lease."""
        if worker_id is not None and (row["state"] != JobState.RUNNING or row["lease_owner"] != worker_id):
            raise LeaseLostError()

    # ------------------------------------------------------------------ API

    def submit(
        self, study_key: str, content_digest: str, request: Mapping[str, Any], *, rerun: bool = False
    ) -> tuple[str, bool]:
        """Queue a job for a study's content; the same (study_key, content_digest) returns the existing job.

        Args:
            study_key: Opaque study key (non-empty, at most 256 characters; never a patient identifier).
            content_digest: Hex SHA-256 of the study content (64 hex digits; stored lower case).
            request: JSON-serialisable submission parameters (no patient-identifier keys).
            rerun: an operator's re-run: when this content's newest job has finished, queue a new job
                (next ``run``, new job id) with ``request``; while it is QUEUED or RUNNING it is returned.

        Returns:
            (job_id, created): ``created`` is False when an identical submission already existed, whatever
            its state (its request is kept), and for a re-run of an active job. Without ``rerun`` the
            newest job of the content is returned.
        """
        key = check_text(study_key, "study_key")
        digest = content_digest.lower() if isinstance(content_digest, str) else ""
        if not DIGEST_RE.fullmatch(digest):
            raise InvalidJobError("content_digest must be a hex SHA-256 (64 hex digits)", "content_digest")
        request_json = encode_json(request, "request")
        now = self._now_text()
        job_id = uuid.uuid4().hex
        with self._write() as conn:
            self._serialise_content(conn, key, digest)
            newest = conn.execute(
                "SELECT job_id, run, state FROM jobs WHERE study_key = ? AND content_digest = ? "
                "ORDER BY run DESC LIMIT 1",
                (key, digest),
            ).fetchone()
            if newest is not None and (not rerun or JobState(newest["state"]) in ACTIVE_STATES):
                return str(newest["job_id"]), False
            run = 0 if newest is None else int(newest["run"]) + 1
            conn.execute(
                f"INSERT INTO jobs ({JOB_COLUMNS}, run) VALUES (?, ?, ?, ?, '', '', 0, ?, NULL, NULL, ?, ?, ?, ?)",
                (job_id, key, digest, JobState.QUEUED.value, now, now, now, request_json, run),
            )
            self._append_event(conn, job_id, JobState.QUEUED, "", "re-run requested" if run else "", now)
            return job_id, True

    def get(self, job_id: str) -> Job | None:
        """The job, or None when unknown."""
        with self._read() as conn:
            row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else job_from_row(row)

    def list(
        self,
        state: JobState | None = None,
        limit: int = 100,
        *,
        where: JobFilter | None = None,
        page_token: str = "",
    ) -> builtins.list[Job]:
        """Up to ``limit`` (1..1000) jobs, newest first (then by job id), matching ``state`` and ``where``.

        ``page_token`` (from :func:`~oncohabitat.orchestrator.jobstore_common.encode_page_token` of the last job of
        the previous page) continues after that job, so pages never repeat or skip a job while jobs are added.
        """
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidJobError(f"limit must be between 1 and {MAX_LIST_LIMIT}", "limit")
        selected = (where or JobFilter()).checked()
        if state is not None:
            selected = JobFilter(JobState(state), selected.created_from, selected.created_to, selected.model_id)
        conditions: builtins.list[str] = []
        params: builtins.list[Any] = []
        if selected.state is not None:
            conditions.append("state = ?")
            params.append(selected.state.value)
        if selected.created_from is not None:
            conditions.append("created_at >= ?")
            params.append(selected.created_from)
        if selected.created_to is not None:
            conditions.append("created_at < ?")
            params.append(selected.created_to)
        if selected.model_id is not None:
            conditions.append(self._model_condition())
            params += [selected.model_id, selected.model_id]
        if page_token:
            created_at, job_id = decode_page_token(page_token)
            conditions.append("(created_at < ? OR (created_at = ? AND job_id < ?))")
            params += [created_at, created_at, job_id]
        query = f"SELECT {JOB_COLUMNS} FROM jobs"
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        query += " ORDER BY created_at DESC, job_id DESC LIMIT ?"
        with self._read() as conn:
            rows = conn.execute(query, (*params, limit)).fetchall()
        return [job_from_row(row) for row in rows]

    def claim_next(self, worker_id: str, lease_s: float) -> Job | None:
        """Lease the oldest due job to ``worker_id`` for ``lease_s`` seconds.

        Due: QUEUED with ``next_attempt_at`` reached, or RUNNING with an expired lease (its worker died).
        The job becomes RUNNING, ``attempts`` grows by one and ``reason`` is cleared. Atomic across
        threads, processes and (PostgreSQL) replicas: rows another claim holds are skipped. Returns None when
        nothing is due.
        """
        owner = check_text(worker_id, "worker_id")
        lease = check_seconds(lease_s, "lease_s", allow_zero=False)
        now = self._now()
        now_text = format_rfc3339(now)
        expires = format_rfc3339(now + timedelta(seconds=lease))
        due_params = (now_text, JobState.QUEUED.value, JobState.RUNNING.value, now_text)
        with self._write() as conn:
            row = conn.execute(
                f"SELECT job_id, state, stage FROM jobs WHERE {DUE_CONDITION} "
                f"ORDER BY next_attempt_at, created_at, job_id LIMIT 1{self._CLAIM_LOCK}",
                due_params,
            ).fetchone()
            if row is None:
                return None
            job_id = str(row["job_id"])
            cursor = conn.execute(
                "UPDATE jobs SET state = ?, lease_owner = ?, lease_expires_at = ?, attempts = attempts + 1, "
                f"reason = '', updated_at = ? WHERE job_id = ? AND {DUE_CONDITION}",
                (JobState.RUNNING.value, owner, expires, now_text, job_id, *due_params),
            )
            if cursor.rowcount != 1:  # another transaction got it first (not possible with the row locked)
                return None
            note = "previous worker's lease expired; resuming" if row["state"] == JobState.RUNNING else ""
            self._append_event(conn, job_id, JobState.RUNNING, str(row["stage"]), note, now_text)
            if note:
                logger.warning("job %s: %s", job_id, note)
            return job_from_row(self._lock_job(conn, job_id))

    def expire_leases_of(self, owner_prefix: str) -> int:
        """Make the RUNNING jobs leased to owners starting with ``owner_prefix`` claimable now.

        A restarted replica calls this with its own replica prefix before its workers start: the jobs its
        previous process held resume at once instead of after the lease. Returns how many jobs were freed.
        """
        prefix = check_text(owner_prefix, "owner_prefix")
        now = self._now_text()
        with self._write() as conn:
            rows = conn.execute(
                f"SELECT job_id, stage FROM jobs WHERE state = ? AND substr(lease_owner, 1, ?) = ?{self._LOCK_ROW}",
                (JobState.RUNNING.value, len(prefix), prefix),
            ).fetchall()
            for row in rows:
                conn.execute(
                    "UPDATE jobs SET lease_expires_at = ?, updated_at = ? WHERE job_id = ?", (now, now, row["job_id"])
                )
                self._append_event(
                    conn, str(row["job_id"]), JobState.RUNNING, str(row["stage"]), "owner restarted; lease expired", now
                )
        return len(rows)

    def renew_lease(self, job_id: str, worker_id: str, lease_s: float) -> bool:
        """Extend ``worker_id``'s lease to now + ``lease_s`` s; False when it no longer owns the RUNNING job."""
        lease = check_seconds(lease_s, "lease_s", allow_zero=False)
        now = self._now()
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET lease_expires_at = ?, updated_at = ? "
                "WHERE job_id = ? AND state = ? AND lease_owner = ?",
                (
                    format_rfc3339(now + timedelta(seconds=lease)),
                    format_rfc3339(now),
                    job_id,
                    JobState.RUNNING.value,
                    worker_id,
                ),
            )
            return bool(cursor.rowcount == 1)

    def begin_stage(self, job_id: str, worker_id: str, stage: str, lease_s: float) -> None:
        """Mark ``stage`` as the job's current stage (with an event) and renew the lease.

        Raises:
            LeaseLostError: the job was cancelled, finished or taken over.
            JobNotFoundError: unknown job.
        """
        name = check_text(stage, "stage")
        lease = check_seconds(lease_s, "lease_s", allow_zero=False)
        now = self._now()
        now_text = format_rfc3339(now)
        with self._write() as conn:
            self._fence(self._lock_job(conn, job_id), worker_id)
            conn.execute(
                "UPDATE jobs SET stage = ?, lease_expires_at = ?, updated_at = ? WHERE job_id = ?",
                (name, format_rfc3339(now + timedelta(seconds=lease)), now_text, job_id),
            )
            self._append_event(conn, job_id, JobState.RUNNING, name, "", now_text)

    def save_stage_result(
        self, job_id: str, stage: str, result: Mapping[str, Any], *, worker_id: str | None = None
    ) -> bool:
        """Persist ``stage``'s result in its own transaction; the first stored result wins.

        Args:
            result: JSON-serialisable mapping without patient-identifier keys.
            worker_id: When given, only the worker holding the RUNNING job's lease may save.

        Returns:
            True when stored, False when a result for this stage already existed (left unchanged).

        Raises:
            LeaseLostError: ``worker_id`` given and the job is not RUNNING under its lease.
        """
        name = check_text(stage, "stage")
        result_json = encode_json(result, f"result of stage {name!r}")
        now = self._now_text()
        with self._write() as conn:
            row = self._lock_job(conn, job_id)
            self._fence(row, worker_id)
            seq = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 AS next_seq FROM stage_results WHERE job_id = ?", (job_id,)
            ).fetchone()["next_seq"]
            cursor = conn.execute(
                "INSERT INTO stage_results (job_id, stage, seq, result_json, finished_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (job_id, stage) DO NOTHING",
                (job_id, name, seq, result_json, now),
            )
            if cursor.rowcount != 1:
                return False
            conn.execute("UPDATE jobs SET stage = ?, updated_at = ? WHERE job_id = ?", (name, now, job_id))
            self._append_event(conn, job_id, JobState(row["state"]), name, "", now)
            return True

    def load_stage_results(self, job_id: str) -> dict[str, dict[str, Any]]:
        """Persisted stage results by stage name, in the order they finished (empty for unknown jobs)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT stage, result_json FROM stage_results WHERE job_id = ? ORDER BY seq",
                (job_id,),
            ).fetchall()
        return {str(row["stage"]): json.loads(row["result_json"]) for row in rows}

    def finish(self, job_id: str, state: JobState, reason: str = "", *, worker_id: str | None = None) -> bool:
        """Move an active job to ``state`` (DONE, NEEDS_REVIEW or FAILED) and drop its lease.

        Args:
            reason: Curated, patient-data-free text (clipped to 500 characters).
            worker_id: When given, only the worker holding the RUNNING job's lease may finish it.

        Returns:
            True when the job changed, False when it had already finished (it is left unchanged).
        """
        target = JobState(state)
        if target not in FINISH_STATES:
            raise InvalidJobError("finish() takes DONE, NEEDS_REVIEW or FAILED; use cancel()", "state")
        note = clip(reason)
        now = self._now_text()
        with self._write() as conn:
            row = self._lock_job(conn, job_id)
            self._fence(row, worker_id)
            if JobState(row["state"]).is_terminal:
                return False
            conn.execute(
                "UPDATE jobs SET state = ?, reason = ?, lease_owner = NULL, lease_expires_at = NULL, "
                "updated_at = ? WHERE job_id = ?",
                (target.value, note, now, job_id),
            )
            self._append_event(conn, job_id, target, str(row["stage"]), note, now)
            return True

    def schedule_retry(self, job_id: str, delay_s: float, reason: str, *, worker_id: str | None = None) -> bool:
        """Put a RUNNING job back to QUEUED, claimable ``delay_s`` seconds from now; drops the lease.

        Returns:
            True when rescheduled, False when the job was not RUNNING (only without ``worker_id``).

        Raises:
            LeaseLostError: ``worker_id`` given and the job is not RUNNING under its lease.
        """
        delay = check_seconds(delay_s, "delay_s", allow_zero=True)
        note = clip(reason)
        now = self._now()
        now_text = format_rfc3339(now)
        with self._write() as conn:
            row = self._lock_job(conn, job_id)
            self._fence(row, worker_id)
            if row["state"] != JobState.RUNNING:
                return False
            conn.execute(
                "UPDATE jobs SET state = ?, next_attempt_at = ?, reason = ?, lease_owner = NULL, "
                "lease_expires_at = NULL, updated_at = ? WHERE job_id = ?",
                (JobState.QUEUED.value, format_rfc3339(now + timedelta(seconds=delay)), note, now_text, job_id),
            )
            self._append_event(conn, job_id, JobState.QUEUED, str(row["stage"]), note, now_text)
            return True

    def release(self, job_id: str, worker_id: str) -> None:
        """Give a RUNNING job back (QUEUED, due now, lease dropped); the abandoned attempt is not counted.

        Raises:
            LeaseLostError: the job is not RUNNING under ``worker_id``'s lease.
        """
        now = self._now_text()
        with self._write() as conn:
            row = self._lock_job(conn, job_id)
            self._fence(row, check_text(worker_id, "worker_id"))
            conn.execute(
                "UPDATE jobs SET state = ?, next_attempt_at = ?, lease_owner = NULL, lease_expires_at = NULL, "
                "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = ? "
                "WHERE job_id = ?",
                (JobState.QUEUED.value, now, now, job_id),
            )
            self._append_event(conn, job_id, JobState.QUEUED, str(row["stage"]), "released by a stopping worker", now)

    def cancel(self, job_id: str) -> Job:
        """Cancel a QUEUED or RUNNING job; finished jobs are unchanged.

        A RUNNING job's worker loses its lease: the stage it runs finishes but its result is refused, and the
        job stops there (the next stage boundary). Returns the job after the call.

        Raises:
            JobNotFoundError: unknown job.
        """
        now = self._now_text()
        with self._write() as conn:
            row = self._lock_job(conn, job_id)
            if JobState(row["state"]) in ACTIVE_STATES:
                reason = "cancelled on request"
                conn.execute(
                    "UPDATE jobs SET state = ?, reason = ?, lease_owner = NULL, lease_expires_at = NULL, "
                    "updated_at = ? WHERE job_id = ?",
                    (JobState.CANCELLED.value, reason, now, job_id),
                )
                self._append_event(conn, job_id, JobState.CANCELLED, str(row["stage"]), reason, now)
                row = self._lock_job(conn, job_id)
            return job_from_row(row)

    def events_since(self, job_id: str, seq: int = 0) -> builtins.list[JobEvent]:
        """Events of ``job_id`` with a sequence number above ``seq``, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT job_id, seq, state, stage, reason, at FROM job_events WHERE job_id = ? AND seq > ? "
                "ORDER BY seq",
                (job_id, seq),
            ).fetchall()
        return [_event_from_row(row) for row in rows]


def _event_from_row(row: Mapping[str, Any]) -> JobEvent:
    return JobEvent(
        job_id=str(row["job_id"]),
        seq=int(row["seq"]),
        state=JobState(row["state"]),
        stage=str(row["stage"]),
        reason=str(row["reason"]),
        at=str(row["at"]),
    )

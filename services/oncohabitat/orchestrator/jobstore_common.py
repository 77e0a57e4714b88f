"""Shared pieces of the job store implementations: limits, argument checks, JSON encoding, row -> :class:`Job`.

Both back ends (:mod:`~oncohabitat.orchestrator.jobstore_sqlite`, :mod:`~oncohabitat.orchestrator.jobstore_postgres`)
store the same columns as plain TEXT/INTEGER, with timestamps as fixed-width RFC 3339 text compared
lexicographically, so these helpers serve both.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from oncohabitat.orchestrator.jobs import (
    InvalidJobError,
    Job,
    JobState,
    check_no_patient_identifiers,
    parse_rfc3339,
)

MAX_REASON_CHARS = 500
MAX_KEY_CHARS = 256
MAX_LIST_LIMIT = 1000
DIGEST_RE = re.compile(r"[0-9a-f]{64}")

JOB_COLUMNS = (
    "job_id, study_key, content_digest, state, stage, reason, attempts, next_attempt_at, lease_owner, "
    "lease_expires_at, created_at, updated_at, request_json"
)

# A job is due when QUEUED and its retry time has come, or RUNNING with an expired lease (dead worker).
DUE_CONDITION = "next_attempt_at <= ? AND (state = ? OR (state = ? AND lease_expires_at <= ?))"


@dataclass(frozen=True)
class JobFilter:
    """What :meth:`JobStore.list` selects (every field optional; all given ones must hold).

    Attributes:
        state: Only jobs in this state.
        created_from: RFC 3339 UTC: only jobs created at or after it.
        created_to: RFC 3339 UTC: only jobs created before it.
        model_id: Only jobs whose submission named this model in ``model_ids``.
    """

    state: JobState | None = None
    created_from: str | None = None
    created_to: str | None = None
    model_id: str | None = None

    def checked(self) -> JobFilter:
        """A copy with validated, normalised fields; raises InvalidJobError."""
        created_from = _check_time(self.created_from, "created_from")
        created_to = _check_time(self.created_to, "created_to")
        model = None if not self.model_id else check_text(self.model_id, "model_id")
        state = None if self.state is None else JobState(self.state)
        return JobFilter(state, created_from, created_to, model)


def encode_page_token(created_at: str, job_id: str) -> str:
    """Opaque keyset cursor after the job (created_at, job_id) in newest-first order."""
    return base64.urlsafe_b64encode(f"{created_at}|{job_id}".encode()).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[str, str]:
    """(created_at, job_id) of a cursor from :func:`encode_page_token`; raises InvalidJobError."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        created_at, job_id = text.split("|", 1)
        parse_rfc3339(created_at)
    except (ValueError, UnicodeDecodeError):
        raise InvalidJobError("page_token is not a token this service issued", "page_token") from None
    if not re.fullmatch(r"[0-9a-f]{32}", job_id):
        raise InvalidJobError("page_token is not a token this service issued", "page_token")
    return created_at, job_id


def _check_time(value: str | None, field: str) -> str | None:
    if not value:
        return None
    from oncohabitat.orchestrator.jobs import format_rfc3339

    try:
        return format_rfc3339(parse_rfc3339(value))
    except (ValueError, TypeError):
        raise InvalidJobError(f"{field} must be an RFC 3339 UTC time", field) from None


def job_from_row(row: Mapping[str, Any]) -> Job:
    """A :class:`Job` from a row with the :data:`JOB_COLUMNS` (sqlite3.Row or a dict)."""
    return Job(
        job_id=str(row["job_id"]),
        study_key=str(row["study_key"]),
        content_digest=str(row["content_digest"]),
        state=JobState(row["state"]),
        stage=str(row["stage"]),
        reason=str(row["reason"]),
        attempts=int(row["attempts"]),
        next_attempt_at=str(row["next_attempt_at"]),
        lease_owner=None if row["lease_owner"] is None else str(row["lease_owner"]),
        lease_expires_at=None if row["lease_expires_at"] is None else str(row["lease_expires_at"]),
        created_at=str(row["created_at"]),
        updated_at=str(row["updated_at"]),
        request_json=str(row["request_json"]),
    )


def check_text(value: str, field: str) -> str:
    """A non-empty key of at most :data:`MAX_KEY_CHARS` characters without control characters."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_KEY_CHARS:
        raise InvalidJobError(f"{field} must be a non-empty string of at most {MAX_KEY_CHARS} characters", field)
    if any(ord(char) < 32 for char in value):
        raise InvalidJobError(f"{field} must not contain control characters", field)
    return value


def check_seconds(value: float, field: str, *, allow_zero: bool) -> float:
    """A finite, non-negative (``allow_zero``) or positive number of seconds."""
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise InvalidJobError(f"{field} must be a finite {'non-negative' if allow_zero else 'positive'} number", field)
    return seconds


def clip(reason: str) -> str:
    """``reason`` clipped to :data:`MAX_REASON_CHARS` characters."""
    text = str(reason)
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def encode_json(value: Mapping[str, Any], what: str) -> str:
    """Canonical JSON of a mapping with string keys; rejects patient-identifier keys and non-JSON values."""
    if not isinstance(value, Mapping):
        raise InvalidJobError(f"{what} must be a mapping")
    check_no_patient_identifiers(value, what)
    try:
        return json.dumps(dict(value), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        raise InvalidJobError(f"{what} is not JSON-serialisable (finite numbers, strings, lists, dicts)") from None

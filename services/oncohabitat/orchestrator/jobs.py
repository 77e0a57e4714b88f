"""The orchestrator's job model: states, the immutable :class:`Job` record, events and store errors.

Times are UTC. The API exposes them as fixed-width RFC 3339 strings (``2024-05-01T12:00:00.000000Z``), whose
lexicographic order is their chronological order, which is what lets the store compare them in portable SQL.
Nothing here ever holds a patient identifier: study keys are opaque and requests/results are screened by
:func:`check_no_patient_identifiers`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from oncohabitat.common.errors import InvalidInputError, NotFoundError, PreconditionError, UnavailableError

_RFC3339_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class JobState(StrEnum):
    """Lifecycle of a job (mirrors ``oncohabitat.v1.JobState`` without the ``JOB_STATE_`` prefix)."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    NEEDS_REVIEW = "NEEDS_REVIEW"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        """True for the states a job never leaves (DONE, NEEDS_REVIEW, FAILED, CANCELLED)."""
        return self not in (JobState.QUEUED, JobState.RUNNING)

    @property
    def proto_name(self) -> str:
        """Name of the matching ``oncohabitat.v1.JobState`` enum value, e.g. ``"JOB_STATE_DONE"``."""
        return f"JOB_STATE_{self.value}"


ACTIVE_STATES: frozenset[JobState] = frozenset({JobState.QUEUED, JobState.RUNNING})
FINISH_STATES: frozenset[JobState] = frozenset({JobState.DONE, JobState.NEEDS_REVIEW, JobState.FAILED})


@dataclass(frozen=True, slots=True)
class Job:
    """One submitted study run, as stored.

    Attributes:
        job_id: uuid4 hex.
        study_key: Opaque study key from the listener (never a DICOM UID or patient identifier).
        content_digest: Lower-case hex SHA-256 of the study's content.
        state: Current state.
        stage: Last finished or current stage ("" before the first stage).
        reason: Curated reason for NEEDS_REVIEW / FAILED / CANCELLED, or the last retry note.
        attempts: How many times a worker claimed the job (a voluntary release does not count).
        next_attempt_at: RFC 3339 UTC time from which a QUEUED job may be claimed.
        lease_owner: Worker holding the job while RUNNING, else None.
        lease_expires_at: RFC 3339 UTC expiry of that lease, else None.
        created_at: RFC 3339 UTC submission time.
        updated_at: RFC 3339 UTC time of the last change.
        request_json: Canonical JSON of the submitted request (see :attr:`request`).
    """

    job_id: str
    study_key: str
    content_digest: str
    state: JobState
    stage: str
    reason: str
    attempts: int
    next_attempt_at: str
    lease_owner: str | None
    lease_expires_at: str | None
    created_at: str
    updated_at: str
    request_json: str

    @property
    def request(self) -> dict[str, Any]:
        """The submitted request, decoded from :attr:`request_json` (a fresh dict on every access)."""
        value: dict[str, Any] = json.loads(self.request_json)
        return value


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One state/stage change of a job; ``seq`` counts from 1 per job (drives ``WatchJob``)."""

    job_id: str
    seq: int
    state: JobState
    stage: str
    reason: str
    at: str


class JobNotFoundError(NotFoundError):
    """No job with the given id exists."""

    def __init__(self) -> None:
        super().__init__("JOB_NOT_FOUND", "no job with this job_id", "job_id")


class InvalidJobError(InvalidInputError):
    """A submission, stage result or store call argument is malformed (curated message, no values echoed)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__("INVALID_JOB_INPUT", message, field)


class PatientIdentifierError(InvalidJobError):
    """A request or stage result carries a key that names a patient identifier; it is never stored."""


class LeaseLostError(PreconditionError):
    """The worker no longer owns the job: it was cancelled, finished or taken over after its lease expired."""

    def __init__(self) -> None:
        super().__init__("LEASE_LOST", "the job is no longer leased to this worker", "job_id")


class JobStoreUnavailableError(UnavailableError):
    """The job database could not be used (locked beyond the busy timeout, I/O error); the call may be retried."""

    def __init__(self, what: str) -> None:
        super().__init__("JOB_STORE_UNAVAILABLE", f"job store unavailable ({what})")


def utc_now() -> datetime:
    """The current time as an aware UTC datetime (the store's default clock)."""
    return datetime.now(UTC)


def format_rfc3339(moment: datetime) -> str:
    """Fixed-width RFC 3339 UTC text (microseconds, ``Z`` suffix) of an aware datetime."""
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; pass an aware (UTC) datetime")
    return moment.astimezone(UTC).strftime(_RFC3339_FORMAT)


def parse_rfc3339(text: str) -> datetime:
    """Aware UTC datetime of a timestamp written by :func:`format_rfc3339`."""
    return datetime.strptime(text, _RFC3339_FORMAT).replace(tzinfo=UTC)


# DICOM keywords (lower case, alphanumerics only) and tags of the patient-identifying attributes of the
# Patient / Patient Identification modules, plus the accession number.
_IDENTIFIER_KEYS: frozenset[str] = frozenset(
    {
        "patientname",
        "patientsname",
        "patientid",
        "issuerofpatientid",
        "otherpatientids",
        "otherpatientidssequence",
        "otherpatientnames",
        "patientbirthname",
        "patientbirthdate",
        "patientsbirthdate",
        "patientbirthtime",
        "patientaddress",
        "patienttelephonenumbers",
        "patientmotherbirthname",
        "medicalrecordlocator",
        "accessionnumber",
        "00100010",
        "00100020",
        "00100021",
        "00101000",
        "00101002",
        "00101001",
        "00101005",
        "00100030",
        "00100032",
        "00101040",
        "00102154",
        "00101060",
        "00101090",
        "00080050",
    }
)
_NON_ALNUM = re.compile(r"[^0-9a-z]")


def check_no_patient_identifiers(value: Any, where: str) -> None:
    """Reject mappings (at any depth, also inside lists) with a key naming a patient identifier.

    Keys are compared case-insensitively with punctuation removed, so ``PatientName``, ``patient_name``
    and ``(0010,0010)`` all match. Values are never inspected or echoed.

    Raises:
        PatientIdentifierError: naming the offending key path (key names are not patient data).
    """
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, Mapping):
            for key, child in item.items():
                if isinstance(key, str) and _NON_ALNUM.sub("", key.lower()) in _IDENTIFIER_KEYS:
                    raise PatientIdentifierError(
                        f"{path}.{key} names a patient identifier; patient data is never stored", field=key
                    )
                stack.append((child, f"{path}.{key}"))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{path}[{index}]") for index, child in enumerate(item))

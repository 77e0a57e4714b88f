"""Rows of the study index as typed records, and their mapping to and from SQL column tuples.

Times are Unix epoch seconds, sizes bytes, paths POSIX and relative to the store root. No patient
data: only UIDs, opaque keys, SOP class, modality, series number/description, sizes and SHA-256
digests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oncohabitat.listener.studies import StudyState

__all__ = [
    "INSTANCE_COLUMNS",
    "STUDY_COLUMNS",
    "AuditEvent",
    "InstanceRecord",
    "SeriesCount",
    "StudyRecord",
    "instance_from_row",
    "instance_row_values",
    "study_from_row",
]


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


#: The ``studies`` columns, in the order of :class:`StudyRecord`'s fields.
STUDY_COLUMNS = (
    "study_key, study_uid, state, first_received_at, last_received_at, instance_count, bytes_stored, "
    "completed_at, handed_off_at, job_id, reason, content_digest, handoff_attempts, next_handoff_at, "
    "conflicts, late_instances, updates, classification, eligible"
)
#: The ``instances`` columns, in the order of :class:`InstanceRecord`'s fields.
INSTANCE_COLUMNS = (
    "sop_uid, study_key, series_key, series_uid, sop_class_uid, modality, path, sha256, size, received_at, "
    "series_number, series_description, transfer_syntax"
)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def study_from_row(values: tuple[Any, ...]) -> StudyRecord:
    """The study of a row selected with :data:`STUDY_COLUMNS`."""
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


def instance_from_row(row: tuple[Any, ...]) -> InstanceRecord:
    """The instance of a row selected with :data:`INSTANCE_COLUMNS`."""
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


def instance_row_values(record: InstanceRecord) -> tuple[Any, ...]:
    """The values of ``record`` in :data:`INSTANCE_COLUMNS` order (for an INSERT)."""
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

"""Schema of the study index: its tables, their rows as typed records, and in-place migration.

Times are Unix epoch seconds, sizes bytes, paths POSIX and relative to the store root. No patient
data: only UIDs, opaque keys, SOP class, modality, series number/description, sizes and SHA-256
digests. Schema version 1 holds the ``studies`` and ``instances`` tables; version 2 adds the
late-arrival counters, the DCE classification, the series details of an instance and the
``audit_events`` table. An older index is migrated in place when opened (``PRAGMA user_version``);
a newer one is refused.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, fields
from typing import Any

from oncohabitat.listener.errors import StudyIndexError
from oncohabitat.listener.studies import StudyState

# The study index's one logger, whichever of its modules logs.
_LOG = logging.getLogger("oncohabitat.listener.index")


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


_STUDY_FIELDS = tuple(field.name for field in fields(StudyRecord))
_INSTANCE_FIELDS = tuple(field.name for field in fields(InstanceRecord))
#: The ``studies`` columns: named like :class:`StudyRecord`'s fields, in their order.
STUDY_COLUMNS = ", ".join(_STUDY_FIELDS)
#: The ``instances`` columns: named like :class:`InstanceRecord`'s fields, in their order.
INSTANCE_COLUMNS = ", ".join(_INSTANCE_FIELDS)

# SQLite's column affinities (TEXT, INTEGER, REAL) already give each value its field's type.


def study_from_row(values: tuple[Any, ...]) -> StudyRecord:
    """The study of a row selected with :data:`STUDY_COLUMNS`."""
    named = dict(zip(_STUDY_FIELDS, values, strict=True))
    named["state"] = StudyState(named["state"])
    named["eligible"] = None if named["eligible"] is None else bool(named["eligible"])
    return StudyRecord(**named)


def instance_from_row(row: tuple[Any, ...]) -> InstanceRecord:
    """The instance of a row selected with :data:`INSTANCE_COLUMNS`."""
    return InstanceRecord(*row)


def instance_row_values(record: InstanceRecord) -> tuple[Any, ...]:
    """The values of ``record`` in :data:`INSTANCE_COLUMNS` order (for an INSERT)."""
    return tuple(getattr(record, name) for name in _INSTANCE_FIELDS)


SCHEMA_VERSION = 2

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


def migrate(conn: sqlite3.Connection, db_name: str) -> None:
    """Bring the index on ``conn`` (autocommit mode) to :data:`SCHEMA_VERSION` in one transaction.

    Creates the schema in an empty file (version 0) and migrates a version-1 index in place.

    Raises:
        StudyIndexError: the index has a newer (unknown) schema version; ``db_name`` names its file.
    """
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version not in (0, 1, SCHEMA_VERSION):
        raise StudyIndexError(f"study index {db_name} has schema version {version}, expected <= {SCHEMA_VERSION}")
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in (*(_SCHEMA_V1 if version == 0 else ()), *_MIGRATION_V2):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    if version == 1:
        _LOG.info("study index migrated from schema 1 to %d", SCHEMA_VERSION)

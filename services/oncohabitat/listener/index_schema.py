"""Schema of the study index and its in-place migration (SQLite ``PRAGMA user_version``).

Version 1 holds the ``studies`` and ``instances`` tables; version 2 adds the late-arrival
counters, the DCE classification, the series details of an instance and the ``audit_events``
table. A version-1 index is migrated in place when opened; a newer one is refused.
"""

from __future__ import annotations

import logging
import sqlite3

from oncohabitat.listener.errors import StudyIndexError

# The study index's one logger, whichever of its modules logs.
_LOG = logging.getLogger("oncohabitat.listener.index")

__all__ = ["SCHEMA_VERSION", "migrate"]

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

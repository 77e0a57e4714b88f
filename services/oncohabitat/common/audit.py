"""The audit trail: one structured event per security-relevant action, on a stream of its own.

Every event is one INFO record of the logger ``oncohabitat.audit`` (so it is in the service log, JSON, with the
logger name to select on) and, when ``ONCOHABITAT_AUDIT_FILE`` is set, one JSON line appended to that file.
The fields follow DICOM PS3.15 A.5 / IHE ATNA: ``event_id`` (what), ``event_action`` (C/R/U/D/E),
``event_time`` (when, UTC), ``outcome`` (0 success, 4 minor failure, 8 serious failure, 12 major failure),
``user_id`` (who: a token id or certificate subject, never a secret; an AE title for DICOM peers),
``network_access_point`` (peer address), ``source`` (the service reporting) and opaque object ids (study keys,
job ids, instance keys) only: never a patient name, id, birth date or accession number.

Event ids: ``grpc_access`` (every gRPC call but health checks), ``association_accepted`` /
``association_rejected`` (every DICOM association: the access events of the DICOM side), ``association_closed``,
``study_received`` (listener: a study completed), ``job_finished``, ``result_exported``, and the listener's
``instance_conflict``, ``instance_replaced``, ``study_updated``, ``study_rejected``.
Access events (:data:`ACCESS_EVENTS`) are exactly one per gRPC call plus one per association.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

AUDIT_LOGGER = "oncohabitat.audit"
ACCESS_EVENTS = frozenset({"grpc_access", "association_accepted", "association_rejected"})

SUCCESS = 0
MINOR_FAILURE = 4
SERIOUS_FAILURE = 8
MAJOR_FAILURE = 12

AuditValue = str | int | float | bool

_LOG = logging.getLogger(AUDIT_LOGGER)
_LOG.setLevel(logging.INFO)
_file_lock = threading.Lock()
_file_path: Path | None = None
_source = ""


def configure_audit(source: str, file: Path | None = None) -> None:
    """Name the reporting service and (optionally) a JSON-lines file every event is appended to."""
    global _file_path, _source
    _source = source
    _file_path = file
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)


def emit(
    event: str,
    *,
    outcome: int = SUCCESS,
    action: str = "E",
    user_id: str = "",
    peer: str = "",
    **fields: AuditValue,
) -> dict[str, AuditValue]:
    """Record one audit event; returns it (as written to the file).

    Args:
        event: Event id (see the module docstring).
        outcome: ATNA outcome indicator (0, 4, 8, 12).
        action: ATNA action code: C(reate), R(ead), U(pdate), D(elete), E(xecute).
        user_id: Who: token id, certificate subject or calling AE title.
        peer: Network access point (IP address).
        fields: Further opaque values (keys, counts, codes); never patient data.
    """
    record: dict[str, AuditValue] = {
        "event_id": event,
        "event_action": action,
        "event_time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "outcome": outcome,
        "user_id": user_id,
        "network_access_point": peer,
        "source": _source,
        **fields,
    }
    extra = {"audit_event": event, **{f"audit_{k}": v for k, v in record.items() if k != "event_id"}}
    _LOG.info("audit %s", event, extra=extra)
    if _file_path is not None:
        line = json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n"
        with _file_lock, _file_path.open("a", encoding="utf-8") as handle:
            handle.write(line)
    return record

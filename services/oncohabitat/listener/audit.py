"""Audit events of the listener, in the platform's one audit format (:mod:`oncohabitat.common.audit`).

Events: ``association_accepted``, ``association_rejected`` (the DICOM access events: one per association),
``association_closed`` (instances stored per study), ``instance_conflict``, ``instance_replaced``,
``study_updated``, ``study_completed`` (a study received complete), ``study_rejected``. Fields are opaque keys,
AE titles, peer addresses, counts and reason codes only; never patient names, IDs, birth dates or accession
numbers (the shared log filter blanks those names as a second layer). The calling AE title is the event's
``user_id``, the peer address its ``network_access_point``.
"""

from __future__ import annotations

from oncohabitat.common import audit as common_audit

AuditValue = common_audit.AuditValue

_FAILURES = frozenset({"association_rejected", "study_rejected", "instance_conflict"})
_ACTIONS = {"instance_replaced": "U", "study_updated": "U", "study_completed": "C"}


def emit(event: str, **fields: AuditValue) -> None:
    """Record one listener audit event; listener field names stay (``audit_<name>`` on the log record)."""
    if "outcome" in fields:  # the association's own closing outcome: not the ATNA outcome indicator
        fields["close_outcome"] = fields.pop("outcome")
    for clash in ("action", "user_id", "peer"):  # listener detail named like an ATNA field: kept, renamed
        if clash in fields:
            fields[f"listener_{clash}"] = fields.pop(clash)
    common_audit.emit(
        event,
        outcome=common_audit.MINOR_FAILURE if event in _FAILURES else common_audit.SUCCESS,
        action=_ACTIONS.get(event, "E"),
        user_id=str(fields.get("calling_ae", "")),
        peer=str(fields.get("peer_ip", "")),
        **fields,
    )

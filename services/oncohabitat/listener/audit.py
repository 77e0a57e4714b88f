"""Structured audit events of the listener: one INFO log record per event, fields as ``extra``.

Events (``audit_event`` field): ``association_accepted``, ``association_rejected``,
``association_closed`` (instances stored per study), ``instance_conflict``, ``instance_replaced``,
``study_updated``, ``study_completed``, ``study_rejected``. Fields are opaque keys, AE titles,
peer addresses, counts and reason codes only; never patient names, IDs, birth dates or accession
numbers (the shared log filter blanks those names as a second layer).
"""

from __future__ import annotations

import logging

_LOG = logging.getLogger(__name__)

AuditValue = str | int | float | bool


def emit(event: str, **fields: AuditValue) -> None:
    """Log one audit event with ``fields`` as structured ``extra`` (prefixed keys avoid clashes)."""
    _LOG.info("audit %s", event, extra={"audit_event": event, **{f"audit_{k}": v for k, v in fields.items()}})

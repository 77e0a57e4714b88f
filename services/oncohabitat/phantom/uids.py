"""Deterministic DICOM UIDs for phantoms.

UIDs are plain ``2.25.<uuid>`` UIDs (ISO/IEC 9834-8) whose UUID is a name-based (version 5, SHA-1) UUID
of the generating parameters, so the same seed and options always give the same UIDs and different
phantoms never collide in practice. No organisation root is needed.
"""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:oncohabitat:phantom")


def phantom_uid(*parts: object) -> str:
    """A ``2.25`` UID derived from ``parts`` (joined with ``/``; order matters); at most 44 characters."""
    name = "/".join(str(part) for part in parts)
    return f"2.25.{uuid.uuid5(_NAMESPACE, name).int}"

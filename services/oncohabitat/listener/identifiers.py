"""DICOM UID validation and the opaque keys derived from UIDs.

Raw UIDs never name files or appear in logs: every file and log line uses a key, the lowercase
hex SHA-256 of the UID truncated to 32 characters (128 bits).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

#: Maximum length of a UI value (DICOM PS3.5 table 6.2-1).
MAX_UID_LENGTH = 64

# Digits separated by single dots. Leading zeros inside a component are tolerated (PS3.5
# forbids them, but some real devices emit them and they are harmless for paths/keys).
_UID_PATTERN = re.compile(r"[0-9]+(?:\.[0-9]+)*")

#: Number of hex characters kept from the SHA-256 of a UID.
KEY_LENGTH = 32


def is_valid_uid(value: object) -> bool:
    """True when ``value`` is a single string UID: digits and dots, at most 64 characters."""
    return isinstance(value, str) and 0 < len(value) <= MAX_UID_LENGTH and _UID_PATTERN.fullmatch(value) is not None


def uid_key(uid: str) -> str:
    """Opaque key of a UID: hex SHA-256 of its ASCII bytes, first 32 characters."""
    return hashlib.sha256(uid.encode("ascii")).hexdigest()[:KEY_LENGTH]


def content_digest(instances: Iterable[tuple[str, str]]) -> str:
    """Content digest of a study: hex SHA-256 over its sorted ``(sop_instance_uid, sha256)`` pairs.

    The digested text is one ``"<sop_instance_uid> <sha256>\\n"`` line per instance, sorted by
    SOP Instance UID, UTF-8 encoded. Same instances with the same bytes give the same digest.
    """
    digest = hashlib.sha256()
    for sop_uid, sha in sorted(instances):
        digest.update(f"{sop_uid} {sha}\n".encode())
    return digest.hexdigest()

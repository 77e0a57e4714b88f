"""Domain error raised when a model bundle cannot be loaded, verified or found."""

from __future__ import annotations

from typing import Final

#: Stable reason codes carried by :class:`BundleError` (mirrored into ``ErrorDetail.reason``).
MANIFEST_MISSING: Final = "MANIFEST_MISSING"
SCHEMA_INVALID: Final = "SCHEMA_INVALID"
LAYOUT_INVALID: Final = "LAYOUT_INVALID"
FILE_MISSING: Final = "FILE_MISSING"
FILE_UNLISTED: Final = "FILE_UNLISTED"
HASH_MISMATCH: Final = "HASH_MISMATCH"
MODEL_NOT_FOUND: Final = "MODEL_NOT_FOUND"
VERSION_NOT_FOUND: Final = "VERSION_NOT_FOUND"
DUPLICATE_BUNDLE: Final = "DUPLICATE_BUNDLE"


class BundleError(Exception):
    """A bundle is invalid, tampered with, or not available.

    Attributes:
        reason: stable machine-readable code (one of the module constants, e.g. ``"HASH_MISMATCH"``).
        message: curated human-readable explanation (bundle-relative paths only, never file contents).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

"""Domain error raised when a model bundle cannot be loaded, verified or found."""

from __future__ import annotations

from typing import Final

import grpc

from oncohabitat.common.errors import DomainError

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
KIND_MISMATCH: Final = "KIND_MISMATCH"
LOCK_MISSING: Final = "LOCK_MISSING"
SIGNATURE_MISSING: Final = "SIGNATURE_MISSING"
SIGNATURE_INVALID: Final = "SIGNATURE_INVALID"
TEST_VECTOR_FAILED: Final = "TEST_VECTOR_FAILED"
MODEL_UNLOADABLE: Final = "MODEL_UNLOADABLE"


class BundleError(DomainError):
    """A bundle is invalid, tampered with, or not available.

    Attributes:
        reason: stable machine-readable code (one of the module constants, e.g. ``"HASH_MISMATCH"``).
        message: curated human-readable explanation (bundle-relative paths only, never file contents).
    """

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason, message)
        self.message = message
        if reason in (MODEL_NOT_FOUND, VERSION_NOT_FOUND):
            self.code = grpc.StatusCode.NOT_FOUND

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"

"""Domain exceptions of the DICOM listener (curated messages; never carry patient data)."""

from __future__ import annotations


class ListenerError(Exception):
    """Base class of every error raised by the listener package."""


class InvalidInstanceError(ListenerError):
    """A received object cannot be accepted (unreadable, missing or non-conformant UIDs).

    ``reason`` is a stable machine-readable code (also the ``reason`` label of the rejection
    metric) and ``status`` the DIMSE failure status answered to the peer.
    """

    def __init__(self, reason: str, status: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


class ListenerConfigError(ListenerError):
    """A listener setting is unusable (bad allow-list entry, TLS files, rules file)."""


class StorageWriteError(ListenerError):
    """Writing an instance durably (file or index row) failed; nothing was acknowledged."""


class StudyIndexError(ListenerError):
    """The SQLite study index is unusable (corrupt, wrong schema)."""


class HandoffRejectedError(ListenerError):
    """Raised by a hand-off callable when the receiver refuses the study for good.

    The outbox then marks the study REJECTED (the curated message is the reason) instead of retrying.
    """

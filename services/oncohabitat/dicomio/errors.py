"""Domain exceptions of :mod:`oncohabitat.dicomio`.

Every exception carries a short machine-readable ``reason`` (a stable upper-case token that callers may
map to a status code) and a curated human-readable ``message``.  Messages never contain patient
identifiers; ROI/segment names are allowed (they are not PHI).
"""

from __future__ import annotations

from collections.abc import Sequence

from oncohabitat.common.errors import InvalidInputError


class DicomIOError(InvalidInputError):
    """Base class: bad DICOM input or a request that cannot be honoured (INVALID_ARGUMENT over gRPC)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason, message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class SeriesError(DicomIOError):
    """An image series cannot be assembled into a 3-D volume (see :class:`SeriesErrorReason`)."""


class MaskError(DicomIOError):
    """An RTSTRUCT/SEG cannot be rasterised onto the image series."""


class MaskSelectionError(MaskError):
    """No unique ROI/segment matches the selection rule.

    ``roi_names`` lists the candidates that were available (ROI names are not PHI).
    """

    def __init__(self, reason: str, message: str, roi_names: Sequence[str]) -> None:
        super().__init__(reason, message)
        self.roi_names: tuple[str, ...] = tuple(roi_names)


class ExportError(DicomIOError):
    """A DICOM SEG or SR cannot be built from the given inputs."""

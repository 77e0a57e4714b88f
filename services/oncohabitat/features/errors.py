"""Domain error of feature extraction; carries a stable reason code for ``ErrorDetail``."""

from __future__ import annotations

from typing import Final

from oncohabitat.common.errors import FeatureInputError

FEATURE_NAME_INVALID: Final = "FEATURE_NAME_INVALID"
FEATURE_NOT_PRODUCED: Final = "FEATURE_NOT_PRODUCED"
SETTINGS_INVALID: Final = "SETTINGS_INVALID"
IMAGE_INVALID: Final = "IMAGE_INVALID"
MASK_INVALID: Final = "MASK_INVALID"
LABEL_EMPTY: Final = "LABEL_EMPTY"
GEOMETRY_MISMATCH: Final = "GEOMETRY_MISMATCH"
EXTRACTION_FAILED: Final = "EXTRACTION_FAILED"
PLAN_INVALID: Final = "PLAN_INVALID"


class FeatureExtractionError(FeatureInputError):
    """Features cannot be extracted for this request.

    Attributes:
        reason: stable machine-readable code (module constants, e.g. ``"FEATURE_NOT_PRODUCED"``).
        feature: the offending feature name, or None when the error is not about one feature.
        message: curated human-readable explanation (never voxel data or patient identifiers).
    """

    def __reduce__(self) -> tuple[type[FeatureExtractionError], tuple[str, str | None, str]]:
        """Picklable with its three fields (it crosses from worker processes to the server)."""
        return (type(self), (self.reason, self.feature, self.message))

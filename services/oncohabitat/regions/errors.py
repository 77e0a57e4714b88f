"""Stable reason codes of the regions service (sent in ``ErrorDetail.reason``).

The domain modules raise the shared :mod:`oncohabitat.common.errors` classes with these codes; the
interceptor maps the class to the gRPC status (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION).
"""

from __future__ import annotations

from typing import Final

# The phase-model reasons are the shared phase module's (one definition for every service).
from oncohabitat.common.phases import GRID_MISMATCH as GRID_MISMATCH
from oncohabitat.common.phases import PHASE_NOT_FINITE as PHASE_NOT_FINITE
from oncohabitat.common.phases import PHASES_INVALID as PHASES_INVALID

#: profile_json is not JSON or does not validate against :class:`~oncohabitat.regions.profile.RegionProfile`.
PROFILE_INVALID: Final = "PROFILE_INVALID"
#: A phase the requested maps need is absent (the message names the role and index).
PHASE_MISSING: Final = "PHASE_MISSING"
#: Acquisition times do not increase from S0 to S1 to S2.
PHASE_TIMES_INVALID: Final = "PHASE_TIMES_INVALID"
#: No tumour mask was sent.
MASK_MISSING: Final = "MASK_MISSING"
#: The tumour mask has no voxel.
MASK_EMPTY: Final = "MASK_EMPTY"
#: The tumour mask does not overlap the image (after mapping it onto the phase grid).
MASK_OUTSIDE_IMAGE: Final = "MASK_OUTSIDE_IMAGE"
#: A derived image name is unknown.
DERIVED_IMAGE_UNKNOWN: Final = "DERIVED_IMAGE_UNKNOWN"
#: The frozen-centroids bundle file does not exist.
CENTROIDS_NOT_FOUND: Final = "CENTROIDS_NOT_FOUND"
#: The frozen-centroids file's SHA-256 differs from the one recorded in the profile (tampered or stale).
CENTROIDS_HASH_MISMATCH: Final = "CENTROIDS_HASH_MISMATCH"
#: The frozen-centroids file is malformed or does not match the profile (features, K).
CENTROIDS_INVALID: Final = "CENTROIDS_INVALID"
#: Frozen mode was requested but the service has no models directory to resolve the file in.
CENTROIDS_UNAVAILABLE: Final = "CENTROIDS_UNAVAILABLE"
#: The breast mask finds no tissue in the reference phase (no body, or nothing anterior of the chest wall).
BREAST_MASK_EMPTY: Final = "BREAST_MASK_EMPTY"

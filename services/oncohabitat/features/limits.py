"""Documented limits that keep one extraction's time and memory bounded (checked before or during the work).

Settings beyond a limit are refused (INVALID_ARGUMENT naming the setting) before any work starts, except the
gray-level count under ``binWidth``, which depends on the data and makes only the texture classes of that pass
missing (reason ``GRAY_LEVEL_LIMIT``). Figures: ``binCount`` 2000 took 52 s and +664 MB on one region in the
issue's measurement; texture matrices grow with the square of the gray levels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from oncohabitat.features import errors
from oncohabitat.features.errors import FeatureExtractionError

#: Largest number of gray levels a texture class may bin into (``binCount``, or range / ``binWidth``).
MAX_GRAY_LEVELS: Final = 512
#: Most canonical features one plan may name (and most names one ExtractFeatures call may list).
MAX_FEATURES: Final = 20000
#: Most voxels of one image (e.g. 512 x 512 x 256 = 67 M) and of one image after resampling.
MAX_VOXELS: Final = 80_000_000
#: Most images and label maps of one request.
MAX_IMAGES: Final = 64
#: Smallest resampled spacing (mm) and largest LoG sigma (mm) / wavelet level accepted.
MIN_RESAMPLED_SPACING_MM: Final = 0.1
MAX_LOG_SIGMA_MM: Final = 20.0
MAX_WAVELET_LEVEL: Final = 3
MAX_LBP_LEVELS: Final = 4


def _refuse(setting: str, problem: str) -> FeatureExtractionError:
    return FeatureExtractionError(errors.SETTINGS_INVALID, setting, f"setting {setting!r}: {problem}")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def check_settings(params: Mapping[str, Any], voxels: int, spacing_mm: tuple[float, float, float] | None) -> None:
    """Refuse settings beyond the limits; ``voxels`` / ``spacing_mm`` describe the largest image (or None).

    Raises:
        FeatureExtractionError: ``SETTINGS_INVALID`` naming the setting.
    """
    setting = params.get("setting", {}) or {}
    image_types = params.get("imageType", {}) or {}
    scopes = [setting] + [custom or {} for custom in image_types.values()]
    for scope in scopes:
        bin_count = _number(scope.get("binCount"))
        if bin_count is not None and not 1 <= bin_count <= MAX_GRAY_LEVELS:
            raise _refuse("binCount", f"must be between 1 and {MAX_GRAY_LEVELS}")
        bin_width = _number(scope.get("binWidth"))
        if bin_width is not None and not bin_width > 0:
            raise _refuse("binWidth", "must be positive")
        for sigma in scope.get("sigma", []) or []:
            value = _number(sigma)
            if value is None or not 0 < value <= MAX_LOG_SIGMA_MM:
                raise _refuse("sigma", f"each sigma must be in (0, {MAX_LOG_SIGMA_MM:g}] mm")
        level = _number(scope.get("level"))
        if level is not None and not 1 <= level <= MAX_WAVELET_LEVEL:
            raise _refuse("level", f"wavelet level must be 1..{MAX_WAVELET_LEVEL}")
        lbp = _number(scope.get("lbp3DLevels"))
        if lbp is not None and not 1 <= lbp <= MAX_LBP_LEVELS:
            raise _refuse("lbp3DLevels", f"must be 1..{MAX_LBP_LEVELS}")
    if voxels > MAX_VOXELS:
        raise FeatureExtractionError(errors.IMAGE_INVALID, None, f"an image has more than {MAX_VOXELS} voxels")
    resampled = setting.get("resampledPixelSpacing")
    if resampled is not None and spacing_mm is not None:
        values = [_number(v) for v in resampled] if isinstance(resampled, list) else []
        if len(values) != 3 or any(v is None or v < 0 for v in values):
            raise _refuse("resampledPixelSpacing", "must be 3 non-negative values (0 = keep that axis)")
        factor = 1.0
        for new, old in zip(values, spacing_mm, strict=True):
            if new is not None and new > 0:
                if new < MIN_RESAMPLED_SPACING_MM:
                    raise _refuse("resampledPixelSpacing", f"spacings below {MIN_RESAMPLED_SPACING_MM} mm")
                factor *= old / new
        if voxels * factor > MAX_VOXELS:
            raise _refuse("resampledPixelSpacing", f"the resampled image would exceed {MAX_VOXELS} voxels")

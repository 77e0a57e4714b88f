"""Study phases -> the network's input, exactly as in training (the training recipe calls :func:`prepare`).

1. Every phase the channels read is smoothed (anti-aliasing, when the target spacing is coarser) and resampled
   (linear) onto the *target grid*: the reference phase's field of view and direction at
   ``target_spacing_mm``.
2. Breast-region crop on that coarse grid (see :class:`~.model_bundle.CropSpec`).
3. Channels (phase or subtraction) divided by a percentile of the normalisation phase inside the foreground.

Arrays are (z, y, x) / (channel, z, y, x) float32; spacing, origin and direction follow SimpleITK (x, y, z).
Memory: one full-resolution float32 copy of one phase at a time, plus coarse arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.segmentation.model_bundle import CropSpec, PreprocessingSpec

FloatArray = npt.NDArray[np.float32]
#: Percentile of the normalisation phase that defines "bright" for the foreground threshold.
FOREGROUND_REFERENCE_PERCENTILE = 99.5


@dataclass(frozen=True)
class PreparedInput:
    """Network input on the cropped target grid.

    ``channels`` (C, z, y, x) float32; ``grid`` a zero-valued uint8 image carrying the cropped target grid's
    geometry (use it as a resampling reference); ``crop`` the (z, y, x) slices of the crop in the full target
    grid; ``scale`` the normalisation divisor (signal units).
    """

    channels: FloatArray
    grid: sitk.Image
    crop: tuple[slice, slice, slice]
    scale: float


def target_grid(reference: sitk.Image, spacing_xyz: tuple[float, float, float]) -> sitk.Image:
    """Empty (uint8) image covering ``reference``'s field of view at ``spacing_xyz`` mm, same direction.

    The outer voxel edges coincide with the reference's, so the two grids cover the same physical box.
    """
    size = [
        max(1, math.ceil(n * s / t - 1e-6))
        for n, s, t in zip(reference.GetSize(), reference.GetSpacing(), spacing_xyz, strict=True)
    ]
    direction = np.asarray(reference.GetDirection(), dtype=np.float64).reshape(3, 3)
    corner_index = np.full(3, -0.5)
    corner = np.asarray(reference.TransformContinuousIndexToPhysicalPoint(corner_index.tolist()))
    origin = corner + direction @ (0.5 * np.asarray(spacing_xyz))
    grid = sitk.Image([int(n) for n in size], sitk.sitkUInt8)
    grid.SetSpacing(spacing_xyz)
    grid.SetOrigin(origin.tolist())
    grid.SetDirection(reference.GetDirection())
    return grid


def resample_onto(image: sitk.Image, grid: sitk.Image, *, antialias: bool = True) -> FloatArray:
    """``image`` resampled (linear) onto ``grid`` as float32 (z, y, x); 0 outside the image.

    With ``antialias``, axes whose grid spacing is coarser than the image's are first smoothed with a
    Gaussian of sigma = sqrt(target^2 - source^2) / 2.355 mm (FWHM matching).
    """
    source = sitk.Cast(image, sitk.sitkFloat32)
    if antialias:
        sigmas = [
            math.sqrt(max(t * t - s * s, 0.0)) / 2.355
            for s, t in zip(image.GetSpacing(), grid.GetSpacing(), strict=True)
        ]
        if max(sigmas) > 0.0:
            smoother = sitk.SmoothingRecursiveGaussianImageFilter()
            smoother.SetSigma([max(sigma, 1e-3) for sigma in sigmas])
            source = smoother.Execute(source)
    resampled = sitk.Resample(source, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampled)


def anterior_axis(direction: tuple[float, ...]) -> tuple[int, bool]:
    """(numpy axis (z=0, y=1, x=2) closest to the patient's A-P axis, True if anterior is at low indices).

    LPS: +y is posterior, so anterior is where the y coordinate decreases.
    """
    matrix = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    itk_axis = int(np.argmax(np.abs(matrix[1, :])))
    return 2 - itk_axis, bool(matrix[1, itk_axis] > 0)


def _extent(profile: npt.NDArray[np.int64], min_fraction: float) -> tuple[int, int]:
    """First and last index whose count reaches ``min_fraction`` of the profile's maximum (at least 1)."""
    threshold = max(1.0, min_fraction * float(profile.max()))
    indices = np.flatnonzero(profile >= threshold)
    return int(indices[0]), int(indices[-1])


def breast_crop(
    foreground: npt.NDArray[np.bool_],
    spacing_zyx: tuple[float, float, float],
    direction: tuple[float, ...],
    spec: CropSpec,
) -> tuple[slice, slice, slice]:
    """Crop (z, y, x slices) of the breast region on a grid with ``spacing_zyx`` mm, see :class:`CropSpec`."""
    full = tuple(slice(0, n) for n in foreground.shape)
    if spec.method == "none" or not foreground.any():
        return (full[0], full[1], full[2])
    axis, anterior_low = anterior_axis(direction)
    bounds: list[slice] = []
    for a in range(3):
        other = tuple(i for i in range(3) if i != a)
        lo, hi = _extent(foreground.sum(axis=other), spec.min_row_fraction)
        if a == axis:
            depth = math.ceil(spec.anterior_depth_mm / spacing_zyx[a])
            lo, hi = (lo, min(hi, lo + depth)) if anterior_low else (max(lo, hi - depth), hi)
        margin = math.ceil(spec.margin_mm / spacing_zyx[a])
        bounds.append(slice(max(0, lo - margin), min(foreground.shape[a], hi + margin + 1)))
    return (bounds[0], bounds[1], bounds[2])


def _combine(spec: PreprocessingSpec, resampled: Mapping[int, FloatArray], crop: tuple[slice, ...]) -> FloatArray:
    channels = []
    for channel in spec.channels:
        first = resampled[channel.phases[0]][crop]
        channels.append(first if channel.operation == "phase" else first - resampled[channel.phases[1]][crop])
    return np.stack(channels).astype(np.float32, copy=False)


def prepare(phases: Mapping[int, sitk.Image], reference_index: int, spec: PreprocessingSpec) -> PreparedInput:
    """Network input for ``phases`` (index -> image, all on the reference phase's grid).

    Raises:
        InvalidInputError: ``PHASES_MISSING`` naming the phases the model needs; ``IMAGE_EMPTY`` when the
            normalisation phase has no signal.
    """
    missing = [p for p in spec.required_phases if p not in phases]
    if missing:
        raise InvalidInputError(
            "PHASES_MISSING",
            f"the segmentation model needs phases {list(spec.required_phases)} (0 = pre-contrast); "
            f"the study has {len(phases)} phase(s) {sorted(phases)}, missing {missing}",
            "study.phases",
        )
    reference = phases[reference_index]
    grid = target_grid(reference, spec.target_spacing_mm)
    resampled = {p: resample_onto(phases[p], grid) for p in spec.required_phases}
    norm = resampled[spec.normalisation.phase]
    bright = float(np.percentile(norm, FOREGROUND_REFERENCE_PERCENTILE))
    if not bright > 0.0:
        raise InvalidInputError("IMAGE_EMPTY", "the normalisation phase has no signal", "study.phases")
    foreground = norm > spec.crop.foreground_fraction * bright
    spacing = grid.GetSpacing()
    crop = breast_crop(foreground, (spacing[2], spacing[1], spacing[0]), grid.GetDirection(), spec.crop)
    inside = foreground[crop]
    values = norm[crop][inside] if inside.any() else norm[crop].ravel()
    scale = float(np.percentile(values, spec.normalisation.percentile))
    if not scale > 0.0:
        raise InvalidInputError(
            "IMAGE_EMPTY", "the normalisation phase has no signal in the breast region", "study.phases"
        )
    channels = _combine(spec, resampled, crop) / np.float32(scale)
    start = [crop[2].start, crop[1].start, crop[0].start]
    size = [crop[2].stop - crop[2].start, crop[1].stop - crop[1].start, crop[0].stop - crop[0].start]
    cropped_grid = sitk.Image([int(n) for n in size], sitk.sitkUInt8)
    cropped_grid.SetSpacing(grid.GetSpacing())
    cropped_grid.SetDirection(grid.GetDirection())
    cropped_grid.SetOrigin(grid.TransformIndexToPhysicalPoint([int(i) for i in start]))
    return PreparedInput(channels=channels.astype(np.float32, copy=False), grid=cropped_grid, crop=crop, scale=scale)

"""Seeded segmentation: spatial fuzzy c-means on the enhancement image in a window around a seed point.

1. Window: a cube of ``window_mm`` centred on the seed (LPS mm), clipped to the volume.
2. Spatial FCM (:func:`~.fcm.spatial_fcm`) of the enhancement image (post - pre subtraction, or the single
   image when the study has no pre-contrast phase); the ``lesion_clusters`` brightest clusters form the lesion
   class (hard assignment).
3. In-plane opening of radius ``opening_mm`` (detaches vessels and ducts touching the lesion), 3D closing of
   radius ``closing_mm`` (bridges gaps in an enhancing rim) and hole filling (a non-enhancing or
   less-enhancing core belongs to the tumour).
4. The connected component (26-connectivity) containing the seed, or the nearest one within
   ``seed_tolerance_mm`` of it; none -> NO_LESION. A component reaching the window's edge inside the volume
   -> TOUCHES_BORDER (the lesion may be larger than the window).

Arrays are (z, y, x); spacing and the seed follow SimpleITK's (x, y, z).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.segmentation.fcm import spatial_fcm
from oncohabitat.segmentation.method_output import MethodOutput
from oncohabitat.segmentation.profiles import FcmParameters
from oncohabitat.segmentation.quality import FULL_CONNECTIVITY, Outcome, Verdict, fill_holes

BoolArray = npt.NDArray[np.bool_]


def neighbourhood_voxels(side_mm: float, spacing_zyx: tuple[float, float, float]) -> tuple[int, int, int]:
    """Odd box size (voxels per z, y, x) closest to ``side_mm``; at least 1."""
    sizes = []
    for spacing in spacing_zyx:
        n = max(1, round(side_mm / spacing))
        sizes.append(n if n % 2 else n + 1)
    return (sizes[0], sizes[1], sizes[2])


def in_plane_disk(radius_mm: float, spacing_zyx: tuple[float, float, float]) -> BoolArray:
    """Structuring element (1, y, x): voxels within ``radius_mm`` in the axial plane."""
    ry, rx = radius_mm / spacing_zyx[1], radius_mm / spacing_zyx[2]
    ny, nx = math.floor(ry), math.floor(rx)
    yy, xx = np.mgrid[-ny : ny + 1, -nx : nx + 1]
    disk = (yy / max(ry, 1e-9)) ** 2 + (xx / max(rx, 1e-9)) ** 2 <= 1.0
    return np.asarray(disk[np.newaxis], dtype=bool)


def ball(radius_mm: float, spacing_zyx: tuple[float, float, float]) -> BoolArray:
    """Structuring element (z, y, x): voxels within ``radius_mm`` of the centre."""
    half = [math.floor(radius_mm / s) for s in spacing_zyx]
    zz, yy, xx = np.mgrid[-half[0] : half[0] + 1, -half[1] : half[1] + 1, -half[2] : half[2] + 1]
    scaled = (zz * spacing_zyx[0]) ** 2 + (yy * spacing_zyx[1]) ** 2 + (xx * spacing_zyx[2]) ** 2
    return np.asarray(scaled <= radius_mm**2, dtype=bool)


def seed_index(image: sitk.Image, seed_lps_mm: tuple[float, float, float]) -> tuple[int, int, int]:
    """Nearest voxel (z, y, x) of the seed; InvalidInputError ``SEED_OUTSIDE_VOLUME`` if it is outside."""
    continuous = image.TransformPhysicalPointToContinuousIndex(seed_lps_mm)
    size = image.GetSize()
    if not all(-0.5 <= c <= n - 0.5 for c, n in zip(continuous, size, strict=True)):
        raise InvalidInputError("SEED_OUTSIDE_VOLUME", "the seed point lies outside the reference image", "seed")
    x, y, z = (min(n - 1, max(0, round(c))) for c, n in zip(continuous, size, strict=True))
    return (z, y, x)


def _window(
    centre: tuple[int, int, int], shape: tuple[int, ...], spacing_zyx: tuple[float, ...], side_mm: float
) -> tuple[slice, slice, slice]:
    half = [math.ceil(side_mm / 2.0 / s) for s in spacing_zyx]
    bounds = [slice(max(0, c - h), min(n, c + h + 1)) for c, h, n in zip(centre, half, shape, strict=True)]
    return (bounds[0], bounds[1], bounds[2])


def _seed_component(
    lesion: BoolArray, seed: tuple[int, int, int], spacing_zyx: tuple[float, float, float], tolerance_mm: float
) -> BoolArray | None:
    """Component containing ``seed`` or the nearest within ``tolerance_mm``; None if there is none."""
    labels, _ = ndimage.label(lesion, structure=FULL_CONNECTIVITY)
    label = int(labels[seed])
    if label == 0:
        distance, nearest = ndimage.distance_transform_edt(~lesion, sampling=spacing_zyx, return_indices=True)
        if not lesion.any() or float(distance[seed]) > tolerance_mm:
            return None
        label = int(labels[tuple(int(axis[seed]) for axis in nearest)])
    return np.asarray(labels == label, dtype=bool)


def equivalent_radius_mm(mask: BoolArray, spacing_zyx: tuple[float, float, float]) -> float:
    """Radius (mm) of the sphere with the mask's volume."""
    volume = float(np.count_nonzero(mask)) * spacing_zyx[0] * spacing_zyx[1] * spacing_zyx[2]
    return (3.0 * volume / (4.0 * math.pi)) ** (1.0 / 3.0)


def _close(
    component: BoolArray, spacing_zyx: tuple[float, float, float], closing_mm: float, fraction: float
) -> BoolArray:
    """Closing of one component with a ball of min(closing_mm, fraction x its equivalent radius)."""
    radius = min(closing_mm, fraction * equivalent_radius_mm(component, spacing_zyx))
    structure = ball(radius, spacing_zyx)
    if structure.sum() <= 1:
        return component
    pad = [(n // 2, n // 2) for n in structure.shape]
    closed = ndimage.binary_closing(np.pad(component, pad), structure=structure)
    return np.asarray(closed[tuple(slice(p, p + n) for (p, _), n in zip(pad, component.shape, strict=True))])


def _touches_window_edge(mask: BoolArray, window: tuple[slice, ...], shape: tuple[int, ...]) -> bool:
    for axis, (bounds, n) in enumerate(zip(window, shape, strict=True)):
        if bounds.start > 0 and np.take(mask, 0, axis=axis).any():
            return True
        if bounds.stop < n and np.take(mask, -1, axis=axis).any():
            return True
    return False


def segment_seeded(
    enhancement: sitk.Image, seed_lps_mm: tuple[float, float, float], params: FcmParameters
) -> MethodOutput:
    """Tumour mask (reference grid of ``enhancement``) grown from the seed, see the module docstring.

    Raises:
        InvalidInputError: the seed is outside the image.
    """
    spacing_xyz = enhancement.GetSpacing()
    spacing = (spacing_xyz[2], spacing_xyz[1], spacing_xyz[0])
    values = sitk.GetArrayViewFromImage(enhancement)
    seed = seed_index(enhancement, seed_lps_mm)
    window = _window(seed, values.shape, spacing, params.window_mm)
    local_seed = (seed[0] - window[0].start, seed[1] - window[1].start, seed[2] - window[2].start)
    data = np.asarray(values[window], dtype=np.float64)
    fcm = spatial_fcm(
        data,
        clusters=params.clusters,
        fuzziness=params.fuzziness,
        neighbourhood=neighbourhood_voxels(params.neighbourhood_mm, spacing),
        p=params.p,
        q=params.q,
        max_iterations=params.max_iterations,
    )
    first_lesion_cluster = params.clusters - params.lesion_clusters
    lesion = fcm.hard_labels() >= first_lesion_cluster
    disk = in_plane_disk(params.opening_mm, spacing)
    if disk.sum() > 1:
        lesion = ndimage.binary_opening(lesion, structure=disk)
    details: dict[str, object] = {
        "centres": [round(float(c), 4) for c in fcm.centres],
        "iterations": fcm.iterations,
        "converged": fcm.converged,
    }
    full = np.zeros(values.shape, dtype=bool)
    component = _seed_component(fill_holes(lesion), local_seed, spacing, params.seed_tolerance_mm)
    if component is None:
        empty = Verdict(
            Outcome.NO_LESION,
            f"no enhancing region at the seed (within {params.seed_tolerance_mm:g} mm) in the brightest "
            f"{params.lesion_clusters} of {params.clusters} fuzzy c-means clusters",
        )
        return MethodOutput(mask=full, confidence=0.0, verdict=empty, details=details)
    component = fill_holes(_close(component, spacing, params.closing_mm, params.closing_fraction))
    full[window] = component
    lesion_membership = fcm.memberships[first_lesion_cluster:].sum(axis=0)
    confidence = float(np.mean(lesion_membership[component], dtype=np.float64))
    verdict: Verdict | None = None
    if _touches_window_edge(component, window, values.shape):
        verdict = Verdict(
            Outcome.TOUCHES_BORDER,
            f"the lesion reaches the edge of the {params.window_mm:g} mm fuzzy c-means window around the seed",
        )
    return MethodOutput(mask=full, confidence=confidence, verdict=verdict, details=details)

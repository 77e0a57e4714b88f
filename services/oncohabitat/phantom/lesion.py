"""One irregular breast lesion with three kinetic compartments and an optional necrotic core.

Shape (FOV-local mm, centre c, nominal radius R): a voxel at offset d from c belongs to the lesion when
``|d| <= R * (1 + 0.25 * lobes(d/|d|)) + 0.12 * R * roughness(x)`` (``lobes`` is a sum of six random
plane waves on the unit sphere, ``roughness`` a smooth random field with cell R/3), or when it lies in
one of 4-8 spicules (rods tapering to a point at 1.4-2.0 R). The mask is clipped to the breast
parenchyma/fat and the connected component holding the centre is kept.

Compartments: with ``rho = |d| / (R * (1 + 0.25 * lobes))`` (0 at the centre, ~1 at the border) and two
more smooth fields, the necrotic core is the lowest ``necrosis_fraction`` of ``rho + 0.15 * field`` and
the remaining (enhancing) voxels are ranked by ``rho + 0.35 * field``: the inner ``fractions[0]`` are
persistent (1), the next ``fractions[1]`` plateau (2) and the outer rest wash-out (3), i.e. a highly
perfused rim around a poorly perfused centre with irregular interfaces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from oncohabitat.common.volume import Geometry
from oncohabitat.phantom.anatomy import BodyShape, Tissue
from oncohabitat.phantom.errors import PhantomError
from oncohabitat.phantom.fields import SmoothField, local_axes, size_of
from oncohabitat.phantom.kinetics import COMPARTMENT_TISSUE

LabelArray = npt.NDArray[np.uint8]
FloatArray = npt.NDArray[np.float64]

_LOBE_AMPLITUDE = 0.25
_ROUGHNESS = 0.12
_COMPARTMENT_MIXING = 0.35
_N_LOBES = 6


@dataclass(frozen=True)
class LesionParams:
    """Lesion options; ``None`` fields are drawn from the study seed.

    radius_mm: nominal radius (mm), default uniform 12-15 mm. side: "L" or "R" breast, default random.
    fractions: (persistent, plateau, wash-out) fractions of the enhancing (non-necrotic) volume.
    necrosis: add a non-enhancing core of ``necrosis_fraction`` of the tumour volume.
    """

    radius_mm: float | None = None
    side: str | None = None
    fractions: tuple[float, float, float] = (0.3, 0.3, 0.4)
    necrosis: bool = False
    necrosis_fraction: float = 0.15

    def validate(self) -> None:
        """Raise :class:`PhantomError` for out-of-range options."""
        if self.radius_mm is not None and not 4.0 <= self.radius_mm <= 40.0:
            raise PhantomError(f"lesion radius must be within 4-40 mm, got {self.radius_mm}")
        if self.side not in (None, "L", "R"):
            raise PhantomError(f"lesion side must be 'L' or 'R', got {self.side!r}")
        if any(f < 0.0 for f in self.fractions) or not math.isclose(sum(self.fractions), 1.0, abs_tol=1e-6):
            raise PhantomError(f"compartment fractions must be >= 0 and sum to 1, got {self.fractions}")
        if not 0.0 < self.necrosis_fraction < 0.6:
            raise PhantomError(f"necrosis fraction must be within (0, 0.6), got {self.necrosis_fraction}")


@dataclass(frozen=True)
class LesionTruth:
    """Realised lesion: centre = mask centroid (LPS mm), volumes in mL, fractions of the enhancing volume."""

    side: str
    radius_mm: float
    centre_lps_mm: tuple[float, float, float]
    volume_ml: float
    n_voxels: int
    compartment_fractions: dict[int, float]
    compartment_volumes_ml: dict[int, float]
    necrosis: bool
    necrosis_volume_ml: float


def _lobes(directions: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Smooth random function on the unit sphere, ~N(0, 1); ``directions`` is (..., 3)."""
    vectors = rng.standard_normal((_N_LOBES, 3))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    frequencies = rng.uniform(2.0, 5.0, _N_LOBES)
    phases = rng.uniform(0.0, 2.0 * math.pi, _N_LOBES)
    total = np.zeros(directions.shape[:-1])
    for vector, frequency, phase in zip(vectors, frequencies, phases, strict=True):
        total += np.cos(frequency * (directions @ vector) + phase)
    return np.asarray(total / math.sqrt(_N_LOBES / 2.0))


def _spicules(offsets: FloatArray, radius: float, rng: np.random.Generator) -> npt.NDArray[np.bool_]:
    """Union of 4-8 spicules leaving the centre; ``offsets`` is (..., 3) mm from the centre.

    Each is a rod of half-width 0.12-0.2 R out to the nominal border that tapers linearly to a point at
    1.4-2.0 R.
    """
    inside = np.zeros(offsets.shape[:-1], dtype=bool)
    for _ in range(int(rng.integers(4, 9))):
        axis = rng.standard_normal(3)
        axis /= np.linalg.norm(axis)
        length = radius * rng.uniform(1.4, 2.0)
        half_width = radius * rng.uniform(0.12, 0.2)
        along = offsets @ axis
        across = np.linalg.norm(offsets - along[..., np.newaxis] * axis, axis=-1)
        taper = 1.0 - np.clip((along - radius) / (length - radius), 0.0, 1.0)
        inside |= (along > 0.0) & (along < length) & (across < half_width * taper)
    return inside


def _rank_split(score: FloatArray, fractions: tuple[float, ...]) -> npt.NDArray[np.int64]:
    """Class 0..n-1 of each element: the lowest ``fractions[0]`` of ``score`` get 0, and so on."""
    order = np.argsort(score, kind="stable")
    bounds = np.round(np.cumsum(fractions) * score.size).astype(np.int64)
    classes = np.empty(score.size, dtype=np.int64)
    start = 0
    for code, stop in enumerate(bounds):
        classes[order[start:stop]] = code
        start = int(stop)
    classes[order[start:]] = len(fractions) - 1
    return classes


def _centre_radius_side(
    shape: BodyShape, params: LesionParams, rng: np.random.Generator
) -> tuple[FloatArray, float, str]:
    """Lesion centre (FOV-local mm, x/y/z), nominal radius (mm) and breast side."""
    radius = params.radius_mm if params.radius_mm is not None else float(rng.uniform(12.0, 15.0))
    side = params.side if params.side is not None else ("L" if rng.random() < 0.5 else "R")
    sign = 1.0 if side == "L" else -1.0
    depth = float(rng.uniform(0.4, 0.55))
    centre = np.array(
        [
            sign * shape.breast_centre_x + rng.uniform(-0.08, 0.08) * shape.breast_semi_x,
            shape.breast_base_y - depth * shape.breast_depth,
            rng.uniform(-0.1, 0.1) * shape.breast_semi_z,
        ]
    )
    return centre, radius, side


def _compartment_labels(
    rho: FloatArray, necrosis_field: FloatArray, compartment_field: FloatArray, params: LesionParams
) -> npt.NDArray[np.uint8]:
    """Tissue label of every lesion voxel from its normalised radius ``rho`` and two smooth fields."""
    necrotic = np.zeros(rho.size, dtype=bool)
    if params.necrosis:
        split = (params.necrosis_fraction, 1.0 - params.necrosis_fraction)
        necrotic = _rank_split(rho + 0.15 * necrosis_field, split) == 0
    enhancing_score = (rho + _COMPARTMENT_MIXING * compartment_field)[~necrotic]
    values = np.full(rho.size, Tissue.NECROSIS, dtype=np.uint8)
    values[~necrotic] = (_rank_split(enhancing_score, params.fractions) + Tissue.LESION_PERSISTENT).astype(np.uint8)
    return values


def place_lesion(
    geometry: Geometry,
    shape: BodyShape,
    labels: LabelArray,
    params: LesionParams,
    rng: np.random.Generator,
) -> LesionTruth:
    """Draw the lesion into ``labels`` (z, y, x; modified in place) and return its realised truth."""
    params.validate()
    centre, radius, side = _centre_radius_side(shape, params, rng)
    size = size_of(labels)
    x_axis, y_axis, z_axis = local_axes(geometry, size)
    reach = 2.1 * radius + 2.0 * max(geometry.spacing)
    window = [
        np.flatnonzero(np.abs(axis - c) <= reach) for axis, c in zip((x_axis, y_axis, z_axis), centre, strict=True)
    ]
    if any(w.size == 0 for w in window):
        raise PhantomError("lesion lies outside the field of view")
    xs, ys, zs = (slice(int(w[0]), int(w[-1]) + 1) for w in window)
    offsets = np.stack(
        np.meshgrid(z_axis[zs] - centre[2], y_axis[ys] - centre[1], x_axis[xs] - centre[0], indexing="ij")[::-1],
        axis=-1,
    )  # (z, y, x, 3) with x, y, z components
    distance = np.linalg.norm(offsets, axis=-1)
    directions = offsets / np.maximum(distance, 1e-9)[..., np.newaxis]
    border = radius * (1.0 + _LOBE_AMPLITUDE * _lobes(directions, rng))
    cell = max(radius / 3.0, 1.5)
    roughness = SmoothField(geometry, size, cell, rng).block(zs, ys, xs)
    inside = (distance <= border + _ROUGHNESS * radius * roughness) | _spicules(offsets, radius, rng)
    block = labels[zs, ys, xs]
    inside &= (block == Tissue.BREAST_FAT) | (block == Tissue.FIBROGLANDULAR)
    components, _ = ndimage.label(inside)
    keep = components[np.unravel_index(int(np.argmin(distance)), distance.shape)]
    if keep == 0:
        raise PhantomError("lesion centre is not inside breast tissue")
    inside = components == keep
    n_voxels = int(inside.sum())
    if n_voxels < 8:
        raise PhantomError(f"lesion too small for this voxel size ({n_voxels} voxels); use a larger radius")
    necrosis_field = SmoothField(geometry, size, cell, rng).block(zs, ys, xs)[inside]
    compartment_field = SmoothField(geometry, size, cell, rng).block(zs, ys, xs)[inside]
    values = _compartment_labels((distance / border)[inside], necrosis_field, compartment_field, params)
    block[inside] = values
    labels[zs, ys, xs] = block

    voxel_ml = geometry.voxel_volume_ml
    counts = {code: int((values == tissue).sum()) for code, tissue in COMPARTMENT_TISSUE.items()}
    n_enhancing = max(sum(counts.values()), 1)
    index = np.argwhere(inside).mean(axis=0) + np.array([zs.start, ys.start, xs.start])
    centre_lps = geometry.index_to_lps(index)[0]
    return LesionTruth(
        side=side,
        radius_mm=radius,
        centre_lps_mm=(float(centre_lps[0]), float(centre_lps[1]), float(centre_lps[2])),
        volume_ml=n_voxels * voxel_ml,
        n_voxels=n_voxels,
        compartment_fractions={code: n / n_enhancing for code, n in counts.items()},
        compartment_volumes_ml={code: n * voxel_ml for code, n in counts.items()},
        necrosis=params.necrosis,
        necrosis_volume_ml=int((values == Tissue.NECROSIS).sum()) * voxel_ml,
    )

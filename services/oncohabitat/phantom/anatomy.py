"""Prone bilateral breast anatomy as a tissue label volume.

Coordinates are FOV-local millimetres (x towards patient left, y towards posterior, z towards superior,
origin at the centre of the field of view). The reference body (scale 1, 340 mm field of view) is:

* thorax: elliptic cylinder along z, centre (0, 120) mm, semi-axes 165 x 120 mm; its anterior surface is
  at y = 0. Inside it, under the skin: 10 mm subcutaneous fat, 22 mm chest wall (muscle), then the
  thoracic cavity (lung signal) holding an ellipsoidal heart (centre (25, 110, -15) mm, semi-axes
  60 x 45 x 55 mm);
* two pendant (prone) breasts, tapered half-ellipsoids with base centre (+-90, 15, 0) mm, 115 mm deep
  (nipple at y = -100 mm), base semi-axes 76 mm (x) and 72 mm (z), narrowing to 85 % towards the nipple;
* skin: the outer 2 mm (at least one in-plane voxel) of the body;
* fibroglandular tissue: a smooth random field thresholded inside each breast, denser centrally and
  absent from the outer 15 % (subcutaneous fat).

Every length is multiplied by the preset's ``anatomy_scale`` so the body fills the field of view.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from oncohabitat.common.volume import Geometry
from oncohabitat.phantom.fields import SmoothField, local_axes

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
LabelArray = npt.NDArray[np.uint8]


class Tissue(IntEnum):
    """Labels of ``tissue_labels.nrrd`` (lesion labels are written by :mod:`.lesion`)."""

    AIR = 0
    SKIN = 1
    BREAST_FAT = 2
    FIBROGLANDULAR = 3
    CHEST_FAT = 4
    MUSCLE = 5
    LUNG = 6
    HEART = 7
    LESION_PERSISTENT = 8
    LESION_PLATEAU = 9
    LESION_WASHOUT = 10
    NECROSIS = 11


#: Labels that make up the breast mask (breast parenchyma and fat, lesion included; no skin/chest wall).
BREAST_LABELS = (
    Tissue.BREAST_FAT,
    Tissue.FIBROGLANDULAR,
    Tissue.LESION_PERSISTENT,
    Tissue.LESION_PLATEAU,
    Tissue.LESION_WASHOUT,
    Tissue.NECROSIS,
)
#: Labels of the tumour (enhancing compartments and necrotic core).
TUMOUR_LABELS = (Tissue.LESION_PERSISTENT, Tissue.LESION_PLATEAU, Tissue.LESION_WASHOUT, Tissue.NECROSIS)


@dataclass(frozen=True)
class BodyShape:
    """Reference body dimensions (mm) multiplied by ``scale``; see the module docstring."""

    scale: float
    skin_mm: float

    @property
    def breast_centre_x(self) -> float:
        """Distance of each breast's axis from the midline (mm)."""
        return 90.0 * self.scale

    @property
    def breast_base_y(self) -> float:
        """y of the breast base (mm)."""
        return 15.0 * self.scale

    @property
    def breast_depth(self) -> float:
        """Base-to-nipple depth (mm)."""
        return 115.0 * self.scale

    @property
    def breast_semi_x(self) -> float:
        """Base semi-axis along x (mm)."""
        return 76.0 * self.scale

    @property
    def breast_semi_z(self) -> float:
        """Base semi-axis along z (mm)."""
        return 72.0 * self.scale

    @staticmethod
    def taper(depth_fraction: FloatArray | float) -> FloatArray | float:
        """Width factor of the breast at a fraction of its depth (1 at the base, 0.85 at the nipple)."""
        return 1.0 - 0.15 * np.clip(depth_fraction, 0.0, 1.0)

    def thorax(self, x: FloatArray, y: FloatArray, inset: float) -> BoolArray:
        """Inside the thorax shrunk by ``inset`` mm (broadcast over x (1, nx) and y (ny, 1))."""
        s = self.scale
        a, b = 165.0 * s - inset, 120.0 * s - inset
        return np.asarray((x / a) ** 2 + ((y - 120.0 * s) / b) ** 2 <= 1.0)

    def breast_radius(self, x: FloatArray, y: FloatArray, z: float, side: int, inset: float) -> FloatArray:
        """Normalised ellipsoidal radius of the breast on ``side`` (+1 left, -1 right) shrunk by ``inset``.

        < 1 inside; posterior of the base the shape is cut off (radius set to infinity).
        """
        depth = self.breast_depth - inset
        u = (self.breast_base_y - y) / depth
        taper = self.taper(u)
        ax = self.breast_semi_x * taper - inset
        az = self.breast_semi_z * taper - inset
        r2 = ((x - side * self.breast_centre_x) / ax) ** 2 + np.clip(u, 0.0, None) ** 2 + (z / az) ** 2
        return np.where(u >= -0.35, np.sqrt(r2), np.inf)

    def heart(self, x: FloatArray, y: FloatArray, z: float) -> BoolArray:
        """Inside the heart ellipsoid."""
        s = self.scale
        return np.asarray(
            ((x - 25.0 * s) / (60.0 * s)) ** 2
            + ((y - 110.0 * s) / (45.0 * s)) ** 2
            + ((z + 15.0 * s) / (55.0 * s)) ** 2
            <= 1.0
        )


def body_shape(geometry: Geometry, scale: float) -> BodyShape:
    """Body dimensions for ``scale``; skin is 2 mm but at least one in-plane voxel thick."""
    return BodyShape(scale=scale, skin_mm=max(2.0, 1.01 * max(geometry.spacing[0], geometry.spacing[1])))


def build_anatomy(
    geometry: Geometry, size_xyz: tuple[int, int, int], shape: BodyShape, rng: np.random.Generator
) -> LabelArray:
    """Tissue label volume (z, y, x) uint8 on the ``size_xyz`` grid, :class:`Tissue` values 0-7, slice by slice."""
    x_axis, y_axis, z_axis = local_axes(geometry, size_xyz)
    x = x_axis[np.newaxis, :]
    y = y_axis[:, np.newaxis]
    glandular = SmoothField(geometry, size_xyz, cell_mm=14.0 * shape.scale, rng=rng)
    labels = np.zeros((size_xyz[2], size_xyz[1], size_xyz[0]), dtype=np.uint8)
    skin = shape.skin_mm
    fat_mm, muscle_mm = 10.0 * shape.scale, 22.0 * shape.scale
    thorax_outer = shape.thorax(x, y, 0.0)
    thorax_inner = shape.thorax(x, y, skin)
    thorax_muscle = shape.thorax(x, y, skin + fat_mm)
    thorax_cavity = shape.thorax(x, y, skin + fat_mm + muscle_mm)
    for k, z in enumerate(z_axis):
        out = labels[k]
        radius_outer = np.minimum(
            shape.breast_radius(x, y, float(z), +1, 0.0), shape.breast_radius(x, y, float(z), -1, 0.0)
        )
        radius_inner = np.minimum(
            shape.breast_radius(x, y, float(z), +1, skin), shape.breast_radius(x, y, float(z), -1, skin)
        )
        body = thorax_outer | (radius_outer <= 1.0)
        breast = (radius_inner <= 1.0) & ~thorax_inner
        out[body] = Tissue.SKIN
        out[thorax_inner] = Tissue.CHEST_FAT
        out[breast] = Tissue.BREAST_FAT
        density = glandular.plane(k) * 0.45 + 1.6 * (1.0 - radius_inner) - 0.55
        out[breast & (density > 0.0) & (radius_inner < 0.85)] = Tissue.FIBROGLANDULAR
        out[thorax_muscle] = Tissue.MUSCLE
        out[thorax_cavity] = Tissue.LUNG
        out[thorax_cavity & shape.heart(x, y, float(z))] = Tissue.HEART
    return labels

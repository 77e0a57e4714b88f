"""Supplied masks (radiologist's RTSTRUCT/SEG or a mask in the request): resample to the reference grid,
binarise, and measure.

Resampling uses nearest-neighbour interpolation in physical space (SimpleITK), so a mask drawn on another
grid of the same frame of reference lands on the reference phase's voxels; this is recorded in the method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

GEOMETRY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class MaskQc:
    """Quality numbers of a tumour mask: volume (mL), connected components (26-connectivity), voxel count."""

    volume_ml: float
    component_count: int
    voxel_count: int


def same_grid(a: sitk.Image, b: sitk.Image, tolerance: float = GEOMETRY_TOLERANCE) -> bool:
    """True when size, spacing (mm), origin (mm) and direction agree within ``tolerance``."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tolerance)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tolerance)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tolerance)
    )


def to_reference_grid(mask: sitk.Image, reference: sitk.Image) -> tuple[sitk.Image, bool]:
    """Binary uint8 mask on ``reference``'s grid; returns (mask, resampled?)."""
    binary = sitk.Cast(sitk.NotEqual(mask, 0), sitk.sitkUInt8)
    if same_grid(binary, reference):
        binary.CopyInformation(reference)
        return binary, False
    resampled = sitk.Resample(binary, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return resampled, True


def measure(mask: sitk.Image) -> MaskQc:
    """Volume in mL (voxel count x voxel volume in mm^3 / 1000) and 26-connected component count."""
    voxels = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
    spacing = mask.GetSpacing()
    components = sitk.ConnectedComponentImageFilter()
    components.SetFullyConnected(True)
    components.Execute(mask)
    return MaskQc(
        volume_ml=voxels * spacing[0] * spacing[1] * spacing[2] / 1000.0,
        component_count=int(components.GetObjectCount()),
        voxel_count=voxels,
    )

"""Peritumoral ring / stroma band geometry: physical widths on anisotropic grids."""

from __future__ import annotations

import math

import numpy as np
import pytest

from oncohabitat.regions.bands import band, surface_distance_mm

SPACING = (2.0, 0.7, 0.7)  # (z, y, x) mm


def _ball(radius_mm: float, margin_mm: float, spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Ball of ``radius_mm`` centred off-grid; returns (mask, radial distance of every voxel centre in mm)."""
    extent = radius_mm + margin_mm + 3.0
    axes = []
    for step, shift in zip(spacing, (0.37, 0.21, 0.13), strict=True):
        n = 2 * math.ceil(extent / step) + 1
        axes.append((np.arange(n) - n // 2) * step - shift * step)
    radius = np.sqrt(axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2)
    return radius <= radius_mm, radius


@pytest.mark.parametrize("width_mm", [5.0, 20.0])
@pytest.mark.parametrize("radius_mm", [8.0, 12.0])
def test_ring_volume_matches_the_analytic_shell(width_mm: float, radius_mm: float) -> None:
    tumour, _ = _ball(radius_mm, width_mm, SPACING)
    ring = band(tumour, surface_distance_mm(tumour, SPACING), width_mm)
    volume = ring.sum() * math.prod(SPACING)
    shell = 4.0 / 3.0 * math.pi * ((radius_mm + width_mm) ** 3 - radius_mm**3)
    assert volume == pytest.approx(shell, rel=0.05)
    assert not (ring & tumour).any()


def test_width_is_physical_along_every_axis() -> None:
    tumour, radius = _ball(10.0, 5.0, SPACING)
    ring = band(tumour, surface_distance_mm(tumour, SPACING), 5.0)
    # ring voxels lie between the surface and surface + 5 mm (+ half the largest voxel for the discrete surface)
    assert radius[ring].max() <= 10.0 + 5.0 + 1.0
    assert radius[ring].min() >= 10.0 - 1.0
    # along z (2 mm voxels) the ring covers about 5 / 2 slices, along x (0.7 mm) about 5 / 0.7 columns
    z_line = ring[:, ring.shape[1] // 2, ring.shape[2] // 2]
    x_line = ring[ring.shape[0] // 2, ring.shape[1] // 2, :]
    assert z_line.sum() in (4, 5, 6)  # 2 sides x ~2.5 slices
    assert abs(x_line.sum() - 2 * 5.0 / 0.7) <= 2


def test_two_dimensional_mode_measures_in_plane_only() -> None:
    # cylinder along z occupying the middle slices: the 2D ring is an annulus in those slices only
    spacing = (2.0, 0.7, 0.7)
    _, radius = _ball(0.0, 20.0, spacing)
    y, x = np.indices(radius.shape[1:])
    r_plane = np.hypot((y - y.mean()) * 0.7, (x - x.mean()) * 0.7)
    tumour = np.zeros(radius.shape, dtype=bool)
    tumour[5:-5] = r_plane <= 9.0
    distance = surface_distance_mm(tumour, spacing, mode="2d")
    ring = band(tumour, distance, 5.0)
    assert not ring[:5].any() and not ring[-5:].any()
    per_slice = ring[5:-5].sum(axis=(1, 2)) * 0.7 * 0.7
    annulus = math.pi * (14.0**2 - 9.0**2)
    np.testing.assert_allclose(per_slice, annulus, rtol=0.05)
    assert np.isinf(distance[0]).all()


def test_band_is_clipped_to_the_allowed_region() -> None:
    tumour, _ = _ball(8.0, 20.0, SPACING)
    allowed = np.zeros(tumour.shape, dtype=bool)
    allowed[:, :, : tumour.shape[2] // 2] = True
    distance = surface_distance_mm(tumour, SPACING)
    clipped = band(tumour, distance, 20.0, allowed)
    assert clipped.any() and not (clipped & ~allowed).any()
    assert clipped.sum() < band(tumour, distance, 20.0).sum()

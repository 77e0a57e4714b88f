"""Grids, crops, mask mapping, orientation and phase validation."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.common.phases import PhaseInput, select_phases
from oncohabitat.common.volume import Geometry
from oncohabitat.regions.grid import Box, bounding_box, map_mask_to_grid, margin_voxels, orientation_of, sub_grid

OBLIQUE = Geometry(
    spacing=(0.8, 0.9, 2.0),
    origin=(-12.0, 30.5, 7.25),
    direction=(0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0),  # sagittal-like: x->P, y->S, z->L
)


def test_sub_grid_origin_is_the_physical_point_of_the_box_start() -> None:
    box = Box((2, 3, 4), (7, 9, 11))
    cropped = sub_grid(OBLIQUE, box)
    image = OBLIQUE.apply(sitk.Image([14, 12, 10], sitk.sitkUInt8))
    assert cropped.origin == pytest.approx(image.TransformIndexToPhysicalPoint((4, 3, 2)))
    assert box.shape == (5, 6, 7) and cropped.spacing == OBLIQUE.spacing


def test_bounding_box_with_margin_is_clipped() -> None:
    mask = np.zeros((10, 20, 20), dtype=bool)
    mask[1, 5:7, 15:19] = True
    assert margin_voxels(5.0, (2.5, 1.25, 1.25), in_plane_only=False) == (3, 5, 5)
    assert margin_voxels(5.0, (2.5, 1.25, 1.25), in_plane_only=True) == (1, 5, 5)
    box = bounding_box(mask, (3, 5, 5))
    assert box == Box((0, 0, 10), (5, 12, 20))


def test_mask_on_a_sub_grid_is_mapped_onto_the_phase_grid() -> None:
    shape = (10, 12, 14)
    full = np.zeros(shape, dtype=bool)
    full[3:6, 4:8, 5:9] = True
    box = Box((2, 3, 4), (8, 10, 12))
    mapped = map_mask_to_grid(full[box.slices].astype(np.uint8) * 7, sub_grid(OBLIQUE, box), shape, OBLIQUE)
    np.testing.assert_array_equal(mapped, full)
    assert map_mask_to_grid(full, OBLIQUE, shape, OBLIQUE) is not None


def test_empty_or_outside_masks_are_refused() -> None:
    shape = (10, 12, 14)
    with pytest.raises(InvalidInputError) as empty:
        map_mask_to_grid(np.zeros(shape, dtype=np.uint8), OBLIQUE, shape, OBLIQUE)
    assert empty.value.reason == "MASK_EMPTY"
    far = Geometry(spacing=OBLIQUE.spacing, origin=(500.0, 500.0, 500.0), direction=OBLIQUE.direction)
    with pytest.raises(InvalidInputError) as outside:
        map_mask_to_grid(np.ones((3, 3, 3), dtype=np.uint8), far, shape, OBLIQUE)
    assert outside.value.reason == "MASK_OUTSIDE_IMAGE"


def test_orientation_maps_numpy_axes_to_patient_axes() -> None:
    axial = orientation_of((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    assert axial.axes == (0, 1, 2) and axial.flips == (False, False, False)
    sagittal = orientation_of(OBLIQUE.direction)
    # image x -> posterior (numpy 2), image y -> superior (numpy 1), image z -> left (numpy 0)
    assert sagittal.axes == (1, 2, 0) and sagittal.flips == (False, False, False)
    array = np.arange(24).reshape(2, 3, 4)
    flipped = orientation_of((-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
    assert flipped.flips == (True, False, True)
    np.testing.assert_array_equal(flipped.from_canonical(flipped.to_canonical(array)), array)


def _phase(index: int, array: np.ndarray, geometry: Geometry = OBLIQUE) -> PhaseInput:
    return PhaseInput("pre" if index == 0 else "post", index, 60.0 * index, array, geometry)


def test_phase_validation() -> None:
    ok = np.zeros((4, 5, 6), dtype=np.int16)
    phases = select_phases([_phase(0, ok), _phase(1, ok), PhaseInput("subtraction", 9, 0.0, ok[:2], OBLIQUE)])
    assert phases.indices == [0, 1] and phases.shape == (4, 5, 6)
    shifted = Geometry(spacing=OBLIQUE.spacing, origin=(0.0, 0.0, 0.0), direction=OBLIQUE.direction)
    cases = [
        ([_phase(0, ok), _phase(1, ok, shifted)], "GRID_MISMATCH"),
        ([_phase(0, ok), _phase(1, ok[:, :, :5])], "GRID_MISMATCH"),
        ([_phase(0, ok), _phase(1, ok), _phase(1, ok)], "PHASES_INVALID"),
        ([PhaseInput("pre", 2, 0.0, ok, OBLIQUE)], "PHASES_INVALID"),
        ([PhaseInput("subtraction", 0, 0.0, ok, OBLIQUE)], "PHASES_INVALID"),
        ([_phase(0, np.full((4, 5, 6), np.nan, dtype=np.float32))], "PHASE_NOT_FINITE"),
    ]
    for inputs, reason in cases:
        with pytest.raises(InvalidInputError) as excinfo:
            select_phases(inputs)
        assert excinfo.value.reason == reason

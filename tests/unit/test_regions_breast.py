"""Breast mask on the phantom (ground truth known) and its reduced-cost mapping."""

from __future__ import annotations

import numpy as np
import pytest

from oncohabitat.phantom import Tissue
from oncohabitat.regions.breast import LEFT, BreastMask, block_factors, block_mean, compute_breast_mask
from oncohabitat.regions.grid import Box
from oncohabitat.regions.profile import BreastMaskSettings
from tests.unit.test_regions_phantom_support import LoadedPhantom, load_phantom

CHEST = (Tissue.MUSCLE, Tissue.LUNG, Tissue.HEART)


@pytest.fixture(scope="module")
def ispy(tmp_path_factory: pytest.TempPathFactory) -> LoadedPhantom:
    return load_phantom(tmp_path_factory.mktemp("ispy"), "ispy", seed=5)


def _mask(phantom: LoadedPhantom, settings: BreastMaskSettings) -> np.ndarray:
    pre = phantom.phases[0]
    spacing = (pre.geometry.spacing[2], pre.geometry.spacing[1], pre.geometry.spacing[0])
    breast = compute_breast_mask(pre.array, spacing, pre.geometry.direction, settings)
    return breast.on_box(Box.whole(pre.array.shape))


def test_breast_mask_agrees_with_the_phantom_ground_truth(ispy: LoadedPhantom) -> None:
    labels = _mask(ispy, BreastMaskSettings())
    mask = labels > 0
    dice = 2 * np.sum(mask & ispy.breast) / (mask.sum() + ispy.breast.sum())
    assert dice >= 0.8
    assert mask[ispy.tumour].all()
    # no air, and almost nothing of the chest wall / thorax
    assert np.mean(ispy.tissue[mask] == Tissue.AIR) < 1e-3
    assert np.isin(ispy.tissue[mask], CHEST).mean() < 0.02
    # skin mostly removed
    skin = ispy.tissue == Tissue.SKIN
    assert np.sum(mask & skin) < 0.25 * skin.sum()


def test_left_and_right_breasts_are_split_at_the_midline(ispy: LoadedPhantom) -> None:
    labels = _mask(ispy, BreastMaskSettings())
    assert ispy.study.lesion is not None
    expected = LEFT if ispy.study.lesion.side == "L" else 1
    assert np.all(labels[ispy.tumour] == expected)
    # LPS: +x (numpy axis 2) is patient left -> label 2 lies at larger x than label 1
    x = np.arange(labels.shape[2])
    left_x = x[(labels == 2).any(axis=(0, 1))]
    right_x = x[(labels == 1).any(axis=(0, 1))]
    assert right_x.max() < left_x.min()
    unsplit = _mask(ispy, BreastMaskSettings(split_left_right=False))
    np.testing.assert_array_equal(unsplit > 0, labels > 0)
    assert set(np.unique(unsplit)) == {0, 1}


def test_skin_and_chest_wall_settings_change_the_mask(ispy: LoadedPhantom) -> None:
    default = _mask(ispy, BreastMaskSettings()) > 0
    thick_skin = _mask(ispy, BreastMaskSettings(skin_mm=6.0)) > 0
    no_chest_cut = _mask(ispy, BreastMaskSettings(chest_wall="none")) > 0
    assert thick_skin.sum() < default.sum() and not (thick_skin & ~default).any()
    assert no_chest_cut.sum() > default.sum()
    assert np.isin(ispy.tissue[no_chest_cut], CHEST).mean() > 0.2


def test_flipped_axes_give_the_same_anatomical_mask(ispy: LoadedPhantom) -> None:
    pre = ispy.phases[0]
    spacing = (pre.geometry.spacing[2], pre.geometry.spacing[1], pre.geometry.spacing[0])
    reference = compute_breast_mask(pre.array, spacing, pre.geometry.direction, BreastMaskSettings())
    # the same voxels stored with the x axis reversed: direction column x points to patient right
    direction = list(pre.geometry.direction)
    direction[0], direction[3], direction[6] = -direction[0], -direction[3], -direction[6]
    flipped = compute_breast_mask(pre.array[:, :, ::-1], spacing, tuple(direction), BreastMaskSettings())
    full = Box.whole(pre.array.shape)
    np.testing.assert_array_equal(flipped.on_box(full)[:, :, ::-1], reference.on_box(full))


def test_block_mapping_counts_full_resolution_voxels_exactly() -> None:
    assert block_factors((2.5, 1.25, 1.25), 2.5) == (1, 2, 2)
    assert block_factors((1.0, 0.7, 0.7), 2.5) == (2, 4, 4)
    array = np.arange(5 * 7 * 9, dtype=np.float32).reshape(5, 7, 9)
    means = block_mean(array, (2, 3, 4))
    assert means.shape == (3, 3, 3)
    assert means[0, 0, 0] == pytest.approx(array[:2, :3, :4].mean())
    labels = np.zeros((3, 3, 3), dtype=np.uint8)
    labels[2, 2, 2] = 1  # the edge block: 1 x 1 x 1 real voxel after edge padding
    labels[0, 0, 0] = 2
    mask = BreastMask(labels, (2, 3, 4), (5, 7, 9), split=True)
    full = mask.on_box(Box.whole((5, 7, 9)))
    assert mask.voxel_count(1) == int((full == 1).sum()) == 1 * 1 * 1
    assert mask.voxel_count(2) == int((full == 2).sum()) == 2 * 3 * 4
    assert mask.voxel_count() == 25
    np.testing.assert_array_equal(mask.on_box(Box((1, 2, 3), (5, 7, 9))), full[1:, 2:, 3:])

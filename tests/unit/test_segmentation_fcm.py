"""Spatial fuzzy c-means and the seeded segmentation built on it (synthetic volumes and real breast MRI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.segmentation.fcm import spatial_fcm
from oncohabitat.segmentation.profiles import FcmParameters
from oncohabitat.segmentation.quality import Outcome
from oncohabitat.segmentation.seeded import in_plane_disk, neighbourhood_voxels, segment_seeded


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.logical_and(a, b).sum()) / float(a.sum() + b.sum())


def _sphere_volume(core: bool = True, noise: float = 8.0) -> tuple[sitk.Image, np.ndarray]:
    """40^3 volume (1 mm) with a bright sphere (r 9 mm) whose inner 5 mm enhance less, in noisy tissue."""
    rng = np.random.default_rng(3)
    zz, yy, xx = np.mgrid[:40, :40, :40]
    distance = np.sqrt((zz - 20) ** 2 + (yy - 20) ** 2 + (xx - 21) ** 2)
    truth = distance <= 9
    values = np.full((40, 40, 40), 20.0) + rng.normal(0.0, noise, (40, 40, 40))
    values[truth] = 300.0 + rng.normal(0.0, noise, int(truth.sum()))
    if core:
        values[distance <= 5] = 90.0
    image = sitk.GetImageFromArray(values.astype(np.float32))
    image.SetOrigin((-20.0, 10.0, 5.0))
    return image, truth


def test_spatial_fcm_separates_two_populations_and_smooths_noise() -> None:
    rng = np.random.default_rng(0)
    truth = np.zeros((12, 24, 24), dtype=bool)
    truth[3:9, 6:18, 6:18] = True
    image = np.where(truth, 100.0, 0.0) + rng.normal(0.0, 30.0, truth.shape)
    plain = spatial_fcm(image, clusters=2, neighbourhood=(1, 1, 1))
    spatial = spatial_fcm(image, clusters=2, neighbourhood=(3, 3, 3))
    assert spatial.centres[0] < spatial.centres[1]
    assert spatial.memberships.shape == (2, *truth.shape)
    np.testing.assert_allclose(spatial.memberships.sum(axis=0), 1.0, atol=1e-5)
    plain_errors = int(((plain.hard_labels() == 1) != truth).sum())
    spatial_errors = int(((spatial.hard_labels() == 1) != truth).sum())
    assert spatial_errors < plain_errors / 5
    assert spatial_errors / truth.size < 0.02


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clusters": 1}, "two clusters"),
        ({"fuzziness": 1.0}, "fuzziness"),
        ({"neighbourhood": (2, 3, 3)}, "odd"),
    ],
)
def test_spatial_fcm_rejects_bad_parameters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spatial_fcm(np.zeros((4, 4, 4)), **kwargs)  # type: ignore[arg-type]


def test_neighbourhood_and_disk_follow_millimetres() -> None:
    assert neighbourhood_voxels(3.0, (2.5, 1.25, 1.25)) == (1, 3, 3)
    assert neighbourhood_voxels(3.0, (1.0, 1.0, 1.0)) == (3, 3, 3)
    assert in_plane_disk(0.5, (2.0, 1.0, 1.0)).sum() == 1
    assert in_plane_disk(1.0, (2.0, 1.0, 1.0)).sum() == 5


@pytest.mark.parametrize("offset_mm", [(0.0, 0.0, 0.0), (2.0, -2.0, 1.0)])
def test_seeded_recovers_a_lesion_with_a_less_enhancing_core(offset_mm: tuple[float, float, float]) -> None:
    image, truth = _sphere_volume()
    centre = image.TransformContinuousIndexToPhysicalPoint((21.0, 20.0, 20.0))
    seed = (centre[0] + offset_mm[0], centre[1] + offset_mm[1], centre[2] + offset_mm[2])
    output = segment_seeded(image, seed, FcmParameters())
    assert output.verdict is None
    assert _dice(output.mask, truth) > 0.9
    assert 0.5 < output.confidence <= 1.0


def test_seed_in_plain_tissue_finds_no_lesion() -> None:
    image, _ = _sphere_volume()
    far = image.TransformContinuousIndexToPhysicalPoint((3.0, 3.0, 3.0))
    output = segment_seeded(image, far, FcmParameters(window_mm=12.0))
    assert output.verdict is not None and output.verdict.outcome is Outcome.NO_LESION
    assert not output.mask.any()


def test_lesion_larger_than_the_window_touches_its_edge() -> None:
    image, _ = _sphere_volume(core=False)
    centre = image.TransformContinuousIndexToPhysicalPoint((21.0, 20.0, 20.0))
    output = segment_seeded(image, centre, FcmParameters(window_mm=12.0))
    assert output.verdict is not None and output.verdict.outcome is Outcome.TOUCHES_BORDER


def test_seed_outside_the_image_is_invalid() -> None:
    image, _ = _sphere_volume()
    with pytest.raises(InvalidInputError) as raised:
        segment_seeded(image, (500.0, 0.0, 0.0), FcmParameters())
    assert raised.value.field == "seed"


def test_breast1_real_mri_from_label_centroid(shared_data: Path) -> None:
    """pyradiomics' real breast MRI (one post-contrast-like image): Dice >= 0.7 against its label."""
    image = sitk.ReadImage(str(shared_data / "pyradiomics" / "breast1_image.nrrd"), sitk.sitkFloat32)
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data / "pyradiomics" / "breast1_label.nrrd"))) != 0
    centroid_zyx = np.argwhere(label).mean(axis=0)
    seed = image.TransformContinuousIndexToPhysicalPoint([float(v) for v in centroid_zyx[::-1]])
    output = segment_seeded(image, seed, FcmParameters())
    dice = _dice(output.mask, label)
    print(f"breast1 seeded FCM Dice = {dice:.3f}")
    assert output.verdict is None
    assert dice >= 0.7

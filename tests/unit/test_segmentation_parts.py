"""Segmentation building blocks: checks, profiles, bundle verification, preprocessing, sliding window."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from oncohabitat.bundles.errors import BundleError
from oncohabitat.bundles.registry import default_bundle_root
from oncohabitat.common.errors import InvalidInputError, NotFoundError
from oncohabitat.segmentation.model_bundle import CropSpec, PreprocessingSpec, load_segmentation_bundle, parse_manifest
from oncohabitat.segmentation.preprocess import anterior_axis, breast_crop, prepare, target_grid
from oncohabitat.segmentation.profiles import load_profiles
from oncohabitat.segmentation.quality import Outcome, check_mask, fill_holes, mean_enhancement_pct, touches_border
from oncohabitat.segmentation.sliding_window import patch_starts, sliding_window

MODELS = default_bundle_root()


def test_check_mask_outcomes_in_order() -> None:
    mask = np.zeros((10, 10, 10), dtype=bool)
    assert check_mask(mask, 0.001, 0.05, 500.0, empty_reason="empty").outcome is Outcome.NO_LESION
    mask[0, 4:6, 4:6] = True
    assert touches_border(mask)
    assert check_mask(mask, 0.001, 0.0, 500.0, empty_reason="").outcome is Outcome.TOUCHES_BORDER
    mask[:] = False
    mask[3:7, 3:7, 3:7] = True  # 64 voxels of 1 uL = 0.064 mL
    assert check_mask(mask, 0.001, 0.05, 500.0, empty_reason="").outcome is Outcome.OK
    verdict = check_mask(mask, 0.001, 0.1, 500.0, empty_reason="")
    assert verdict.outcome is Outcome.IMPLAUSIBLE_VOLUME and "0.06 mL" in verdict.reason


def test_fill_holes_closes_cores_open_in_3d() -> None:
    shell = np.zeros((7, 9, 9), dtype=bool)
    shell[1:6, 2:7, 2:7] = True
    shell[2:6, 3:6, 3:6] = False  # core open towards the top slice -> not a 3D hole
    filled = fill_holes(shell)
    assert filled[2:5, 3:6, 3:6].all()


def test_mean_enhancement_is_percent_of_the_mean_pre_signal() -> None:
    mask = np.zeros((2, 2, 2), dtype=bool)
    mask[0] = True
    pre = np.full((2, 2, 2), 100.0)
    post = np.full((2, 2, 2), 250.0)
    assert mean_enhancement_pct(mask, post, pre) == pytest.approx(150.0)
    assert mean_enhancement_pct(mask, post, None) == 0.0


def test_shipped_profiles_and_bundle_verify() -> None:
    profiles = load_profiles(MODELS / "segmentation" / "profiles.json")
    name, profile = profiles.get("")
    assert name == "default" and profile.model is not None and profile.reference_phase is None
    bundle = load_segmentation_bundle(MODELS, profile.model.id, profile.model.version)
    assert bundle.manifest.demonstration_only
    assert "DEMONSTRATION" in bundle.manifest.title
    assert len(bundle.model_bytes) < 5 * 1024 * 1024
    with pytest.raises(NotFoundError):
        profiles.get("no-such-profile")


def test_tampered_model_is_refused(tmp_path: Path) -> None:
    profile = load_profiles(MODELS / "segmentation" / "profiles.json").get("")[1]
    assert profile.model is not None
    root = tmp_path / "models"
    shutil.copytree(MODELS / "segmentation" / profile.model.id, root / "segmentation" / profile.model.id)
    model = root / "segmentation" / profile.model.id / profile.model.version / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError) as raised:
        load_segmentation_bundle(root, profile.model.id, profile.model.version)
    assert raised.value.reason == "HASH_MISMATCH"
    with pytest.raises(BundleError) as missing:
        load_segmentation_bundle(root, profile.model.id, "9.9.9")
    assert missing.value.reason == "MODEL_NOT_FOUND"


def test_manifest_and_profile_schemas_refuse_bad_documents(tmp_path: Path) -> None:
    manifest = json.loads((MODELS / "segmentation" / "phantom-unet3d" / "1.0.0" / "manifest.json").read_text())
    manifest["inference"]["patch_size"] = [30, 64, 64]
    with pytest.raises(BundleError) as schema:
        parse_manifest(json.dumps(manifest))
    assert schema.value.reason == "SCHEMA_INVALID" and "patch_size" in schema.value.public_message
    bad = tmp_path / "profiles.json"
    bad.write_text(json.dumps({"default": "x", "profiles": {"x": {"fcm": {"clusters": 3, "lesion_clusters": 3}}}}))
    with pytest.raises(BundleError) as raised:
        load_profiles(bad)
    assert raised.value.reason == "PROFILES_INVALID"


def _image(shape_zyx: tuple[int, int, int], spacing: tuple[float, float, float]) -> sitk.Image:
    image = sitk.Image([shape_zyx[2], shape_zyx[1], shape_zyx[0]], sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin((-50.0, -30.0, 12.0))
    return image


def test_target_grid_covers_the_same_box() -> None:
    reference = _image((60, 256, 256), (1.25, 1.25, 2.5))
    grid = target_grid(reference, (2.5, 2.5, 2.5))
    assert grid.GetSize() == (128, 128, 60)
    low_ref = reference.TransformContinuousIndexToPhysicalPoint((-0.5, -0.5, -0.5))
    low_grid = grid.TransformContinuousIndexToPhysicalPoint((-0.5, -0.5, -0.5))
    np.testing.assert_allclose(low_ref, low_grid, atol=1e-6)


def test_breast_crop_keeps_the_anterior_band() -> None:
    assert anterior_axis((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)) == (1, True)
    assert anterior_axis((1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)) == (1, False)
    foreground = np.zeros((20, 100, 80), dtype=bool)
    foreground[2:18, 10:95, 5:75] = True  # body from row 10 (anterior) to 94 (posterior)
    crop = breast_crop(foreground, (2.0, 2.0, 2.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), CropSpec(anterior_depth_mm=60.0))
    assert crop[1] == slice(5, 46)  # rows 10..40 (60 mm) + 5 rows (10 mm) margin
    assert crop[2] == slice(0, 80)


def test_prepare_names_the_missing_phase() -> None:
    spec = PreprocessingSpec.model_validate(
        {"channels": [{"name": "s", "operation": "subtract", "phases": [1, 0]}], "target_spacing_mm": [2, 2, 2]}
    )
    with pytest.raises(InvalidInputError) as raised:
        prepare({1: _image((8, 8, 8), (1.0, 1.0, 1.0))}, 1, spec)
    assert raised.value.reason == "PHASES_MISSING" and "missing [0]" in raised.value.public_message


def test_sliding_window_covers_and_blends() -> None:
    assert patch_starts(10, 16, 0.25) == [0]
    starts = patch_starts(100, 32, 0.25)
    assert starts[0] == 0 and starts[-1] == 68 and all(b - a <= 24 for a, b in itertools.pairwise(starts))
    volume = np.random.default_rng(1).random((1, 20, 50, 70)).astype(np.float32)
    calls: list[tuple[int, ...]] = []

    def identity(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape)
        return batch[:, :1]

    result = sliding_window(volume, (16, 32, 32), 0.25, identity)
    assert result.shape == (20, 50, 70)
    np.testing.assert_allclose(result, volume[0], atol=1e-5)
    assert set(calls) == {(1, 1, 16, 32, 32)}


def _reference_fill_holes(mask: np.ndarray) -> np.ndarray:
    """fill_holes over the whole array (the definition the bounding-box version must reproduce)."""
    from scipy import ndimage

    filled = ndimage.binary_fill_holes(mask)
    for k in range(filled.shape[0]):
        if filled[k].any():
            filled[k] = ndimage.binary_fill_holes(filled[k])
    return np.asarray(filled, dtype=bool)


def test_fill_holes_and_components_in_the_bounding_box_match_the_whole_array() -> None:
    from scipy import ndimage

    from oncohabitat.segmentation.quality import FULL_CONNECTIVITY, component_sizes, label_components

    rng = np.random.default_rng(7)
    for trial in range(150):
        shape = tuple(int(rng.integers(1, 12)) for _ in range(3))
        mask = np.zeros(shape, dtype=bool)
        if trial % 5:  # a random blob anywhere, touching the array's edges or not; else empty
            z, y, x = (int(rng.integers(0, n)) for n in shape)
            blob = mask[
                z : z + int(rng.integers(1, 8)), y : y + int(rng.integers(1, 8)), x : x + int(rng.integers(1, 8))
            ]
            blob[...] = rng.random(blob.shape) < float(rng.choice([0.3, 0.6, 0.9]))
        filled = fill_holes(mask)
        assert filled.dtype == np.bool_ and np.array_equal(filled, _reference_fill_holes(mask)), trial
        expected, count = ndimage.label(mask, structure=FULL_CONNECTIVITY)
        labels, sizes = label_components(mask)
        assert labels.dtype == np.int32 and np.array_equal(labels, expected), trial
        assert np.array_equal(sizes, np.bincount(expected.ravel(), minlength=count + 1)[1:]), trial
        assert np.array_equal(component_sizes(mask), sizes), trial

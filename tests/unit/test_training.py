"""The training recipe (oncohabitat-training): cohort layout, preparation, U-Net, ONNX export, bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from oncohabitat.bundles.registry import default_bundle_root
from oncohabitat.segmentation.model_bundle import PreprocessingSpec, load_segmentation_bundle
from oncohabitat_training.cohort import CohortError, discover_cohort
from oncohabitat_training.dataset import PatchSampler, prepare_case
from oncohabitat_training.export import ExportCheckError, check_export, export_onnx, network_from_bundle
from oncohabitat_training.model import UNet3d
from oncohabitat_training.phantom_cohort import case_specs, write_phantom_cohort
from oncohabitat_training.recipe import PREPROCESSING, run_recipe
from oncohabitat_training.train import TrainConfig


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(image, str(path))


def test_mama_mia_layout_is_discovered(tmp_path: Path) -> None:
    for case in ("duke_001", "ispy1_1002"):
        _write(tmp_path / "segmentations" / "expert" / f"{case}.nii.gz", np.zeros((4, 5, 6), np.uint8))
        for phase in (0, 1, 2):
            _write(tmp_path / "images" / case.upper() / f"{case}_{phase:04d}.nii.gz", np.zeros((4, 5, 6), np.int16))
    cases = discover_cohort(tmp_path, phases=(0, 1, 2))
    assert [c.case_id for c in cases] == ["duke_001", "ispy1_1002"]
    assert cases[0].phases[2].name == "duke_001_0002.nii.gz"
    with pytest.raises(CohortError, match=r"phase\(s\) \[3\]"):
        discover_cohort(tmp_path, phases=(0, 3))
    with pytest.raises(CohortError, match="no mask"):
        discover_cohort(tmp_path / "images")


def test_other_layouts_by_pattern(tmp_path: Path) -> None:
    _write(tmp_path / "masks" / "p7.nii.gz", np.zeros((4, 5, 6), np.uint8))
    for phase in (0, 1):
        _write(tmp_path / "p7" / f"p7_acq{phase}.nii.gz", np.zeros((4, 5, 6), np.int16))
    cases = discover_cohort(tmp_path, mask_glob="masks/*.nii.gz", image_pattern="{case}/{case}_acq{phase}.nii.gz")
    assert cases[0].case_id == "p7" and cases[0].phases[1].name == "p7_acq1.nii.gz"


def test_case_specs_are_deterministic_and_varied() -> None:
    specs = case_specs(40, 0)
    assert specs == case_specs(40, 0)
    assert any(s.radius_mm is None for s in specs) and any(s.necrosis for s in specs)
    assert all(7.0 <= s.radius_mm <= 18.0 for s in specs if s.radius_mm is not None)


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    write_phantom_cohort(root, 3, size="small", first_seed=100, lesion_free_fraction=0.0)
    return root


def test_phantom_cohort_goes_through_the_service_preprocessing(small_cohort: Path) -> None:
    cases = discover_cohort(small_cohort)
    assert len(cases) == 3 and (small_cohort / "cohort.json").is_file()
    spec = PreprocessingSpec.model_validate(PREPROCESSING)
    prepared = prepare_case(cases[0], spec)
    assert prepared.channels.shape[0] == 2 and prepared.channels.dtype == np.float32
    assert prepared.channels.shape[1:] == prepared.target.shape
    assert prepared.target.sum() > 0  # the crop keeps the lesion
    sampler = PatchSampler([prepared], (16, 32, 32), lesion_fraction=1.0, seed=0)
    x, y = sampler.batch(3)
    assert x.shape == (3, 2, 16, 32, 32) and y.shape == (3, 1, 16, 32, 32)
    assert y.sum() > 0


def test_unet_export_matches_torch() -> None:
    torch.manual_seed(0)
    net = UNet3d(in_channels=2, base=4, levels=3).eval()
    assert net(torch.zeros(1, 2, 16, 24, 32)).shape == (1, 1, 16, 24, 32)
    model = export_onnx(net, 2, (16, 16, 16))
    volume = np.random.default_rng(0).normal(size=(1, 2, 24, 32, 40)).astype(np.float32)  # not the export shape
    assert check_export(net, model, volume) <= 1e-4
    with torch.no_grad():
        net.head.bias.add_(1.0)  # the exported model no longer matches this network
    with pytest.raises(ExportCheckError):
        check_export(net, model, volume)


def test_recipe_writes_a_bundle_the_service_loads(small_cohort: Path, tmp_path: Path) -> None:
    cases = discover_cohort(small_cohort)
    config = TrainConfig(iterations=2, batch_size=1, patch_size=(16, 32, 32), base_channels=2, threads=1)
    result = run_recipe(cases[:2], cases[2:], tmp_path, "tiny-unet3d", "0.0.1", config, data_description="test")
    bundle = load_segmentation_bundle(tmp_path, "tiny-unet3d", "0.0.1")
    assert bundle.manifest.demonstration_only
    assert bundle.manifest.training["export_check"]["max_abs_diff_vs_torch"] <= 1e-4
    assert bundle.manifest.training["train_cases"] == [c.case_id for c in cases[:2]]
    assert [s.case_id for s in result.validation] == [cases[2].case_id]
    assert 0.0 <= result.validation[0].dice <= 1.0


def test_shipped_model_equals_its_torch_network() -> None:
    """The committed ONNX file is this package's U-Net: rebuilt from its weights, torch agrees within 1e-4."""
    bundle = load_segmentation_bundle(default_bundle_root(), "phantom-unet3d", "1.0.0")
    net = network_from_bundle(bundle)
    volume = np.random.default_rng(5).normal(0.2, 0.3, size=(1, 2, 32, 48, 64)).astype(np.float32)
    assert check_export(net, bundle.model_bytes, volume) <= 1e-4
    assert bundle.manifest.training["export_check"]["max_abs_diff_vs_torch"] <= 1e-4


def test_training_continues_from_a_bundle(small_cohort: Path, tmp_path: Path) -> None:
    cases = discover_cohort(small_cohort)
    config = TrainConfig(iterations=1, batch_size=1, patch_size=(16, 32, 32), base_channels=2, threads=1)
    first = run_recipe(cases, [], tmp_path / "a", "tiny-unet3d", "0.0.1", config).bundle
    second = run_recipe(cases, [], tmp_path / "b", "tiny-unet3d", "0.0.2", config, init=first).bundle
    assert second.manifest.training["initialised_from"]["manifest_sha256"] == first.manifest_sha256
    assert second.model_bytes != first.model_bytes

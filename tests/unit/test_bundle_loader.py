"""Bundle format v2: the shipped bundles, verification (tampering), sealing, registry, lock, CLI."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from oncohabitat.bundles import (
    BundleError,
    SemVer,
    load_bundle,
    load_bundles,
    seal_bundle,
    sha256_file,
    write_bundle,
    write_lock,
)
from oncohabitat.bundles.__main__ import main as bundles_cli
from oncohabitat.bundles.registry import read_lock
from tests.conftest import PROJECT_ROOT

MODELS = PROJECT_ROOT / "models"
SEED003 = MODELS / "scoring" / "seed003-ct-dfs" / "1.0.0"
SEGMENTATION = MODELS / "segmentation" / "phantom-unet3d" / "1.0.0"


def seed_document() -> dict[str, Any]:
    """The shipped seed-003 manifest as JSON data (a template for test bundles)."""
    document: dict[str, Any] = json.loads((SEED003 / "manifest.json").read_text(encoding="utf-8"))
    return document


def seed_files() -> dict[str, bytes]:
    """The shipped seed-003 bundle's other files (its test vectors)."""
    return {"test_vectors.json": (SEED003 / "test_vectors.json").read_bytes()}


def copy_seed(tmp_path: Path) -> Path:
    target = tmp_path / "models" / "scoring" / "seed003-ct-dfs" / "1.0.0"
    shutil.copytree(SEED003, target)
    return target


# --- the shipped bundle -------------------------------------------------------------------------------


def test_seed003_bundle_holds_the_published_signature() -> None:
    bundle = load_bundle(SEED003)
    manifest = bundle.manifest
    assert (bundle.id, bundle.version) == ("seed003-ct-dfs", "1.0.0")
    assert bundle.key == "scoring/seed003-ct-dfs/1.0.0"
    assert bundle.feature_keys == [
        "tumour/S0/original_firstorder_Kurtosis",
        "tumour/S0/original_glcm_Correlation",
        "tumour/S0/original_glcm_MaximumProbability",
        "tumour/S0/original_glszm_LargeAreaEmphasis",
    ]
    assert manifest.plan.features == bundle.feature_keys
    assert manifest.model.type == "cox"
    assert list(manifest.model.coefficients.values()) == [-5.570173e-03, 1.004042e00, -9.648413e-01, 1.643472e-08]
    assert manifest.model.intercept == 0.0
    assert manifest.model.scaler.type == "none"
    groups = manifest.risk_groups
    assert groups is not None
    assert (groups.cutoffs, groups.labels, groups.tie, groups.applies_to) == (
        [0.185],
        ["low", "high"],
        "lower",
        "score",
    )
    assert manifest.required_inputs.modality == "CT"
    assert manifest.citation is not None and manifest.citation.doi == "10.3389/fonc.2020.523327"
    assert any("raw" in reading and "z-score" in reading for reading in manifest.readings)
    assert "not for clinical use" in manifest.intended_use
    params = manifest.feature_settings.to_pyradiomics()
    assert params["imageType"] == {"Original": {}}
    assert set(params["featureClass"]) == {"firstorder", "glcm", "glszm"}
    assert params["setting"]["binWidth"] == 25
    assert bundle.manifest_sha256 == sha256_file(SEED003 / "manifest.json")


def test_registry_over_the_shipped_models() -> None:
    registry = load_bundles(MODELS, pinned=read_lock(MODELS))
    assert "seed003-ct-dfs" in registry.ids()
    latest = registry.get("seed003-ct-dfs")
    assert registry.get("seed003-ct-dfs", "latest") == latest
    assert registry.get("seed003-ct-dfs", "") == latest
    assert registry.get("seed003-ct-dfs", "1.0.0") == latest
    assert registry.rejected == {}


# --- tampering ----------------------------------------------------------------------------------------


def test_edited_manifest_byte_breaks_the_schema(tmp_path: Path) -> None:
    bundle_dir = copy_seed(tmp_path)
    manifest_path = bundle_dir / "manifest.json"
    data = bytearray(manifest_path.read_bytes())
    data[data.index(b'"format_version"') + 1] = ord("F")  # key becomes "Format_version"
    manifest_path.write_bytes(bytes(data))
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_dir)
    assert info.value.reason == "SCHEMA_INVALID"
    assert "format_version" in info.value.message


def test_edited_coefficient_is_caught_by_a_pinned_manifest_hash(tmp_path: Path) -> None:
    pinned = load_bundle(SEED003).manifest_sha256
    bundle_dir = copy_seed(tmp_path)
    manifest_path = bundle_dir / "manifest.json"
    text = manifest_path.read_text(encoding="utf-8")
    assert "1.004042," in text
    manifest_path.write_text(text.replace("1.004042,", "1.004043,"), encoding="utf-8")
    edited = load_bundle(bundle_dir)  # still schema-valid: only a pin can tell
    assert edited.manifest.model.coefficients["tumour/S0/original_glcm_Correlation"] == 1.004043
    assert edited.manifest_sha256 != pinned
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_dir, expected_manifest_sha256=pinned)
    assert info.value.reason == "HASH_MISMATCH"
    with pytest.raises(BundleError) as info:
        load_bundles(tmp_path / "models", pinned={"scoring/seed003-ct-dfs/1.0.0": pinned})
    assert info.value.reason == "HASH_MISMATCH"


def test_listed_file_tampering_missing_and_unlisted(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path, seed_document(), seed_files())
    model_file = bundle.path / "test_vectors.json"
    assert bundle.manifest.files == {"test_vectors.json": sha256_file(model_file)}
    original = model_file.read_bytes()

    data = bytearray(model_file.read_bytes())
    data[2] ^= 0x01
    model_file.write_bytes(bytes(data))
    with pytest.raises(BundleError) as info:
        load_bundle(bundle.path)
    assert info.value.reason == "HASH_MISMATCH"

    model_file.unlink()
    with pytest.raises(BundleError) as info:
        load_bundle(bundle.path)
    assert info.value.reason == "FILE_MISSING"

    model_file.write_bytes(original)
    load_bundle(bundle.path)
    (bundle.path / "docs").mkdir()
    (bundle.path / "docs" / "notes.txt").write_text("extra")
    with pytest.raises(BundleError) as info:
        load_bundle(bundle.path)
    assert info.value.reason == "FILE_UNLISTED"
    assert "docs/notes.txt" in info.value.message


def test_symlink_and_wrong_directory_and_no_manifest(tmp_path: Path) -> None:
    bundle_dir = copy_seed(tmp_path)
    os.symlink(bundle_dir / "manifest.json", bundle_dir / "link.json")
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_dir)
    assert info.value.reason == "LAYOUT_INVALID"
    (bundle_dir / "link.json").unlink()

    moved = bundle_dir.parent / "2.0.0"
    bundle_dir.rename(moved)
    with pytest.raises(BundleError) as info:
        load_bundle(moved)
    assert info.value.reason == "LAYOUT_INVALID"

    with pytest.raises(BundleError) as info:
        load_bundle(tmp_path)
    assert info.value.reason == "MANIFEST_MISSING"


# --- sealing and authoring ----------------------------------------------------------------------------


def test_seal_lists_every_file_and_is_idempotent(tmp_path: Path) -> None:
    bundle_dir = copy_seed(tmp_path)
    (bundle_dir / "docs").mkdir()
    (bundle_dir / "docs" / "README.md").write_text("how this bundle was made\n")
    with pytest.raises(BundleError):
        load_bundle(bundle_dir)
    sealed = seal_bundle(bundle_dir)
    assert sealed.manifest.files == {
        "docs/README.md": sha256_file(bundle_dir / "docs" / "README.md"),
        "test_vectors.json": sha256_file(bundle_dir / "test_vectors.json"),
    }
    assert seal_bundle(bundle_dir).manifest_sha256 == sealed.manifest_sha256
    # The shipped manifest is sealed: re-sealing a pristine copy changes nothing.
    assert seal_bundle(copy_seed(tmp_path / "again")).manifest_sha256 == load_bundle(SEED003).manifest_sha256


def test_seal_refuses_an_invalid_manifest_without_writing(tmp_path: Path) -> None:
    bundle_dir = copy_seed(tmp_path)
    manifest_path = bundle_dir / "manifest.json"
    document = json.loads(manifest_path.read_text())
    document["model"]["coefficients"].popitem()
    manifest_path.write_text(json.dumps(document))
    before = manifest_path.read_bytes()
    with pytest.raises(BundleError) as info:
        seal_bundle(bundle_dir)
    assert info.value.reason == "SCHEMA_INVALID"
    assert manifest_path.read_bytes() == before


def test_write_bundle_refuses_invalid_input_before_writing(tmp_path: Path) -> None:
    with pytest.raises(BundleError) as info:
        write_bundle(tmp_path, seed_document(), {"../escape.json": b"{}"})
    assert info.value.reason == "LAYOUT_INVALID"
    with pytest.raises(BundleError) as info:
        write_bundle(tmp_path, seed_document())  # test vectors not supplied, so not listed
    assert info.value.reason == "SCHEMA_INVALID"
    assert list(tmp_path.iterdir()) == []


# --- registry -----------------------------------------------------------------------------------------


def test_registry_versions_latest_and_lookup_errors(tmp_path: Path) -> None:
    for version in ("1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1"):
        write_bundle(tmp_path, {**seed_document(), "version": version}, seed_files())
    registry = load_bundles(tmp_path)
    assert len(registry) == 4
    assert registry.versions("seed003-ct-dfs") == ["1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1"]
    assert registry.get("seed003-ct-dfs").version == "1.10.0"  # releases win over pre-releases
    assert registry.get("seed003-ct-dfs", "2.0.0-rc.1").version == "2.0.0-rc.1"
    assert [b.version for b in registry] == ["1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1"]
    with pytest.raises(BundleError) as info:
        registry.get("nope")
    assert info.value.reason == "MODEL_NOT_FOUND"
    with pytest.raises(BundleError) as info:
        registry.get("seed003-ct-dfs", "9.9.9")
    assert info.value.reason == "VERSION_NOT_FOUND"
    assert "1.10.0" in info.value.message


def test_registry_strict_and_lenient_loading(tmp_path: Path) -> None:
    write_bundle(tmp_path, seed_document(), seed_files())
    broken = write_bundle(tmp_path, {**seed_document(), "version": "1.1.0"}, seed_files())
    (broken.path / "stray.bin").write_bytes(b"\x00")
    (tmp_path / "README.md").write_text("loose files at the root are ignored")
    with pytest.raises(BundleError) as info:
        load_bundles(tmp_path)
    assert info.value.reason == "FILE_UNLISTED"
    registry = load_bundles(tmp_path, strict=False)
    assert registry.versions("seed003-ct-dfs") == ["1.0.0"]
    assert registry.rejected["scoring/seed003-ct-dfs/1.1.0"].reason == "FILE_UNLISTED"
    with pytest.raises(BundleError) as info:
        load_bundles(tmp_path / "missing")
    assert info.value.reason == "LAYOUT_INVALID"
    shutil.rmtree(broken.path)
    with pytest.raises(BundleError) as info:
        load_bundles(tmp_path, pinned={"scoring/other/1.0.0": "0" * 64})
    assert info.value.reason == "MODEL_NOT_FOUND"


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("1.0.0-alpha", "1.0.0-alpha.1"),
        ("1.0.0-alpha.1", "1.0.0-alpha.beta"),
        ("1.0.0-beta.2", "1.0.0-beta.11"),
        ("1.0.0-rc.1", "1.0.0"),
        ("1.9.0", "1.10.0"),
        ("1.10.0", "2.0.0"),
    ],
)
def test_semver_precedence(lower: str, higher: str) -> None:
    assert SemVer.parse(lower) < SemVer.parse(higher)
    assert str(SemVer.parse(higher)) == higher


@pytest.mark.parametrize("text", ["1.0", "01.0.0", "1.0.0-", "v1.0.0", "1.0.0+"])
def test_semver_rejects_malformed_versions(text: str) -> None:
    with pytest.raises(ValueError, match="semantic version"):
        SemVer.parse(text)


# --- CLI ----------------------------------------------------------------------------------------------


def test_cli_verify_seal_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle_dir = copy_seed(tmp_path)
    assert bundles_cli(["verify", str(bundle_dir)]) == 0
    assert load_bundle(SEED003).manifest_sha256 in capsys.readouterr().out
    (bundle_dir / "extra.txt").write_text("x")
    assert bundles_cli(["verify", str(bundle_dir)]) == 1
    assert capsys.readouterr().err.startswith("FILE_UNLISTED:")
    assert bundles_cli(["seal", str(bundle_dir)]) == 0
    assert bundles_cli(["list", str(tmp_path / "models")]) == 0
    assert capsys.readouterr().out.count("scoring/seed003-ct-dfs/1.0.0") == 2


# --- one bundle system: kinds, lock ------------------------------------------------------------------


def test_the_lock_pins_every_shipped_bundle_of_every_kind(tmp_path: Path) -> None:
    lock = read_lock(MODELS)
    assert lock is not None
    demonstration = {
        f"scoring/{name}/1.0.0"
        for name in (
            "demo-seed001-dfs-cox",
            "demo-seed001-pcr-logistic",
            "demo-seed002-recurrence-elastic-net",
            "demo-seed004-risk-forest",
        )
    }
    assert set(lock) == {"scoring/seed003-ct-dfs/1.0.0", "segmentation/phantom-unet3d/1.0.0"} | demonstration
    assert lock["scoring/seed003-ct-dfs/1.0.0"] == sha256_file(SEED003 / "manifest.json")
    assert lock["segmentation/phantom-unet3d/1.0.0"] == sha256_file(SEGMENTATION / "manifest.json")
    copy = tmp_path / "models"
    shutil.copytree(MODELS, copy)
    assert write_lock(copy) == lock  # re-locking the shipped tree changes nothing


def test_segmentation_bundle_is_loaded_by_the_same_loader() -> None:
    bundle = load_bundle(SEGMENTATION, read_lock(MODELS)["segmentation/phantom-unet3d/1.0.0"], kind="segmentation")
    assert bundle.kind == "segmentation"
    # the model file kept its bytes through the migration: its hash is the one the v1 manifest recorded
    assert bundle.manifest.files == {"model.onnx": "788a9dc0ddfcdb9f00c96a58cdd95036cccae27cee135fd50b1c609074e14f3a"}
    with pytest.raises(BundleError) as info:
        load_bundle(SEGMENTATION, kind="scoring")
    assert info.value.reason == "KIND_MISMATCH"


def test_a_bundle_outside_its_kind_folder_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "models" / "seed003-ct-dfs" / "1.0.0"  # the v1 layout, without scoring/
    shutil.copytree(SEED003, target)
    with pytest.raises(BundleError) as info:
        load_bundle(target)
    assert info.value.reason == "LAYOUT_INVALID"
    assert "scoring/seed003-ct-dfs/1.0.0" in info.value.message

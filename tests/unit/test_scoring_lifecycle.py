"""Bundle lifecycle in the scoring service: refusals at load naming the problem, hot reload where a bad bundle
never replaces a good one, several versions at once, in-flight calls kept, Ed25519 signatures."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from oncohabitat.bundles import BundleError, TrustPolicy, seal_bundle, sha256_file, write_lock
from oncohabitat.bundles.signature import sign_manifest
from oncohabitat.scoring import score
from oncohabitat.scoring.live import LiveRegistry
from tests.unit.test_bundle_loader import SEED003
from tests.unit.test_scoring_model import CASE, seed003_formula

Edit = Callable[[Path], None]


def deploy(root: Path, version: str = "1.0.0", edit: Edit | None = None) -> Path:
    """Copy the shipped seed-003 bundle to ``root`` as ``version`` (re-sealed, optionally edited), and re-lock."""
    target = root / "scoring" / "seed003-ct-dfs" / version
    shutil.copytree(SEED003, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["version"] = version
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if edit is not None:
        edit(target)
    try:
        seal_bundle(target)
    except BundleError:
        pass  # an invalid manifest stays as edited: the loader must refuse it
    lock_all(root)
    return target


def lock_all(root: Path) -> None:
    """Pin the manifest bytes of every bundle directory (as a release step would, valid or not)."""
    lock = {
        f"scoring/{d.parent.name}/{d.name}": sha256_file(d / "manifest.json")
        for d in sorted((root / "scoring").glob("*/*"))
    }
    (root / "bundles.lock.json").write_text(json.dumps(lock))


def _edit_manifest(change: Callable[[dict[str, object]], None]) -> Edit:
    def edit(target: Path) -> None:
        document = json.loads((target / "manifest.json").read_text())
        change(document)
        (target / "manifest.json").write_text(json.dumps(document, indent=2))

    return edit


def _bad_vector(target: Path) -> None:
    document = json.loads((target / "test_vectors.json").read_text())
    document["cases"][3]["expected"]["score"] += 1e-8  # beyond the 1e-9 linear tolerance
    (target / "test_vectors.json").write_text(json.dumps(document))


def _unknown_covariate_type(document: dict[str, object]) -> None:
    document["covariates"] = [{"name": "age", "type": "date", "encoding": "identity"}]


def _schema_violation(document: dict[str, object]) -> None:
    document["risk_groups"] = {"applies_to": "score", "cutoffs": [0.185], "labels": ["low"], "tie": "lower"}


CASES: dict[str, tuple[Edit, str, str]] = {
    "failing test vector": (_bad_vector, "TEST_VECTOR_FAILED", "test vector 3 disagrees on score"),
    "unknown covariate type": (_edit_manifest(_unknown_covariate_type), "SCHEMA_INVALID", "covariates.0.type"),
    "schema violation": (_edit_manifest(_schema_violation), "SCHEMA_INVALID", "risk_groups"),
}


def test_the_shipped_root_loads_and_scores() -> None:
    registry = LiveRegistry(SEED003.parents[2])
    snapshot = registry.reload(strict=True)
    result = score(snapshot.get("seed003-ct-dfs"), CASE)
    assert result.score == pytest.approx(seed003_formula(*CASE.values()), abs=1e-12)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_refused_at_load_naming_the_problem(tmp_path: Path, case: tuple[Edit, str, str]) -> None:
    edit, reason, named = case
    deploy(tmp_path, "1.0.0", edit)
    registry = LiveRegistry(tmp_path, require_lock=False)
    with pytest.raises(BundleError) as info:
        registry.reload(strict=True)
    assert info.value.reason == reason
    assert named in info.value.message


def test_tampered_file_is_refused_at_load(tmp_path: Path) -> None:
    target = deploy(tmp_path)
    vectors = target / "test_vectors.json"
    vectors.write_bytes(vectors.read_bytes().replace(b"0.", b"1.", 1))
    with pytest.raises(BundleError) as info:
        LiveRegistry(tmp_path).reload(strict=True)
    assert info.value.reason == "HASH_MISMATCH" and "test_vectors.json" in info.value.message


def test_unpinned_bundle_and_missing_lock_are_refused(tmp_path: Path) -> None:
    deploy(tmp_path)
    (tmp_path / "bundles.lock.json").write_text("{}")
    with pytest.raises(BundleError) as info:
        LiveRegistry(tmp_path).reload(strict=True)
    assert info.value.reason == "LOCK_MISSING" and "seed003-ct-dfs/1.0.0" in info.value.message
    (tmp_path / "bundles.lock.json").unlink()
    with pytest.raises(BundleError) as missing:
        LiveRegistry(tmp_path).reload(strict=True)
    assert missing.value.reason == "LOCK_MISSING"


@pytest.mark.parametrize(
    "case", [*CASES.values(), (None, "HASH_MISMATCH", "test_vectors.json")], ids=[*CASES, "tampered file"]
)
def test_under_hot_reload_the_previous_version_keeps_serving(
    tmp_path: Path, case: tuple[Edit | None, str, str]
) -> None:
    edit, reason, named = case
    good = deploy(tmp_path)
    registry = LiveRegistry(tmp_path)
    registry.reload(strict=True)
    in_flight = registry.snapshot.get("seed003-ct-dfs")
    # the same version is replaced on disk by a bad one
    shutil.rmtree(good)
    deploy(tmp_path, "1.0.0", edit)
    if edit is None:
        vectors = good / "test_vectors.json"
        vectors.write_bytes(vectors.read_bytes().replace(b"0.", b"1.", 1))
    snapshot = registry.reload()
    assert snapshot.rejected["scoring/seed003-ct-dfs/1.0.0"].reason == reason
    assert named in snapshot.rejected["scoring/seed003-ct-dfs/1.0.0"].message
    assert snapshot.get("seed003-ct-dfs") is in_flight  # the good one keeps serving
    assert score(in_flight, CASE).score == pytest.approx(seed003_formula(*CASE.values()), abs=1e-12)


def test_new_versions_are_picked_up_by_polling_and_in_flight_calls_keep_theirs(tmp_path: Path) -> None:
    deploy(tmp_path)
    registry = LiveRegistry(tmp_path)
    registry.reload(strict=True)
    old = registry.snapshot.get("seed003-ct-dfs")
    registry.start_polling(0.05)
    try:
        deploy(tmp_path, "1.1.0")
        deadline = time.monotonic() + 10
        while registry.snapshot.get("seed003-ct-dfs").bundle.version != "1.1.0":
            assert time.monotonic() < deadline, "the new version was not picked up"
            time.sleep(0.05)
    finally:
        registry.stop()
    snapshot = registry.snapshot
    assert [c.bundle.version for c in snapshot] == ["1.0.0", "1.1.0"]  # several versions at once
    assert snapshot.get("seed003-ct-dfs", "1.0.0") is old  # unchanged bundles are not reloaded
    assert score(old, CASE).model_version == "1.0.0"


def _keypair(tmp_path: Path, name: str) -> tuple[Ed25519PrivateKey, Path]:
    key = Ed25519PrivateKey.generate()
    public = tmp_path / f"{name}.pem"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key, public


def test_signatures_required_verified_and_refused(tmp_path: Path) -> None:
    key, public = _keypair(tmp_path, "release")
    other, _ = _keypair(tmp_path, "other")
    root = tmp_path / "models"
    target = deploy(root)
    trust = TrustPolicy.from_files(public, required=True)
    with pytest.raises(BundleError) as missing:
        LiveRegistry(root, trust=trust).reload(strict=True)
    assert missing.value.reason == "SIGNATURE_MISSING" and "manifest.sig" in missing.value.message

    sign_manifest(target, key)
    snapshot = LiveRegistry(root, trust=trust).reload(strict=True)
    assert snapshot.get("seed003-ct-dfs").bundle.signed

    sign_manifest(target, other)
    with pytest.raises(BundleError) as bad:
        LiveRegistry(root, trust=trust).reload(strict=True)
    assert bad.value.reason == "SIGNATURE_INVALID" and "does not verify" in bad.value.message

    (target / "manifest.sig").write_text("not base64!\n")
    with pytest.raises(BundleError) as garbled:
        LiveRegistry(root, trust=trust).reload(strict=True)
    assert garbled.value.reason == "SIGNATURE_INVALID"


def test_a_required_signature_needs_a_key() -> None:
    with pytest.raises(BundleError) as info:
        TrustPolicy.from_files(None, required=True)
    assert info.value.reason == "SIGNATURE_MISSING"


def test_write_lock_pins_what_the_live_registry_checks(tmp_path: Path) -> None:
    deploy(tmp_path)
    assert write_lock(tmp_path) == json.loads((tmp_path / "bundles.lock.json").read_text())

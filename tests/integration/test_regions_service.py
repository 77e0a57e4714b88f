"""BuildRegions over real gRPC: phantom studies in-process and in a separate service process, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from oncohabitat.common.blobstore import BlobStore
from oncohabitat.common.codec import VolumeCodec
from oncohabitat.common.errors import error_detail_from
from oncohabitat.common.health_client import check_health
from oncohabitat.common.phases import select_phases
from oncohabitat.common.server import ServiceRuntime
from oncohabitat.common.service_main import make_runtime
from oncohabitat.common.volume import Geometry
from oncohabitat.regions.__main__ import build
from oncohabitat.regions.frozen import fit_population_habitats, write_frozen_habitats
from oncohabitat.regions.habitats import voxel_features
from oncohabitat.regions.pipeline import build_regions
from oncohabitat.regions.profile import RegionProfile
from oncohabitat.regions.settings import RegionsSettings
from oncohabitat.v1 import common_pb2, regions_pb2, regions_pb2_grpc
from tests.conftest import free_port
from tests.unit.test_regions_phantom_support import LoadedPhantom, load_phantom, mask_message, study_message

pytestmark = pytest.mark.integration

KINETIC = ["WIS", "WOS", "SER", "PE"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("regions-service")


@pytest.fixture(scope="module")
def runtime(workdir: Path) -> Iterator[ServiceRuntime]:
    settings = RegionsSettings(port=0, metrics_port=0, data_dir=workdir / "data", models_dir=workdir / "models")
    rt = make_runtime("regions", settings, build)
    rt.start()
    yield rt
    rt.stop(0)


@pytest.fixture(scope="module")
def codec(workdir: Path) -> VolumeCodec:
    return VolumeCodec(BlobStore(workdir / "data" / "blobs"))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> LoadedPhantom:
    return load_phantom(tmp_path_factory.mktemp("small"), "small", seed=11)


@pytest.fixture(scope="module")
def ispy(tmp_path_factory: pytest.TempPathFactory) -> LoadedPhantom:
    return load_phantom(tmp_path_factory.mktemp("ispy"), "ispy", seed=12)


def _stub(port: int) -> regions_pb2_grpc.RegionsStub:
    channel = grpc.insecure_channel(
        f"127.0.0.1:{port}",
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
    )
    return regions_pb2_grpc.RegionsStub(channel)


def _request(
    phantom: LoadedPhantom, codec: VolumeCodec, profile: dict[str, object] | None = None
) -> regions_pb2.BuildRegionsRequest:
    return regions_pb2.BuildRegionsRequest(
        study=study_message(phantom, codec),
        tumour_mask=mask_message(phantom.tumour, phantom.phases[0].geometry, codec),
        profile_json=json.dumps(profile or {}),
    )


def _label_map(response: regions_pb2.BuildRegionsResponse, codec: VolumeCodec, name: str) -> np.ndarray:
    for region in response.regions:
        if any(label.name == name for label in region.labels):
            array, _ = codec.decode_array(region.volume)
            return array
    raise AssertionError(f"no label map holds {name!r}")


def _origin_index(phantom: LoadedPhantom, geometry: Geometry) -> tuple[int, int, int]:
    reference = phantom.phases[0].geometry
    offset = (np.asarray(geometry.origin) - np.asarray(reference.origin)) / np.asarray(reference.spacing)
    x, y, z = (round(v) for v in offset)  # identity direction in the phantom
    return (z, y, x)


def _habitat_agreement(
    phantom: LoadedPhantom, response: regions_pb2.BuildRegionsResponse, codec: VolumeCodec
) -> tuple[float, np.ndarray]:
    habitats = _label_map(response, codec, "habitat_1")
    _, geometry = codec.decode_array(response.regions[0].volume)
    z, y, x = _origin_index(phantom, geometry)
    window = (slice(z, z + habitats.shape[0]), slice(y, y + habitats.shape[1]), slice(x, x + habitats.shape[2]))
    tumour = phantom.tumour[window]
    assert tumour.sum() == phantom.tumour.sum()
    truth, found = phantom.compartments[window][tumour], habitats[tumour]
    confusion = np.array([[np.sum((truth == t) & (found == h)) for h in (1, 2, 3)] for t in (1, 2, 3)])
    return float(adjusted_rand_score(truth, found)), confusion


@pytest.mark.parametrize("name", ["small", "ispy"])
def test_build_regions_over_grpc_on_a_phantom(
    name: str, request: pytest.FixtureRequest, runtime: ServiceRuntime, codec: VolumeCodec
) -> None:
    phantom: LoadedPhantom = request.getfixturevalue(name)
    call = _request(phantom, codec)
    response = _stub(runtime.port).BuildRegions(call, timeout=60)
    ari, confusion = _habitat_agreement(phantom, response, codec)
    assert ari >= 0.8 and list(confusion.argmax(axis=0)) == [0, 1, 2], confusion
    names = [label.name for region in response.regions for label in region.labels]
    assert names == [
        "tumour",
        "habitat_1",
        "habitat_2",
        "habitat_3",
        "peritumoral_ring_5mm",
        "stroma_band_20mm",
        "breast_right",
        "breast_left",
    ]
    ring = _label_map(response, codec, "peritumoral_ring_5mm") > 0
    breast = _label_map(response, codec, "breast_left") > 0
    assert ring.any() and not (ring & ~breast).any()
    assert [image.name for image in response.derived_images] == ["PE", "SER", "WIS", "WOS"]
    for image in response.derived_images:
        values, _ = codec.decode_array(image.volume)
        assert values.dtype == np.float32 and values.shape == ring.shape and np.isfinite(values).all()
    stats = {s.region: s for s in response.statistics}
    assert stats["tumour"].voxel_count == int(phantom.tumour.sum())
    assert stats["habitat_1"].mean_values["PE"] < stats["habitat_3"].mean_values["PE"]
    assert len(response.msi_features) == 22
    provenance = response.provenance
    assert provenance.parameter_hashes["region_profile"] == RegionProfile().sha256()
    assert set(provenance.input_hashes) == {f"phase_{p.index}" for p in phantom.phases} | {"tumour_mask"}
    assert {"scikit-learn", "scipy", "numpy", "oncohabitat"} <= {c.name for c in provenance.components}


def _expect_error(
    runtime: ServiceRuntime, call: regions_pb2.BuildRegionsRequest, code: grpc.StatusCode, reason: str
) -> str:
    with pytest.raises(grpc.RpcError) as excinfo:
        _stub(runtime.port).BuildRegions(call, timeout=30)
    assert excinfo.value.code() == code, excinfo.value.details()
    detail = error_detail_from(excinfo.value)
    assert detail is not None and detail.reason == reason, detail
    return str(excinfo.value.details())


def test_bad_masks_are_invalid_argument(runtime: ServiceRuntime, codec: VolumeCodec, small: LoadedPhantom) -> None:
    geometry = small.phases[0].geometry
    empty = _request(small, codec)
    empty.tumour_mask.CopyFrom(mask_message(np.zeros_like(small.tumour), geometry, codec))
    _expect_error(runtime, empty, grpc.StatusCode.INVALID_ARGUMENT, "MASK_EMPTY")
    far = Geometry(spacing=geometry.spacing, origin=(900.0, 900.0, 900.0), direction=geometry.direction)
    outside = _request(small, codec)
    outside.tumour_mask.CopyFrom(mask_message(small.tumour, far, codec))
    _expect_error(runtime, outside, grpc.StatusCode.INVALID_ARGUMENT, "MASK_OUTSIDE_IMAGE")
    missing = _request(small, codec)
    missing.ClearField("tumour_mask")
    _expect_error(runtime, missing, grpc.StatusCode.INVALID_ARGUMENT, "MASK_MISSING")


def test_phases_on_different_grids_are_invalid_argument(
    runtime: ServiceRuntime, codec: VolumeCodec, small: LoadedPhantom
) -> None:
    call = _request(small, codec)
    call.study.phases[2].volume.origin[0] += 3.0
    message = _expect_error(runtime, call, grpc.StatusCode.INVALID_ARGUMENT, "GRID_MISMATCH")
    assert "phase 2" in message


def test_too_few_phases_name_the_missing_role(
    runtime: ServiceRuntime, codec: VolumeCodec, small: LoadedPhantom
) -> None:
    call = _request(small, codec)
    del call.study.phases[2:]
    message = _expect_error(runtime, call, grpc.StatusCode.INVALID_ARGUMENT, "PHASE_MISSING")
    assert "S2/SL (late post-contrast phase)" in message
    del call.study.phases[1:]
    message = _expect_error(runtime, call, grpc.StatusCode.INVALID_ARGUMENT, "PHASE_MISSING")
    assert "S1/SM (early post-contrast phase) = phase 1" in message


def test_bad_profile_is_invalid_argument(runtime: ServiceRuntime, codec: VolumeCodec, small: LoadedPhantom) -> None:
    call = _request(small, codec)
    call.profile_json = '{"ring_width_mm": "wide"}'
    assert "ring_width_mm" in _expect_error(runtime, call, grpc.StatusCode.INVALID_ARGUMENT, "PROFILE_INVALID")


def _frozen_profile(workdir: Path, small: LoadedPhantom, ispy: LoadedPhantom) -> dict[str, object]:
    rows = []
    for phantom in (small, ispy):
        result = build_regions(select_phases(phantom.phases), phantom.tumour, RegionProfile(derived_images=KINETIC))
        rows.append(voxel_features(phantom.tumour[result.box.slices], result.derived_images, KINETIC))
    digest = write_frozen_habitats(
        workdir / "models" / "toy" / "1.0.0" / "habitats.json", fit_population_habitats(rows, KINETIC, k=3)
    )
    return {"habitats": {"mode": "frozen", "frozen_centroids": {"file": "toy/1.0.0/habitats.json", "sha256": digest}}}


def _serve_in_subprocess(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "ONCOHABITAT_REGIONS_PORT": str(port),
        "ONCOHABITAT_REGIONS_METRICS_PORT": str(free_port()),
        "ONCOHABITAT_REGIONS_DATA_DIR": str(workdir / "data"),
        "ONCOHABITAT_REGIONS_MODELS_DIR": str(workdir / "models"),
    }
    log = (workdir / "regions-subprocess.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "oncohabitat.regions"], env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while check_health(f"127.0.0.1:{port}", timeout_s=1.0) != "SERVING":
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError((workdir / "regions-subprocess.log").read_text()[-3000:])
        time.sleep(0.2)
    return process, port


def test_frozen_centroids_give_the_same_habitats_in_two_processes(
    workdir: Path, runtime: ServiceRuntime, codec: VolumeCodec, small: LoadedPhantom, ispy: LoadedPhantom
) -> None:
    profile = _frozen_profile(workdir, small, ispy)
    call = _request(small, codec, profile)
    in_process = _stub(runtime.port).BuildRegions(call, timeout=60)
    process, port = _serve_in_subprocess(workdir)
    try:
        other = _stub(port).BuildRegions(call, timeout=60)
    finally:
        process.terminate()
        process.wait(30)
    first = _label_map(in_process, codec, "habitat_1")
    np.testing.assert_array_equal(_label_map(other, codec, "habitat_1"), first)
    assert dict(other.msi_features) == dict(in_process.msi_features)
    ari, confusion = _habitat_agreement(small, in_process, codec)
    assert ari >= 0.8 and list(confusion.argmax(axis=0)) == [0, 1, 2], confusion
    frozen = in_process.provenance.parameter_hashes["frozen_centroids"]
    assert frozen == profile["habitats"]["frozen_centroids"]["sha256"]  # type: ignore[index]

    # tamper with the bundle file: the service refuses it
    path = workdir / "models" / "toy" / "1.0.0" / "habitats.json"
    text = path.read_text()
    path.write_text(text.replace("0", "1", 1))
    try:
        message = _expect_error(runtime, call, grpc.StatusCode.FAILED_PRECONDITION, "CENTROIDS_HASH_MISMATCH")
        assert "refused" in message
    finally:
        path.write_text(text)


def test_single_phase_study_needs_a_profile_without_kinetics(
    runtime: ServiceRuntime, codec: VolumeCodec, small: LoadedPhantom
) -> None:
    call = _request(
        small,
        codec,
        {
            "habitats": {"enabled": False},
            "msi": {"enabled": False},
            "derived_images": [],
            "statistics_images": [],
            "breast": {"enabled": False},
            "restrict_to_breast": False,
        },
    )
    del call.study.phases[1:]
    call.study.phases[0].role = common_pb2.PHASE_ROLE_SINGLE
    response = _stub(runtime.port).BuildRegions(call, timeout=30)
    names = [label.name for region in response.regions for label in region.labels]
    assert names == ["tumour", "peritumoral_ring_5mm", "stroma_band_20mm"]

"""The segmentation service over real gRPC (in-process server on port 0) and its refusal to start on a
corrupted model (subprocess: exit status 3, ``cannot start: ...``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import SimpleITK as sitk

from oncohabitat.bundles.registry import default_bundle_root
from oncohabitat.common.blobstore import BlobStore
from oncohabitat.common.channels import make_channel
from oncohabitat.common.codec import VolumeCodec
from oncohabitat.common.errors import error_detail_from
from oncohabitat.common.server import ServiceRuntime
from oncohabitat.common.service_main import make_runtime
from oncohabitat.phantom import PhantomStudy, generate_study
from oncohabitat.segmentation.__main__ import build
from oncohabitat.segmentation.settings import SegmentationSettings
from oncohabitat.segmentation.study_message import build_study
from oncohabitat.v1 import common_pb2, segmentation_pb2, segmentation_pb2_grpc

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> SegmentationSettings:
    return SegmentationSettings(port=0, metrics_port=0, data_dir=tmp_path_factory.mktemp("segmentation"))


@pytest.fixture(scope="module")
def runtime(settings: SegmentationSettings) -> Iterator[ServiceRuntime]:
    rt = make_runtime("segmentation", settings, build)
    rt.start()
    yield rt
    rt.stop(0)


@pytest.fixture(scope="module")
def stub(runtime: ServiceRuntime) -> segmentation_pb2_grpc.SegmentationStub:
    channel = make_channel(f"127.0.0.1:{runtime.port}", "oncohabitat.v1.Segmentation", timeout_s=60)
    return segmentation_pb2_grpc.SegmentationStub(channel)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> PhantomStudy:
    return generate_study(tmp_path_factory.mktemp("phantom") / "study", size="ispy", seed=7004)


@pytest.fixture(scope="module")
def codec(settings: SegmentationSettings) -> VolumeCodec:
    return VolumeCodec(BlobStore(settings.blob_dir))  # ispy phases travel through the study store


@pytest.fixture(scope="module")
def study(phantom: PhantomStudy, codec: VolumeCodec) -> common_pb2.Study:
    phases = {k: sitk.ReadImage([str(p) for p in files]) for k, files in enumerate(phantom.phase_files)}
    return build_study(phases, codec, phantom.phase_times_s)


def _dice(response: segmentation_pb2.SegmentResponse, codec: VolumeCodec, phantom: PhantomStudy) -> float:
    mask = sitk.GetArrayFromImage(codec.decode_image(response.mask.volume)) != 0
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom.ground_truth.tumour_mask))) != 0
    return 2.0 * float(np.logical_and(mask, truth).sum()) / float(mask.sum() + truth.sum())


def test_automatic_segmentation_over_grpc(
    stub: segmentation_pb2_grpc.SegmentationStub, study: common_pb2.Study, codec: VolumeCodec, phantom: PhantomStudy
) -> None:
    response = stub.Segment(segmentation_pb2.SegmentRequest(study=study), timeout=120)
    assert response.outcome == segmentation_pb2.SEGMENTATION_OUTCOME_OK, response.reason
    assert response.method == "onnx"
    assert response.provenance.model_id == "phantom-unet3d" and response.provenance.model_version == "1.0.0"
    assert {"profile", "model_manifest"} <= set(response.provenance.parameter_hashes)
    assert _dice(response, codec, phantom) >= 0.85


def test_seeded_segmentation_over_grpc(
    stub: segmentation_pb2_grpc.SegmentationStub, study: common_pb2.Study, codec: VolumeCodec, phantom: PhantomStudy
) -> None:
    assert phantom.lesion is not None
    x, y, z = phantom.lesion.centre_lps_mm
    request = segmentation_pb2.SegmentRequest(
        study=study, seed=segmentation_pb2.PointMm(x=x + 1.5, y=y - 1.5, z=z), has_seed=True
    )
    response = stub.Segment(request, timeout=120)
    assert response.outcome == segmentation_pb2.SEGMENTATION_OUTCOME_OK, response.reason
    assert response.method == "seeded-fcm"
    assert _dice(response, codec, phantom) >= 0.85


def test_wrong_number_of_phases_is_invalid_argument(
    stub: segmentation_pb2_grpc.SegmentationStub, study: common_pb2.Study
) -> None:
    single_post = common_pb2.Study(phases=[study.phases[1]])
    with pytest.raises(grpc.RpcError) as raised:
        stub.Segment(segmentation_pb2.SegmentRequest(study=single_post), timeout=60)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    detail = error_detail_from(raised.value)
    assert detail is not None and detail.reason == "PHASES_MISSING" and detail.field == "study.phases"
    assert "phases [0, 1]" in raised.value.details()


def test_corrupted_model_stops_the_service_at_start(tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(default_bundle_root(), models)
    onnx_file = next(models.glob("segmentation/*/*/model.onnx"))
    onnx_file.write_bytes(onnx_file.read_bytes()[:-16] + b"\0" * 16)
    env = {
        **os.environ,
        "ONCOHABITAT_SEGMENTATION_MODELS_DIR": str(models),
        "ONCOHABITAT_SEGMENTATION_DATA_DIR": str(tmp_path / "data"),
        "ONCOHABITAT_SEGMENTATION_PORT": "0",
        "ONCOHABITAT_SEGMENTATION_METRICS_PORT": "0",
    }
    finished = subprocess.run(
        [sys.executable, "-m", "oncohabitat.segmentation"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 3
    assert "segmentation: cannot start:" in finished.stderr
    assert "HASH_MISMATCH" in finished.stderr and "model.onnx" in finished.stderr

"""The features service over real gRPC: concurrent calls (ExtractFeatures and ExtractPlan) from 8 threads give
the serial values with no failure; bad input is INVALID_ARGUMENT naming the token; a deadline stops the work."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import SimpleITK as sitk

from oncohabitat.common.blobstore import BlobStore
from oncohabitat.common.codec import VolumeCodec
from oncohabitat.common.errors import error_detail_from
from oncohabitat.common.server import ServiceRuntime
from oncohabitat.common.service_main import make_runtime
from oncohabitat.common.volume import Volume
from oncohabitat.features.__main__ import build
from oncohabitat.features.settings import FeaturesSettings
from oncohabitat.features.study import RegionMask, StudyInputs
from oncohabitat.v1 import common_pb2, features_pb2, features_pb2_grpc
from tests.unit.test_features_support import phantom_inputs
from tests.unit.test_regions_phantom_support import load_phantom

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:the load_module\\(\\) method is deprecated:DeprecationWarning"),
]

THREADS = 8
CALLS = 48
PLAN_FEATURES = [
    "tumour/S0/original_shape_Sphericity",
    "tumour/S0/original_glcm_Correlation",
    "habitat_1/PE/original_firstorder_Mean",
    "habitat_2/SER/original_glszm_ZoneEntropy",
    "ring_5mm/SM0/wavelet-LLH_firstorder_Mean",
    "tumour/kinetic-variance/original_firstorder_Mean",
    "tumour/msi/msi_energy",
    "habitat_3/stats/fraction",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("features-service")


@pytest.fixture(scope="module")
def runtime(workdir: Path) -> Iterator[ServiceRuntime]:
    settings = FeaturesSettings(port=0, metrics_port=0, data_dir=workdir / "data", workers=2)
    rt = make_runtime("features", settings, build)
    rt.start()
    yield rt
    rt.stop(0)


@pytest.fixture(scope="module")
def codec(workdir: Path) -> VolumeCodec:
    return VolumeCodec(BlobStore(workdir / "data" / "blobs"))


@pytest.fixture(scope="module")
def stub(runtime: ServiceRuntime) -> features_pb2_grpc.FeaturesStub:
    channel = grpc.insecure_channel(f"127.0.0.1:{runtime.port}")
    return features_pb2_grpc.FeaturesStub(channel)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> StudyInputs:
    return phantom_inputs(load_phantom(tmp_path_factory.mktemp("phantom"), "small", seed=9)).inputs


def plan_request(inputs: StudyInputs, plan: dict[str, Any], codec: VolumeCodec) -> features_pb2.ExtractPlanRequest:
    """An ExtractPlan request carrying every image and region of ``inputs`` (regions under canonical names)."""
    request = features_pb2.ExtractPlanRequest(plan_json=json.dumps(plan), msi_features=dict(inputs.msi))
    for name, image in inputs.images.items():
        request.images.add(name=name, volume=codec.encode_array(image.array, image.geometry))
    for name, region in inputs.regions.items():
        request.regions.add(
            volume=codec.encode_array(region.mask.astype(np.uint8), region.geometry),
            labels=[common_pb2.Label(value=1, name=name)],
        )
    if inputs.parenchyma_mean is not None:
        request.parenchyma_mean = inputs.parenchyma_mean
    return request


def _breast1(shared_data: Path, codec: VolumeCodec) -> features_pb2.ExtractFeaturesRequest:
    image = sitk.ReadImage(str(shared_data / "pyradiomics" / "breast1_image.nrrd"))
    mask = sitk.ReadImage(str(shared_data / "pyradiomics" / "breast1_label.nrrd"))
    return features_pb2.ExtractFeaturesRequest(
        image=codec.encode_image(image),
        mask=common_pb2.LabelMap(volume=codec.encode_image(mask)),
        label=1,
        settings_json=json.dumps({"setting": {"binWidth": 25}}),
        feature_names=["original_glcm_Correlation", "original_glszm_ZoneEntropy", "original_firstorder_Kurtosis"],
    )


def _plan(features: list[str], setting: dict[str, Any] | None = None) -> dict[str, Any]:
    image_type: dict[str, dict[str, Any]] = {"Original": {}, "Wavelet": {}}
    return {"features": features, "feature_settings": {"setting": setting or {"binCount": 16}, "imageType": image_type}}


def _detail(info: pytest.ExceptionInfo[grpc.RpcError]) -> tuple[grpc.StatusCode, str]:
    error: Any = info.value
    detail = error_detail_from(error)
    return error.code(), detail.field if detail is not None else ""


def test_concurrent_calls_equal_serial_ones(
    stub: features_pb2_grpc.FeaturesStub, codec: VolumeCodec, shared_data: Path, study: StudyInputs
) -> None:
    legacy = _breast1(shared_data, codec)
    plan = plan_request(study, _plan(PLAN_FEATURES), codec)
    serial_legacy = dict(stub.ExtractFeatures(legacy, timeout=120).values)
    serial_plan = stub.ExtractPlan(plan, timeout=120)
    assert set(serial_plan.values) == set(PLAN_FEATURES) and not serial_plan.missing
    assert list(serial_plan.feature_order) == PLAN_FEATURES

    def one(number: int) -> dict[str, float]:
        if number % 2:
            return dict(stub.ExtractFeatures(legacy, timeout=120).values)
        return dict(stub.ExtractPlan(plan, timeout=120).values)

    with ThreadPoolExecutor(THREADS) as pool:
        outcomes = list(pool.map(one, range(CALLS)))
    for number, values in enumerate(outcomes):
        assert values == (serial_legacy if number % 2 else dict(serial_plan.values))


@pytest.mark.parametrize(
    ("feature", "token"),
    [
        ("lesion/S0/original_firstorder_Mean", "lesion"),
        ("tumour/T2/original_firstorder_Mean", "T2"),
        ("tumour/S0/median_firstorder_Mean", "median_firstorder_Mean"),
        ("tumour/S0/original_glcm_NoSuchFeature", "tumour/S0/original_glcm_NoSuchFeature"),
    ],
)
def test_unknown_names_are_refused_naming_the_token(
    stub: features_pb2_grpc.FeaturesStub, codec: VolumeCodec, study: StudyInputs, feature: str, token: str
) -> None:
    request = plan_request(study, _plan([feature]), codec)
    with pytest.raises(grpc.RpcError) as info:
        stub.ExtractPlan(request, timeout=60)
    assert _detail(info) == (grpc.StatusCode.INVALID_ARGUMENT, token)


def test_explosive_settings_are_refused(
    stub: features_pb2_grpc.FeaturesStub, codec: VolumeCodec, study: StudyInputs
) -> None:
    request = plan_request(study, _plan(["tumour/S0/original_glcm_Contrast"], {"binCount": 2000}), codec)
    with pytest.raises(grpc.RpcError) as info:
        stub.ExtractPlan(request, timeout=60)
    assert _detail(info) == (grpc.StatusCode.INVALID_ARGUMENT, "binCount")


@pytest.mark.parametrize(
    ("field", "value", "token"),
    [
        ("spacing", [math.nan, 1.0, 1.0], "spacing"),
        ("spacing", [math.inf, 1.0, 1.0], "spacing"),
        ("origin", [0.0, math.nan, 0.0], "origin"),
        ("direction", [0.0] * 9, "direction"),
        ("shape", [2**31, 2**31, 2**31], "shape"),
    ],
)
def test_bad_volumes_are_invalid_argument(
    stub: features_pb2_grpc.FeaturesStub,
    codec: VolumeCodec,
    shared_data: Path,
    field: str,
    value: list[float],
    token: str,
) -> None:
    legacy = _breast1(shared_data, codec)
    del getattr(legacy.image, field)[:]
    getattr(legacy.image, field).extend(value)
    with pytest.raises(grpc.RpcError) as info:
        stub.ExtractFeatures(legacy, timeout=60)
    assert _detail(info) == (grpc.StatusCode.INVALID_ARGUMENT, token)


def _heavy(codec: VolumeCodec, shared_data: Path) -> tuple[StudyInputs, features_pb2.ExtractPlanRequest]:
    """A plan of 60 whole-image LoG groups on brain1 copies (about half a second each: ~15 s on 2 workers)."""
    image = sitk.ReadImage(str(shared_data / "pyradiomics" / "brain1_image.nrrd"))
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data / "pyradiomics" / "brain1_label.nrrd"))) == 1
    heavy = Volume.of(image)
    inputs = StudyInputs(
        images={f"S{k}": heavy for k in range(60)}, regions={"tumour": RegionMask(mask, heavy.geometry)}
    )
    features = [f"tumour/S{k}/log-sigma-3-0-mm-3D_glszm_ZoneEntropy" for k in range(60)]
    plan = {
        "features": features,
        "feature_settings": {"setting": {"binWidth": 5}, "imageType": {"LoG": {"sigma": [3.0]}}},
    }
    return inputs, plan_request(inputs, plan, codec)


def _served_soon(stub: features_pb2_grpc.FeaturesStub, codec: VolumeCodec, inputs: StudyInputs) -> float:
    small = plan_request(inputs, _plan(["tumour/S0/original_firstorder_Mean"]), codec)
    started = time.monotonic()
    assert stub.ExtractPlan(small, timeout=60).values
    return time.monotonic() - started


def test_deadline_stops_the_work(stub: features_pb2_grpc.FeaturesStub, codec: VolumeCodec, shared_data: Path) -> None:
    inputs, request = _heavy(codec, shared_data)
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        stub.ExtractPlan(request, timeout=1.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 5
    # the pending groups were cancelled: a small call is served soon after, not after the 60 LoG groups
    assert _served_soon(stub, codec, inputs) < 6


def test_cancel_stops_the_work(stub: features_pb2_grpc.FeaturesStub, codec: VolumeCodec, shared_data: Path) -> None:
    inputs, request = _heavy(codec, shared_data)
    future = stub.ExtractPlan.future(request, timeout=120)
    time.sleep(1.0)
    assert future.cancel()
    assert _served_soon(stub, codec, inputs) < 6

"""The orchestrator's regions and features stages on a phantom study, with the real servicers in-process:
every applicable bundle's plan is computed from what the regions stage stored, values as the engine gives them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat.common.blobstore import BlobStore
from oncohabitat.common.codec import VolumeCodec
from oncohabitat.features.engine import InlineRunner, extract_plan
from oncohabitat.features.servicer import FeaturesServicer
from oncohabitat.orchestrator.feature_stages import features_stage, regions_profile, regions_stage
from oncohabitat.orchestrator.jobs import Job
from oncohabitat.orchestrator.results import SEGMENT_STAGE
from oncohabitat.orchestrator.served_models import ModelSet
from oncohabitat.regions.servicer import RegionsServicer
from oncohabitat.v1 import common_pb2
from tests.support.served_models import served_model
from tests.unit.test_features_support import phantom_inputs
from tests.unit.test_regions_phantom_support import LoadedPhantom, load_phantom

pytestmark = pytest.mark.filterwarnings("ignore:the load_module\\(\\) method is deprecated:DeprecationWarning")

FEATURES = [
    "tumour/S0/original_shape_Sphericity",
    "habitat_1/PE/original_firstorder_Mean",
    "ring_5mm/SM0/original_glcm_Idmn",
    "tumour/kinetic-mean/original_firstorder_Skewness",
    "tumour/msi/msi_contrast",
    "habitat_2/stats/mean_SER",
]


class _Call:
    """A stub method that calls a servicer method in-process (no gRPC)."""

    def __init__(self, method: Any) -> None:
        self._method = method

    def __call__(self, request: Any, timeout: float | None = None) -> Any:
        return self._method(request, cast(Any, _Context()))


class _Context:
    def time_remaining(self) -> float | None:
        return None

    def is_active(self) -> bool:
        return True


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> LoadedPhantom:
    return load_phantom(tmp_path_factory.mktemp("phantom"), "small", seed=4)


def _context(tmp_path: Path, plan: ExtractionPlan) -> Any:
    blobs = BlobStore(tmp_path / "blobs")
    codec = VolumeCodec(blobs)
    regions = RegionsServicer(codec)
    features = FeaturesServicer(codec, InlineRunner())
    model = served_model(plan, id="seed001-like")
    context = SimpleNamespace(
        blobs=blobs,
        codec=codec,
        served_models=ModelSet([model]),
        regions=SimpleNamespace(BuildRegions=_Call(regions.BuildRegions)),
        features=SimpleNamespace(ExtractPlan=_Call(features.ExtractPlan)),
        rpc_timeout_s=60.0,
    )
    context.save_message = lambda message: blobs.put(message.SerializeToString())
    context.load_volume = lambda digest: common_pb2.Volume.FromString(blobs.get(digest))
    return context


def test_regions_then_features_give_the_engine_values(tmp_path: Path, phantom: LoadedPhantom) -> None:
    plan = ExtractionPlan.model_validate({"features": FEATURES, "feature_settings": {"setting": {"binCount": 16}}})
    context = _context(tmp_path, plan)
    codec: VolumeCodec = context.codec
    loaded = {
        "modality": "MR",
        "phases": [
            {
                "index": phase.index,
                "pre_contrast": phase.index == 0,
                "time_from_pre_s": phase.time_s,
                "volume": context.save_message(codec.encode_array(phase.array, phase.geometry)),
            }
            for phase in phantom.phases
        ],
    }
    segmented = {
        "mask_volume": context.save_message(
            codec.encode_array(phantom.tumour.astype("uint8"), phantom.phases[0].geometry)
        )
    }
    job = cast(Job, SimpleNamespace(request={}))
    previous: dict[str, Any] = {"load_study": loaded, SEGMENT_STAGE: segmented}
    regions = regions_stage(context, job, previous)
    assert regions.reason == "" and len(regions.result["profiles"]) == 1
    previous["regions"] = regions.result
    outcome = features_stage(context, job, previous)
    assert outcome.reason == ""
    entry = outcome.result["models"]["seed001-like@1.0.0"]
    assert list(entry["features"]) == FEATURES and entry["missing"] == {}

    profile = regions_profile(plan)
    assert {"SM0", "SER", "PE"} <= set(profile["derived_images"])
    direct = extract_plan(plan, phantom_inputs(phantom, profile).inputs)
    differing = {k: (v, direct.values.get(k)) for k, v in entry["features"].items() if v != direct.values.get(k)}
    assert set(entry["features"]) == set(direct.values) and differing == {}


def test_breast_features_ask_for_the_full_grid() -> None:
    plan = ExtractionPlan.model_validate({"features": ["parenchyma/S0/original_firstorder_Mean"]})
    assert regions_profile(plan)["output_grid"] == "full"
    plan = ExtractionPlan.model_validate({"features": ["tumour/S0/original_firstorder_Mean"]})
    assert "output_grid" not in regions_profile(plan)

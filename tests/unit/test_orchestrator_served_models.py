"""The orchestrator's catalogue of served models against a real scoring service (gRPC, in process): what it lists
is what scoring serves (plan, required inputs, covariates as the bundles declare them), descriptions are cached by
manifest hash, a hot-loaded bundle is seen and one scoring rejects (bad signature) is not, and an unreachable
scoring service is a transient UNAVAILABLE for the stage that asked."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from oncohabitat.bundles import BundleError, load_bundle, write_lock, write_scoring_bundle
from oncohabitat.bundles.signature import sign_manifest
from oncohabitat.common.channels import make_channel
from oncohabitat.common.server import ServiceRuntime
from oncohabitat.orchestrator.feature_stages import eligible_plans
from oncohabitat.orchestrator.jobs import Job
from oncohabitat.orchestrator.retry import is_transient
from oncohabitat.orchestrator.served_models import ServedModelError, ServedModels
from oncohabitat.orchestrator.stages import REGIONS_STAGE, build_stages
from oncohabitat.scoring.__main__ import build
from oncohabitat.scoring.settings import ScoringSettings
from oncohabitat.v1 import scoring_pb2, scoring_pb2_grpc
from tests.unit.test_bundle_loader import SEED003
from tests.unit.test_scoring_model import linear_document

S1_MEAN = "tumour/S1/original_firstorder_Mean"
MR_STUDY = {"modality": "MR", "phases": [{"index": 0}, {"index": 1}, {"index": 2}]}


def dce_bundle(root: Path, model_id: str, feature: str = S1_MEAN) -> Path:
    """A linear score on one DCE feature (MR, pre- and post-contrast), with its test vector; returns its folder."""
    document = linear_document({"type": "linear_score", "coefficients": {feature: 0.01}}, id=model_id)
    document["required_inputs"] = {"modality": "MR", "phases": ["pre_contrast", "post_contrast"]}
    document["plan"] = {"region_profile": {"ring_width_mm": 5.0}, "features": [feature]}
    document["inputs"] = [{"name": feature}]
    document.pop("evaluation", None)
    write_scoring_bundle(root, document, [{"features": {feature: 100.0}, "expected": {"score": 1.0}}])
    return root / "scoring" / model_id / "1.0.0"


def keypair(directory: Path, name: str) -> tuple[Ed25519PrivateKey, Path]:
    key = Ed25519PrivateKey.generate()
    public = directory / f"{name}.pem"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key, public


@dataclass
class Counting:
    """The scoring stub, counting the calls the catalogue makes."""

    stub: scoring_pb2_grpc.ScoringStub
    calls: dict[str, int] = field(default_factory=dict)

    def ListModels(self, request: Any, timeout: float | None = None) -> Any:
        self.calls["ListModels"] = self.calls.get("ListModels", 0) + 1
        return self.stub.ListModels(request, timeout=timeout)

    def DescribeModel(self, request: Any, timeout: float | None = None) -> Any:
        self.calls["DescribeModel"] = self.calls.get("DescribeModel", 0) + 1
        return self.stub.DescribeModel(request, timeout=timeout)


@dataclass
class Scoring:
    root: Path
    runtime: ServiceRuntime
    stub: scoring_pb2_grpc.ScoringStub
    release_key: Ed25519PrivateKey


@pytest.fixture
def scoring(tmp_path: Path) -> Iterator[Scoring]:
    root = tmp_path / "models"
    shutil.copytree(SEED003, root / "scoring" / "seed003-ct-dfs" / "1.0.0")
    release_key, public = keypair(tmp_path, "release")
    sign_manifest(dce_bundle(root, "dce-s1"), release_key)
    write_lock(root)
    settings = ScoringSettings(
        port=0,
        metrics_port=0,
        data_dir=tmp_path / "data",
        models_dir=root,
        reload_interval_s=0.0,  # only ReloadModels: no poll racing the test
        signature_public_key=public,
    )
    parts = build(settings)
    runtime = ServiceRuntime(
        name="scoring", settings=settings, registrations=parts.registrations, service_names=parts.service_names
    )
    runtime.start()
    channel = make_channel(f"127.0.0.1:{runtime.port}", "oncohabitat.v1.Scoring", timeout_s=10)
    yield Scoring(root, runtime, scoring_pb2_grpc.ScoringStub(channel), release_key)
    runtime.stop(0)


def _job(**request: Any) -> Job:
    return cast(Job, SimpleNamespace(job_id="job-1", request=request))


def test_the_catalogue_is_what_scoring_serves_as_the_bundles_declare_it(scoring: Scoring) -> None:
    served = ServedModels(scoring.stub).snapshot()
    assert [model.name for model in served] == ["dce-s1@1.0.0", "seed003-ct-dfs@1.0.0"]
    for model in served:
        bundle = load_bundle(scoring.root / "scoring" / model.id / model.version)
        manifest = bundle.manifest
        assert model.manifest_sha256 == bundle.manifest_sha256
        assert model.plan == manifest.plan and model.plan_sha256 == manifest.plan.sha256()
        assert (model.modality, list(model.phases)) == (
            manifest.required_inputs.modality,
            manifest.required_inputs.phases,
        )
        assert list(model.covariates) == [c.name for c in manifest.covariates]
        assert model.has_fallback == (manifest.fallback is not None)
    assert served.get("dce-s1").plan is not None and served.get("dce-s1", "latest").version == "1.0.0"
    with pytest.raises(BundleError) as missing:
        served.get("nope")
    assert missing.value.reason == "MODEL_NOT_FOUND"


def test_descriptions_are_fetched_once_per_manifest_and_the_list_every_time(scoring: Scoring) -> None:
    counting = Counting(scoring.stub)
    catalogue = ServedModels(cast(scoring_pb2_grpc.ScoringStub, counting))
    first, second = catalogue.snapshot(), catalogue.snapshot()
    assert [m.name for m in first] == [m.name for m in second]
    assert counting.calls == {"ListModels": 2, "DescribeModel": 2}

    now = [100.0]
    cached = ServedModels(cast(scoring_pb2_grpc.ScoringStub, counting), ttl_s=2.0, clock=lambda: now[0])
    cached.snapshot()
    cached.snapshot()
    now[0] += 2.5
    cached.snapshot()
    assert counting.calls["ListModels"] == 2 + 2  # within the TTL the listing is reused


def test_a_hot_loaded_bundle_is_planned_and_one_scoring_rejects_is_not(scoring: Scoring, tmp_path: Path) -> None:
    counting = Counting(scoring.stub)
    catalogue = ServedModels(cast(scoring_pb2_grpc.ScoringStub, counting))
    context = SimpleNamespace(served_models=catalogue)
    before, _ = eligible_plans(cast(Any, context), _job(), MR_STUDY)
    assert [model.name for model, _plan in before] == ["dce-s1@1.0.0"]

    forger, _ = keypair(tmp_path, "forger")
    sign_manifest(dce_bundle(scoring.root, "dce-added"), scoring.release_key)
    sign_manifest(dce_bundle(scoring.root, "dce-forged", "tumour/S2/original_firstorder_Mean"), forger)
    write_lock(scoring.root)  # the lock pins both: only the signature tells them apart
    reloaded = scoring.stub.ReloadModels(scoring_pb2.ReloadModelsRequest(), timeout=10)
    assert [(r.bundle, r.reason) for r in reloaded.rejected] == [("scoring/dce-forged/1.0.0", "SIGNATURE_INVALID")]

    after, reasons = eligible_plans(cast(Any, context), _job(), MR_STUDY)
    assert [model.name for model, _plan in after] == ["dce-added@1.0.0", "dce-s1@1.0.0"] and reasons == []
    assert catalogue.snapshot().rejected == ("scoring/dce-forged/1.0.0",)
    assert counting.calls["DescribeModel"] == 3  # dce-s1 and seed003 once, then only the new manifest
    with pytest.raises(BundleError) as refused:  # requested by name: as for any model scoring does not serve
        eligible_plans(cast(Any, context), _job(model_ids=["dce-forged"]), MR_STUDY)
    assert refused.value.reason == "MODEL_NOT_FOUND"


def test_a_description_whose_plan_does_not_match_its_hash_is_refused(scoring: Scoring) -> None:
    class Tampering(Counting):
        def DescribeModel(self, request: Any, timeout: float | None = None) -> Any:
            description = super().DescribeModel(request, timeout)
            description.plan_json = description.plan_json.replace("5.0", "6.0")
            return description

    with pytest.raises(ServedModelError, match="plan_sha256"):
        ServedModels(cast(scoring_pb2_grpc.ScoringStub, Tampering(scoring.stub))).snapshot()


def test_scoring_unreachable_is_a_transient_unavailable_of_the_stage(scoring: Scoring) -> None:
    catalogue = ServedModels(scoring.stub, timeout_s=2.0)
    scoring.runtime.stop(0)
    context = SimpleNamespace(served_models=catalogue, rpc_timeout_s=5.0)
    regions = {stage.name: stage for stage in build_stages(cast(Any, context))}[REGIONS_STAGE]
    with pytest.raises(grpc.RpcError) as caught:
        regions.run(_job(), {"load_study": MR_STUDY, "segment": {}})
    assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert is_transient(caught.value)  # the runner retries the job with backoff


def test_the_features_stage_plans_only_what_the_regions_stage_planned() -> None:
    from oncohabitat.bundles.plan import ExtractionPlan
    from oncohabitat.orchestrator.feature_stages import features_stage, profile_key, regions_profile
    from oncohabitat.orchestrator.served_models import ModelSet
    from oncohabitat.v1 import common_pb2, features_pb2
    from tests.support.served_models import served_model

    plan = ExtractionPlan.model_validate({"features": [S1_MEAN]})
    first, added = served_model(plan, id="dce-first"), served_model(plan, id="dce-added")
    sent: list[features_pb2.ExtractPlanRequest] = []

    def extract(request: features_pb2.ExtractPlanRequest, timeout: float | None = None) -> Any:
        sent.append(request)
        return features_pb2.ExtractPlanResponse(values={S1_MEAN: 1.0}, feature_order=[S1_MEAN])

    context = SimpleNamespace(
        served_models=ModelSet([first, added]),  # dce-added was loaded after the regions stage ran
        features=SimpleNamespace(ExtractPlan=extract),
        load_volume=lambda _digest: common_pb2.Volume(),
        rpc_timeout_s=5.0,
    )
    regions = {"label_maps": {}, "derived_images": {}, "msi_features": {}}
    previous = {
        "load_study": {"modality": "MR", "phases": [{"index": 0, "volume": "a"}, {"index": 1, "volume": "b"}]},
        "segment": {},
        REGIONS_STAGE: {"profiles": {profile_key(regions_profile(plan)): regions}, "planned": ["dce-first@1.0.0"]},
    }
    outcome = features_stage(cast(Any, context), _job(), previous)
    assert outcome.reason == "" and list(outcome.result["models"]) == ["dce-first@1.0.0"] and len(sent) == 1
    previous[REGIONS_STAGE] = {"profiles": previous[REGIONS_STAGE]["profiles"]}  # stored before "planned" existed
    assert list(features_stage(cast(Any, context), _job(), previous).result["models"]) == [
        "dce-added@1.0.0",
        "dce-first@1.0.0",
    ]

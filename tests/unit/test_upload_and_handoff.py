"""UploadStudy's stream reader (durable files, the listener's keys and digest, INVALID_ARGUMENT for non-DICOM
data), the DCE classification that travels with the hand-off (the orchestrator does not classify again), and
the in-process stub of ``oncohabitat analyze`` (domain errors keep their status code and reason)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import grpc
import pydicom
import pytest

from oncohabitat.analyze.inprocess import InProcessStub
from oncohabitat.common.errors import (
    FeatureInputError,
    InvalidInputError,
    ResourceExhaustedError,
    error_detail_from,
)
from oncohabitat.dicomio import RoiSelection
from oncohabitat.dicomio.dce import classify_study_files
from oncohabitat.dicomio.dce_handoff import handoff_json
from oncohabitat.dicomio.identifiers import content_digest, uid_key
from oncohabitat.orchestrator import study_loading, upload
from oncohabitat.orchestrator.jobs import Job
from oncohabitat.orchestrator.results import job_result_from_stages
from oncohabitat.orchestrator.runner import StageOutcome
from oncohabitat.orchestrator.score_stage import score_stage
from oncohabitat.orchestrator.study_loading import Handoff, load_study
from oncohabitat.phantom import generate_study
from oncohabitat.v1 import pipeline_pb2, scoring_pb2


@pytest.fixture(scope="module")
def study_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    study = generate_study(tmp_path_factory.mktemp("phantom"), size="small", seed=11)
    return sorted(p for p in study.dicom_dir.rglob("*") if p.is_file())


def _chunks(files: list[Path], chunk: int = 70_000, header: bool = True) -> Iterator[pipeline_pb2.UploadChunk]:
    if header:
        yield pipeline_pb2.UploadChunk(header=pipeline_pb2.UploadHeader(model_ids=["m"]))
    for path in files:
        data = path.read_bytes()
        for start in range(0, len(data), chunk):
            yield pipeline_pb2.UploadChunk(data=data[start : start + chunk], end_of_instance=start + chunk >= len(data))


def test_an_upload_is_stored_under_opaque_keys_with_the_listeners_digest(
    study_files: list[Path], tmp_path: Path
) -> None:
    received = upload.receive_upload(_chunks(study_files + study_files[:3]), tmp_path)  # re-sent instances: once
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in study_files]
    assert received.study_key == uid_key(str(datasets[0].StudyInstanceUID))
    pairs = [
        (str(d.SOPInstanceUID), hashlib.sha256(p.read_bytes()).hexdigest())
        for d, p in zip(datasets, study_files, strict=True)
    ]
    assert received.content_digest == content_digest(pairs)
    assert len(received.instance_paths) == len(study_files)
    for relative in received.instance_paths:
        assert relative.startswith("uploads/") and "." not in Path(relative).stem
        assert (tmp_path / relative).is_file()
    request = received.submission()
    assert list(request.model_ids) == ["m"] and not request.HasField("seed_point")


def test_non_dicom_data_is_invalid_argument(tmp_path: Path) -> None:
    chunks = [
        pipeline_pb2.UploadChunk(header=pipeline_pb2.UploadHeader()),
        pipeline_pb2.UploadChunk(data=b"%PDF-1.4 not dicom" * 20, end_of_instance=True),
    ]
    with pytest.raises(InvalidInputError) as caught:
        upload.receive_upload(iter(chunks), tmp_path)
    assert caught.value.reason == "UPLOAD_NOT_DICOM" and caught.value.field == "data"
    assert not any(tmp_path.rglob("*.dcm"))


def test_a_missing_header_a_truncated_instance_and_an_empty_upload_are_refused(
    study_files: list[Path], tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError, match="header"):
        upload.receive_upload(_chunks(study_files[:1], header=False), tmp_path)
    truncated = list(_chunks(study_files[:1]))
    truncated[-1].end_of_instance = False
    with pytest.raises(InvalidInputError) as caught:
        upload.receive_upload(iter(truncated), tmp_path)
    assert caught.value.reason == "UPLOAD_TRUNCATED"
    with pytest.raises(InvalidInputError) as caught:
        upload.receive_upload(_chunks([]), tmp_path)
    assert caught.value.reason == "INSTANCES_MISSING"


def test_an_oversized_instance_is_resource_exhausted(
    study_files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upload, "MAX_INSTANCE_BYTES", 1000)
    with pytest.raises(ResourceExhaustedError):
        upload.receive_upload(_chunks(study_files[:1]), tmp_path)


def test_the_listeners_classification_is_used_instead_of_classifying_again(
    study_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = study_files[0].parents[2]
    summary = handoff_json(classify_study_files(study_files), root)
    assert all(phase["instance_paths"] for phase in summary["phases"])
    reference = load_study(study_files, RoiSelection())

    def no_classification(*_args: object) -> None:
        raise AssertionError("the orchestrator classified the study again")

    monkeypatch.setattr(study_loading, "classify_dce", no_classification)
    loaded = load_study(study_files, RoiSelection(), handoff=Handoff(summary, root))
    assert [p.index for p in loaded.phases] == [p.index for p in reference.phases]
    assert [p.time_from_pre_s for p in loaded.phases] == [p.time_from_pre_s for p in reference.phases]
    with pytest.raises(AssertionError, match="classified"):  # a classification that does not fit: classify again
        load_study(study_files[1:], RoiSelection(), handoff=Handoff(summary, root))


class _Servicer:
    def Fail(self, request: object, context: object) -> None:
        raise InvalidInputError("BREAST_MASK_EMPTY", "no tissue", "study")

    def Echo(self, request: str, context: object) -> str:
        return request


def test_the_in_process_stub_maps_domain_errors_like_the_interceptor() -> None:
    stub = InProcessStub(_Servicer())
    assert stub.Echo("x", timeout=5) == "x"
    with pytest.raises(grpc.RpcError) as caught:
        stub.Fail(None, timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    detail = error_detail_from(caught.value)
    assert detail is not None and detail.reason == "BREAST_MASK_EMPTY"


class _Scoring:
    """Refuses ``refused`` (a feature that cannot be computed), scores every other model 1.0."""

    def __init__(self, refused: set[str]) -> None:
        self.refused = refused

    def Score(self, request: scoring_pb2.ScoreRequest, context: object) -> scoring_pb2.ScoreResponse:
        if request.model_id in self.refused:
            raise FeatureInputError("FEATURE_MISSING", "ring_5mm/S1/original_firstorder_Mean", "empty region")
        return scoring_pb2.ScoreResponse(model_id=request.model_id, model_version=request.model_version, score=1.0)


def _score(refused: set[str]) -> StageOutcome:
    context = SimpleNamespace(scoring=InProcessStub(_Scoring(refused)), rpc_timeout_s=5.0)
    job = cast(Job, SimpleNamespace(request={}))
    entries = {
        f"{name}@1": {"model_id": name, "model_version": "1", "features": {}, "provenance": {}} for name in ("a", "b")
    }
    return score_stage(cast(Any, context), job, {"features": {"models": entries}})


def test_a_model_refused_for_the_study_is_listed_and_the_others_are_kept() -> None:
    outcome = _score({"a"})
    assert [m["model_id"] for m in outcome.result["models"]] == ["b"]
    result = job_result_from_stages({"score": outcome.result})
    assert list(result.models_not_scored) == ["a@1: FEATURE_MISSING (ring_5mm/S1/original_firstorder_Mean)"]
    with pytest.raises(grpc.RpcError):  # every model refused: the job ends NEEDS_REVIEW with the refusal
        _score({"a", "b"})

"""A synthetic breast DCE-MRI study pushed by a real DICOM peer goes through every stage that exists for MR:
phase classification and assembly -> automatic segmentation (ONNX) -> habitats/ring/stroma -> features ->
scoring by the shipped demonstration MR bundles (``models/scoring/demo-*``, trained on synthetic phantoms):
the study gets a risk result out of the box."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from oncohabitat.phantom import generate_study
from oncohabitat.v1 import listener_pb2, pipeline_pb2
from tests.support.dcmtk import storescu
from tests.support.platform import Platform

pytestmark = pytest.mark.integration
DEMO_BUNDLES = (
    "demo-seed001-dfs-cox",
    "demo-seed001-pcr-logistic",
    "demo-seed002-recurrence-elastic-net",
    "demo-seed004-risk-forest",
)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    running = Platform(tmp_path_factory.mktemp("platform"))
    running.start()
    yield running
    running.stop()


def _stage_results(database: Path, job_id: str) -> dict[str, str]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT stage, result_json FROM stage_results WHERE job_id = ?", (job_id,))
        return dict(rows)


@pytest.mark.parametrize("layout", ["per-phase", "multi-phase"])
def test_phantom_dce_study_runs_through_segmentation_and_regions(
    platform: Platform, tmp_path: Path, layout: str
) -> None:
    study = generate_study(tmp_path / "study", size="ispy", seed=4242, layout=layout)
    before = len(platform.pipeline().ListJobs(pipeline_pb2.ListJobsRequest(), timeout=5).jobs)
    pushed = storescu(platform.dicom_port, [study.dicom_dir])
    assert pushed.returncode == 0, pushed.stderr
    jobs = platform.wait_for_jobs(before + 1, timeout_s=240)
    job = next(j for j in jobs if j.created_at == max(j.created_at for j in jobs))
    assert job.state == pipeline_pb2.JOB_STATE_DONE, (job, platform.log("orchestrator"))
    results = _stage_results(platform.data_dir / "jobs.sqlite3", job.job_id)
    assert {"load_study", "segment", "regions"} <= set(results)
    result = platform.pipeline().GetResult(pipeline_pb2.GetResultRequest(job_id=job.job_id), timeout=10)
    demos = {m.model_id: m for m in result.models if m.model_id.startswith("demo-")}
    assert set(demos) == set(DEMO_BUNDLES), [m.model_id for m in result.models]
    assert all(m.risk_group and "not for clinical use" in m.intended_use for m in demos.values())
    assert demos["demo-seed001-pcr-logistic"].HasField("probability")
    assert demos["demo-seed002-recurrence-elastic-net"].HasField("predicted_value")
    assert demos["demo-seed004-risk-forest"].model_type == "onnx"
    assert '"method": "onnx"' in results["segment"].replace(" ", "").replace('":"', '": "')
    assert "habitat_1" in results["regions"] and "peritumoral_ring_5mm" in results["regions"]
    loaded = json.loads(results["load_study"])
    assert [round(p["time_from_pre_s"]) for p in loaded["phases"]] == [round(t) for t in study.phase_times_s]
    assert [round(p["time_after_injection_s"]) for p in loaded["phases"]] == [
        round(t - study.injection_time_s) for t in study.phase_times_s
    ]
    assert not any(p["resampled"] for p in loaded["phases"])


def test_admin_api_over_grpc_lists_shows_and_resubmits_a_study(platform: Platform, tmp_path: Path) -> None:
    """ListStudies / GetStudy / ResubmitStudy through a real gRPC channel to the running listener."""
    study = generate_study(tmp_path / "study", size="small", seed=777, layout="multi-phase", trigger_time=True)
    jobs_before = len(platform.pipeline().ListJobs(pipeline_pb2.ListJobsRequest(), timeout=5).jobs)
    pushed = storescu(platform.dicom_port, [study.dicom_dir])
    assert pushed.returncode == 0, pushed.stderr
    platform.wait_for_jobs(jobs_before + 1, timeout_s=240)
    admin = platform.listener_admin()
    key = platform.study_key(study.study_instance_uid)
    listed = admin.ListStudies(
        listener_pb2.ListStudiesRequest(state=listener_pb2.STUDY_STATE_HANDED_OFF, page_size=100), timeout=5
    )
    assert key in {s.study_key for s in listed.studies}
    summary = admin.GetStudy(listener_pb2.GetStudyRequest(study_key=key), timeout=5)
    assert summary.state == listener_pb2.STUDY_STATE_HANDED_OFF and summary.job_id
    assert summary.instance_count == sum(map(len, study.phase_files)) and summary.reason.startswith("ELIGIBLE")
    (series,) = summary.series
    assert series.classification == "dynamic-multiphase"
    phases = sorted(series.phases, key=lambda p: p.index)
    assert [round(p.time_offset_s) for p in phases] == [round(t) for t in study.phase_times_s]
    assert [round(p.time_after_injection_s) for p in phases] == [
        round(t - study.injection_time_s) for t in study.phase_times_s
    ]
    assert study.study_instance_uid not in str(summary)
    resubmitted = admin.ResubmitStudy(listener_pb2.ResubmitStudyRequest(study_key=key), timeout=10)
    assert resubmitted.job_id and resubmitted.job_id != summary.job_id
    platform.wait_for_jobs(jobs_before + 2, timeout_s=240)
    with pytest.raises(grpc.RpcError) as missing:
        admin.GetStudy(listener_pb2.GetStudyRequest(study_key="0" * 32), timeout=5)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

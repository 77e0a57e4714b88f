"""The audit trail: N DICOM associations and M gRPC calls give exactly N + M access audit events, each naming
who (token id / AE title, never a secret), what, when and the outcome."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from oncohabitat.common.audit import ACCESS_EVENTS
from oncohabitat.common.security import ClientSecurity
from oncohabitat.v1 import listener_pb2, pipeline_pb2, pipeline_pb2_grpc
from tests.conftest import require_tool
from tests.support.dcmtk import DCMTK_ENV
from tests.support.platform import Platform

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    running = Platform(tmp_path_factory.mktemp("audit"), {"ONCOHABITAT_LISTENER_REQUIRE_CALLED_AE_TITLE": "true"})
    running.start()
    yield running
    running.stop()


def _events(platform: Platform) -> list[dict[str, object]]:
    path = Path(platform.env["ONCOHABITAT_AUDIT_FILE"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _echo(platform: Platform, called_ae: str) -> int:
    return subprocess.run(
        [require_tool("echoscu"), "-aet", "MODALITY1", "-aec", called_ae, "127.0.0.1", str(platform.dicom_port)],
        env=DCMTK_ENV,
        capture_output=True,
        timeout=30,
    ).returncode


def test_n_associations_and_m_rpcs_give_n_plus_m_access_events(platform: Platform) -> None:
    before = len(_events(platform))
    # N = 3 associations: two accepted, one rejected (unknown called AE title)
    assert _echo(platform, "ONCOHABITAT") == 0
    assert _echo(platform, "ONCOHABITAT") == 0
    assert _echo(platform, "NOT-US") != 0
    # M = 4 calls: two reads, one NOT_FOUND, one anonymous (refused)
    platform.pipeline().ListJobs(pipeline_pb2.ListJobsRequest(), timeout=10)
    platform.listener_admin().ListStudies(listener_pb2.ListStudiesRequest(), timeout=10)
    with pytest.raises(grpc.RpcError):
        platform.pipeline().GetJob(pipeline_pb2.GetJobRequest(job_id="0" * 32), timeout=10)
    anonymous = ClientSecurity(None, platform.security.credentials, platform.security.server_name)
    with pytest.raises(grpc.RpcError) as refused:
        pipeline_pb2_grpc.PipelineStub(platform.channel("orchestrator", anonymous)).ListJobs(
            pipeline_pb2.ListJobsRequest(), timeout=10
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    deadline = time.monotonic() + 15
    while sum(e["event_id"] in ACCESS_EVENTS for e in _events(platform)[before:]) < 7 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # nothing more may arrive
    access = [e for e in _events(platform)[before:] if e["event_id"] in ACCESS_EVENTS]
    assert len(access) == 3 + 4, access
    associations = [e for e in access if e["event_id"] != "grpc_access"]
    assert sorted(str(e["event_id"]) for e in associations) == [
        "association_accepted",
        "association_accepted",
        "association_rejected",
    ]
    assert {e["user_id"] for e in associations} == {"MODALITY1"}
    calls = [e for e in access if e["event_id"] == "grpc_access"]
    assert sorted((str(e["method"]).rsplit("/", 1)[1], e["status"], e["user_id"]) for e in calls) == [
        ("GetJob", "NOT_FOUND", "admin"),
        ("ListJobs", "OK", "admin"),
        ("ListJobs", "UNAUTHENTICATED", ""),
        ("ListStudies", "OK", "admin"),
    ]
    for event in access:
        assert {"event_time", "event_action", "outcome", "network_access_point", "source"} <= event.keys()
    assert [e["outcome"] for e in calls if e["status"] == "OK"] == [0, 0]
    text = Path(platform.env["ONCOHABITAT_AUDIT_FILE"]).read_text()
    for secret_file in ("admin.token", "service.token"):
        assert (platform.data_dir / "security" / secret_file).read_text().strip() not in text

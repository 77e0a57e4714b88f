"""A real PACS (Orthanc) in the loop, and crash recovery of the orchestrator (kill -9 mid-job)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oncohabitat.v1 import pipeline_pb2
from tests.support.dcmtk import StoreSCP, storescu
from tests.support.orthanc import OrthancServer
from tests.support.platform import Platform

pytestmark = pytest.mark.integration


@pytest.fixture
def orthanc_and_platform(tmp_path: Path) -> Iterator[tuple[OrthancServer, Platform]]:
    orthanc = OrthancServer(tmp_path / "orthanc", modalities={})
    platform = Platform(
        tmp_path / "platform",
        {"ONCOHABITAT_ORCHESTRATOR_EXPORT_DESTINATION": f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"},
    )
    orthanc.modalities["oncohabitat"] = ("ONCOHABITAT", "127.0.0.1", platform.dicom_port)
    orthanc.start()
    try:
        platform.start()
        yield orthanc, platform
    finally:
        platform.stop()
        orthanc.stop()


def test_orthanc_pushes_the_study_and_receives_the_sr(
    orthanc_and_platform: tuple[OrthancServer, Platform], sts_ct_dir: Path
) -> None:
    orthanc, platform = orthanc_and_platform
    files = [*sorted((sts_ct_dir / "image").glob("*.dcm")), sts_ct_dir / "mask" / "RS.dcm"]
    (study_id,) = orthanc.upload(files)
    assert sorted(orthanc.series_modalities()) == ["CT", "RTSTRUCT"]
    orthanc.store_to("oncohabitat", study_id)  # Orthanc acts as the PACS: C-STORE to our listener
    (job,) = platform.wait_for_jobs(1, timeout_s=120)
    assert job.state == pipeline_pb2.JOB_STATE_DONE, (job, platform.log("orchestrator"))
    deadline = time.monotonic() + 30
    while not {"SR", "DOC"} <= set(orthanc.series_modalities()) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert sorted(orthanc.series_modalities()) == ["CT", "DOC", "RTSTRUCT", "SEG", "SR"]
    # the results are filed under the same study in the PACS
    assert len(orthanc.get("/studies")) == 1


def _stage_rows(database: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(database) as connection:
        return list(connection.execute("SELECT stage, COUNT(*) FROM stage_results GROUP BY stage ORDER BY stage"))


def _done_events(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        return int(connection.execute("SELECT COUNT(*) FROM job_events WHERE state = 'DONE'").fetchone()[0])


def test_orchestrator_killed_mid_job_finishes_the_job_exactly_once(tmp_path: Path, sts_ct_dir: Path) -> None:
    receiver = StoreSCP(tmp_path / "receiver")
    receiver.start()
    platform = Platform(tmp_path / "platform", {"ONCOHABITAT_ORCHESTRATOR_EXPORT_DESTINATION": receiver.destination})
    try:
        # features is down: the job gets through load_study and segment, then waits for a retry
        platform.start([name for name in ("segmentation", "regions", "scoring", "orchestrator", "listener")])
        assert storescu(platform.dicom_port, [sts_ct_dir / "image", sts_ct_dir / "mask"]).returncode == 0
        deadline = time.monotonic() + 90
        while "stage 'features': transient" not in platform.log("orchestrator"):
            assert time.monotonic() < deadline, platform.log("orchestrator")
            time.sleep(0.2)
        (job,) = platform.pipeline().ListJobs(pipeline_pb2.ListJobsRequest(), timeout=5).jobs
        assert job.state in (pipeline_pb2.JOB_STATE_QUEUED, pipeline_pb2.JOB_STATE_RUNNING)
        platform.kill("orchestrator")
        # what was finished before the crash is durable
        assert _stage_rows(platform.data_dir / "jobs.sqlite3") == [("load_study", 1), ("regions", 1), ("segment", 1)]
        platform.start(["features", "orchestrator"])
        (finished,) = platform.wait_for_jobs(1, timeout_s=120)
        assert finished.job_id == job.job_id
        assert finished.state == pipeline_pb2.JOB_STATE_DONE, (finished, platform.log("orchestrator"))
        assert finished.attempts >= 2
    finally:
        platform.stop()
        receiver.stop()
    database = platform.data_dir / "jobs.sqlite3"
    assert _stage_rows(database) == [
        ("export", 1),
        ("features", 1),
        ("load_study", 1),
        ("regions", 1),
        ("score", 1),
        ("segment", 1),
    ]
    assert _done_events(database) == 1
    sop_uids = {str(ds.SOPInstanceUID) for ds in receiver.received()}
    assert len(sop_uids) == 3  # one SEG + one SR + one key-image PDF, however often the export stage ran

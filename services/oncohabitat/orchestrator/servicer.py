"""gRPC servicer of the public Pipeline API (proto <-> domain only)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc

from oncohabitat.common.auth import SERVICE, caller_has
from oncohabitat.common.errors import InvalidInputError, PreconditionError
from oncohabitat.orchestrator.admission import admit_submission
from oncohabitat.orchestrator.destinations import ExportDestinations
from oncohabitat.orchestrator.jobs import Job, JobNotFoundError, JobState
from oncohabitat.orchestrator.jobstore import JobStore
from oncohabitat.orchestrator.jobstore_common import JobFilter, encode_page_token
from oncohabitat.orchestrator.results import job_result_from_stages
from oncohabitat.orchestrator.upload import receive_upload
from oncohabitat.v1 import pipeline_pb2, pipeline_pb2_grpc

WATCH_POLL_S = 0.2
MAX_PAGE = 1000


def job_to_proto(job: Job) -> pipeline_pb2.Job:
    """Domain job -> public message (no request payload, no lease internals)."""
    return pipeline_pb2.Job(
        job_id=job.job_id,
        study_key=job.study_key,
        state=job.state.proto_name,
        stage=job.stage,
        reason=job.reason,
        attempts=job.attempts,
        created_at=job.created_at,
        updated_at=job.updated_at,
    )


def _state_from_proto(state: int) -> JobState | None:
    if state == pipeline_pb2.JOB_STATE_UNSPECIFIED:
        return None
    try:
        return JobState(pipeline_pb2.JobState.Name(state).removeprefix("JOB_STATE_"))
    except ValueError:
        raise InvalidInputError("STATE_UNKNOWN", "state is not a JobState value", "state") from None


class PipelineServicer(pipeline_pb2_grpc.PipelineServicer):
    """SubmitStudy, UploadStudy, GetJob, WatchJob, ListJobs, GetResult, CancelJob over a :class:`JobStore`.

    Args:
        store: The durable job store shared with the runner.
        on_submit: Called after a new job was created (wakes the runner).
        stopping: Set when the server stops, so WatchJob streams end promptly.
        upload_root: The DICOM store root UploadStudy writes into and submissions by reference are resolved in
            (None: uploads and submissions by reference are refused).
        destinations: The export destinations a request may name (default: none).
    """

    def __init__(
        self,
        store: JobStore,
        on_submit: Callable[[], None] | None = None,
        stopping: threading.Event | None = None,
        upload_root: Path | None = None,
        destinations: ExportDestinations | None = None,
    ) -> None:
        self._store = store
        self._on_submit = on_submit or (lambda: None)
        self._stopping = stopping or threading.Event()
        self._upload_root = upload_root
        self._destinations = destinations or ExportDestinations({})

    def _job(self, job_id: str) -> Job:
        if not job_id:
            raise InvalidInputError("JOB_ID_MISSING", "job_id is required", "job_id")
        job = self._store.get(job_id)
        if job is None:
            raise JobNotFoundError()
        return job

    def SubmitStudy(
        self, request: pipeline_pb2.SubmitStudyRequest, context: grpc.ServicerContext
    ) -> pipeline_pb2.SubmitStudyResponse:
        return self._submit(request, platform_caller=caller_has(SERVICE))

    def _submit(
        self, request: pipeline_pb2.SubmitStudyRequest, platform_caller: bool
    ) -> pipeline_pb2.SubmitStudyResponse:
        payload, digest = admit_submission(request, self._upload_root, self._destinations, platform_caller)
        job_id, created = self._store.submit(request.study_key, digest, payload, rerun=request.rerun)
        if created:
            self._on_submit()
        return pipeline_pb2.SubmitStudyResponse(job_id=job_id, created=created)

    def UploadStudy(
        self, request_iterator: Iterator[pipeline_pb2.UploadChunk], context: grpc.ServicerContext
    ) -> pipeline_pb2.SubmitStudyResponse:
        if self._upload_root is None:
            raise PreconditionError("UPLOAD_DISABLED", "this orchestrator has no DICOM store for uploads", "")
        received = receive_upload(request_iterator, self._upload_root)
        return self._submit(received.submission(), platform_caller=True)  # paths we wrote ourselves

    def GetJob(self, request: pipeline_pb2.GetJobRequest, context: grpc.ServicerContext) -> pipeline_pb2.Job:
        return job_to_proto(self._job(request.job_id))

    def WatchJob(
        self, request: pipeline_pb2.WatchJobRequest, context: grpc.ServicerContext
    ) -> Iterator[pipeline_pb2.Job]:
        self._job(request.job_id)  # NOT_FOUND before the stream starts
        # Read the event cursor *before* the job: a change in between is then seen twice (harmless), never missed.
        last_seq = max((event.seq for event in self._store.events_since(request.job_id, 0)), default=0)
        job = self._job(request.job_id)
        yield job_to_proto(job)
        while not job.state.is_terminal and context.is_active() and not self._stopping.is_set():
            events = self._store.events_since(job.job_id, last_seq)
            if not events:
                self._stopping.wait(WATCH_POLL_S)
                continue
            last_seq = events[-1].seq
            job = self._job(job.job_id)
            yield job_to_proto(job)

    def ListJobs(
        self, request: pipeline_pb2.ListJobsRequest, context: grpc.ServicerContext
    ) -> pipeline_pb2.ListJobsResponse:
        limit = min(request.page_size or 100, MAX_PAGE)
        where = JobFilter(
            state=_state_from_proto(request.state),
            created_from=request.created_from or None,
            created_to=request.created_to or None,
            model_id=request.model_id or None,
        )
        jobs = self._store.list(limit=limit, where=where, page_token=request.page_token)
        next_token = encode_page_token(jobs[-1].created_at, jobs[-1].job_id) if len(jobs) == limit else ""
        return pipeline_pb2.ListJobsResponse(jobs=[job_to_proto(job) for job in jobs], next_page_token=next_token)

    def GetResult(
        self, request: pipeline_pb2.GetResultRequest, context: grpc.ServicerContext
    ) -> pipeline_pb2.JobResult:
        job = self._job(request.job_id)
        if job.state != JobState.DONE:
            raise PreconditionError(
                "JOB_NOT_DONE", f"job is {job.state.value}, results exist only for DONE jobs", "job_id"
            )
        result = job_result_from_stages(self._store.load_stage_results(job.job_id))
        result.job.CopyFrom(job_to_proto(job))
        return result

    def CancelJob(self, request: pipeline_pb2.CancelJobRequest, context: grpc.ServicerContext) -> pipeline_pb2.Job:
        self._job(request.job_id)
        return job_to_proto(self._store.cancel(request.job_id))

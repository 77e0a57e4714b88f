"""Hand-off of a complete study to the orchestrator's Pipeline.SubmitStudy (used by the outbox)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc

from oncohabitat.common.channels import make_channel
from oncohabitat.listener.errors import HandoffRejectedError
from oncohabitat.v1 import pipeline_pb2, pipeline_pb2_grpc

logger = logging.getLogger(__name__)

#: Errors after which re-sending the same submission can never succeed.
PERMANENT_CODES = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION})


class GrpcHandoff:
    """Calls SubmitStudy with the study's instances as paths relative to the shared DICOM store root.

    Transient failures (orchestrator down, deadline) propagate so the outbox retries with backoff;
    a submission the orchestrator refuses as invalid raises :class:`HandoffRejectedError` (study REJECTED).
    """

    def __init__(self, address: str, store_root: Path, timeout_s: float = 30.0) -> None:
        self._store_root = store_root.resolve()
        self._timeout_s = timeout_s
        self._classification_for: Callable[[str], str] | None = None
        self._channel = make_channel(address, "oncohabitat.v1.Pipeline", timeout_s=timeout_s)
        self._stub = pipeline_pb2_grpc.PipelineStub(self._channel)

    def __call__(self, study_key: str, content_digest: str, instance_paths: Sequence[Path], rerun: bool = False) -> str:
        relative = [str(Path(p).resolve().relative_to(self._store_root)) for p in instance_paths]
        request = pipeline_pb2.SubmitStudyRequest(
            study_key=study_key, content_digest=content_digest, instance_paths=relative, rerun=rerun
        )
        classification = self._classification_for(study_key) if self._classification_for is not None else ""
        if classification and json.loads(classification).get("eligible"):
            request.dce_classification_json = classification  # the study is classified once, here
        try:
            response = self._stub.SubmitStudy(request, timeout=self._timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if code in PERMANENT_CODES:
                raise HandoffRejectedError(f"orchestrator refused the study ({code.name})") from None  # type: ignore[union-attr]
            raise
        logger.info(
            "study handed off",
            extra={"study_key": study_key, "job_id": response.job_id, "job_created": response.created},
        )
        return response.job_id

    def use_classifications(self, classification_for: Callable[[str], str]) -> None:
        """Send each study's DCE classification JSON (from the index) with its hand-off."""
        self._classification_for = classification_for

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

"""gRPC servicer of the listener's admin API (proto <-> domain only)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import grpc

from oncohabitat.common.errors import InvalidInputError, NotFoundError, PreconditionError
from oncohabitat.listener.index import InstanceRecord, StudyIndex, StudyRecord, StudyState
from oncohabitat.listener.outbox import Outbox
from oncohabitat.v1 import common_pb2, listener_pb2, listener_pb2_grpc

_STUDY_KEY = re.compile(r"^[0-9a-f]{32}$")
MAX_PAGE = 1000
_SOP_CLASS_KINDS = {
    "1.2.840.10008.5.1.4.1.1.481.3": "rtstruct",
    "1.2.840.10008.5.1.4.1.1.66.4": "seg",
}


_PHASE_ROLES = {
    "pre-contrast": common_pb2.PHASE_ROLE_PRE_CONTRAST,
    "post-contrast": common_pb2.PHASE_ROLE_POST_CONTRAST,
}


def _rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _series_by_sop_class(instances: list[InstanceRecord]) -> list[listener_pb2.SeriesSummary]:
    grouped: dict[str, list[InstanceRecord]] = defaultdict(list)
    for record in instances:
        grouped[record.series_key].append(record)
    return [
        listener_pb2.SeriesSummary(
            series_key=series_key,
            modality=records[0].modality,
            sop_class=records[0].sop_class_uid,
            instance_count=len(records),
            classification=_SOP_CLASS_KINDS.get(records[0].sop_class_uid, "image"),
            reason="by SOP class (not classified yet)",
        )
        for series_key, records in sorted(grouped.items())
    ]


def _phase(payload: dict[str, Any]) -> common_pb2.Phase:
    return common_pb2.Phase(
        role=_PHASE_ROLES.get(str(payload.get("role")), common_pb2.PHASE_ROLE_UNSPECIFIED),
        index=int(payload.get("index", 0)),
        time_offset_s=float(payload.get("time_from_pre_s", 0.0)),
        series_key=str(payload.get("series_key", "")),
        time_after_injection_s=(
            float(payload["time_after_injection_s"]) if payload.get("time_after_injection_s") is not None else None
        ),
    )


def _series_from_classification(classification: dict[str, Any]) -> list[listener_pb2.SeriesSummary]:
    phases = {int(p["index"]): p for p in classification.get("phases", [])}
    summaries = [
        listener_pb2.SeriesSummary(
            series_key=str(item.get("series_key", "")),
            modality=str(item.get("modality", "")),
            sop_class=str(item.get("sop_class_uid", "")),
            instance_count=int(item.get("instance_count", 0)),
            classification=str(item.get("role", "")),
            reason=str(item.get("reason", "")),
            phases=[_phase(phases[int(i)]) for i in item.get("phase_indices", []) if int(i) in phases],
        )
        for item in classification.get("series", [])
    ]
    return sorted(summaries, key=lambda s: s.series_key)


def _classification(record: StudyRecord) -> dict[str, Any] | None:
    if not record.classification:
        return None
    try:
        payload = json.loads(record.classification)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def study_summary(record: StudyRecord, instances: list[InstanceRecord] | None = None) -> listener_pb2.StudySummary:
    """Index row (+ instances) -> StudySummary. Never carries UIDs or patient data.

    With instances, the series are those of the study's classification (roles, reasons and
    geometry-free phases) once it completed, else grouped by SOP class. ``reason`` is the state
    reason, or the classification's ``CODE: reason`` when there is none.
    """
    classification = _classification(record)
    series: list[listener_pb2.SeriesSummary] = []
    if instances is not None:
        series = (
            _series_from_classification(classification)
            if classification and classification.get("series")
            else _series_by_sop_class(instances)
        )
    reason = record.reason
    if not reason and classification:
        reason = f"{classification.get('reason_code', '')}: {classification.get('reason', '')}"
    return listener_pb2.StudySummary(
        study_key=record.study_key,
        state=f"STUDY_STATE_{record.state.value}",
        instance_count=record.instance_count,
        bytes_stored=record.bytes_stored,
        first_received_at=_rfc3339(record.first_received_at),
        last_received_at=_rfc3339(record.last_received_at),
        reason=reason,
        series=series,
        job_id=record.job_id or "",
    )


class ListenerAdminServicer(listener_pb2_grpc.ListenerAdminServicer):
    """List studies, show one study's series, re-submit a study to the orchestrator."""

    def __init__(self, index: StudyIndex, outbox: Outbox) -> None:
        self._index = index
        self._outbox = outbox

    def _record(self, study_key: str) -> StudyRecord:
        if not _STUDY_KEY.match(study_key):
            raise InvalidInputError("STUDY_KEY_INVALID", "study_key must be 32 lowercase hex characters", "study_key")
        record = self._index.get_study(study_key)
        if record is None:
            raise NotFoundError("STUDY_NOT_FOUND", "no study with this study_key", "study_key")
        return record

    def ListStudies(
        self, request: listener_pb2.ListStudiesRequest, context: grpc.ServicerContext
    ) -> listener_pb2.ListStudiesResponse:
        state = None
        if request.state != listener_pb2.STUDY_STATE_UNSPECIFIED:
            if request.state not in listener_pb2.StudyState.values():
                raise InvalidInputError("STATE_INVALID", "state is not a known study state", "state")
            state = StudyState(listener_pb2.StudyState.Name(request.state).removeprefix("STUDY_STATE_"))
        records = self._index.list_studies(state, min(request.page_size or 100, MAX_PAGE))
        return listener_pb2.ListStudiesResponse(studies=[study_summary(r) for r in records])

    def GetStudy(
        self, request: listener_pb2.GetStudyRequest, context: grpc.ServicerContext
    ) -> listener_pb2.StudySummary:
        record = self._record(request.study_key)
        return study_summary(record, self._index.instances(record.study_key))

    def ResubmitStudy(
        self, request: listener_pb2.ResubmitStudyRequest, context: grpc.ServicerContext
    ) -> listener_pb2.ResubmitStudyResponse:
        record = self._record(request.study_key)
        if record.state == StudyState.RECEIVING:
            raise PreconditionError("STUDY_RECEIVING", "the study is still receiving instances", "study_key")
        job_id = self._outbox.resubmit(record.study_key)
        if job_id is None:
            raise PreconditionError(
                "HANDOFF_PENDING",
                "the orchestrator did not take the re-run now; the study stays queued for an ordinary hand-off"
                " (which does not re-run finished content): call ResubmitStudy again",
                "study_key",
            )
        return listener_pb2.ResubmitStudyResponse(job_id=job_id)

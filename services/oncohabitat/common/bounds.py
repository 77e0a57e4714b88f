"""Size bounds of requests, per method, checked by the shared runtime before any servicer code runs.

gRPC's own limit (``max_message_bytes``, 64 MiB) is sized for the volume-carrying worker RPCs; a job id lookup
or a study listing has no business being megabytes. Requests beyond their method's bound are refused with
INVALID_ARGUMENT (the servicers bound each field further, e.g.
:func:`oncohabitat.orchestrator.submission.check_bounds`).
"""

from __future__ import annotations

from typing import Any

_SMALL = 16 * 1024
#: Largest serialized request per method, bytes; methods not listed are bounded by gRPC's message limit only.
MAX_REQUEST_BYTES: dict[str, int] = {
    "/oncohabitat.v1.Pipeline/SubmitStudy": 8 * 1024 * 1024,
    "/oncohabitat.v1.Pipeline/GetJob": _SMALL,
    "/oncohabitat.v1.Pipeline/WatchJob": _SMALL,
    "/oncohabitat.v1.Pipeline/ListJobs": _SMALL,
    "/oncohabitat.v1.Pipeline/GetResult": _SMALL,
    "/oncohabitat.v1.Pipeline/CancelJob": _SMALL,
    "/oncohabitat.v1.ListenerAdmin/ListStudies": _SMALL,
    "/oncohabitat.v1.ListenerAdmin/GetStudy": _SMALL,
    "/oncohabitat.v1.ListenerAdmin/ResubmitStudy": _SMALL,
    "/oncohabitat.v1.Scoring/Score": 4 * 1024 * 1024,
    "/oncohabitat.v1.Scoring/ListModels": _SMALL,
    "/oncohabitat.v1.Scoring/DescribeModel": _SMALL,
    "/oncohabitat.v1.Scoring/ReloadModels": _SMALL,
}


def request_too_large(method: str, request: Any) -> bool:
    """True when a unary request of ``method`` exceeds its bound."""
    limit = MAX_REQUEST_BYTES.get(method)
    byte_size = getattr(request, "ByteSize", None)
    return limit is not None and byte_size is not None and byte_size() > limit

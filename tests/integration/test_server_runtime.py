"""The shared gRPC bootstrap: health, error mapping, metrics, graceful stop (in-process real servers)."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from oncohabitat.common.channels import make_channel
from oncohabitat.common.errors import InvalidInputError, error_detail_from
from oncohabitat.common.server import ServiceRuntime
from oncohabitat.common.settings import ServiceSettings
from oncohabitat.v1 import scoring_pb2, scoring_pb2_grpc

pytestmark = pytest.mark.integration


class _Behaviour(scoring_pb2_grpc.ScoringServicer):
    """Score: raises a domain error, a leaky library error, or sleeps, depending on model_id."""

    def Score(self, request: scoring_pb2.ScoreRequest, context: grpc.ServicerContext) -> scoring_pb2.ScoreResponse:
        if request.model_id == "bad-input":
            raise InvalidInputError(
                "FEATURE_MISSING", "feature 'original_glcm_Correlation' is missing", "original_glcm_Correlation"
            )
        if request.model_id == "crash":
            raise RuntimeError("/data/DOE^JOHN/12345.dcm exploded")
        time.sleep(float(request.model_version or 0))
        return scoring_pb2.ScoreResponse(score=1.5, model_id=request.model_id)

    def ListModels(
        self, request: scoring_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> scoring_pb2.ListModelsResponse:
        return scoring_pb2.ListModelsResponse()


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[ServiceRuntime]:
    settings = ServiceSettings(port=0, metrics_port=0, data_dir=tmp_path, grace_period_s=5.0)
    servicer = _Behaviour()
    rt = ServiceRuntime(
        name="test",
        settings=settings,
        registrations=[lambda server: scoring_pb2_grpc.add_ScoringServicer_to_server(servicer, server)],
        service_names=["oncohabitat.v1.Scoring"],
    )
    rt.start()
    yield rt
    rt.stop(0)


def _stub(rt: ServiceRuntime) -> scoring_pb2_grpc.ScoringStub:
    return scoring_pb2_grpc.ScoringStub(make_channel(f"127.0.0.1:{rt.port}", "oncohabitat.v1.Scoring", timeout_s=10))


def _health(rt: ServiceRuntime, service: str = "") -> int:
    with grpc.insecure_channel(f"127.0.0.1:{rt.port}") as channel:
        return int(
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status
        )


def test_health_reports_serving_for_overall_and_each_service(runtime: ServiceRuntime) -> None:
    assert _health(runtime) == health_pb2.HealthCheckResponse.SERVING
    assert _health(runtime, "oncohabitat.v1.Scoring") == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as unknown:
        _health(runtime, "oncohabitat.v1.Nope")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_domain_error_maps_to_status_with_detail(runtime: ServiceRuntime) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        _stub(runtime).Score(scoring_pb2.ScoreRequest(model_id="bad-input"))
    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "original_glcm_Correlation" in excinfo.value.details()
    detail = error_detail_from(excinfo.value)
    assert detail is not None
    assert (detail.reason, detail.field) == ("FEATURE_MISSING", "original_glcm_Correlation")


def test_unexpected_error_is_internal_without_leaking_its_text(runtime: ServiceRuntime) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        _stub(runtime).Score(scoring_pb2.ScoreRequest(model_id="crash"))
    assert excinfo.value.code() == grpc.StatusCode.INTERNAL
    assert "DOE" not in excinfo.value.details() and "12345" not in excinfo.value.details()
    assert excinfo.value.details() == "internal error; the incident was logged"


def test_metrics_count_rpcs_by_method_and_code(runtime: ServiceRuntime) -> None:
    stub = _stub(runtime)
    stub.Score(scoring_pb2.ScoreRequest(model_id="ok"))
    with pytest.raises(grpc.RpcError):
        stub.Score(scoring_pb2.ScoreRequest(model_id="bad-input"))
    text = urllib.request.urlopen(f"http://127.0.0.1:{runtime.metrics_port}/metrics", timeout=5).read().decode()
    ok = (
        'oncohabitat_grpc_server_handled_total{grpc_code="OK",grpc_method="Score",'
        'grpc_service="oncohabitat.v1.Scoring"}'
    )
    bad = ok.replace('"OK"', '"INVALID_ARGUMENT"')
    assert ok in text and bad in text
    assert 'oncohabitat_grpc_server_handling_seconds_count{grpc_method="Score"' in text


def test_graceful_stop_finishes_in_flight_and_refuses_new(runtime: ServiceRuntime) -> None:
    stub = _stub(runtime)
    result: dict[str, object] = {}

    def slow_call() -> None:
        result["response"] = stub.Score(scoring_pb2.ScoreRequest(model_id="slow", model_version="1.0"))

    caller = threading.Thread(target=slow_call)
    caller.start()
    time.sleep(0.3)
    stopper = threading.Thread(target=runtime.stop)
    started = time.monotonic()
    stopper.start()
    time.sleep(0.1)
    with pytest.raises(grpc.RpcError) as refused:
        scoring_pb2_grpc.ScoringStub(grpc.insecure_channel(f"127.0.0.1:{runtime.port}")).Score(
            scoring_pb2.ScoreRequest(model_id="late"), timeout=2
        )
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    caller.join(5)
    stopper.join(6)
    response = result["response"]
    assert isinstance(response, scoring_pb2.ScoreResponse) and response.score == 1.5
    assert time.monotonic() - started < 4.0


def test_stop_cancels_calls_that_outlive_the_grace_period(runtime: ServiceRuntime) -> None:
    # a plain channel: the platform channels would retry the UNAVAILABLE answer against the stopped server
    stub = scoring_pb2_grpc.ScoringStub(grpc.insecure_channel(f"127.0.0.1:{runtime.port}"))
    errors: list[grpc.StatusCode] = []
    failed_at: list[float] = []

    def very_slow_call() -> None:
        try:
            stub.Score(scoring_pb2.ScoreRequest(model_id="slow", model_version="3.0"))
        except grpc.RpcError as exc:
            failed_at.append(time.monotonic())
            errors.append(exc.code())

    caller = threading.Thread(target=very_slow_call)
    caller.start()
    time.sleep(0.3)
    started = time.monotonic()
    runtime.stop(grace_s=0.5)
    caller.join(5)
    # the caller is answered when the grace period ends, not when the 3 s handler would have finished
    assert failed_at and failed_at[0] - started < 1.5
    assert errors and errors[0] in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)

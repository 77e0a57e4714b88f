"""Refusal matrix: every RPC of every service, called without a token, with a wrong or expired token, with each
role, with a client certificate of another CA, without one, and as plain TCP to the TLS server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from oncohabitat.common.auth import ROLES, TokenRecord, allowed_roles, hash_token, new_token, write_tokens_file
from oncohabitat.common.channels import make_channel
from oncohabitat.common.credentials import client_environment, ensure_credentials, service_environment
from oncohabitat.common.security import ClientSecurity, SecuritySettings
from oncohabitat.common.server import ServiceRuntime
from oncohabitat.common.settings import ServiceSettings
from tests.support.grpc_catalog import SERVICE_NAMES, Rpc, all_rpcs, register_unimplemented

RPCS = all_rpcs()


@dataclass
class Deployment:
    address: str
    tokens: dict[str, str]
    client: ClientSecurity
    other_ca: ClientSecurity
    audit_file: Path

    def as_(self, token: str | None, base: ClientSecurity | None = None) -> ClientSecurity:
        base = base or self.client
        return ClientSecurity(token, base.credentials, base.server_name)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("security")
    ensure_credentials(root / "data")
    ensure_credentials(root / "other")  # another deployment: another CA
    tokens = {role: new_token() for role in sorted(ROLES)}
    tokens["expired"] = new_token()
    records = [TokenRecord(f"{role}-id", hash_token(tokens[role]), frozenset({role})) for role in ROLES]
    records.append(
        TokenRecord("old", hash_token(tokens["expired"]), frozenset(ROLES), datetime.now(UTC) - timedelta(days=1))
    )
    write_tokens_file(root / "tokens.json", records)
    env = {**service_environment(root / "data"), "ONCOHABITAT_AUTH_TOKENS_FILE": str(root / "tokens.json")}
    security = SecuritySettings.model_validate({k.removeprefix("ONCOHABITAT_").lower(): v for k, v in env.items()})
    runtime = ServiceRuntime(
        "matrix", ServiceSettings(port=0, metrics_port=0), [register_unimplemented], SERVICE_NAMES, security=security
    )
    runtime.start()
    try:
        yield Deployment(
            f"127.0.0.1:{runtime.port}",
            tokens,
            ClientSecurity.from_environment(client_environment(root / "data")),
            ClientSecurity.from_environment(client_environment(root / "other")),
            Path(str(security.audit_file)),
        )
    finally:
        runtime.stop(0)


def _code(deployment: Deployment, rpc: Rpc, security: ClientSecurity) -> grpc.StatusCode:
    channel = make_channel(deployment.address, rpc.service, max_attempts=2, security=security)
    with channel:
        try:
            rpc.call(channel, rpc.request(), timeout=5)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return, attr-defined]
    return grpc.StatusCode.OK


@pytest.mark.parametrize("rpc", RPCS, ids=lambda r: r.path)
def test_every_rpc_refuses_missing_wrong_and_expired_tokens(deployment: Deployment, rpc: Rpc) -> None:
    assert _code(deployment, rpc, deployment.as_(None)) == grpc.StatusCode.UNAUTHENTICATED
    assert _code(deployment, rpc, deployment.as_(new_token())) == grpc.StatusCode.UNAUTHENTICATED
    assert _code(deployment, rpc, deployment.as_(deployment.tokens["expired"])) == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("rpc", RPCS, ids=lambda r: r.path)
def test_every_rpc_admits_exactly_its_roles(deployment: Deployment, rpc: Rpc) -> None:
    for role in sorted(ROLES):
        code = _code(deployment, rpc, deployment.as_(deployment.tokens[role]))
        # past authentication the generated base servicer answers UNIMPLEMENTED
        expected = (
            grpc.StatusCode.UNIMPLEMENTED if role in allowed_roles(rpc.path) else grpc.StatusCode.PERMISSION_DENIED
        )
        assert code == expected, role


@pytest.mark.parametrize("rpc", RPCS, ids=lambda r: r.path)
def test_every_rpc_refuses_other_ca_no_certificate_and_plain_tcp(deployment: Deployment, rpc: Rpc) -> None:
    admin = deployment.tokens["admin"]
    assert _code(deployment, rpc, deployment.as_(admin, deployment.other_ca)) == grpc.StatusCode.UNAVAILABLE
    no_cert = ClientSecurity(
        admin, grpc.ssl_channel_credentials(root_certificates=_ca_bytes(deployment)), deployment.client.server_name
    )
    assert _code(deployment, rpc, no_cert) == grpc.StatusCode.UNAVAILABLE
    assert _code(deployment, rpc, ClientSecurity(admin)) == grpc.StatusCode.UNAVAILABLE


def _ca_bytes(deployment: Deployment) -> bytes:
    return Path(str(SecuritySettings.model_validate(_env_values(deployment)).tls_ca_file)).read_bytes()


def _env_values(deployment: Deployment) -> dict[str, str]:
    data = deployment.audit_file.parent.parent  # <data>/logs/audit.jsonl
    return {k.removeprefix("ONCOHABITAT_").lower(): v for k, v in client_environment(data).items()}


def test_health_needs_no_token_and_reflection_is_off(deployment: Deployment) -> None:
    with make_channel(deployment.address, "grpc.health.v1.Health", security=deployment.as_(None)) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        reflection = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
        with pytest.raises(grpc.RpcError) as refused:
            list(reflection(iter([b""]), timeout=5))
        assert refused.value.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAUTHENTICATED)


def test_audit_events_name_the_token_id_never_the_secret(deployment: Deployment) -> None:
    before = len(deployment.audit_file.read_text().splitlines())
    rpc = next(r for r in RPCS if r.name == "GetJob")
    _code(deployment, rpc, deployment.as_(deployment.tokens["read"]))
    _code(deployment, rpc, deployment.as_(None))
    events = [json.loads(line) for line in deployment.audit_file.read_text().splitlines()[before:]]
    assert [(e["event_id"], e["user_id"], e["status"]) for e in events] == [
        ("grpc_access", "read-id", "UNIMPLEMENTED"),
        ("grpc_access", "", "UNAUTHENTICATED"),
    ]
    assert events[0]["certificate_subject"].find("oncohabitat-cli") >= 0
    text = deployment.audit_file.read_text()
    assert all(token not in text for token in deployment.tokens.values())


def test_oversized_requests_are_invalid_argument_before_any_servicer(deployment: Deployment) -> None:
    from oncohabitat.v1 import pipeline_pb2

    admin = deployment.as_(deployment.tokens["admin"])
    with make_channel(deployment.address, "oncohabitat.v1.Pipeline", security=admin) as channel:
        submit = channel.unary_unary(
            "/oncohabitat.v1.Pipeline/SubmitStudy",
            pipeline_pb2.SubmitStudyRequest.SerializeToString,
            pipeline_pb2.SubmitStudyResponse.FromString,
        )
        huge = pipeline_pb2.SubmitStudyRequest(study_key="ab" * 16, model_ids=["m" * 1000] * 60_000)  # ~60 MiB
        with pytest.raises(grpc.RpcError) as refused:
            submit(huge, timeout=60)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        get = channel.unary_unary(
            "/oncohabitat.v1.Pipeline/GetJob", pipeline_pb2.GetJobRequest.SerializeToString, pipeline_pb2.Job.FromString
        )
        with pytest.raises(grpc.RpcError) as long_id:
            get(pipeline_pb2.GetJobRequest(job_id="x" * 100_000), timeout=10)
        assert long_id.value.code() == grpc.StatusCode.INVALID_ARGUMENT

"""Client side of the standard gRPC health protocol (used by ``oncohabitat status`` and tests)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from oncohabitat.common.client_auth import secure_channel
from oncohabitat.common.security import ClientSecurity


def check_health(
    address: str, service: str = "", timeout_s: float = 2.0, security: ClientSecurity | None = None
) -> str:
    """Health status name of ``service`` at ``address`` (``SERVING``, ``NOT_SERVING``, ``UNREACHABLE``...).

    Health checks need no token; TLS is used when this process' settings (or ``security``) say so.
    """
    with secure_channel(address, [], security or ClientSecurity.from_env()) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return "UNREACHABLE"
            return code.name if code is not None else "UNKNOWN"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def main(argv: list[str] | None = None) -> int:
    """``python -m oncohabitat.common.health_client HOST:PORT [SERVER_NAME]``: exit 0 when SERVING.

    The exec probe of TLS deployments (the kubelet's own gRPC probe speaks no TLS): the process' TLS settings
    are used, ``SERVER_NAME`` is the name expected in the server certificate.
    """
    import sys
    from dataclasses import replace

    args = sys.argv[1:] if argv is None else argv
    security = ClientSecurity.from_env()
    if len(args) > 1:
        security = replace(security, server_name=args[1])
    state = check_health(args[0], timeout_s=4.0, security=security)
    print(state)
    return 0 if state == "SERVING" else 1


if __name__ == "__main__":
    raise SystemExit(main())

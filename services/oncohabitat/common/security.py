"""Deployment security settings (tokens, TLS, audit file) and the gRPC credentials built from them.

One set for every service of a deployment, read from ``ONCOHABITAT_*`` (no per-service prefix):

- ``ONCOHABITAT_AUTH_TOKENS_FILE``: hashed tokens with roles (servers check calls against it);
- ``ONCOHABITAT_AUTH_TOKEN_FILE``: the token this process sends when it calls a service (services: the
  ``service`` token; the CLI: an ``admin`` or ``read`` token);
- ``ONCOHABITAT_TLS_CERT_FILE`` / ``ONCOHABITAT_TLS_KEY_FILE``: server certificate and key (PEM); set = TLS on;
- ``ONCOHABITAT_TLS_CA_FILE``: CA that signed the servers' and clients' certificates (clients verify servers
  with it; servers require client certificates signed by it unless ``ONCOHABITAT_TLS_REQUIRE_CLIENT_CERT=false``);
- ``ONCOHABITAT_TLS_CLIENT_CERT_FILE`` / ``ONCOHABITAT_TLS_CLIENT_KEY_FILE``: the client certificate presented on
  outgoing calls (default: the server certificate, which ``oncohabitat up`` issues for both uses);
- ``ONCOHABITAT_TLS_SERVER_NAME``: the name clients expect in server certificates (default: the address' host);
- ``ONCOHABITAT_AUDIT_FILE``: also append audit events (JSON lines) to this file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SecuritySettings(BaseSettings):
    """Tokens, TLS material and audit destination of a deployment (environment prefix ``ONCOHABITAT_``)."""

    model_config = SettingsConfigDict(env_prefix="ONCOHABITAT_", extra="ignore", frozen=True)

    auth_tokens_file: Path | None = Field(None, description="Hashed tokens with roles; unset = authentication off.")
    auth_token_file: Path | None = Field(None, description="Token sent on this process' outgoing calls.")
    tls_cert_file: Path | None = Field(None, description="Server certificate (PEM); set = TLS on every server.")
    tls_key_file: Path | None = Field(None, description="Server private key (PEM).")
    tls_ca_file: Path | None = Field(None, description="CA of servers and clients (PEM).")
    tls_client_cert_file: Path | None = Field(None, description="Client certificate for outgoing calls (PEM).")
    tls_client_key_file: Path | None = Field(None, description="Client private key for outgoing calls (PEM).")
    tls_require_client_cert: bool = Field(True, description="Servers demand a client certificate from the CA.")
    tls_server_name: str = Field("", description="Name expected in server certificates (default: address host).")
    audit_file: Path | None = Field(None, description="Append audit events (JSON lines) to this file too.")

    @property
    def tls_enabled(self) -> bool:
        """True when servers serve TLS and clients speak it."""
        return self.tls_cert_file is not None and self.tls_key_file is not None


def server_credentials(settings: SecuritySettings) -> grpc.ServerCredentials | None:
    """TLS server credentials (mutual when a CA is set and client certificates are required); None = plaintext."""
    if not settings.tls_enabled:
        return None
    assert settings.tls_cert_file is not None and settings.tls_key_file is not None
    pair = [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())]
    ca = settings.tls_ca_file.read_bytes() if settings.tls_ca_file else None
    require = ca is not None and settings.tls_require_client_cert
    return grpc.ssl_server_credentials(pair, root_certificates=ca, require_client_auth=require)


@dataclass(frozen=True)
class ClientSecurity:
    """What an outgoing channel needs: the token to send and the TLS credentials (None = plaintext)."""

    token: str | None = None
    credentials: grpc.ChannelCredentials | None = None
    server_name: str = ""

    @classmethod
    def from_settings(cls, settings: SecuritySettings) -> ClientSecurity:
        """Read the token file and TLS material named by ``settings``."""
        token = settings.auth_token_file.read_text().strip() if settings.auth_token_file else None
        credentials = None
        if settings.tls_enabled or settings.tls_ca_file is not None:
            cert = settings.tls_client_cert_file or settings.tls_cert_file
            key = settings.tls_client_key_file or settings.tls_key_file
            credentials = grpc.ssl_channel_credentials(
                root_certificates=settings.tls_ca_file.read_bytes() if settings.tls_ca_file else None,
                private_key=key.read_bytes() if key else None,
                certificate_chain=cert.read_bytes() if cert else None,
            )
        return cls(token or None, credentials, settings.tls_server_name)

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> ClientSecurity:
        """Client security from ``ONCOHABITAT_*`` variables in ``env`` (e.g. :func:`credentials.client_environment`)."""
        values = {k.removeprefix("ONCOHABITAT_").lower(): v for k, v in env.items() if k.startswith("ONCOHABITAT_")}
        return cls.from_settings(SecuritySettings.model_validate(values))

    @classmethod
    def from_env(cls) -> ClientSecurity:
        """The process' client security from its ``ONCOHABITAT_*`` environment."""
        return cls.from_settings(SecuritySettings())

"""DICOM TLS (PS3.15 annex B.1): the server-side ``ssl.SSLContext`` of the listener."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from oncohabitat.listener.errors import ListenerConfigError


@dataclass(frozen=True)
class TlsConfig:
    """Server certificate and key (PEM); ``ca_file`` verifies client certificates.

    ``key_file``: None when ``cert_file`` holds the private key too (one PEM with both).
    ``require_client_cert``: refuse peers without a certificate signed by ``ca_file``.
    """

    cert_file: Path
    key_file: Path | None
    ca_file: Path | None = None
    require_client_cert: bool = False


def server_context(config: TlsConfig) -> ssl.SSLContext:
    """A TLS 1.2+ server context for ``config``; ListenerConfigError when a file is missing or
    unusable, or client certificates are required without a CA file."""
    if config.require_client_cert and config.ca_file is None:
        raise ListenerConfigError("requiring client certificates needs a CA file to verify them")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.cert_file, config.key_file)
        if config.ca_file is not None:
            context.load_verify_locations(cafile=config.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ListenerConfigError(f"TLS certificate, key or CA file cannot be loaded ({type(exc).__name__})") from exc
    if config.ca_file is not None:
        context.verify_mode = ssl.CERT_REQUIRED if config.require_client_cert else ssl.CERT_OPTIONAL
    return context

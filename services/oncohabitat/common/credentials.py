"""Credentials of a local deployment, generated once in ``<data_dir>/security`` by ``oncohabitat up``.

- ``study-key.secret``: the key of the keyed study hashes (:func:`oncohabitat.dicomio.identifiers.uid_key`);
- ``tokens.json``: the SHA-256 of two tokens with their roles (``admin``: the operator's CLI; ``service``: the
  platform's own calls); the tokens themselves in ``admin.token`` and ``service.token`` (mode 0600);
- ``ca.crt``/``ca.key``: a private CA (EC P-256, 10 years); ``server.crt``/``server.key``: the services'
  certificate (server and client use, names ``localhost``, ``oncohabitat``, 127.0.0.1, ::1 and the bind host);
  ``client.crt``/``client.key``: the CLI's client certificate (CN ``oncohabitat-cli``).

Existing files are kept, so restarts and the CLI keep working with the same material; delete the directory to
rotate everything. :func:`service_environment` / :func:`client_environment` give the ``ONCOHABITAT_*`` settings
that point a service or the CLI at them.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from oncohabitat.common.auth import ADMIN, SERVICE, TokenRecord, hash_token, new_token, write_tokens_file

SECURITY_DIR = "security"
#: The name clients expect in the generated server certificate.
SERVER_NAME = "oncohabitat"
_VALIDITY = timedelta(days=3650)


def security_dir(data_dir: Path) -> Path:
    """Where a deployment's generated credentials live."""
    return data_dir / SECURITY_DIR


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "OncoHabitat deployment"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _issue(
    common_name: str,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None,
    sans: list[x509.GeneralName],
    usages: list[x509.ObjectIdentifier],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    issuer_key, issuer_name = (key, _name(common_name)) if ca is None else (ca[0], ca[1].subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca is None, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return key, builder.sign(issuer_key, hashes.SHA256())


def _sans(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.DNSName(SERVER_NAME)]
    addresses = {"127.0.0.1", "::1", host}
    for address in sorted(addresses):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            if address:
                names.append(x509.DNSName(address))
    return names


def _ensure_study_key_secret(directory: Path) -> None:
    if not (directory / "study-key.secret").exists():
        _write_private(directory / "study-key.secret", secrets.token_hex(32).encode() + b"\n")


def _ensure_tokens(directory: Path) -> None:
    if (directory / "tokens.json").exists():
        return
    records = []
    for token_id, role in (("admin", ADMIN), ("service", SERVICE)):
        token = new_token()
        _write_private(directory / f"{token_id}.token", token.encode() + b"\n")
        records.append(TokenRecord(token_id, hash_token(token), frozenset({role})))
    write_tokens_file(directory / "tokens.json", records)


def _ensure_certificates(directory: Path, host: str) -> None:
    if (directory / "ca.crt").exists():
        return
    ca = _issue("OncoHabitat local CA", None, [], [])
    server = _issue(SERVER_NAME, ca, _sans(host), [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    client = _issue("oncohabitat-cli", ca, [], [ExtendedKeyUsageOID.CLIENT_AUTH])
    for stem, (key, cert) in (("server", server), ("client", client), ("ca", ca)):
        _write_private(directory / f"{stem}.key", _key_pem(key))
        (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure_credentials(data_dir: Path, host: str = "127.0.0.1", tls: bool = True) -> Path:
    """Create (once) the tokens and, with ``tls``, the certificates of a deployment; returns their directory."""
    directory = security_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    _ensure_tokens(directory)
    _ensure_study_key_secret(directory)
    if tls:
        _ensure_certificates(directory, host)
    return directory


def _tls_environment(directory: Path, stem: str) -> dict[str, str]:
    if not (directory / "ca.crt").exists():
        return {}
    env = {
        "ONCOHABITAT_TLS_CA_FILE": str(directory / "ca.crt"),
        "ONCOHABITAT_TLS_SERVER_NAME": SERVER_NAME,
        "ONCOHABITAT_TLS_CLIENT_CERT_FILE": str(directory / f"{stem}.crt"),
        "ONCOHABITAT_TLS_CLIENT_KEY_FILE": str(directory / f"{stem}.key"),
    }
    if stem == "server":
        env["ONCOHABITAT_TLS_CERT_FILE"] = str(directory / "server.crt")
        env["ONCOHABITAT_TLS_KEY_FILE"] = str(directory / "server.key")
    return env


def service_environment(data_dir: Path) -> dict[str, str]:
    """Settings of a service of this deployment: check tokens, call peers with the service token, TLS."""
    directory = security_dir(data_dir)
    return {
        "ONCOHABITAT_AUTH_TOKENS_FILE": str(directory / "tokens.json"),
        "ONCOHABITAT_AUTH_TOKEN_FILE": str(directory / "service.token"),
        "ONCOHABITAT_AUDIT_FILE": str(data_dir / "logs" / "audit.jsonl"),
        "ONCOHABITAT_STUDY_KEY_SECRET_FILE": str(directory / "study-key.secret"),
        **_tls_environment(directory, "server"),
    }


def client_environment(data_dir: Path) -> dict[str, str]:
    """Settings of the operator's CLI for this deployment: the admin token and the client certificate."""
    directory = security_dir(data_dir)
    if not (directory / "admin.token").exists():
        return {}
    return {
        "ONCOHABITAT_AUTH_TOKEN_FILE": str(directory / "admin.token"),
        # the operator's demos find their study's job by its key
        "ONCOHABITAT_STUDY_KEY_SECRET_FILE": str(directory / "study-key.secret"),
        **_tls_environment(directory, "client"),
    }

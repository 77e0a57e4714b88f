"""Bearer-token authentication and role-based authorisation of every gRPC call.

Tokens are random secrets; the deployment's *tokens file* stores only their SHA-256, each with an id (what
audit events name), roles and an optional expiry::

    {"tokens": [{"id": "admin", "sha256": "<hex>", "roles": ["admin"], "expires_at": "2027-01-01T00:00:00Z"}]}

Roles: ``submit`` (SubmitStudy, UploadStudy), ``read`` (jobs, results, studies, models), ``admin`` (everything,
e.g. CancelJob, ReloadModels, ResubmitStudy) and ``service`` (the platform's own calls between its services).
Health checks need no token. The file is re-read when it changes, so tokens can be rotated without a restart.

Settings (environment, the same for every service of a deployment; see the chart's ``auth``/``tls`` values):
``ONCOHABITAT_AUTH_TOKENS_FILE`` (hashed tokens; empty = authentication off, a WARNING says so),
``ONCOHABITAT_AUTH_TOKEN_FILE`` (the token this process presents when it calls another service).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger(__name__)

SUBMIT = "submit"
READ = "read"
ADMIN = "admin"
SERVICE = "service"
ROLES = frozenset({SUBMIT, READ, ADMIN, SERVICE})

#: Methods needing no token at all (load balancers and ``oncohabitat status`` probe them).
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)

_READERS = frozenset({READ, SUBMIT, ADMIN, SERVICE})
_PLATFORM = frozenset({ADMIN, SERVICE})

#: Roles allowed per method (full gRPC method name). A method not listed needs ``admin`` or ``service``.
METHOD_ROLES: dict[str, frozenset[str]] = {
    "/oncohabitat.v1.Pipeline/SubmitStudy": frozenset({SUBMIT, ADMIN, SERVICE}),
    "/oncohabitat.v1.Pipeline/UploadStudy": frozenset({SUBMIT, ADMIN, SERVICE}),
    "/oncohabitat.v1.Pipeline/GetJob": _READERS,
    "/oncohabitat.v1.Pipeline/WatchJob": _READERS,
    "/oncohabitat.v1.Pipeline/ListJobs": _READERS,
    "/oncohabitat.v1.Pipeline/GetResult": _READERS,
    "/oncohabitat.v1.Pipeline/CancelJob": _PLATFORM,
    "/oncohabitat.v1.ListenerAdmin/ListStudies": _READERS,
    "/oncohabitat.v1.ListenerAdmin/GetStudy": _READERS,
    "/oncohabitat.v1.ListenerAdmin/ResubmitStudy": _PLATFORM,
    "/oncohabitat.v1.Scoring/Score": frozenset({READ, ADMIN, SERVICE}),
    "/oncohabitat.v1.Scoring/ListModels": _READERS,
    "/oncohabitat.v1.Scoring/DescribeModel": _READERS,
    "/oncohabitat.v1.Scoring/ReloadModels": _PLATFORM,
}
#: Server reflection (only served when enabled): any authenticated caller.
REFLECTION_PREFIX = "/grpc.reflection."


def allowed_roles(method: str) -> frozenset[str]:
    """Roles any one of which allows calling ``method``."""
    if method.startswith(REFLECTION_PREFIX):
        return ROLES
    return METHOD_ROLES.get(method, _PLATFORM)


def is_open(method: str) -> bool:
    """True for methods callable without a token (health checks)."""
    return method.startswith(OPEN_PREFIXES)


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token (tokens are 256-bit random, so a fast hash is enough)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (URL-safe, 256 bits)."""
    return "oht_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who is calling: token id (never the secret) and roles; ``subject`` is the client certificate's, if any."""

    id: str
    roles: frozenset[str]
    subject: str = ""


#: The principal of the RPC running in this thread (set by the auth interceptor; None when auth is off).
current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal", default=None)


def caller_has(role: str) -> bool:
    """True when the current call's principal holds ``role``, or when authentication is off (no principal)."""
    principal = current_principal.get()
    return principal is None or role in principal.roles


class AuthError(Exception):
    """A call is refused: ``unauthenticated`` (no/unknown/expired token) or not (wrong role)."""

    def __init__(self, message: str, unauthenticated: bool) -> None:
        super().__init__(message)
        self.message = message
        self.unauthenticated = unauthenticated


@dataclass(frozen=True)
class TokenRecord:
    """One entry of the tokens file."""

    id: str
    sha256: str
    roles: frozenset[str]
    expires_at: datetime | None = None

    def to_json(self) -> dict[str, object]:
        """The entry as stored in the tokens file."""
        entry: dict[str, object] = {"id": self.id, "sha256": self.sha256, "roles": sorted(self.roles)}
        if self.expires_at is not None:
            entry["expires_at"] = self.expires_at.isoformat().replace("+00:00", "Z")
        return entry


def _parse_record(entry: object) -> TokenRecord:
    if not isinstance(entry, dict):
        raise ValueError("each token must be an object")
    roles = frozenset(entry.get("roles", ()))
    if not roles or not roles <= ROLES:
        raise ValueError(f"token {entry.get('id')!r}: roles must be among {sorted(ROLES)}")
    sha = str(entry.get("sha256", ""))
    if len(sha) != 64:
        raise ValueError(f"token {entry.get('id')!r}: sha256 must be 64 hex characters")
    expires = entry.get("expires_at")
    expires_at = datetime.fromisoformat(str(expires).replace("Z", "+00:00")) if expires else None
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    return TokenRecord(str(entry["id"]), sha.lower(), roles, expires_at)


def read_tokens_file(path: Path) -> list[TokenRecord]:
    """Parse a tokens file. Raises ValueError naming what is wrong (never a token hash)."""
    data = json.loads(path.read_text())
    entries = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected {{'tokens': [...]}}")
    return [_parse_record(entry) for entry in entries]


def write_tokens_file(path: Path, records: list[TokenRecord]) -> None:
    """Write a tokens file (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"tokens": [r.to_json() for r in records]}, indent=2) + "\n")
    path.chmod(0o600)


class TokenStore:
    """The tokens file, re-read when its modification time changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._mtime_ns = -1
        self._by_hash: dict[str, TokenRecord] = {}
        self._reload()

    def _reload(self) -> None:
        mtime = self._path.stat().st_mtime_ns
        if mtime == self._mtime_ns:
            return
        records = read_tokens_file(self._path)
        self._by_hash = {record.sha256: record for record in records}
        self._mtime_ns = mtime
        logger.info("auth tokens loaded", extra={"token_count": len(records)})

    def authenticate(self, token: str, subject: str = "") -> Principal:
        """The principal of a presented token. Raises :class:`AuthError` (unauthenticated) when unknown/expired."""
        with self._lock:
            try:
                self._reload()
            except (OSError, ValueError) as exc:  # keep the last good set; say why once per change
                logger.error("auth tokens file unreadable: %s", type(exc).__name__)
            record = self._by_hash.get(hash_token(token))
        if record is None:
            raise AuthError("token not accepted", unauthenticated=True)
        if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
            raise AuthError("token expired", unauthenticated=True)
        return Principal(record.id, record.roles, subject)


def bearer_token(metadata: object) -> str | None:
    """The token of an ``authorization: Bearer <token>`` metadata entry, if any."""
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == "authorization" and isinstance(value, str) and value[:7].lower() == "bearer ":
            return value[7:].strip()
    return None


def authorise(principal: Principal, method: str) -> None:
    """Raise :class:`AuthError` (permission denied) unless ``principal`` may call ``method``."""
    needed = allowed_roles(method)
    if not principal.roles & needed:
        raise AuthError(f"this call needs one of the roles {', '.join(sorted(needed))}", unauthenticated=False)

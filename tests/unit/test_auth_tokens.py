"""Tokens file: hashed storage, roles, expiry, rotation without restart; generated deployment credentials."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from oncohabitat.common.auth import (
    ADMIN,
    READ,
    AuthError,
    TokenRecord,
    TokenStore,
    authorise,
    bearer_token,
    hash_token,
    new_token,
    read_tokens_file,
    write_tokens_file,
)
from oncohabitat.common.credentials import client_environment, ensure_credentials, service_environment


def test_tokens_file_holds_hashes_and_roles_only(tmp_path: Path) -> None:
    token = new_token()
    write_tokens_file(tmp_path / "t.json", [TokenRecord("ops", hash_token(token), frozenset({READ}))])
    assert token not in (tmp_path / "t.json").read_text()
    assert stat.S_IMODE((tmp_path / "t.json").stat().st_mode) == 0o600
    principal = TokenStore(tmp_path / "t.json").authenticate(token)
    assert (principal.id, principal.roles) == ("ops", frozenset({READ}))


def test_unknown_expired_and_wrong_role_are_refused(tmp_path: Path) -> None:
    token, old = new_token(), new_token()
    past = datetime.now(UTC) - timedelta(seconds=1)
    write_tokens_file(
        tmp_path / "t.json",
        [
            TokenRecord("r", hash_token(token), frozenset({READ})),
            TokenRecord("o", hash_token(old), frozenset({ADMIN}), past),
        ],
    )
    store = TokenStore(tmp_path / "t.json")
    with pytest.raises(AuthError) as unknown:
        store.authenticate(new_token())
    assert unknown.value.unauthenticated
    with pytest.raises(AuthError, match="expired"):
        store.authenticate(old)
    with pytest.raises(AuthError) as denied:
        authorise(store.authenticate(token), "/oncohabitat.v1.Pipeline/CancelJob")
    assert not denied.value.unauthenticated
    authorise(store.authenticate(token), "/oncohabitat.v1.Pipeline/GetJob")


def test_rotation_is_picked_up_without_restart(tmp_path: Path) -> None:
    first, second = new_token(), new_token()
    path = tmp_path / "t.json"
    write_tokens_file(path, [TokenRecord("a", hash_token(first), frozenset({READ}))])
    store = TokenStore(path)
    store.authenticate(first)
    write_tokens_file(path, [TokenRecord("b", hash_token(second), frozenset({READ}))])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert store.authenticate(second).id == "b"
    with pytest.raises(AuthError):
        store.authenticate(first)


def test_bad_roles_are_refused_when_reading(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text('{"tokens": [{"id": "x", "sha256": "' + "0" * 64 + '", "roles": ["root"]}]}')
    with pytest.raises(ValueError, match="roles"):
        read_tokens_file(tmp_path / "t.json")


def test_bearer_metadata() -> None:
    assert bearer_token([("authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("authorization", "Basic abc")]) is None
    assert bearer_token([]) is None


def test_generated_credentials_are_private_stable_and_complete(tmp_path: Path) -> None:
    directory = ensure_credentials(tmp_path)
    tokens = read_tokens_file(directory / "tokens.json")
    assert {t.id: t.roles for t in tokens} == {"admin": frozenset({"admin"}), "service": frozenset({"service"})}
    admin = (directory / "admin.token").read_text().strip()
    ensure_credentials(tmp_path)  # kept on restart
    assert (directory / "admin.token").read_text().strip() == admin
    for name in ("admin.token", "service.token", "ca.key", "server.key", "client.key"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    assert service_environment(tmp_path)["ONCOHABITAT_AUTH_TOKEN_FILE"].endswith("service.token")
    assert client_environment(tmp_path)["ONCOHABITAT_AUTH_TOKEN_FILE"].endswith("admin.token")
    assert "ONCOHABITAT_TLS_CERT_FILE" not in client_environment(tmp_path)


def test_token_cli_adds_lists_and_revokes(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from oncohabitat.cli import app

    path, runner = tmp_path / "tokens.json", CliRunner()
    added = runner.invoke(app, ["token", "add", "ris", "--role", "submit", "--tokens-file", str(path)])
    assert added.exit_code == 0, added.output
    token = added.output.strip().splitlines()[-1]
    assert TokenStore(path).authenticate(token).id == "ris" and token not in path.read_text()
    assert runner.invoke(app, ["token", "add", "x", "--role", "root", "--tokens-file", str(path)]).exit_code == 2
    assert runner.invoke(app, ["token", "remove", "ris", "--tokens-file", str(path)]).exit_code == 0
    assert read_tokens_file(path) == []

"""``oncohabitat token``: add, list and remove API tokens in a tokens file (only hashes are stored).

The tokens file is re-read by every service when it changes: a token added or removed here takes effect on the
next call, without a restart. The new token is printed once; keep it in the client's secret store.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from oncohabitat.common.auth import ROLES, TokenRecord, hash_token, new_token, read_tokens_file, write_tokens_file

token_app = typer.Typer(help="API tokens (roles: submit, read, admin, service) of a deployment's tokens file.")
console = Console()

TokensFile = Annotated[
    Path,
    typer.Option(
        "--tokens-file",
        envvar="ONCOHABITAT_AUTH_TOKENS_FILE",
        help="Tokens file (`up`: <data-dir>/security/tokens.json).",
    ),
]
_DEFAULT = Path(".oncohabitat/security/tokens.json")


def _records(path: Path) -> list[TokenRecord]:
    return read_tokens_file(path) if path.exists() else []


@token_app.command("add")
def add(
    token_id: Annotated[str, typer.Argument(help="Name of the client (shown in audit events).")],
    role: Annotated[list[str], typer.Option("--role", help="Role to grant (repeatable).")],
    expires_days: Annotated[float | None, typer.Option(help="Expire after this many days.")] = None,
    tokens_file: TokensFile = _DEFAULT,
) -> None:
    """Create a token with the given roles; prints it once."""
    roles = frozenset(role)
    if not roles or not roles <= ROLES:
        console.print(f"[red]roles must be among {', '.join(sorted(ROLES))}[/red]")
        raise typer.Exit(2)
    records = _records(tokens_file)
    if any(r.id == token_id for r in records):
        console.print(f"[red]a token named {token_id!r} exists; remove it first[/red]")
        raise typer.Exit(2)
    token = new_token()
    expires = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
    write_tokens_file(tokens_file, [*records, TokenRecord(token_id, hash_token(token), roles, expires)])
    print(token)


@token_app.command("list")
def list_tokens(tokens_file: TokensFile = _DEFAULT) -> None:
    """Token ids, roles and expiry (never the tokens or their hashes)."""
    table = Table(title=str(tokens_file))
    for column in ("id", "roles", "expires"):
        table.add_column(column)
    for record in _records(tokens_file):
        table.add_row(record.id, ", ".join(sorted(record.roles)), str(record.expires_at or "never"))
    console.print(table)


@token_app.command("remove")
def remove(token_id: str, tokens_file: TokensFile = _DEFAULT) -> None:
    """Revoke a token (effective at the services' next call)."""
    records = _records(tokens_file)
    kept = [r for r in records if r.id != token_id]
    if len(kept) == len(records):
        console.print(f"[red]no token named {token_id!r}[/red]")
        raise typer.Exit(1)
    write_tokens_file(tokens_file, kept)

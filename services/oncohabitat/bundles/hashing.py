"""SHA-256 helpers shared by bundle verification and feature provenance."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_CHUNK_BYTES = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """Lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Lowercase hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_json(value: Mapping[str, Any]) -> str:
    """Canonical JSON text of a mapping: sorted keys, no whitespace, ASCII only, NaN/inf refused.

    Two mappings that are equal as JSON data give the same text, whatever their key order or the
    formatting of the file they came from, so the hash of this text identifies a configuration.

    Raises:
        ValueError: the mapping holds NaN/inf, which JSON cannot represent.
        TypeError: the mapping holds a value JSON cannot represent.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def canonical_json_sha256(value: Mapping[str, Any]) -> str:
    """SHA-256 of :func:`canonical_json` of ``value`` (UTF-8 bytes)."""
    return sha256_bytes(canonical_json(value).encode("utf-8"))

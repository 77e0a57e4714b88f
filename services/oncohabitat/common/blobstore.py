"""Durable content-addressed store for large arrays (the "study store").

Volumes larger than the inline limit are written here once and passed between services as a
:class:`~oncohabitat.v1.common_pb2.BlobRef` (SHA-256 + size). Every service of a deployment mounts the same
directory (local disk for ``oncohabitat up``; a ReadWriteMany volume in Kubernetes). Writes are atomic and
durable: temporary file, fsync, rename, fsync of the directory. Paths come only from hex digests.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import cast

from oncohabitat.common.errors import InvalidInputError, NotFoundError

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def fsync_directory(path: Path) -> None:
    """fsync a directory so that a rename inside it is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _libc_function(name: str, argtypes: list[type]) -> Callable[..., int] | None:
    """A libc function by name with its argument types (Linux), or None where the C library lacks it."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = getattr(libc, name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return cast(Callable[..., int], function)


_SYNCFS = _libc_function("syncfs", [ctypes.c_int])


def sync_filesystem(path: Path) -> None:
    """Make every write to the file system holding ``path`` durable (``syncfs``; ``sync`` elsewhere).

    One call flushes many files, their directories and other databases on the same file system
    (ctypes releases the GIL during the call).

    Raises:
        OSError: the file system reported a write-back error.
    """
    if _SYNCFS is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if _SYNCFS(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (temp file in the same directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


class BlobStore:
    """Content-addressed files under ``root/<2 hex>/<64 hex>``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, sha256: str) -> Path:
        if not _HEX64.match(sha256):
            raise InvalidInputError("BLOB_REF_INVALID", "blob reference is not a SHA-256 hex digest", "sha256")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data`` (idempotent) and return its SHA-256 hex digest."""
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if not path.exists():
            atomic_write(path, data)
        return digest

    def get(self, sha256: str, verify: bool = True) -> bytes:
        """The stored bytes; raises NotFoundError if absent, InvalidInputError if corrupted."""
        path = self._path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError("BLOB_NOT_FOUND", "referenced array is not in the study store", "blob") from None
        if verify and hashlib.sha256(data).hexdigest() != sha256:
            raise InvalidInputError("BLOB_CORRUPT", "stored array does not match its digest", "blob")
        return data

    def exists(self, sha256: str) -> bool:
        """Whether a blob with this digest is stored."""
        return self._path(sha256).exists()

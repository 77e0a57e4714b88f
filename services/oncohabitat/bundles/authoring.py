"""Writing new bundles (training recipes, tests): validate, lay out and verify in one call."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from oncohabitat.bundles import errors
from oncohabitat.bundles.errors import BundleError
from oncohabitat.bundles.hashing import sha256_bytes
from oncohabitat.bundles.loader import Bundle, load_bundle, parse_manifest
from oncohabitat.bundles.manifest import MANIFEST_NAME, check_relative_path


def write_bundle(root: Path | str, manifest: Mapping[str, Any], files: Mapping[str, bytes] | None = None) -> Bundle:
    """Create bundle ``<root>/<id>/<version>/`` from a manifest document and its other files.

    The manifest's ``files`` entry is replaced by the SHA-256 of ``files``; the completed manifest is
    validated before anything is written, and the written bundle is verified with
    :func:`~oncohabitat.bundles.loader.load_bundle`.

    Args:
        root: bundle root directory (created if needed).
        manifest: the manifest as JSON data.
        files: bundle-relative POSIX path -> content of every other file (e.g. a serialised model).

    Returns:
        The verified bundle.

    Raises:
        BundleError: ``SCHEMA_INVALID`` (nothing written), ``LAYOUT_INVALID`` when a path is not a clean
            relative path or the bundle directory already exists.
    """
    contents = dict(files or {})
    for relative in contents:
        try:
            check_relative_path(relative)
        except ValueError as exc:
            raise BundleError(errors.LAYOUT_INVALID, str(exc)) from exc
    document = {**manifest, "files": {relative: sha256_bytes(contents[relative]) for relative in sorted(contents)}}
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    parsed = parse_manifest(text)
    directory = Path(root) / parsed.id / parsed.version
    if directory.exists():
        raise BundleError(errors.LAYOUT_INVALID, f"bundle directory {parsed.id}/{parsed.version} already exists")
    directory.mkdir(parents=True)
    for relative, content in contents.items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    (directory / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return load_bundle(directory)

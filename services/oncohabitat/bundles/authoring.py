"""Writing new bundles (training recipes, tests): validate, lay out and verify in one call.

:func:`write_bundle` writes a bundle of any kind; :func:`write_scoring_bundle` adds the test vectors a scoring
bundle must carry (computed by the caller, independently of the serving engine, e.g. by scikit-learn).
Nothing here imports a training library.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from oncohabitat.bundles import errors
from oncohabitat.bundles.errors import BundleError
from oncohabitat.bundles.hashing import sha256_bytes
from oncohabitat.bundles.loader import Bundle, load_bundle, parse_manifest
from oncohabitat.bundles.manifest import MANIFEST_NAME, check_relative_path
from oncohabitat.bundles.vectors import VectorFile

#: File name of the test vectors in bundles written by :func:`write_scoring_bundle`.
TEST_VECTORS_NAME = "test_vectors.json"


def write_bundle(
    root: Path | str, manifest: Mapping[str, Any], files: Mapping[str, bytes] | None = None
) -> Bundle[Any]:
    """Create bundle ``<root>/<kind>/<id>/<version>/`` from a manifest document and its other files.

    The manifest's ``files`` entry is replaced by the SHA-256 of ``files``; the completed manifest is
    validated before anything is written, and the written bundle is verified with
    :func:`~oncohabitat.bundles.loader.load_bundle`.

    Args:
        root: bundle root directory (created if needed).
        manifest: the manifest as JSON data (``kind`` chooses the folder).
        files: bundle-relative POSIX path -> content of every other file (e.g. a serialised model).

    Raises:
        BundleError: ``SCHEMA_INVALID`` (nothing written), ``LAYOUT_INVALID`` when a path is not a clean
            relative path or the bundle directory already exists.
    """
    contents = dict(files or {})
    for relative in contents:
        try:
            check_relative_path(relative)
        except ValueError as exc:
            raise BundleError(errors.LAYOUT_INVALID, f"file path {relative!r} is not a clean relative path") from exc
    document = {**manifest, "files": {relative: sha256_bytes(contents[relative]) for relative in sorted(contents)}}
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    parsed = parse_manifest(text)
    directory = Path(root) / parsed.kind / parsed.id / parsed.version
    if directory.exists():
        raise BundleError(errors.LAYOUT_INVALID, f"bundle directory {parsed.id}/{parsed.version} already exists")
    directory.mkdir(parents=True)
    for relative, content in contents.items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    (directory / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return load_bundle(directory)


def vectors_bytes(cases: Sequence[Mapping[str, Any]]) -> bytes:
    """Serialised, validated test-vector file for ``cases`` (see :mod:`oncohabitat.bundles.vectors`).

    Floats are written with ``repr`` precision, so a replay compares against the exact computed values.

    Raises:
        BundleError: ``SCHEMA_INVALID`` when a case does not follow the schema.
    """
    document = {"format": "oncohabitat.test-vectors", "format_version": 1, "cases": list(cases)}
    try:
        VectorFile.model_validate(document)
    except ValidationError as exc:
        raise BundleError(errors.SCHEMA_INVALID, f"test vectors: {exc.errors()[0]['msg']}") from exc
    return (json.dumps(document, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")


def write_scoring_bundle(
    root: Path | str,
    manifest: Mapping[str, Any],
    vectors: Sequence[Mapping[str, Any]],
    files: Mapping[str, bytes] | None = None,
) -> Bundle[Any]:
    """Write a scoring bundle with its test vectors (``test_vectors.json``) and any model files.

    Args:
        root: bundle root (the bundle goes to ``<root>/scoring/<id>/<version>/``).
        manifest: the manifest as JSON data; ``test_vectors`` and ``files`` are filled in.
        vectors: cases ``{"features": ..., "covariates": ..., "expected": ...}`` computed by the caller.
        files: other files, e.g. ``{"model.onnx": ...}``.
    """
    contents = {**(files or {}), TEST_VECTORS_NAME: vectors_bytes(vectors)}
    return write_bundle(root, {**manifest, "test_vectors": TEST_VECTORS_NAME}, contents)

"""Optional Ed25519 signatures of bundle manifests (``manifest.sig`` beside ``manifest.json``).

The signature covers the exact bytes of ``manifest.json``; since the manifest pins every other file by
SHA-256, it covers the whole bundle. ``manifest.sig`` holds the 64-byte signature in base64 (one line). A
deployment configures the public key (PEM, ``SubjectPublicKeyInfo``) and whether a signature is required.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from oncohabitat.bundles import errors
from oncohabitat.bundles.errors import BundleError
from oncohabitat.bundles.manifest import MANIFEST_NAME, SIGNATURE_NAME


@dataclass(frozen=True)
class TrustPolicy:
    """Which signatures a loader accepts.

    Attributes:
        public_key: the key that must verify ``manifest.sig``; None = signatures are not checked.
        required: refuse a bundle without ``manifest.sig`` (needs ``public_key``).
    """

    public_key: Ed25519PublicKey | None = None
    required: bool = False

    @classmethod
    def from_files(cls, public_key_file: Path | None, required: bool) -> TrustPolicy:
        """Policy from a PEM public-key file (or None).

        Raises:
            BundleError: ``SIGNATURE_INVALID`` when the file is not an Ed25519 public key; ``SIGNATURE_MISSING``
                when a signature is required but no key is configured.
        """
        if public_key_file is None:
            if required:
                raise BundleError(errors.SIGNATURE_MISSING, "signatures are required but no public key is configured")
            return cls(None, False)
        try:
            key = serialization.load_pem_public_key(public_key_file.read_bytes())
        except (OSError, ValueError) as exc:
            raise BundleError(errors.SIGNATURE_INVALID, "the configured public key is not a readable PEM key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise BundleError(errors.SIGNATURE_INVALID, "the configured public key is not an Ed25519 key")
        return cls(key, required)


def verify_signature(directory: Path, manifest_bytes: bytes, policy: TrustPolicy | None, label: str) -> bool:
    """Check ``manifest.sig`` in ``directory`` against ``policy``; returns whether a signature was verified.

    Raises:
        BundleError: ``SIGNATURE_MISSING`` (required, absent) or ``SIGNATURE_INVALID`` (malformed, or it does
            not verify with the configured key).
    """
    path = directory / SIGNATURE_NAME
    if not path.is_file():
        if policy is not None and policy.required:
            raise BundleError(errors.SIGNATURE_MISSING, f"{label}: {SIGNATURE_NAME} is required and missing")
        return False
    if policy is None or policy.public_key is None:
        return False
    try:
        signature = base64.b64decode(path.read_text(encoding="ascii").strip(), validate=True)
    except (UnicodeDecodeError, binascii.Error) as exc:
        raise BundleError(errors.SIGNATURE_INVALID, f"{label}: {SIGNATURE_NAME} is not base64") from exc
    try:
        policy.public_key.verify(signature, manifest_bytes)
    except InvalidSignature as exc:
        raise BundleError(
            errors.SIGNATURE_INVALID, f"{label}: {SIGNATURE_NAME} does not verify {MANIFEST_NAME} with the key"
        ) from exc
    return True


def sign_manifest(directory: Path, private_key: Ed25519PrivateKey) -> Path:
    """Write ``manifest.sig`` for the current ``manifest.json`` of ``directory`` (authoring)."""
    signature = private_key.sign((directory / MANIFEST_NAME).read_bytes())
    path = directory / SIGNATURE_NAME
    path.write_text(base64.b64encode(signature).decode("ascii") + "\n", encoding="ascii")
    return path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An unencrypted PEM (PKCS#8) Ed25519 private key.

    Raises:
        BundleError: ``SIGNATURE_INVALID`` when it is not one.
    """
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise BundleError(errors.SIGNATURE_INVALID, "the private key is not a readable unencrypted PEM key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(errors.SIGNATURE_INVALID, "the private key is not an Ed25519 key")
    return key

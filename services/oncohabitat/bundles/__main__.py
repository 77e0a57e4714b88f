"""Bundle authoring CLI: ``python -m oncohabitat.bundles {seal,verify,sign,list,lock} PATH``.

``seal`` rewrites the ``files`` hashes of one bundle and verifies it; ``verify`` verifies one bundle; ``sign``
writes its ``manifest.sig`` with ``--key`` (PEM Ed25519 private key); ``list`` verifies every bundle of every
kind under a root and prints ``kind/id/version manifest_sha256``; ``lock`` does the same and pins those hashes
in ``<root>/bundles.lock.json`` (services refuse a bundle whose manifest no longer matches the lock). Exit
status 1 and a ``REASON: message`` line on stderr when a bundle is invalid.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from oncohabitat.bundles.errors import BundleError
from oncohabitat.bundles.loader import Bundle, load_bundle, seal_bundle
from oncohabitat.bundles.manifest import BUNDLE_KINDS
from oncohabitat.bundles.registry import bundle_dirs, write_lock
from oncohabitat.bundles.signature import load_private_key, sign_manifest


def _line(bundle: Bundle[Any]) -> str:
    return f"{bundle.key} {bundle.manifest_sha256}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m oncohabitat.bundles", description=__doc__)
    parser.add_argument("command", choices=("seal", "verify", "sign", "list", "lock"))
    parser.add_argument("path", help="bundle directory (seal, verify, sign) or bundle root (list, lock)")
    parser.add_argument("--key", type=Path, help="sign: PEM Ed25519 private key")
    args = parser.parse_args(argv)
    try:
        if args.command == "seal":
            print(_line(seal_bundle(args.path)))
        elif args.command == "verify":
            print(_line(load_bundle(args.path)))
        elif args.command == "sign":
            if args.key is None:
                parser.error("sign needs --key")
            print(sign_manifest(Path(args.path), load_private_key(args.key)))
        elif args.command == "lock":
            for key, digest in write_lock(args.path).items():
                print(f"{key} {digest}")
        else:
            for kind in BUNDLE_KINDS:
                for _key, directory in bundle_dirs(Path(args.path), kind):
                    print(_line(load_bundle(directory, kind=kind)))
    except BundleError as exc:
        print(f"{exc.reason}: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

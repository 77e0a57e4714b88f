"""Bundle authoring CLI: ``python -m oncohabitat.bundles {seal,verify,list} PATH``.

``seal`` rewrites the ``files`` hashes of one bundle and verifies it; ``verify`` verifies one bundle;
``list`` verifies every bundle under a root and prints ``id version manifest_sha256``; ``lock`` verifies every
bundle under a root and pins their manifest hashes in ``<root>/bundles.lock.json`` (the scoring service refuses
a bundle whose manifest no longer matches the lock). Exit status 1 and a
``REASON: message`` line on stderr when a bundle is invalid.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from oncohabitat.bundles.errors import BundleError
from oncohabitat.bundles.loader import Bundle, load_bundle, seal_bundle
from oncohabitat.bundles.registry import load_bundles, write_lock


def _line(bundle: Bundle) -> str:
    return f"{bundle.id} {bundle.version} {bundle.manifest_sha256}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m oncohabitat.bundles", description=__doc__)
    parser.add_argument("command", choices=("seal", "verify", "list", "lock"))
    parser.add_argument("path", help="bundle directory (seal, verify) or bundle root (list, lock)")
    args = parser.parse_args(argv)
    try:
        if args.command == "seal":
            print(_line(seal_bundle(args.path)))
        elif args.command == "verify":
            print(_line(load_bundle(args.path)))
        elif args.command == "lock":
            for key, digest in write_lock(args.path).items():
                print(f"{key} {digest}")
        else:
            for bundle in load_bundles(args.path):
                print(_line(bundle))
    except BundleError as exc:
        print(f"{exc.reason}: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

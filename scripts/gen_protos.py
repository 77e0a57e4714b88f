"""Generate Python stubs (messages, gRPC, type stubs) from protos/ into services/.

Usage:
    python scripts/gen_protos.py            # (re)generate into services/oncohabitat/v1/
    python scripts/gen_protos.py --check    # fail if the committed stubs differ from a fresh generation

The generated files are never edited by hand.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"
OUT_ROOT = ROOT / "services"
PACKAGE_DIR = Path("oncohabitat") / "v1"
INIT_TEXT = '"""Generated gRPC/protobuf stubs for package oncohabitat.v1 (do not edit)."""\n'


def generate(out_root: Path) -> None:
    """Run protoc for every .proto under protos/oncohabitat/v1 into ``out_root``."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *protos,
    ]
    # protoc finds the mypy-protobuf plugin on PATH: use the one beside this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out_root / PACKAGE_DIR / "__init__.py").write_text(INIT_TEXT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    if not args.check:
        target = OUT_ROOT / PACKAGE_DIR
        for old in target.glob("*_pb2*.py*"):
            old.unlink()
        target.mkdir(parents=True, exist_ok=True)
        generate(OUT_ROOT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = Path(tmp) / PACKAGE_DIR
        committed = OUT_ROOT / PACKAGE_DIR
        names = {p.name for p in fresh.iterdir()} | {
            p.name for p in committed.iterdir() if p.is_file() and p.suffix in {".py", ".pyi"}
        }
        differ = sorted(
            n
            for n in names
            if not (fresh / n).exists()
            or not (committed / n).exists()
            or not filecmp.cmp(fresh / n, committed / n, shallow=False)
        )
    if differ:
        print("generated stubs are stale; run: python scripts/gen_protos.py", file=sys.stderr)
        for name in differ:
            print(f"  differs: {PACKAGE_DIR / name}", file=sys.stderr)
        return 1
    print("generated stubs are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

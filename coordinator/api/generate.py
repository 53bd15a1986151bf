"""Regenerate (or, with --check, verify) the gRPC stubs in coordinator/api/v1.

    python -m coordinator.api.generate          # rewrite the stubs
    python -m coordinator.api.generate --check  # exit 1 if the committed stubs drifted

The stubs are committed so that installing the agent needs no protoc; CI runs --check.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "proto"
PACKAGE_DIR = Path("coordinator") / "api" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def _generate_into(out_dir: Path) -> None:
    from grpc_tools import protoc  # dev-only dependency

    sources = sorted(str(p) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def _generated_files(root: Path) -> dict[str, Path]:
    folder = root / PACKAGE_DIR
    return {p.name: p for p in folder.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the stubs drifted")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        _generate_into(fresh_root)
        fresh = _generated_files(fresh_root)
        committed = _generated_files(REPO)
        drifted = sorted(
            name
            for name in fresh.keys() | committed.keys()
            if name not in fresh
            or name not in committed
            or not filecmp.cmp(fresh[name], committed[name], shallow=False)
        )
        if args.check:
            if drifted:
                print("stubs drifted from proto/: " + ", ".join(drifted), file=sys.stderr)
                print("run: python -m coordinator.api.generate", file=sys.stderr)
                return 1
            print("stubs match proto/")
            return 0
        for name, path in fresh.items():
            shutil.copyfile(path, REPO / PACKAGE_DIR / name)
        print(f"regenerated {len(fresh)} files in {PACKAGE_DIR}")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())

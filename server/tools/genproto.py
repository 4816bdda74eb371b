"""Regenerates gen/ from proto/ with the pinned grpcio-tools.

``--check`` regenerates into a temporary directory and fails when the
committed gen/ differs (stale, hand-edited or missing files).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto"
GEN = ROOT / "gen"


def generate(out: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc

    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def _tree(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if gen/ is stale")
    args = parser.parse_args(argv)
    if not args.check:
        if GEN.exists():
            shutil.rmtree(GEN)
        generate(GEN)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "gen"
        generate(fresh)
        want, have = _tree(fresh), _tree(GEN) if GEN.exists() else set()
        stale = sorted(
            (want ^ have)
            | {f for f in want & have if not filecmp.cmp(fresh / f, GEN / f, shallow=False)}
        )
    if stale:
        print("gen/ is stale; run `make gen` and commit:", *stale, sep="\n  ", file=sys.stderr)
        return 1
    print("gen/ is fresh")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

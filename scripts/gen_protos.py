"""Regenerate the gRPC modules and typed stubs from protos/.

Usage: python scripts/gen_protos.py [OUT_DIR]

Writes into pulse_client/_proto by default. The generated files import each
other as ``pulse.v1``; this script rewrites those imports to the package path
they are shipped under, so nothing has to be added to ``sys.path``.
"""

from __future__ import annotations

import pathlib
import re
import sys

import grpc_tools
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE = "pulse_client._proto"
_WELL_KNOWN = pathlib.Path(grpc_tools.__file__).parent / "_proto"
# The mypy-protobuf plugins are installed beside this interpreter, which may
# be a virtualenv that is not on PATH.
_BIN = pathlib.Path(sys.executable).parent
_IMPORT = re.compile(r"^from pulse\.v1 import", re.MULTILINE)


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{_WELL_KNOWN}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy={_BIN / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={_BIN / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")

    written = []
    for path in sorted(
        p for p in out_dir.rglob("*.py*") if p.suffix in (".py", ".pyi")
    ):
        text = _IMPORT.sub(f"from {PACKAGE}.pulse.v1 import", path.read_text())
        path.write_text(text)
        written.append(path)
    for package in {p.parent for p in written} | {out_dir}:
        init = package / "__init__.py"
        while package != out_dir.parent and not init.exists():
            init.write_text("")
            package = package.parent
            init = package / "__init__.py"
    return written


if __name__ == "__main__":
    target = (
        pathlib.Path(sys.argv[1])
        if len(sys.argv) > 1
        else ROOT / "pulse_client" / "_proto"
    )
    for path in generate(target):
        print(
            path.relative_to(target.parent) if target.parent in path.parents else path
        )

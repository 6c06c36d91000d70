"""The committed gRPC modules and stubs are what the proto generates: a test
fails when someone edits the proto and forgets to run
``python scripts/gen_protos.py``."""

from __future__ import annotations

import importlib.util
import pathlib
from types import ModuleType

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
COMMITTED = REPO_ROOT / "pulse_client" / "_proto"


def _load_generator() -> ModuleType:
    path = REPO_ROOT / "scripts" / "gen_protos.py"
    spec = importlib.util.spec_from_file_location("gen_protos", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(root: pathlib.Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): path.read_text()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix in (".py", ".pyi")
    }


def test_the_committed_stubs_are_exactly_what_the_proto_generates(
    tmp_path: pathlib.Path,
) -> None:
    pytest.importorskip(
        "grpc_tools",
        reason="grpc_tools is not installed (pip install -e .[dev] brings it)",
    )
    generator = _load_generator()

    generator.generate(tmp_path)

    generated = _files(tmp_path)
    committed = _files(COMMITTED)
    assert sorted(generated) == sorted(committed)
    stale = [name for name in generated if generated[name] != committed[name]]
    assert stale == [], (
        f"{', '.join(stale)} differ from what protos/ generates; "
        "run python scripts/gen_protos.py and commit the result"
    )

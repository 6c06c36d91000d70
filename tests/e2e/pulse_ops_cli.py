"""Running the installed ``pulse-ops`` command as an operator would: a
subprocess with a home of its own and an environment given in full."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import sys
from typing import Any

from tests.fixtures.servers import REPO_ROOT, TRACEBACK_MARKER

PULSE_OPS = pathlib.Path(sys.executable).parent / "pulse-ops"
RUN_TIMEOUT_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one run of pulse-ops ended."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def error(self) -> str:
        """The one error line on stderr, without the ``pulse-ops:`` prefix."""
        lines = self.err.splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got {self.err!r}"
        assert lines[0].startswith("pulse-ops: "), lines[0]
        return lines[0].removeprefix("pulse-ops: ")

    def lines(self) -> list[str]:
        return self.out.splitlines()


class PulseOps:
    """``pulse-ops`` with ``HOME`` and ``XDG_CONFIG_HOME`` under ``home``
    and, unless told otherwise, ``PULSE_ADDR`` set to ``addr``."""

    def __init__(self, home: pathlib.Path, addr: str | None = None) -> None:
        self.home = home
        self.addr = addr
        self.config_home = home / "xdg"

    @property
    def config_file(self) -> pathlib.Path:
        return self.config_home / "pulse" / "config.json"

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.config_home),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(REPO_ROOT),
        }
        if self.addr is not None:
            env["PULSE_ADDR"] = self.addr
        env.update(extra or {})
        return {name: value for name, value in env.items() if value is not None}

    def __call__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        stdin: str | bytes = b"",
    ) -> Outcome:
        """Run with ``args``; stdin is a pipe holding ``stdin``."""
        data = stdin.encode() if isinstance(stdin, str) else stdin
        completed = subprocess.run(
            [str(PULSE_OPS), *args],
            input=data,
            capture_output=True,
            env=self.environment(env),
            cwd=self.home,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
        )
        outcome = Outcome(
            args,
            completed.returncode,
            completed.stdout.decode(),
            completed.stderr.decode(),
        )
        assert TRACEBACK_MARKER not in outcome.err, outcome
        return outcome

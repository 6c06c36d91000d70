"""One run of pulse-ops: its parsed command line, its settings, the client
it opens (at most one, closed at the end) and where its output goes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TextIO

from pulse_client import Pulse
from pulse_ops import render
from pulse_ops.settings import Settings


@dataclasses.dataclass
class Session:
    args: dict[str, Any]
    settings: Settings
    timeout_seconds: float
    out: TextIO
    err: TextIO
    stdin: TextIO
    _client: Pulse | None = None

    @property
    def as_json(self) -> bool:
        return bool(self.args.get("--json"))

    @property
    def addr(self) -> str:
        return str(self.settings.addr.value)

    def client(self) -> Pulse:
        """The SDK client for the resolved settings, opened on first use."""
        if self._client is None:
            self.settings.check()
            settings = self.settings
            self._client = Pulse(
                self.addr,
                user=settings.user.value,
                password=settings.password.value,
                tls=settings.tls.value,
                ca_file=settings.ca_file.value,
                timeout_seconds=self.timeout_seconds,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def emit(self, data: Any, text: str | Callable[[], str]) -> None:
        """Print ``data`` as JSON with ``--json``, else ``text``."""
        if self.as_json:
            print(render.dump_json(data), file=self.out)
            return
        shown = text() if callable(text) else text
        if shown:
            print(shown, file=self.out)

    def note(self, text: str) -> None:
        """A remark for the person at the terminal (stderr, never in JSON)."""
        print(text, file=self.err)

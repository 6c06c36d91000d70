"""A one-line text progress bar for a terminal, redrawn in place."""

from __future__ import annotations

import time
from typing import TextIO

BAR_CHARS = 30
# Redraw at most this often; the last state is always drawn.
REDRAW_SECONDS = 0.1


class ProgressBar:
    """``[#######.......]  1500/2500 requeued`` on ``stream``.

    Call ``update`` with the amount done so far, then ``close`` to end the
    line. Meant for a terminal: the caller decides whether to show one.
    """

    def __init__(self, stream: TextIO, total: int, label: str) -> None:
        self._stream = stream
        self._total = max(total, 0)
        self._label = label
        self._done = 0
        self._drawn_at = 0.0
        self._width = 0

    def update(self, done: int) -> None:
        self._done = done
        now = time.monotonic()
        if now - self._drawn_at >= REDRAW_SECONDS or done >= self._total:
            self._draw()
            self._drawn_at = now

    def close(self) -> None:
        self._draw()
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self) -> None:
        shown = min(self._done, self._total)
        filled = BAR_CHARS * shown // self._total if self._total else BAR_CHARS
        bar = "#" * filled + "." * (BAR_CHARS - filled)
        text = f"[{bar}] {self._done}/{self._total} {self._label}"
        # Pad over the previous, possibly longer, line.
        self._stream.write("\r" + text.ljust(self._width))
        self._stream.flush()
        self._width = len(text)

"""How a job's payload is shown: pretty JSON, plain text, or a hex dump.

Payloads are opaque bytes (the SDK writes JSON). Whatever they hold, the
result is plain text for the template to escape; nothing here is markup.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Literal

# Shown in full up to this length; beyond it the start only (the raw payload
# can be downloaded).
MAX_SHOWN_CHARS = 64 * 1024
MAX_DUMPED_BYTES = 4 * 1024
_DUMP_WIDTH = 16
# Control characters other than tabs and line breaks: binary data that
# happens to be valid UTF-8.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclasses.dataclass(frozen=True)
class PayloadView:
    kind: Literal["empty", "json", "text", "binary"]
    text: str
    size_bytes: int
    truncated: bool


def describe_payload(payload: bytes) -> PayloadView:
    """The payload as text a person can read, and what kind it was."""
    size = len(payload)
    if not payload:
        return PayloadView("empty", "", 0, False)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return _binary(payload)
    if _CONTROL.search(text):
        return _binary(payload)
    try:
        decoded = json.loads(text)
    except ValueError:
        pretty = text
        kind: Literal["json", "text"] = "text"
    else:
        pretty = json.dumps(decoded, indent=2, ensure_ascii=False)
        kind = "json"
    if len(pretty) > MAX_SHOWN_CHARS:
        return PayloadView(kind, pretty[:MAX_SHOWN_CHARS], size, True)
    return PayloadView(kind, pretty, size, False)


def hex_dump(data: bytes) -> str:
    """Offset, hex bytes and printable characters, 16 bytes a line."""
    lines = []
    for offset in range(0, len(data), _DUMP_WIDTH):
        chunk = data[offset : offset + _DUMP_WIDTH]
        hex_part = " ".join(f"{b:02x}" for b in chunk)
        chars = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{offset:08x}  {hex_part:<{_DUMP_WIDTH * 3 - 1}}  |{chars}|")
    return "\n".join(lines)


def _binary(payload: bytes) -> PayloadView:
    shown = payload[:MAX_DUMPED_BYTES]
    return PayloadView(
        "binary", hex_dump(shown), len(payload), len(payload) > len(shown)
    )

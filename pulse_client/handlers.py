"""Handler registration and payload encoding.

A handler's first parameter's annotation decides how the JSON payload is
decoded: a dataclass is built from it (nested dataclasses and lists of them
too), ``bytes`` gets the raw payload, anything else (dict, a TypedDict, no
annotation) gets the decoded JSON value. A second parameter, if present,
receives the JobContext.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
import typing
from collections.abc import Callable
from typing import Any

from pulse_client.errors import InvalidArgument


class PayloadError(ValueError):
    """A payload does not fit the handler's declared type."""


@dataclasses.dataclass(frozen=True)
class Handler:
    topic: str
    fn: Callable[..., Any]
    payload_type: Any
    wants_context: bool

    def decode(self, payload: bytes) -> Any:
        return decode_payload(payload, self.payload_type)

    def __call__(self, payload: bytes, context: Any) -> Any:
        args = self.decode(payload)
        if self.wants_context:
            return self.fn(args, context)
        return self.fn(args)


def make_handler(topic: str, fn: Callable[..., Any]) -> Handler:
    """Inspect ``fn`` once, at registration."""
    if not callable(fn):
        raise TypeError(f"handler for {topic!r} is not callable: {fn!r}")
    if inspect.iscoroutinefunction(fn):
        raise TypeError(
            f"handler for {topic!r} is a coroutine function; pulse runs handlers "
            "on threads: pass a plain function (call asyncio.run inside it if needed)"
        )
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if not 1 <= len(params) <= 2:
        raise TypeError(
            f"handler for {topic!r} must take (payload) or (payload, context); "
            f"{getattr(fn, '__qualname__', fn)!r} takes {len(params)} "
            "positional parameters"
        )
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to JSON
        hints = {}
    payload_type = hints.get(params[0].name, Any)
    return Handler(topic, fn, payload_type, wants_context=len(params) == 2)


def encode_payload(args: Any) -> bytes:
    """Bytes go as they are; everything else as compact JSON."""
    if isinstance(args, bytes | bytearray | memoryview):
        return bytes(args)
    if dataclasses.is_dataclass(args) and not isinstance(args, type):
        args = dataclasses.asdict(args)
    try:
        return json.dumps(args, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"payload is not JSON-serialisable: {exc}") from None


def decode_payload(payload: bytes, payload_type: Any) -> Any:
    if payload_type is bytes:
        return payload
    try:
        value = json.loads(payload) if payload else None
    except ValueError as exc:
        raise PayloadError(f"payload is not valid JSON: {exc}") from None
    return _convert(value, payload_type)


def _convert(value: Any, target: Any) -> Any:
    if dataclasses.is_dataclass(target) and isinstance(target, type):
        if not isinstance(value, dict):
            raise PayloadError(
                f"payload for {target.__name__} must be a JSON object, "
                f"got {type(value).__name__}"
            )
        hints = typing.get_type_hints(target)
        fields = {f.name: f for f in dataclasses.fields(target) if f.init}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise PayloadError(
                f"payload has fields {target.__name__} does not know: {unknown}"
            )
        try:
            return target(
                **{k: _convert(v, hints.get(k, Any)) for k, v in value.items()}
            )
        except TypeError as exc:
            raise PayloadError(
                f"payload does not fit {target.__name__}: {exc}"
            ) from None
    origin = typing.get_origin(target)
    args = typing.get_args(target)
    if origin is list and isinstance(value, list):
        item_type = args[0] if args else Any
        return [_convert(item, item_type) for item in value]
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(item, args[0]) for item in value)
        if args and len(args) == len(value):
            return tuple(_convert(item, t) for item, t in zip(value, args, strict=True))
        return tuple(value)
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {key: _convert(item, args[1]) for key, item in value.items()}
    if origin in (typing.Union, types.UnionType) and value is not None:
        for option in args:
            if option is not type(None) and _fits(value, option):
                return _convert(value, option)
    return value


def _fits(value: Any, target: Any) -> bool:
    """Whether a JSON value has the shape of ``target`` (to pick a Union arm)."""
    if dataclasses.is_dataclass(target) and isinstance(target, type):
        return isinstance(value, dict)
    origin = typing.get_origin(target) or target
    if origin in (list, tuple):
        return isinstance(value, list)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(origin, type) and isinstance(value, origin)

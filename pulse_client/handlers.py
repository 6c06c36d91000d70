"""Handler registration and payload encoding.

A handler's first parameter's annotation decides how the JSON payload is
decoded: a dataclass is built from it (nested dataclasses and lists of them
too), ``bytes`` gets the raw payload, anything else (dict, a TypedDict, no
annotation) gets the decoded JSON value. A second parameter, if present,
receives the JobContext.

The annotation is inspected once, at registration, into a converter; a type
that needs no conversion (dict, Any, list[int], ...) gets none, so decoding
its payload costs a ``json.loads`` alone.
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

# Built once: json.dumps with non-default arguments builds an encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
# Types whose values go straight to the encoder, skipping the bytes and
# dataclass checks.
_JSON_TYPES = frozenset({dict, list, str, int, float, bool, type(None)})

# Turns a decoded JSON value into the declared type.
_Convert = Callable[[Any], Any]


class PayloadError(ValueError):
    """A payload does not fit the handler's declared type."""


@dataclasses.dataclass(frozen=True)
class Handler:
    topic: str
    fn: Callable[..., Any]
    payload_type: Any
    wants_context: bool
    # Derived from payload_type when the handler is made.
    decode: Callable[[bytes], Any] = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "decode", _decoder(self.payload_type))

    def __call__(self, payload: bytes, context: Any) -> Any:
        if self.wants_context:
            return self.fn(self.decode(payload), context)
        return self.fn(self.decode(payload))


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
    if type(args) not in _JSON_TYPES:
        if isinstance(args, bytes | bytearray | memoryview):
            return bytes(args)
        if dataclasses.is_dataclass(args) and not isinstance(args, type):
            args = dataclasses.asdict(args)
    try:
        return _ENCODER.encode(args).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"payload is not JSON-serialisable: {exc}") from None


def _decoder(payload_type: Any) -> Callable[[bytes], Any]:
    if payload_type is bytes:
        return _raw
    convert = _converter(payload_type, {})
    if convert is None:
        return _loads

    def decode(payload: bytes) -> Any:
        return convert(_loads(payload))

    return decode


def _raw(payload: bytes) -> bytes:
    return payload


def _loads(payload: bytes) -> Any:
    try:
        return json.loads(payload) if payload else None
    except ValueError as exc:
        raise PayloadError(f"payload is not valid JSON: {exc}") from None


def _converter(target: Any, seen: dict[type, _Convert]) -> _Convert | None:
    """The conversion of a decoded JSON value into ``target``, or None where
    the value is handed over as decoded.

    A list or dict whose items need no conversion is handed over as it is:
    the decoded value has no other owner, so a copy would change nothing.
    ``seen`` holds the dataclasses met so far, for dataclasses that refer to
    themselves.
    """
    if dataclasses.is_dataclass(target) and isinstance(target, type):
        return seen.get(target) or _dataclass_converter(target, seen)
    origin = typing.get_origin(target)
    args = typing.get_args(target)
    if origin is list:
        return _list_converter(_converter(args[0] if args else Any, seen))
    if origin is tuple:
        return _tuple_converter(args, seen)
    if origin is dict and len(args) == 2:
        return _dict_converter(_converter(args[1], seen))
    if origin in (typing.Union, types.UnionType):
        return _union_converter(args, seen)
    return None


def _dataclass_converter(target: type, seen: dict[type, _Convert]) -> _Convert:
    name = target.__name__
    known = frozenset(f.name for f in dataclasses.fields(target) if f.init)
    fields: dict[str, _Convert] = {}

    def convert(value: Any) -> Any:
        if not isinstance(value, dict):
            raise PayloadError(
                f"payload for {name} must be a JSON object, got {type(value).__name__}"
            )
        by_field = fields if resolved else _field_converters(target, known, {})
        unknown = value.keys() - known
        if unknown:
            raise PayloadError(
                f"payload has fields {name} does not know: {sorted(unknown)}"
            )
        try:
            return target(
                **{
                    k: v if (field := by_field.get(k)) is None else field(v)
                    for k, v in value.items()
                }
            )
        except TypeError as exc:
            raise PayloadError(f"payload does not fit {name}: {exc}") from None

    # Registered before its fields are looked at, so that a field of its own
    # type finds it.
    seen[target] = convert
    try:
        fields.update(_field_converters(target, known, seen))
        resolved = True
    except Exception:
        # A field names a type not defined yet (the module may define it
        # after registering the handler): look the fields up per payload.
        resolved = False
    return convert


def _field_converters(
    target: type, known: frozenset[str], seen: dict[type, _Convert]
) -> dict[str, _Convert]:
    hints = typing.get_type_hints(target)
    found = {name: _converter(hints.get(name, Any), seen) for name in known}
    return {name: convert for name, convert in found.items() if convert is not None}


def _list_converter(item: _Convert | None) -> _Convert | None:
    if item is None:
        return None

    def convert(value: Any) -> Any:
        if isinstance(value, list):
            return [item(entry) for entry in value]
        return value

    return convert


def _dict_converter(item: _Convert | None) -> _Convert | None:
    if item is None:
        return None

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: item(entry) for key, entry in value.items()}
        return value

    return convert


def _tuple_converter(args: tuple[Any, ...], seen: dict[type, _Convert]) -> _Convert:
    if len(args) == 2 and args[1] is Ellipsis:
        item = _converter(args[0], seen)

        def convert_all(value: Any) -> Any:
            if not isinstance(value, list):
                return value
            if item is None:
                return tuple(value)
            return tuple(item(entry) for entry in value)

        return convert_all

    items = [_converter(arg, seen) for arg in args]

    def convert(value: Any) -> Any:
        if not isinstance(value, list):
            return value
        if items and len(items) == len(value):
            return tuple(
                entry if each is None else each(entry)
                for entry, each in zip(value, items, strict=True)
            )
        return tuple(value)

    return convert


def _union_converter(args: tuple[Any, ...], seen: dict[type, _Convert]) -> _Convert:
    options = [(arg, _converter(arg, seen)) for arg in args if arg is not type(None)]

    def convert(value: Any) -> Any:
        if value is not None:
            # The first option whose shape the value has; asked per value,
            # since that is what picks the arm.
            for option, each in options:
                if _fits(value, option):
                    return value if each is None else each(value)
        return value

    return convert


def _fits(value: Any, target: Any) -> bool:
    """Whether a JSON value has the shape of ``target`` (to pick a Union arm)."""
    if target is Any:
        return True
    # A TypedDict refuses isinstance(); its values are JSON objects.
    if (dataclasses.is_dataclass(target) and isinstance(target, type)) or (
        typing.is_typeddict(target)
    ):
        return isinstance(value, dict)
    origin = typing.get_origin(target) or target
    if origin in (list, tuple):
        return isinstance(value, list)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(origin, type) and isinstance(value, origin)

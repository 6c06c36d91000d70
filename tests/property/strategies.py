"""Hypothesis strategies for arbitrary pulse messages and the values they hold.

``messages(descriptor)`` builds any message of the proto from its
descriptor, field by field, so a field added to the proto is fuzzed without
a change here. The values lean on the edges: empty, huge, NUL bytes,
control and non-ASCII text, ids that are not UUIDs, the seeded ids and
names, integers at and beyond every limit, unknown enum numbers, times far
before and after what Postgres and Python can hold.
"""

from __future__ import annotations

import string
from typing import Any

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf import timestamp_pb2
from hypothesis import strategies as st

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.limits import MAX_DELAY_MS, MAX_TIMEOUT_MS

FieldDescriptor = _descriptor.FieldDescriptor

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
# 0001-01-01 and 9999-12-31T23:59:59: what a Timestamp may hold by its spec.
TIMESTAMP_SECONDS = (-62_135_596_800, 253_402_300_799)

# Numbers pulse checks against somewhere, and their neighbours.
_LIMITS = (0, 1, 10, 60, 100, 200, 1000, 1440, 65_536, MAX_DELAY_MS, MAX_TIMEOUT_MS)
EDGE_INTS = sorted(
    {sign * (n + d) for n in _LIMITS for d in (-1, 0, 1) for sign in (1, -1)}
)

TOPICS = st.from_regex(r"[A-Za-z0-9._:-]{1,200}", fullmatch=True)
TRICKY_TEXT = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\n",
    "\t x \r\n",
    "\u202e",
    "é",
    "💥",
    "*",
    "%s",
    "%(id)s",
    "{}",
    "\\",
    "'; DROP TABLE jobs; --",
    "../../etc/passwd",
    "not-a-uuid",
    "00000000-0000-0000-0000-000000000000",
    "{12345678-1234-5678-1234-567812345678}",
    "urn:uuid:12345678-1234-5678-1234-567812345678",
    "12345678123456781234567812345678",
    "0 * * * *",
    "*/0 * * * *",
    "99 99 99 99 99",
    "@yearly",
    "UTC",
    "Europe/Berlin",
    "Mars/Olympus_Mons",
    "dead_lettered",
    "job.cancel",
    "a" * 201,
    "x" * 10_000,
    "é" * 100_000,
    "\x00" * 1_000,
)


def texts(seeded: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    """Any text a string field might carry, the seeded values among them."""
    choices: list[st.SearchStrategy[str]] = [
        st.text(max_size=30),
        st.text(alphabet=string.printable, max_size=30),
        st.sampled_from(TRICKY_TEXT),
        st.uuids().map(str),
        TOPICS,
    ]
    if seeded:
        choices.append(st.sampled_from(seeded))
    return st.one_of(choices)


def blobs() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=64),
        st.sampled_from(
            [b"", b"\x00", b"\xff\xfe\xfd", b"null", b"x" * 65_536, b"x" * 65_537]
        ),
    )


def integers(bounds: tuple[int, int]) -> st.SearchStrategy[int]:
    low, high = bounds
    return st.one_of(
        st.integers(low, high),
        st.sampled_from([low, high, *(n for n in EDGE_INTS if low <= n <= high)]),
    )


def timestamps() -> st.SearchStrategy[timestamp_pb2.Timestamp]:
    low, high = TIMESTAMP_SECONDS
    seconds = st.one_of(
        st.integers(low, high),
        st.sampled_from([0, -1, low, low - 1, high, high + 1, INT64[0], INT64[1]]),
        st.integers(*INT64),
    )
    nanos = st.one_of(
        st.integers(0, 999_999_999), st.sampled_from([-1, 1_000_000_000, *INT32])
    )
    return st.builds(timestamp_pb2.Timestamp, seconds=seconds, nanos=nanos)


def _scalar(field: FieldDescriptor, seeded: tuple[str, ...]) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return texts(seeded)
    if kind == FieldDescriptor.TYPE_BYTES:
        return blobs()
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        known = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(known), integers(INT32))
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32):
        return integers(INT32)
    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64):
        return integers(INT64)
    if kind == FieldDescriptor.TYPE_UINT32:
        return integers(UINT32)
    raise AssertionError(f"no strategy for {field.full_name} of type {kind}")


def _field(
    field: FieldDescriptor, seeded: tuple[str, ...], depth: int
) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.full_name == "google.protobuf.Timestamp":
            one = timestamps()
        else:
            one = messages(field.message_type, seeded, depth + 1)
    else:
        one = _scalar(field, seeded)
    if field.is_repeated:
        return st.lists(one, max_size=4)
    return one


def messages(
    descriptor: _descriptor.Descriptor, seeded: tuple[str, ...] = (), depth: int = 0
) -> st.SearchStrategy[_message.Message]:
    """Any message of this type: each field set or left unset at random."""
    cls = _message_class(descriptor)
    if depth > 3:
        return st.builds(cls)
    fields = {f.name: _field(f, seeded, depth) for f in descriptor.fields}
    return st.fixed_dictionaries({}, optional=fields).map(
        lambda values: _fill(cls(), values)
    )


def _fill(message: _message.Message, values: dict[str, Any]) -> _message.Message:
    for name, value in values.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        if field.is_repeated:
            target = getattr(message, name)
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def _message_class(descriptor: _descriptor.Descriptor) -> type[_message.Message]:
    if descriptor.full_name == "google.protobuf.Timestamp":
        return timestamp_pb2.Timestamp
    cls = getattr(pb, descriptor.name, None)
    assert cls is not None and cls.DESCRIPTOR is descriptor, descriptor.full_name
    return cls  # type: ignore[no-any-return]

"""pulse_client.handlers: a handler's annotation, read once at registration,
decides what its payload becomes; encode_payload is its mirror image."""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from typing import Any, TypedDict

import pytest

from pulse_client.errors import InvalidArgument
from pulse_client.handlers import PayloadError, encode_payload, make_handler


@dataclasses.dataclass
class Line:
    sku: str
    quantity: int


@dataclasses.dataclass
class Order:
    order_id: int
    lines: list[Line]
    by_sku: dict[str, Line] = dataclasses.field(default_factory=dict)
    dims: tuple[int, Line] | None = None
    gift: Line | list[Line] | None = None


@dataclasses.dataclass
class Node:
    name: str
    children: list[Node] = dataclasses.field(default_factory=list)


class Point(TypedDict):
    x: int
    y: int


def decoder(annotation: Any) -> Any:
    def handle(args: Any) -> None:
        return None

    handle.__annotations__ = {"args": annotation}
    return make_handler("t", handle).decode


def decode(annotation: Any, value: Any) -> Any:
    return decoder(annotation)(json.dumps(value).encode())


@pytest.mark.parametrize(
    "annotation", [Any, dict, dict[str, Any], list[int], Point, int | str]
)
def test_a_type_that_needs_no_conversion_gets_the_json_value_as_decoded(
    annotation: Any,
) -> None:
    value = {"name": "Zoë", "tags": ["a", 1, None], "n": {"f": 1.5}}

    assert decode(annotation, value) == value


def test_a_bytes_handler_gets_the_payload_untouched() -> None:
    payload = b"\x00\xff not json"

    assert decoder(bytes)(payload) is payload


def test_an_empty_payload_is_none() -> None:
    assert decoder(dict)(b"") is None


def test_nested_dataclasses_in_lists_dicts_tuples_and_unions_are_built() -> None:
    value = {
        "order_id": 7,
        "lines": [{"sku": "a", "quantity": 2}],
        "by_sku": {"b": {"sku": "b", "quantity": 1}},
        "dims": [3, {"sku": "c", "quantity": 4}],
        "gift": [{"sku": "d", "quantity": 1}],
    }

    assert decode(Order, value) == Order(
        order_id=7,
        lines=[Line("a", 2)],
        by_sku={"b": Line("b", 1)},
        dims=(3, Line("c", 4)),
        gift=[Line("d", 1)],
    )


def test_a_union_takes_the_first_arm_whose_shape_the_value_has() -> None:
    value = {"order_id": 1, "lines": [], "gift": {"sku": "e", "quantity": 5}}

    assert decode(Order, value).gift == Line("e", 5)


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (Point | None, {"x": 1, "y": 2}),
        (Point | None, None),
        (Any | None, [1, "a"]),
        (int | Point, {"x": 1, "y": 2}),
    ],
)
def test_a_union_with_a_typeddict_or_any_arm_takes_the_value_as_decoded(
    annotation: Any, value: Any
) -> None:
    # Neither a TypedDict nor Any may go to isinstance(): the arm is chosen
    # by the value's shape.
    assert decode(annotation, value) == value


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        (tuple[int, ...], [1, 2, 3], (1, 2, 3)),
        (tuple[Line, ...], [{"sku": "a", "quantity": 1}], (Line("a", 1),)),
        (tuple[int, Line], [1, {"sku": "a", "quantity": 1}], (1, Line("a", 1))),
        # A length that does not match keeps the items as decoded.
        (tuple[int, Line], [1, {"sku": "a"}, 3], (1, {"sku": "a"}, 3)),
        # Not a JSON array: handed over as it is.
        (tuple[int, ...], {"a": 1}, {"a": 1}),
        (list[Line], {"a": 1}, {"a": 1}),
    ],
)
def test_a_tuple_is_built_from_a_json_array(
    annotation: Any, value: Any, expected: Any
) -> None:
    assert decode(annotation, value) == expected


def test_a_dataclass_that_contains_itself_is_built_at_every_depth() -> None:
    value = {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}

    assert decode(Node, value) == Node("a", [Node("b", [Node("c")])])


def test_a_field_type_defined_after_registration_is_resolved_when_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A module whose dataclass names a type the module defines further down,
    # after the handler was registered.
    module = types.ModuleType("late_types")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(
        "from __future__ import annotations\n"
        "import dataclasses\n"
        "@dataclasses.dataclass\n"
        "class Parcel:\n"
        "    label: Label\n",
        module.__dict__,
    )
    decode_parcel = decoder(module.Parcel)
    exec(
        "@dataclasses.dataclass\nclass Label:\n    text: str\n",
        module.__dict__,
    )

    assert decode_parcel(b'{"label": {"text": "fragile"}}') == module.Parcel(
        module.Label("fragile")
    )


@pytest.mark.parametrize(
    ("annotation", "payload", "message"),
    [
        (dict, b"{oops", "payload is not valid JSON: Expecting property name"),
        (Line, b"[1]", "payload for Line must be a JSON object, got list"),
        (Line, b"", "payload for Line must be a JSON object, got NoneType"),
        (
            Line,
            b'{"sku": "a", "quantity": 1, "colour": "red"}',
            "payload has fields Line does not know: ['colour']",
        ),
        (
            Line,
            b'{"sku": "a"}',
            "payload does not fit Line: Line.__init__() missing 1 required "
            "positional argument: 'quantity'",
        ),
        (
            Order,
            b'{"order_id": 1, "lines": ["a"]}',
            "payload for Line must be a JSON object, got str",
        ),
    ],
)
def test_a_payload_that_does_not_fit_is_a_payload_error(
    annotation: Any, payload: bytes, message: str
) -> None:
    with pytest.raises(PayloadError) as excinfo:
        decoder(annotation)(payload)

    assert str(excinfo.value).startswith(message)


def test_a_handler_gets_the_context_when_it_takes_two_parameters() -> None:
    seen: list[Any] = []

    def handle(args: Line, context: Any) -> None:
        seen.append((args, context))

    make_handler("t", handle)(b'{"sku": "a", "quantity": 1}', "ctx")

    assert seen == [(Line("a", 1), "ctx")]


@pytest.mark.parametrize(
    ("args", "payload"),
    [
        ({"name": "Zoë ✓", "n": [1, None]}, '{"name":"Zoë ✓","n":[1,null]}'.encode()),
        (Line("a", 2), b'{"sku":"a","quantity":2}'),
        (b"\x00raw", b"\x00raw"),
        (bytearray(b"ba"), b"ba"),
        (None, b"null"),
        ("text", b'"text"'),
    ],
)
def test_encode_payload_writes_compact_json_and_sends_bytes_as_they_are(
    args: Any, payload: bytes
) -> None:
    assert encode_payload(args) == payload


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({1, 2}, "payload is not JSON-serialisable: Object of type set is not JSON "),
        ("\udcff", "payload is not JSON-serialisable: 'utf-8' codec can't encode"),
    ],
)
def test_a_payload_json_cannot_carry_is_invalid_argument(
    args: Any, message: str
) -> None:
    with pytest.raises(InvalidArgument) as excinfo:
        encode_payload(args)

    assert str(excinfo.value).startswith(message)

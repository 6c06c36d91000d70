"""How payloads are shown."""

from __future__ import annotations

from pulse_web.payloads import MAX_DUMPED_BYTES, MAX_SHOWN_CHARS, describe_payload


def test_json_is_pretty_printed_keeping_non_ascii_text() -> None:
    view = describe_payload('{"name":"Zoë","n":[1,2]}'.encode())

    assert view.kind == "json"
    assert view.text == '{\n  "name": "Zoë",\n  "n": [\n    1,\n    2\n  ]\n}'
    assert not view.truncated


def test_text_that_is_not_json_is_shown_as_it_is() -> None:
    view = describe_payload(b"plain words\nover two lines")

    assert (view.kind, view.text) == ("text", "plain words\nover two lines")


def test_bytes_that_are_not_text_become_a_hex_dump() -> None:
    invalid_utf8 = describe_payload(b"\xff\xfeab")
    control_characters = describe_payload(b"ab\x00\x01cd")

    assert invalid_utf8.kind == control_characters.kind == "binary"
    assert invalid_utf8.text.startswith("00000000  ff fe 61 62")
    assert invalid_utf8.text.endswith("|..ab|")
    assert "|ab..cd|" in control_characters.text


def test_large_payloads_are_cut_and_say_so() -> None:
    big_binary = describe_payload(b"\x00" * (MAX_DUMPED_BYTES + 1))
    big_text = describe_payload(b"x" * (MAX_SHOWN_CHARS + 1))

    assert big_binary.truncated and big_binary.size_bytes == MAX_DUMPED_BYTES + 1
    assert big_binary.text.count("\n") == MAX_DUMPED_BYTES // 16 - 1
    assert big_text.truncated and len(big_text.text) == MAX_SHOWN_CHARS


def test_empty_payload() -> None:
    assert describe_payload(b"").kind == "empty"

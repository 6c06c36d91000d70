"""pulse_client.errors: one vocabulary for the server and the SDK."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from pulse_client import errors
from pulse_client.errors import (
    ERROR_CODE_METADATA_KEY,
    DeadlineExceeded,
    InvalidArgument,
    InvalidState,
    JobConflict,
    JobNotFound,
    PermissionDenied,
    PulseError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    error_class,
    from_rpc_error,
)

WIRE_ERRORS = [
    InvalidArgument,
    JobNotFound,
    JobConflict,
    InvalidState,
    Unavailable,
    ResourceExhausted,
    Unauthenticated,
    PermissionDenied,
    DeadlineExceeded,
]


class FakeCall(grpc.RpcError, grpc.Call):
    """A failed call as grpcio raises it."""

    def __init__(
        self,
        status: grpc.StatusCode,
        details: str = "",
        metadata: tuple[tuple[str, Any], ...] = (),
    ) -> None:
        self._status = status
        self._details = details
        self._metadata = metadata

    def code(self) -> grpc.StatusCode:
        return self._status

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._metadata

    def initial_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


@pytest.mark.parametrize("cls", WIRE_ERRORS, ids=lambda cls: cls.__name__)
def test_the_pulse_error_code_maps_back_to_its_class(cls: type[PulseError]) -> None:
    call = FakeCall(cls.status, "what happened", ((ERROR_CODE_METADATA_KEY, cls.code),))

    error = from_rpc_error(call)

    assert type(error) is cls
    assert str(error) == "what happened"
    assert error.__cause__ is call


@pytest.mark.parametrize("cls", WIRE_ERRORS, ids=lambda cls: cls.__name__)
def test_without_a_pulse_code_the_status_decides(cls: type[PulseError]) -> None:
    error = from_rpc_error(FakeCall(cls.status, "no code sent"))

    assert type(error) is cls
    assert str(error) == "no code sent"


def test_the_pulse_code_wins_over_the_status() -> None:
    call = FakeCall(
        grpc.StatusCode.INTERNAL, "clash", ((ERROR_CODE_METADATA_KEY, "job_conflict"),)
    )

    assert type(from_rpc_error(call)) is JobConflict


def test_a_code_sent_as_bytes_is_understood() -> None:
    call = FakeCall(
        grpc.StatusCode.NOT_FOUND,
        "gone",
        (("other", b"x"), (ERROR_CODE_METADATA_KEY, b"job_not_found")),
    )

    assert type(from_rpc_error(call)) is JobNotFound


@pytest.mark.parametrize(
    "status",
    [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED],
)
def test_an_unmapped_status_becomes_the_root_error(status: grpc.StatusCode) -> None:
    error = from_rpc_error(FakeCall(status, "odd"))

    assert type(error) is PulseError


def test_an_unknown_pulse_code_becomes_the_root_error() -> None:
    call = FakeCall(
        grpc.StatusCode.INVALID_ARGUMENT,
        "new",
        ((ERROR_CODE_METADATA_KEY, "from_the_future"),),
    )

    assert type(from_rpc_error(call)) is PulseError


def test_an_error_without_details_is_named_by_its_status() -> None:
    error = from_rpc_error(FakeCall(grpc.StatusCode.UNAVAILABLE))

    assert str(error) == "UNAVAILABLE"


def test_an_rpc_error_that_is_not_a_call_becomes_the_root_error() -> None:
    plain = grpc.RpcError("channel closed")

    error = from_rpc_error(plain)

    assert type(error) is PulseError
    assert "channel closed" in str(error)
    assert error.__cause__ is plain


def test_each_error_code_names_exactly_one_class() -> None:
    classes = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, PulseError)
    ]

    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)), sorted(codes)
    for cls in WIRE_ERRORS:
        assert error_class(cls.code) is cls
    assert error_class("no_such_code") is PulseError


def test_every_error_class_has_a_one_line_docstring() -> None:
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, PulseError):
            doc = (value.__doc__ or "").strip()
            assert doc and "\n" not in doc, value.__name__

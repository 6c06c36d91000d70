"""The role table: every RPC has a row, so a new RPC cannot slip through
unguarded; roles include the ones below them."""

from __future__ import annotations

import pytest

from pulse_client._proto.pulse.v1 import pulse_pb2
from pulsed.auth import (
    REQUIRED_ROLE,
    ROLES,
    required_role,
    role_allows,
)

PULSE_METHODS = sorted(
    method.name for method in pulse_pb2.DESCRIPTOR.services_by_name["Pulse"].methods
)


def test_every_rpc_of_the_service_has_a_row_in_the_role_table() -> None:
    missing = [name for name in PULSE_METHODS if name not in REQUIRED_ROLE]

    assert missing == [], f"add these RPCs to pulsed.auth.REQUIRED_ROLE: {missing}"


def test_the_role_table_names_only_rpcs_that_exist_and_roles_that_exist() -> None:
    assert sorted(set(REQUIRED_ROLE) - set(PULSE_METHODS)) == []
    assert set(REQUIRED_ROLE.values()) <= set(ROLES)


@pytest.mark.parametrize("name", PULSE_METHODS)
def test_each_rpc_needs_the_role_its_row_names(name: str) -> None:
    assert required_role(f"/pulse.v1.Pulse/{name}") == REQUIRED_ROLE[name]


def test_the_roles_as_documented() -> None:
    by_role = {
        role: sorted(name for name, r in REQUIRED_ROLE.items() if r == role)
        for role in ROLES
    }

    assert by_role["worker"] == ["StreamJobs", "SubmitJob", "SubmitJobs"]
    assert "ListAudit" in by_role["operator"]
    assert {"CancelJob", "RequeueJob", "PauseDispatch", "PutSchedule"} <= set(
        by_role["operator"]
    )
    assert by_role["admin"] == []
    assert {"GetJob", "ListJobs", "Stats", "GetDispatchStatus", "WhoAmI"} <= set(
        by_role["viewer"]
    )


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("viewer", {"viewer"}),
        ("worker", {"viewer", "worker"}),
        ("operator", {"viewer", "worker", "operator"}),
        ("admin", {"viewer", "worker", "operator", "admin"}),
        ("", set()),
        ("root", set()),
    ],
)
def test_a_role_includes_the_roles_below_it(role: str, allowed: set[str]) -> None:
    assert {required for required in ROLES if role_allows(role, required)} == allowed


def test_only_the_health_service_is_open() -> None:
    assert required_role("/grpc.health.v1.Health/Check") is None
    assert required_role("/grpc.health.v1.Health/Watch") is None


def test_reflection_needs_any_valid_credentials() -> None:
    method = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"

    assert required_role(method) == "viewer"


def test_methods_not_in_the_table_need_admin() -> None:
    assert required_role("/pulse.v1.Pulse/SomethingNew") == "admin"
    assert required_role("/other.Service/Method") == "admin"

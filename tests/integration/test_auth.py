"""Authentication and roles on a real pulsed: every RPC guarded, each role
held to the role table, audit rows under the authenticated user, and no
password in the server's log."""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pulse_client import PermissionDenied, Pulse, Unauthenticated
from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from pulse_client.errors import ERROR_CODE_METADATA_KEY
from pulsed import passwords
from pulsed.auth import (
    REFUSED_MESSAGE,
    REQUIRED_ROLE,
    ROLES,
    FailureThrottle,
    role_allows,
)
from pulsed.config import Config
from tests.fixtures.servers import REPO_ROOT, InProcessServer, PulsedProcess, free_port

SERVICE = pb.DESCRIPTOR.services_by_name["Pulse"]
METHODS = sorted(method.name for method in SERVICE.methods)

# One user per role; "bc" has a bcrypt hash instead of a plaintext password.
CREDENTIALS = {
    "admin": ("root", "Adm1n-Passw0rd"),
    "operator": ("oper", "0per-Passw0rd"),
    "worker": ("work", "W0rk-Passw0rd"),
    "viewer": ("view", "V1ew-Passw0rd"),
}
BCRYPT_USER, BCRYPT_PASSWORD = "bc", "Bcrypt-Passw0rd"
# passwords.hash_password(BCRYPT_PASSWORD, rounds=4)
BCRYPT_HASH = "$2b$04$wnJ8m91pef.DisjMHBQSG.w.s/IiOeMqgH1vquEz2LJiWUE2hj9eW"
AUTH_USERS = ",".join(
    [f"{user}:{password}:{role}" for role, (user, password) in CREDENTIALS.items()]
    + [f"{BCRYPT_USER}:{BCRYPT_HASH}:operator"]
)
ALL_SECRETS = [password for _, password in CREDENTIALS.values()] + [
    BCRYPT_PASSWORD,
    BCRYPT_HASH,
]


def basic(user: str, password: str) -> tuple[tuple[str, str], ...]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return (("authorization", f"Basic {token}"),)


def role_metadata(role: str) -> tuple[tuple[str, str], ...]:
    return basic(*CREDENTIALS[role])


def call(
    channel: grpc.Channel, name: str, metadata: tuple[tuple[str, str], ...] = ()
) -> grpc.RpcError | None:
    """Call ``name`` with an empty request on a raw stub; its error, if any.

    A stream-request RPC (StreamJobs) gets an empty stream, which pulsed
    refuses with INVALID_ARGUMENT once it has let the call in.
    """
    method = SERVICE.methods_by_name[name]
    request = getattr(pb, method.input_type.name)()
    multicallable = getattr(pulse_pb2_grpc.PulseStub(channel), name)
    argument = iter(()) if method.client_streaming else request
    try:
        result = multicallable(argument, metadata=metadata, timeout=15)
        if method.server_streaming:
            list(result)
    except grpc.RpcError as exc:
        return exc
    return None


def error_code(error: grpc.RpcError) -> str | None:
    assert isinstance(error, grpc.Call)
    for key, value in error.trailing_metadata() or ():
        if key == ERROR_CODE_METADATA_KEY:
            return str(value)
    return None


@pytest.fixture
def auth_users() -> Config:
    return Config.from_env({"PULSE_AUTH_USERS": AUTH_USERS})


@pytest.fixture
def auth_server(
    start_inprocess: Callable[..., InProcessServer], auth_users: Config
) -> InProcessServer:
    """An in-process pulsed with one user per role (and a bcrypt user)."""
    return start_inprocess(auth_users=auth_users.auth_users)


def without_throttle(server: InProcessServer) -> InProcessServer:
    """Failed attempts from 127.0.0.1 would slow each next one down; tests
    that fail on purpose many times turn that off."""
    assert server.server.authenticator is not None
    server.server.authenticator.throttle = FailureThrottle(max_delay_seconds=0)
    return server


@pytest.fixture
def run_worker() -> Iterator[Callable[[Pulse], threading.Thread]]:
    """Runs ``pulse.run()`` in a thread; stopped and joined at teardown."""
    running: list[tuple[Pulse, threading.Thread]] = []

    def start(pulse: Pulse) -> threading.Thread:
        thread = threading.Thread(target=pulse.run, name="test-worker")
        thread.start()
        running.append((pulse, thread))
        return thread

    yield start
    for pulse, thread in running:
        pulse.stop()
        thread.join(15)
        pulse.close()


def wait_for_status(pulse: Pulse, job_id: str, status: str) -> None:
    deadline = time.monotonic() + 15
    while pulse.get_job(job_id).status.value != status:
        assert time.monotonic() < deadline, pulse.get_job(job_id)
        time.sleep(0.05)


def test_the_sample_hash_in_this_file_is_real() -> None:
    assert passwords.verify_password(BCRYPT_PASSWORD, BCRYPT_HASH)


# -- an open server -----------------------------------------------------------


def test_an_open_server_serves_callers_without_credentials_as_anonymous_admin(
    server: InProcessServer,
) -> None:
    with Pulse(server.addr) as pulse:
        identity = pulse.whoami()
        job_id = pulse.enqueue("open.topic", {"n": 1})
        pulse.cancel(job_id)
        entries = pulse.list_audit().entries

    assert (identity.auth_required, identity.authenticated) == (False, False)
    assert (identity.user, identity.role) == ("anonymous", "admin")
    assert [(e.user, e.action, e.target) for e in entries] == [
        ("anonymous", "job.cancel", job_id)
    ]
    assert any("auth.off" in r.getMessage() for r in server.records)


def test_an_open_server_ignores_credentials_it_was_not_asked_to_check(
    server: InProcessServer,
) -> None:
    with Pulse(server.addr, user="someone", password="anything") as pulse:
        identity = pulse.whoami()
        pulse.stats()

    assert (identity.user, identity.role) == ("anonymous", "admin")


# -- refusing missing and wrong credentials ---------------------------------------


def test_every_rpc_refuses_calls_without_credentials_except_whoami(
    auth_server: InProcessServer,
) -> None:
    channel = auth_server.channel()

    refused = {name: call(channel, name) for name in METHODS}

    assert refused.pop("WhoAmI") is None
    assert {name: e and e.code() for name, e in refused.items()} == {
        name: grpc.StatusCode.UNAUTHENTICATED for name in refused
    }
    for error in refused.values():
        assert error is not None
        assert error_code(error) == "unauthenticated"
        assert isinstance(error, grpc.Call) and error.details() == REFUSED_MESSAGE


@pytest.mark.parametrize(
    "credentials",
    [("root", "wrong-password"), ("nobody", "Adm1n-Passw0rd"), ("bc", "wrong")],
    ids=["wrong-password", "unknown-user", "wrong-bcrypt-password"],
)
def test_every_rpc_refuses_wrong_credentials_with_the_same_message(
    auth_server: InProcessServer, credentials: tuple[str, str]
) -> None:
    channel = without_throttle(auth_server).channel()

    refused = {name: call(channel, name, basic(*credentials)) for name in METHODS}

    for name, error in refused.items():
        assert error is not None, name
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, name
        assert error_code(error) == "unauthenticated", name
        assert isinstance(error, grpc.Call) and error.details() == REFUSED_MESSAGE


def test_the_sdk_maps_refusals_to_unauthenticated_for_each_kind_of_rpc(
    auth_server: InProcessServer, run_worker: Callable[[Pulse], threading.Thread]
) -> None:
    without_throttle(auth_server)
    for user, password in [(None, None), ("root", "wrong")]:
        with Pulse(auth_server.addr, user=user, password=password) as pulse:
            with pytest.raises(Unauthenticated):
                pulse.enqueue("t", {})  # unary, through the submitter
            with pytest.raises(Unauthenticated):
                pulse.stats()  # unary
            with pytest.raises(Unauthenticated):
                pulse.requeue_jobs(topic="t")  # server-streaming
            with pytest.raises(Unauthenticated):
                pulse.list_audit()

    # StreamJobs: a worker without credentials gives up at once.
    worker = Pulse(auth_server.addr)
    worker.register("t", lambda payload: None)
    with pytest.raises(Unauthenticated):
        worker.run()
    worker.close()


def test_whoami_answers_without_credentials_and_refuses_wrong_ones(
    auth_server: InProcessServer,
) -> None:
    with Pulse(auth_server.addr) as anonymous:
        nobody = anonymous.whoami()
    with Pulse(auth_server.addr, user="view", password="V1ew-Passw0rd") as viewer:
        someone = viewer.whoami()
    with (
        Pulse(auth_server.addr, user="view", password="wrong") as wrong,
        pytest.raises(Unauthenticated),
    ):
        wrong.whoami()

    assert (nobody.auth_required, nobody.authenticated) == (True, False)
    assert (nobody.user, nobody.role) == ("", "")
    assert (someone.auth_required, someone.authenticated) == (True, True)
    assert (someone.user, someone.role) == ("view", "viewer")


def test_the_health_service_answers_without_credentials(
    auth_server: InProcessServer,
) -> None:
    health = health_pb2_grpc.HealthStub(auth_server.channel())

    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)

    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_needs_valid_credentials(auth_server: InProcessServer) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(auth_server.channel())
    request = reflection_pb2.ServerReflectionRequest(list_services="")

    with pytest.raises(grpc.RpcError) as excinfo:
        list(reflection.ServerReflectionInfo(iter([request]), timeout=5))
    answers = list(
        reflection.ServerReflectionInfo(
            iter([request]), metadata=role_metadata("viewer"), timeout=5
        )
    )

    assert excinfo.value.code() == grpc.StatusCode.UNAUTHENTICATED
    services = {s.name for s in answers[0].list_services_response.service}
    assert "pulse.v1.Pulse" in services


def test_repeated_failures_from_one_peer_are_slowed_down_but_verified_callers_not(
    auth_server: InProcessServer,
) -> None:
    channel = auth_server.channel()
    assert call(channel, "Stats", role_metadata("viewer")) is None
    for _ in range(4):  # waits 0, 0.1, 0.2, 0.4 s before answering
        assert call(channel, "Stats", basic("view", "guess")) is not None

    started = time.monotonic()
    error = call(channel, "Stats", basic("view", "guess"))
    fifth_seconds = time.monotonic() - started
    started = time.monotonic()
    assert call(channel, "Stats", role_metadata("viewer")) is None
    verified_seconds = time.monotonic() - started

    assert error is not None and error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert fifth_seconds >= 0.75
    assert verified_seconds < 0.5


# -- accepting users ------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "password"),
    [("root", "Adm1n-Passw0rd"), (BCRYPT_USER, BCRYPT_PASSWORD)],
    ids=["plaintext", "bcrypt"],
)
def test_plaintext_and_bcrypt_users_are_accepted(
    start_pulsed: Callable[..., PulsedProcess], user: str, password: str
) -> None:
    pulsed = start_pulsed(env={"PULSE_AUTH_USERS": AUTH_USERS})

    with Pulse(pulsed.addr, user=user, password=password) as pulse:
        identity = pulse.whoami()
        job_id = pulse.enqueue("accepted", {"by": user})
        job = pulse.get_job(job_id)

    assert (identity.authenticated, identity.user) == (True, user)
    assert job.topic == "accepted"


def test_bcrypt_runs_once_per_credential_not_once_per_call(
    start_inprocess: Callable[..., InProcessServer],
    auth_users: Config,
    monkeypatch: pytest.MonkeyPatch,
    run_worker: Callable[[Pulse], threading.Thread],
) -> None:
    verified: list[str] = []
    real = passwords.verify_password

    def counting(password: str, hashed: str) -> bool:
        verified.append(password)
        return real(password, hashed)

    monkeypatch.setattr(passwords, "verify_password", counting)
    server = start_inprocess(auth_users=auth_users.auth_users)

    with Pulse(server.addr, user=BCRYPT_USER, password=BCRYPT_PASSWORD) as pulse:
        pulse.whoami()
        job_ids = [pulse.enqueue("counted", {"i": i}) for i in range(10)]
        worker = Pulse(server.addr, user=BCRYPT_USER, password=BCRYPT_PASSWORD)
        worker.register("counted", lambda i: None)
        run_worker(worker)
        for job_id in job_ids:
            wait_for_status(pulse, job_id, "completed")
        pulse.stats()

    assert verified == [BCRYPT_PASSWORD]


# -- roles ----------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_call_exactly_what_the_role_table_grants(
    auth_server: InProcessServer, role: str
) -> None:
    channel = auth_server.channel()
    wrong = []

    for name in METHODS:
        error = call(channel, name, role_metadata(role))
        code = error.code() if error is not None else grpc.StatusCode.OK
        allowed = role_allows(role, REQUIRED_ROLE[name])
        assert code != grpc.StatusCode.UNAUTHENTICATED, name
        if allowed and code == grpc.StatusCode.PERMISSION_DENIED:
            wrong.append(f"{name}: refused, but {role} may call it")
        elif not allowed:
            if error is None or code != grpc.StatusCode.PERMISSION_DENIED:
                wrong.append(f"{name}: {code.name}, but {role} may not call it")
                continue
            assert error_code(error) == "permission_denied", name
            assert isinstance(error, grpc.Call)
            assert f"needs the {REQUIRED_ROLE[name]} role" in (error.details() or "")
            assert f"has the {role} role" in (error.details() or "")

    assert wrong == []


def test_the_sdk_maps_a_missing_role_to_permission_denied(
    auth_server: InProcessServer, run_worker: Callable[[Pulse], threading.Thread]
) -> None:
    with Pulse(auth_server.addr, user="root", password="Adm1n-Passw0rd") as admin:
        job_id = admin.enqueue("roles", {})
    viewer = Pulse(auth_server.addr, user="view", password="V1ew-Passw0rd")
    worker = Pulse(auth_server.addr, user="work", password="W0rk-Passw0rd")

    assert viewer.get_job(job_id).id == job_id
    with pytest.raises(PermissionDenied, match="SubmitJobs needs the worker role"):
        viewer.enqueue("roles", {})
    with pytest.raises(PermissionDenied, match="CancelJob needs the operator role"):
        worker.cancel(job_id)
    with pytest.raises(PermissionDenied, match="PauseDispatch needs the operator"):
        worker.pause_dispatch(reason="no")
    with pytest.raises(PermissionDenied, match="ListAudit needs the operator role"):
        worker.list_audit()
    viewer.register("roles", lambda payload: None)
    with pytest.raises(PermissionDenied, match="StreamJobs needs the worker role"):
        viewer.run()
    viewer.close()

    # A worker submits and runs jobs, and reads them.
    worker.register("roles", lambda payload: None)
    run_worker(worker)
    with Pulse(auth_server.addr, user="work", password="W0rk-Passw0rd") as producer:
        second = producer.enqueue("roles", {})
        wait_for_status(producer, job_id, "completed")
        wait_for_status(producer, second, "completed")


# -- the audit log --------------------------------------------------------------


def test_audit_rows_carry_the_authenticated_user_of_each_action(
    start_pulsed: Callable[..., PulsedProcess],
) -> None:
    pulsed = start_pulsed(env={"PULSE_AUTH_USERS": AUTH_USERS})
    admin = Pulse(pulsed.addr, user="root", password="Adm1n-Passw0rd")
    operator = Pulse(pulsed.addr, user="oper", password="0per-Passw0rd")
    hashed = Pulse(pulsed.addr, user=BCRYPT_USER, password=BCRYPT_PASSWORD)

    job_id = admin.enqueue("audited", {})
    bulk_id = admin.enqueue("audited.bulk", {})
    operator.cancel(job_id)
    admin.requeue(job_id)
    operator.cancel(bulk_id)
    # A server-streaming RPC: the caller must be set while its generator runs.
    requeued = hashed.requeue_jobs(topic="audited.bulk")
    hashed.pause_dispatch(reason="maintenance")
    paused_by = admin.dispatch_status()
    operator.resume_dispatch()
    entries = operator.list_audit().entries
    only_root = admin.list_audit(user="root").entries
    for pulse in (admin, operator, hashed):
        pulse.close()

    assert requeued.requeued == 1
    assert [(e.user, e.action, e.target) for e in entries] == [
        ("oper", "dispatch.resume", "*"),
        (BCRYPT_USER, "dispatch.pause", "*"),
        (BCRYPT_USER, "jobs.requeue", "audited.bulk"),
        ("oper", "job.cancel", bulk_id),
        ("root", "job.requeue", job_id),
        ("oper", "job.cancel", job_id),
    ]
    assert all(e.peer.startswith("ipv4:127.0.0.1:") for e in entries)
    assert [e.action for e in only_root] == ["job.requeue"]
    assert paused_by.all is not None and paused_by.all.paused_by == BCRYPT_USER


# -- logs and start-up ----------------------------------------------------------


def test_no_password_or_hash_ever_reaches_the_server_log(
    start_pulsed: Callable[..., PulsedProcess],
    run_worker: Callable[[Pulse], threading.Thread],
) -> None:
    pulsed = start_pulsed(env={"PULSE_AUTH_USERS": AUTH_USERS}, log_level="DEBUG")
    wrong_passwords = ["Wr0ng-Guess-One", "Wr0ng-Guess-Two"]

    with Pulse(pulsed.addr, user="oper", password="0per-Passw0rd") as operator:
        job_id = operator.enqueue("logged", {})
        worker = Pulse(pulsed.addr, user=BCRYPT_USER, password=BCRYPT_PASSWORD)
        worker.register("logged", lambda payload: None)
        run_worker(worker)
        wait_for_status(operator, job_id, "completed")
        operator.pause_dispatch(reason="r")
        operator.resume_dispatch()
    for user, password in [("oper", wrong_passwords[0]), ("ghost", wrong_passwords[1])]:
        with (
            Pulse(pulsed.addr, user=user, password=password) as wrong,
            pytest.raises(Unauthenticated),
        ):
            wrong.stats()
    with (
        Pulse(pulsed.addr, user="view", password="V1ew-Passw0rd") as viewer,
        pytest.raises(PermissionDenied),
    ):
        viewer.cancel(job_id)
    assert pulsed.stop() == []

    log = pulsed.log()
    tokens = [basic(*pair)[0][1].split()[1] for pair in CREDENTIALS.values()]
    for secret in [*ALL_SECRETS, *wrong_passwords, *tokens]:
        assert secret not in log
    assert "auth.failed peer=ipv4:127.0.0.1:" in log
    assert "user='oper' reason=wrong password" in log
    assert "user='ghost' reason=unknown user" in log
    assert "auth.denied" in log and "user=view" in log


def run_pulsed(env: dict[str, str]) -> tuple[int | None, str]:
    """Run pulsed until it exits (it should, at once); exit code and stderr."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pulsed.server"],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        return None, err
    return process.returncode, err


def test_a_malformed_user_list_stops_start_up_naming_the_entry_not_the_password(
    db_url: str,
) -> None:
    code, err = run_pulsed(
        {
            "DB_URL": db_url,
            "PULSE_GRPC_ADDR": f"127.0.0.1:{free_port()}",
            "PULSE_AUTH_USERS": "root:Adm1n-Passw0rd,oper:0per:Passw0rd",
        }
    )

    assert code == 2
    assert "Traceback" not in err
    assert "PULSE_AUTH_USERS entry 2 (user 'oper'): the third field" in err
    for secret in ("Adm1n-Passw0rd", "0per", "Passw0rd"):
        assert secret not in err


def test_a_password_bcrypt_would_truncate_stops_start_up(db_url: str) -> None:
    code, err = run_pulsed(
        {
            "DB_URL": db_url,
            "PULSE_GRPC_ADDR": f"127.0.0.1:{free_port()}",
            "PULSE_AUTH_USERS": "long:" + "L0ng-" * 15,
        }
    )

    assert code == 2
    assert "entry 1 (user 'long'): the password is 75 bytes long" in err
    assert "L0ng-" not in err


def test_auth_without_tls_on_a_network_address_is_warned_about(
    db_url: str, auth_users: Config, caplog: pytest.LogCaptureFixture
) -> None:
    from pulsed.server import Server

    caplog.set_level("WARNING", logger="pulsed")
    # Never started: only its start-up judgement of the address is wanted.
    server = Server(
        Config(db_dsn=db_url, grpc_addr="192.0.2.10:50051", **_auth(auth_users))
    )
    loopback = Server(Config(db_dsn=db_url, grpc_addr="[::1]:0", **_auth(auth_users)))
    try:
        server._warn_about_exposure()
        warned = [r.getMessage() for r in caplog.records]
        caplog.clear()
        loopback._warn_about_exposure()
    finally:
        server.stop()
        loopback.stop()

    assert len(warned) == 1 and "auth.without_tls addr=192.0.2.10:50051" in warned[0]
    assert "PULSE_TLS_CERT" in warned[0]
    assert caplog.records == []


def _auth(config: Config) -> dict[str, Any]:
    return {"auth_users": config.auth_users}

"""pulse-ops: where it connects and with what credentials, its config file,
its command line's mistakes, password hashes and authentication."""

from __future__ import annotations

import json
import os
import pathlib
import stat
from collections.abc import Callable

import pytest

from tests.e2e.conftest import Deployment
from tests.e2e.pulse_ops_cli import PulseOps
from tests.fixtures.servers import free_port


@pytest.fixture(scope="module")
def deployment(start_deployment: Callable[..., Deployment]) -> Deployment:
    return start_deployment()


@pytest.fixture
def ops(deployment: Deployment, tmp_path: pathlib.Path) -> PulseOps:
    """pulse-ops with an empty home and no address of its own."""
    return PulseOps(tmp_path)


def dead_addr() -> str:
    return f"127.0.0.1:{free_port()}"


# -- the config file ---------------------------------------------------------


def test_save_creds_writes_a_file_only_its_owner_can_read(ops: PulseOps) -> None:
    result = ops(
        "save",
        "creds",
        "--url=127.0.0.1:1234",
        "--username=alice",
        "--password=s3cret",
    )

    assert result.code == 0, result
    assert str(ops.config_file) in result.out
    assert stat.S_IMODE(ops.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(ops.config_file.parent.stat().st_mode) == 0o700
    assert json.loads(ops.config_file.read_text()) == {
        "url": "127.0.0.1:1234",
        "username": "alice",
        "password": "s3cret",
    }
    leftovers = [p.name for p in ops.config_file.parent.iterdir()]
    assert leftovers == ["config.json"]


def test_save_creds_replaces_a_loose_file_and_tightens_its_folder(
    ops: PulseOps,
) -> None:
    ops.config_file.parent.mkdir(parents=True)
    ops.config_file.parent.chmod(0o755)
    ops.config_file.write_text('{"url": "old:1", "password": "old"}')
    ops.config_file.chmod(0o644)

    result = ops("save", "creds", "--url=new:2", "--tls")

    assert result.code == 0, result
    assert stat.S_IMODE(ops.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(ops.config_file.parent.stat().st_mode) == 0o700
    assert json.loads(ops.config_file.read_text()) == {"url": "new:2", "tls": True}


def test_save_creds_reads_the_password_from_stdin_without_a_terminal(
    ops: PulseOps,
) -> None:
    result = ops(
        "save", "creds", "--url=h:1", "--username=bob", stdin="pa ss\nignored\n"
    )

    assert result.code == 0, result
    assert json.loads(ops.config_file.read_text())["password"] == "pa ss"


def test_without_xdg_config_home_the_file_is_under_dot_config(
    ops: PulseOps,
) -> None:
    result = ops("save", "creds", "--url=h:1", env={"XDG_CONFIG_HOME": ""})

    assert result.code == 0, result
    assert (ops.home / ".config" / "pulse" / "config.json").is_file()


def test_config_view_shows_each_value_with_its_source_and_hides_the_password(
    ops: PulseOps,
) -> None:
    ops("save", "creds", "--url=saved:1", "--username=alice", "--password=s3cret")

    text = ops("config", "view", env={"PULSE_ADDR": "env:2"})
    data = ops("config", "view", "--json", "--timeout=5", "--tls").json()

    assert text.code == 0, text
    rows = {line.split()[0]: line.split()[1:] for line in text.lines()[1:6]}
    assert rows == {
        "addr": ["env:2", "env"],
        "user": ["alice", "config", "file"],
        "password": ["********", "config", "file"],
        "tls": ["no", "default"],
        "ca_file": ["-", "default"],
    }
    assert "s3cret" not in text.out
    assert f"config file: {ops.config_file} (exists)" in text.out
    assert data["addr"] == {"value": "saved:1", "source": "config file"}
    assert data["password"] == {"value": "********", "source": "config file"}
    assert data["tls"] == {"value": True, "source": "flag"}
    assert data["timeout_seconds"] == {"value": 5.0, "source": "flag"}
    assert "s3cret" not in json.dumps(data)


# -- precedence: flag > environment > config file > default --------------------


def test_each_layer_of_settings_overrides_the_next(
    ops: PulseOps, deployment: Deployment
) -> None:
    env_addr, file_addr = dead_addr(), deployment.addr

    # Given nothing: the default address.
    default = ops("stats")
    # Given a config file that names the server.
    ops("save", "creds", f"--url={file_addr}")
    from_file = ops("stats")
    # Given the environment too, naming a dead address.
    from_env = ops("stats", env={"PULSE_ADDR": env_addr})
    # Given a flag too, naming the server again.
    from_flag = ops("stats", f"--addr={file_addr}", env={"PULSE_ADDR": env_addr})

    assert default.code == 1
    assert "localhost:50051" in default.error
    assert from_file.code == 0, from_file
    assert from_env.code == 1
    assert env_addr in from_env.error
    assert from_flag.code == 0, from_flag


def test_credentials_follow_the_same_order(ops: PulseOps) -> None:
    ops("save", "creds", "--url=h:1", "--username=file-user", "--password=p1")

    def user(*args: str, env: dict[str, str] | None = None) -> list[str]:
        data = ops("config", "view", "--json", *args, env=env).json()
        return [data["user"]["value"], data["user"]["source"]]

    assert user() == ["file-user", "config file"]
    assert user(env={"PULSE_USER": "env-user", "PULSE_PASSWORD": "p2"}) == [
        "env-user",
        "env",
    ]
    assert user(
        "--user=flag-user",
        "--password=p3",
        env={"PULSE_USER": "env-user", "PULSE_PASSWORD": "p2"},
    ) == ["flag-user", "flag"]
    # The saved password is file-user's: it never goes with another user.
    lone_flag_user = ops("stats", "--user=flag-user")
    assert lone_flag_user.code == 2
    assert "pass --password with --user" in lone_flag_user.error


def test_a_user_without_a_password_is_refused_before_any_call(
    ops: PulseOps,
) -> None:
    result = ops("stats", "--user=alice")

    assert result.code == 2
    assert "has no password" in result.error


def test_an_unreachable_server_is_named_in_one_line(ops: PulseOps) -> None:
    addr = dead_addr()

    result = ops("jobs", "list", f"--addr={addr}")

    assert result.code == 1
    assert result.out == ""
    assert addr in result.error
    assert result.error.startswith("cannot reach pulse")


def test_tls_to_a_plaintext_server_fails_in_one_line_of_its_own(
    ops: PulseOps, deployment: Deployment
) -> None:
    # gRPC's C core used to print its own handshake line first.
    result = ops("stats", f"--addr={deployment.addr}", "--tls")

    assert result.code == 1
    assert result.error.startswith(
        f"cannot reach pulse: server unavailable at {deployment.addr}"
    )
    assert "handshake" in result.error.lower()


def test_a_broken_config_file_is_reported_with_its_path(ops: PulseOps) -> None:
    ops.config_file.parent.mkdir(parents=True)
    ops.config_file.write_text("{not json")

    result = ops("stats")

    assert result.code == 2
    assert str(ops.config_file) in result.error


# -- the command line's mistakes ---------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["jobs"], "invalid use of 'jobs'"),
        (["frobnicate"], "unknown command 'frobnicate'"),
        ([], "no command given"),
        (["stats", "--no-such-flag"], "invalid use of 'stats'"),
        (["submit", "t", "--delay=1m", "--at=2030-01-01T00:00:00Z"], "submit"),
        (["jobs", "list", "--limit=0"], "--limit 0 is out of range 1..1000"),
        (["jobs", "list", "--limit=many"], "--limit 'many' is not a whole number"),
        (["jobs", "list", "--status=lost"], "unknown status 'lost'"),
        (["jobs", "requeue", "--status=pending", "--yes"], "cannot be requeued"),
        (["jobs", "get", "not-an-id"], "'not-an-id' is not a job id"),
        (["submit", "t", "--delay=soon"], "--delay 'soon' is not a duration"),
        (["submit", "t", "--at=2030-01-01T00:00:00"], "has no UTC offset"),
        (["submit", "t", "--priority=5000"], "--priority 5000 is out of range"),
        (["submit", "bad topic!"], "topic 'bad topic!' is invalid"),
        (["stats", "--timeout=0"], "--timeout '0' is out of range"),
        (["save", "creds", "--url=h:1", "--password=x"], "--password needs"),
        (["save", "creds", "--url=h:1", "--addr=h:2"], "save creds takes --url"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    ops: PulseOps, deployment: Deployment, args: list[str], says: str
) -> None:
    result = ops(*args, env={"PULSE_ADDR": deployment.addr})

    assert result.code == 2, result
    assert says in result.error
    assert result.out == ""


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ('{"to": "a@x",}', "line 1 column 14"),
        ('{\n  "a": 1\n  "b": 2\n}', "line 3 column 3"),
        ("[1, NaN]", "NaN"),
    ],
)
def test_invalid_json_is_refused_with_its_position(
    ops: PulseOps, deployment: Deployment, payload: str, where: str
) -> None:
    as_argument = ops("submit", "t", payload, env={"PULSE_ADDR": deployment.addr})
    from_stdin = ops("submit", "t", "-", stdin=payload)
    (ops.home / "p.json").write_text(payload)
    from_file = ops("submit", "t", "@p.json")

    for result in (as_argument, from_stdin, from_file):
        assert result.code == 2, result
        assert "not valid JSON" in result.error
        assert where in result.error
    assert "stdin" in from_stdin.error
    assert "'p.json'" in from_file.error
    assert deployment.sql.scalar("SELECT count(*) FROM jobs WHERE topic = 't'") == 0


def test_help_and_version_exit_0(ops: PulseOps) -> None:
    help_ = ops("--help")
    version = ops("--version")

    assert help_.code == 0
    assert "pulse-ops jobs requeue --status=S" in help_.out
    assert version.code == 0
    assert version.out.startswith("pulse-ops ")


# -- passwords and authentication ------------------------------------------------


def test_passwd_prints_a_bcrypt_hash_of_the_argument_or_stdin_first_line(
    ops: PulseOps,
) -> None:
    from_argument = ops("passwd", "s3cret")
    from_stdin = ops("passwd", stdin="s3cret\nsecond line\n")

    for result in (from_argument, from_stdin):
        assert result.code == 0, result
        assert result.out.startswith("$2b$12$")
        assert len(result.out.strip()) == 60
    assert from_argument.out != from_stdin.out  # salted


def test_passwd_refuses_a_password_bcrypt_would_truncate(ops: PulseOps) -> None:
    result = ops("passwd", stdin="x" * 73 + "\n")

    assert result.code == 2
    assert "73 bytes" in result.error
    assert result.out == ""


@pytest.fixture(scope="module")
def secured(
    start_deployment: Callable[..., Deployment],
    tmp_path_factory: pytest.TempPathFactory,
) -> Deployment:
    """A deployment that requires credentials: alice with a plain password,
    bob with a hash made by ``pulse-ops passwd``."""
    hashed = PulseOps(tmp_path_factory.mktemp("passwd"))("passwd", "b0b-pass")
    assert hashed.code == 0, hashed
    return start_deployment(auth_users=f"alice:s3cret,bob:{hashed.out.strip()}")


def test_right_credentials_are_accepted_from_each_layer(
    ops: PulseOps, secured: Deployment
) -> None:
    by_flag = ops(
        "whoami",
        "--json",
        f"--addr={secured.addr}",
        "--user=bob",
        "--password=b0b-pass",
    )
    by_env = ops(
        "whoami",
        "--json",
        env={
            "PULSE_ADDR": secured.addr,
            "PULSE_USER": "alice",
            "PULSE_PASSWORD": "s3cret",
        },
    )
    ops(
        "save",
        "creds",
        f"--url={secured.addr}",
        "--username=alice",
        "--password=s3cret",
    )
    by_file = ops("whoami", "--json")

    assert by_flag.code == 0, by_flag
    assert by_flag.json()["user"] == "bob"
    assert by_flag.json()["authenticated"] is True
    assert by_env.json()["user"] == "alice"
    assert by_file.json()["user"] == "alice"
    assert by_file.json()["auth_required"] is True


def test_a_wrong_password_says_authentication_failed(
    ops: PulseOps, secured: Deployment
) -> None:
    wrong = ops("stats", f"--addr={secured.addr}", "--user=alice", "--password=nope")
    missing = ops("stats", f"--addr={secured.addr}")

    assert wrong.code == 1
    assert wrong.error.startswith(f"authentication failed at {secured.addr}")
    assert "'alice' (user from flag)" in wrong.error
    assert "nope" not in wrong.err
    assert missing.code == 1
    assert "requires a user and password" in missing.error


def test_the_config_file_mode_does_not_depend_on_the_umask(
    ops: PulseOps,
) -> None:
    # The file is created with its mode, not chmod-ed after the fact.
    old = os.umask(0)
    try:
        result = ops("save", "creds", "--url=h:1", "--username=u", "--password=p")
    finally:
        os.umask(old)

    assert result.code == 0, result
    assert stat.S_IMODE(ops.config_file.stat().st_mode) == 0o600

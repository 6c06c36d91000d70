"""pulse-ops without a server: its usage text, values, settings and output."""

from __future__ import annotations

import datetime
import io
import json
import pathlib

import pytest
from docopt import docopt

from pulse_ops import arguments, cli, render, settings
from pulse_ops.arguments import UsageError
from pulse_ops.progress import ProgressBar

# -- the usage text ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["save", "creds", "--url=h:1", "--username=u", "--password=p"], "save_creds"),
        (["config", "view", "--json"], "config_view"),
        (["submit", "t", "{}", "--delay=5m", "--priority=-3"], "submit"),
        (["jobs", "list", "--status=pending", "--addr=h:1", "--json"], "list_jobs"),
        (["jobs", "get", "x"], "get"),
        (["jobs", "cancel", "a", "b"], "cancel"),
        (["jobs", "requeue", "a"], "requeue"),
        (["jobs", "requeue", "--status=dead_lettered", "--yes"], "requeue"),
        (["dispatch", "pause", "-m", "why", "--topic=t"], "pause"),
        (["dispatch", "resume"], "resume"),
        (["dispatch", "status"], "status"),
        (["stats", "--user=u", "--password=p", "--tls", "--ca-file=f"], "stats"),
        (["schedules", "list", "--topic=t"], "list_schedules"),
        (["schedules", "get", "n"], "get"),
        (["schedules", "pause", "n"], "pause"),
        (["schedules", "resume", "n"], "resume"),
        (["schedules", "delete", "n"], "delete"),
        (["schedules", "next", "n", "--count=3"], "next_fires"),
        (["schedules", "history", "n", "--limit=3"], "history"),
        (["audit", "--by=u", "--action=a", "--limit=5"], "audit"),
        (["passwd"], "passwd"),
        (["whoami", "--timeout=3"], "whoami"),
    ],
)
def test_every_command_of_the_usage_text_parses_and_routes(
    argv: list[str], command: str
) -> None:
    args = docopt(cli.__doc__ or "", argv)

    assert cli._command(args).__name__ == command


def test_each_option_is_defined_once_in_the_usage_text() -> None:
    # A description line that starts with an option defines it a second time,
    # and docopt then turns its value into a list.
    args = docopt(cli.__doc__ or "", ["stats"])

    assert [key for key, value in args.items() if isinstance(value, list)] == ["ID"]


def test_a_usage_error_names_the_forms_of_the_command() -> None:
    err = io.StringIO()

    code = cli.run(
        ["dispatch", "pause", "--bogus"],
        environ={},
        stdin=io.StringIO(),
        out=io.StringIO(),
        err=err,
    )

    assert code == 2
    assert err.getvalue() == (
        "pulse-ops: invalid use of 'dispatch': pulse-ops dispatch pause "
        "[-m REASON] [--topic=T] [options]; see 'pulse-ops --help'\n"
    )


# -- values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("90", 90),
        ("1.5", 1.5),
        ("0", 0),
        (" 2H ", 7200),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert arguments.duration("--delay", text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "5x", "m", "-3", "1h-5m", "nan", "inf", "5m5"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="--delay"):
        arguments.duration("--delay", text)


def test_times_need_an_offset() -> None:
    assert arguments.moment("--at", "2030-01-01T00:00:00Z") == datetime.datetime(
        2030, 1, 1, tzinfo=datetime.UTC
    )
    with pytest.raises(UsageError, match="no UTC offset"):
        arguments.moment("--at", "2030-01-01T00:00:00")
    with pytest.raises(UsageError, match="not an ISO 8601 time"):
        arguments.moment("--at", "tomorrow")


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"]
)
def test_a_time_that_utc_cannot_hold_is_a_usage_error(text: str) -> None:
    # Regression: these raised OverflowError when the SDK turned them into
    # UTC, and pulse-ops exited 1 with "unexpected error" instead of 2.
    with pytest.raises(UsageError, match="out of range"):
        arguments.moment("--at", text)
    with pytest.raises(UsageError, match="out of range"):
        arguments.moment_or_age("--since", text)


def test_since_takes_a_time_or_an_age() -> None:
    now = datetime.datetime(2030, 1, 1, 12, tzinfo=datetime.UTC)

    assert arguments.moment_or_age("--since", "2h", now) == now.replace(hour=10)
    assert arguments.moment_or_age("--since", "2030-01-01T11:00:00Z", now) == (
        now.replace(hour=11)
    )


def test_payloads_are_compacted_and_bad_json_names_its_position() -> None:
    assert arguments.payload('{ "a" : [1, 2] }') == b'{"a":[1,2]}'
    assert arguments.payload("-", io.BytesIO('"é"'.encode())) == '"é"'.encode()
    assert arguments.payload(None) is None
    with pytest.raises(UsageError, match="line 2 column 1"):
        arguments.payload('{"a": 1,\n}')
    with pytest.raises(UsageError, match="not UTF-8"):
        arguments.payload("-", io.BytesIO(b'"\xff"'))


# -- settings ------------------------------------------------------------------------


def test_settings_come_from_the_first_layer_that_sets_them(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"url": "file:1", "username": "f", "password": "fp"}))
    env = {"PULSE_ADDR": "env:1"}

    resolved = settings.resolve({"tls": True}, env, path)

    assert resolved.addr == settings.Setting("env:1", "env")
    assert resolved.user == settings.Setting("f", "config file")
    assert resolved.password == settings.Setting("fp", "config file")
    assert resolved.tls == settings.Setting(True, "flag")
    assert resolved.ca_file == settings.Setting(None, "default")
    assert resolved.shown()["password"].value == settings.REDACTED


def test_a_password_never_comes_from_a_layer_below_its_user(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"username": "f", "password": "fp"}))

    resolved = settings.resolve({"username": "flag-user"}, {}, path)

    assert resolved.password.value is None
    with pytest.raises(settings.SettingsError, match="pass --password with --user"):
        resolved.check()


def test_an_env_user_without_env_password_has_an_empty_one_as_in_the_sdk(
    tmp_path: pathlib.Path,
) -> None:
    resolved = settings.resolve({}, {"PULSE_USER": "u"}, tmp_path / "none.json")

    assert resolved.password == settings.Setting("", "env")


def test_the_config_path_follows_xdg(tmp_path: pathlib.Path) -> None:
    assert settings.config_path({"XDG_CONFIG_HOME": "/x", "HOME": "/h"}) == (
        pathlib.Path("/x/pulse/config.json")
    )
    assert settings.config_path({"XDG_CONFIG_HOME": "rel", "HOME": "/h"}) == (
        pathlib.Path("/h/.config/pulse/config.json")
    )


# -- output ---------------------------------------------------------------------------


def test_tables_align_columns_without_trailing_spaces() -> None:
    assert render.table(["A", "LONGER"], [["xyz", 1], ["", 22]]) == (
        "A    LONGER\nxyz  1\n     22"
    )


@pytest.mark.parametrize(
    ("seconds", "age", "span"),
    [
        (0, "0s", "0s"),
        (45, "45s", "45s"),
        (192, "3m12s", "3m12s"),
        (7500, "2h05m", "2h5m"),
        (97200, "1d3h", "1d3h"),
        (0.25, "0s", "250ms"),
    ],
)
def test_durations_are_shown_short(seconds: float, age: str, span: str) -> None:
    delta = datetime.timedelta(seconds=seconds)

    assert render.age(delta) == age
    assert render.span(delta) == span


def test_an_error_is_shortened_to_one_line() -> None:
    assert render.one_line("short") == "short"
    assert render.one_line("first\nsecond") == "first…"
    assert render.one_line("x" * 100, 10) == "x" * 9 + "…"


def test_the_progress_bar_redraws_one_line() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, 1000, "requeued")

    bar.update(500)
    bar.close()

    text = stream.getvalue()
    assert text.startswith("\r[" + "#" * 15 + "." * 15 + "] 500/1000 requeued")
    assert text.endswith("] 500/1000 requeued\n")
    assert "\n" not in text[:-1]


def test_stored_text_cannot_restyle_or_rewrite_the_terminal() -> None:
    from pulse_ops.render import fields, indent, table

    hostile = "ok\x1b[31mRED\x1b[0m\rover\nnext"

    assert table(["reason"], [[hostile]]).splitlines()[1] == (
        "ok\\x1b[31mRED\\x1b[0m\\rover\\nnext"
    )
    assert (
        fields([("reason", hostile)]) == "reason:  ok\\x1b[31mRED\\x1b[0m\\rover\\nnext"
    )
    # Multi-line text (a last error) keeps its lines, nothing else.
    assert indent(hostile) == "  ok\\x1b[31mRED\\x1b[0m\\rover\n  next"

"""Any value on pulse-ops' command line gets a result or one clear line, with
exit status 0, 1 or 2, never a traceback, and the stored data stays as it
was (issue 8, "bad input at the edges").

The commands run in this process through ``pulse_ops.cli.run`` (what
``main`` calls), against the shared seeded pulsed: a subprocess per example
would cost a second each. ``save creds``, ``config view`` and ``passwd`` are
left out: they read and write local files and the terminal, not pulsed.
"""

from __future__ import annotations

import io
import json
import pathlib
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pulse_ops import cli
from tests.property.conftest import Stored
from tests.property.strategies import TOPICS, TRICKY_TEXT

_NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(
        ["0", "1", "-1", "1000", "1001", "-1001", "1e3", "nan", "inf", "0x10", " 5 "]
    ),
    st.sampled_from(["", "١٢", "5.5", "--", "9" * 400]),
)
_DURATIONS = st.one_of(
    st.from_regex(r"(\d{1,6}(\.\d{1,3})?[smhd]){1,3}", fullmatch=True),
    st.sampled_from(["0", "30s", "1h30m", "1e400", "-5m", "nan", "5 m", "36500d"]),
    st.sampled_from(["36501d", "1.5.5s", "s", ""]),
)
_TIMES = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "2030-01-01T00:00:00Z",
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59-05:00",
            "1970-01-01T00:00:00Z",
            "2025-02-30T00:00:00Z",
            "yesterday",
        ]
    ),
    _DURATIONS,
)
_STATUSES = st.one_of(
    st.lists(
        st.sampled_from(
            ["dead_lettered", "canceled", "pending", "RUNNING", "finished", " "]
        ),
        min_size=1,
        max_size=3,
    ).map(",".join),
    st.text(max_size=20),
)
# The tricky texts without the three huge ones: command lines stay short.
_TEXT = st.one_of(st.text(max_size=30), st.sampled_from(TRICKY_TEXT[:-3]), TOPICS)
_IDS = st.one_of(st.uuids().map(str), _TEXT)
_PAYLOADS = st.one_of(
    st.sampled_from(['{"a": 1}', "null", "NaN", "[1, 2", "\ufeff{}", "@/nonexistent"]),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=8,
    ).map(json.dumps),
    _TEXT,
)


def _option(name: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """``[]`` or ``[f"--{name}=value"]``."""
    return st.one_of(st.just([]), values.map(lambda v: [f"--{name}={v}"]))


def _command(*parts: st.SearchStrategy[list[str]]) -> st.SearchStrategy[list[str]]:
    return st.tuples(*parts).map(
        lambda lists: [word for part in lists for word in part]
    )


def _words(*words: str) -> st.SearchStrategy[list[str]]:
    return st.just(list(words))


def _one(values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return values.map(lambda v: [v])


def commands(stored: Stored) -> st.SearchStrategy[list[str]]:
    """Argument lists for every command that talks to pulsed. Commands that
    change what they name get ids, names and topics that are not seeded."""

    def unseeded(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return values.map(lambda v: v + "-other" if stored.is_seeded(v) else v)

    seeded_ids = st.sampled_from(sorted(stored.job_ids.values()))
    seeded_names = st.sampled_from(stored.schedule_names)
    read_ids = st.one_of(_IDS, seeded_ids)
    read_names = st.one_of(_TEXT, seeded_names)
    common = st.tuples(
        st.sampled_from([[], ["--json"]]), _option("timeout", _NUMBERS)
    ).map(lambda parts: parts[0] + parts[1])
    return _command(
        st.one_of(
            _command(
                _words("submit"),
                _one(st.one_of(TOPICS, _TEXT)),
                st.one_of(st.just([]), _one(_PAYLOADS)),
                _option("priority", _NUMBERS),
                st.one_of(_option("delay", _DURATIONS), _option("at", _TIMES)),
                _option("max-attempts", _NUMBERS),
            ),
            _command(
                _words("jobs", "list"),
                _option("status", _STATUSES),
                _option("topic", _TEXT),
                _option("limit", _NUMBERS),
                _option("since", _TIMES),
                _option("error-like", _TEXT),
            ),
            _command(_words("jobs", "get"), _one(read_ids)),
            _command(
                st.sampled_from([["jobs", "cancel"], ["jobs", "requeue"]]),
                st.lists(unseeded(_IDS), min_size=1, max_size=3),
            ),
            _command(
                _words("jobs", "requeue"),
                _option("status", _STATUSES),
                # Always a topic: without one, every seeded dead letter would
                # match. Without --yes there is no terminal to confirm on.
                unseeded(_TEXT).map(lambda t: [f"--topic={t}"]),
                _option("error-like", _TEXT),
                _option("since", _TIMES),
                st.sampled_from([[], ["--yes"]]),
            ),
            _command(
                _words("dispatch", "pause"),
                st.one_of(st.just([]), _TEXT.map(lambda r: ["-m", r])),
                _option("topic", unseeded(_TEXT)),
            ),
            _command(_words("dispatch", "resume"), _option("topic", unseeded(_TEXT))),
            _command(
                st.sampled_from(
                    [
                        ["dispatch", "status"],
                        ["stats"],
                        ["whoami"],
                        ["schedules", "list"],
                    ]
                )
            ),
            _command(_words("schedules", "list"), _option("topic", _TEXT)),
            _command(
                _words("schedules"),
                _one(st.sampled_from(["get", "next", "history"])),
                _one(read_names),
                _option("count", _NUMBERS),
            ).map(_drop_count_unless_next),
            _command(
                _words("schedules"),
                _one(st.sampled_from(["history"])),
                _one(read_names),
                _option("limit", _NUMBERS),
            ),
            _command(
                _words("schedules"),
                _one(st.sampled_from(["pause", "resume", "delete"])),
                _one(unseeded(_TEXT)),
            ),
            _command(
                _words("audit"),
                _option("by", _TEXT),
                _option("action", _TEXT),
                _option("limit", _NUMBERS),
            ),
        ),
        common,
    )


def _lines_allowed(argv: list[str]) -> int:
    """One line, or one per ID for cancel and requeue of several jobs."""
    if argv[:2] in (["jobs", "cancel"], ["jobs", "requeue"]):
        return max(1, sum(1 for word in argv[2:] if not word.startswith("-")))
    return 1


def _drop_count_unless_next(argv: list[str]) -> list[str]:
    if argv[1] == "next":
        return argv
    return [word for word in argv if not word.startswith("--count=")]


@pytest.fixture(scope="module")
def run_cli(
    stored: Stored, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[list[str]], tuple[int, str, str]]:
    home = tmp_path_factory.mktemp("pulse-ops-home")
    environ = {
        "PULSE_ADDR": stored.addr,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(pathlib.Path(home) / "config"),
    }

    def run(argv: list[str]) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        stdin = io.TextIOWrapper(io.BytesIO(b""))
        code = cli.run(argv, environ=environ, stdin=stdin, out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    return run


def test_any_command_line_gets_a_result_or_one_clear_line(
    stored: Stored, run_cli: Callable[[list[str]], tuple[int, str, str]]
) -> None:
    before = stored.snapshot()

    @settings(max_examples=150)
    @given(argv=commands(stored))
    # Found by this property: a time UTC cannot hold was an "unexpected error".
    @example(argv=["jobs", "list", "--since=0001-01-01T00:00:00+05:00"])
    @example(argv=["submit", "t", "--at=9999-12-31T23:59:59-05:00"])
    def check(argv: list[str]) -> None:
        stored.new_log()
        code, out, err = run_cli(argv)

        assert code in (0, 1, 2), (code, err)
        assert "Traceback" not in out + err
        if code != 0:
            lines = err.splitlines()
            assert 1 <= len(lines) <= _lines_allowed(argv), err
            assert all(line.startswith("pulse-ops: ") for line in lines), err
            assert "unexpected error" not in err, err
        stored.assert_healthy()
        assert stored.snapshot() == before

    check()

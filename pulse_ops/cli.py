"""pulse-ops: the operator's command line for pulse.

Usage:
  pulse-ops save creds --url=HOST:PORT [--username=USER] [options]
  pulse-ops config view [options]
  pulse-ops submit TOPIC [PAYLOAD] [--priority=N] [--delay=D | --at=TIME]
                   [--max-attempts=N] [options]
  pulse-ops jobs list [--status=S] [--topic=T] [--limit=N] [--since=TIME]
                      [--error-like=TEXT] [options]
  pulse-ops jobs get ID [options]
  pulse-ops jobs cancel ID... [options]
  pulse-ops jobs requeue ID... [options]
  pulse-ops jobs requeue --status=S [--topic=T] [--error-like=TEXT]
                         [--since=TIME] [--yes] [options]
  pulse-ops dispatch pause [-m REASON] [--topic=T] [options]
  pulse-ops dispatch resume [--topic=T] [options]
  pulse-ops dispatch status [options]
  pulse-ops stats [options]
  pulse-ops schedules list [--topic=T] [options]
  pulse-ops schedules (get | pause | resume | delete) NAME [options]
  pulse-ops schedules next NAME [--count=N] [options]
  pulse-ops schedules history NAME [--limit=N] [options]
  pulse-ops audit [--by=USER] [--action=ACTION] [--limit=N] [options]
  pulse-ops passwd [PASSWORD]
  pulse-ops whoami [options]
  pulse-ops (-h | --help | --version)

Options on every command:
  --addr=HOST:PORT     The server (several replicas: comma-separated).
  --user=USER          User name for the server's credentials.
  --password=PASSWORD  Its password (PULSE_PASSWORD or 'save creds' keep it
                       out of the process list).
  --tls                Connect with TLS.
  --ca-file=FILE       CA certificates to trust (implies --tls).
  --json               Print one JSON document instead of text.
  --timeout=SECONDS    Time limit of each call to the server (default 30).
  -h, --help           Show this help.
  --version            Show the version.

Command options:
  --url=HOST:PORT      save creds: the server address to save.
  --username=USER      save creds: the user to save, with the password given
                       by --password, else asked for (or read from stdin).
  --priority=N         Higher runs first, -1000..1000 (default 0).
  --delay=D            Run after D: 30s, 5m, 2h, 1d, 1h30m or seconds.
  --at=TIME            Run at TIME, ISO 8601 with a UTC offset
                       (2025-06-01T12:00:00Z); a time without one is refused.
  --max-attempts=N     Attempts before the job is dead-lettered, 1..1000.
  --status=S           A status, or several separated by commas: scheduled,
                       pending, running, retrying, completed, dead_lettered,
                       canceled.
  --topic=T            Only this topic.
  --limit=N            At most N entries, 1..1000.
  --since=TIME         Created at or after TIME: ISO 8601 with an offset, or a
                       duration meaning that long ago (2h).
  --error-like=TEXT    Only jobs whose last error contains TEXT (any case).
  --yes                Requeue without asking for confirmation.
  -m REASON, --reason=REASON  Why dispatch is paused (shown by its status).
  --count=N            How many fire times to show, 1..1000 [default: 10].
  --by=USER            Only actions taken by USER.
  --action=ACTION      Only this action, such as job.cancel or dispatch.pause.

PAYLOAD is JSON text, @FILE for a file's content, or - for stdin; without
it the payload is JSON null. Connection settings come from the flags, then
PULSE_ADDR, PULSE_USER and PULSE_PASSWORD, then the file 'save creds' writes
($XDG_CONFIG_HOME/pulse/config.json), then localhost:50051. 'passwd' prints
a bcrypt hash for PULSE_AUTH_USERS, reading the password without echo (or
stdin's first line) when it is not given. Times are shown in UTC.

Exit status: 0 done, 1 the operation failed, 2 the command line is wrong.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from docopt import DocoptExit, docopt

from pulse_client import (
    DeadlineExceeded,
    InvalidArgument,
    PermissionDenied,
    PulseError,
    Unauthenticated,
    Unavailable,
)
from pulse_ops import arguments, credentials, jobs, operations, schedules, settings
from pulse_ops.arguments import UsageError
from pulse_ops.session import Session

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEFAULT_TIMEOUT_SECONDS = 30.0

Command = Callable[[Session], int]

# The words of each command, in docopt's keys, and what runs it. The first
# entry whose words are all set wins, so longer commands come first.
COMMANDS: list[tuple[tuple[str, ...], Command]] = [
    (("save", "creds"), credentials.save_creds),
    (("config", "view"), credentials.config_view),
    (("submit",), jobs.submit),
    (("jobs", "list"), jobs.list_jobs),
    (("jobs", "get"), jobs.get),
    (("jobs", "cancel"), jobs.cancel),
    (("jobs", "requeue"), jobs.requeue),
    (("dispatch", "pause"), operations.pause),
    (("dispatch", "resume"), operations.resume),
    (("dispatch", "status"), operations.status),
    (("stats",), operations.stats),
    (("schedules", "list"), schedules.list_schedules),
    (("schedules", "get"), schedules.get),
    (("schedules", "pause"), schedules.pause),
    (("schedules", "resume"), schedules.resume),
    (("schedules", "delete"), schedules.delete),
    (("schedules", "next"), schedules.next_fires),
    (("schedules", "history"), schedules.history),
    (("audit",), operations.audit),
    (("passwd",), credentials.passwd),
    (("whoami",), operations.whoami),
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (see the usage text)."""
    code = run(
        list(sys.argv[1:] if argv is None else argv),
        environ=os.environ,
        stdin=sys.stdin,
        out=sys.stdout,
        err=sys.stderr,
    )
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (| head): say nothing more, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


def run(
    argv: list[str],
    *,
    environ: Mapping[str, str],
    stdin: TextIO,
    out: TextIO,
    err: TextIO,
) -> int:
    def fail(message: str, code: int) -> int:
        print(f"pulse-ops: {message}", file=err)
        return code

    try:
        args = docopt(__doc__ or "", argv, version=_version())
    except DocoptExit:
        return fail(_usage_problem(argv), EXIT_USAGE)
    except SystemExit as exc:  # --help and --version print and exit 0
        return int(exc.code or 0)

    session = None
    try:
        session = Session(
            args=dict(args),
            settings=settings.resolve(
                _connection_flags(args), environ, settings.config_path(environ)
            ),
            timeout_seconds=_timeout(args),
            out=out,
            err=err,
            stdin=stdin,
        )
        return _command(args)(session)
    except UsageError as exc:
        return fail(str(exc), EXIT_USAGE)
    except settings.SettingsError as exc:
        return fail(str(exc), EXIT_USAGE)
    except PulseError as exc:
        message, code = describe_error(exc, session)
        return fail(message, code)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        return EXIT_FAILED
    except Exception as exc:  # never a traceback: one line, and the cause
        return fail(f"unexpected error: {type(exc).__name__}: {exc}", EXIT_FAILED)
    finally:
        if session is not None:
            session.close()


def describe_error(exc: PulseError, session: Session | None) -> tuple[str, int]:
    """One line for a failed call, and the exit status it deserves."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.code
    addr = session.addr if session is not None else "?"
    if isinstance(exc, Unauthenticated):
        return _authentication_failed(session, addr), EXIT_FAILED
    if isinstance(exc, PermissionDenied):
        return f"permission denied at {addr}: {text}", EXIT_FAILED
    if isinstance(exc, Unavailable):
        if addr not in text:
            text = f"server at {addr} unavailable: {text}"
        return f"cannot reach pulse: {text}", EXIT_FAILED
    if isinstance(exc, DeadlineExceeded):
        return f"no answer from {addr} in time ({text}); raise --timeout", EXIT_FAILED
    if isinstance(exc, InvalidArgument):
        return text, EXIT_USAGE
    return text, EXIT_FAILED


def _authentication_failed(session: Session | None, addr: str) -> str:
    user = session.settings.user if session is not None else None
    if user is None or user.value is None:
        return (
            f"authentication failed at {addr}: the server requires a user and "
            "password; pass --user and --password, set PULSE_USER and "
            "PULSE_PASSWORD, or save them with 'pulse-ops save creds'"
        )
    return (
        f"authentication failed at {addr} as {user.value!r} (user from "
        f"{user.source}): wrong user or password; see 'pulse-ops config view'"
    )


def _command(args: Mapping[str, Any]) -> Command:
    for words, command in COMMANDS:
        if all(args.get(word) for word in words):
            return command
    raise AssertionError(
        f"no command matches {sorted(k for k, v in args.items() if v)}"
    )


def _connection_flags(args: Mapping[str, Any]) -> dict[str, Any]:
    if args["save"]:
        # save creds reads --password, --tls and --ca-file as values to save.
        return {}
    return {
        "url": args["--addr"],
        "username": args["--user"],
        "password": args["--password"],
        "tls": args["--tls"],
        "ca_file": args["--ca-file"],
    }


def _timeout(args: Mapping[str, Any]) -> float:
    if args["--timeout"] is None:
        return DEFAULT_TIMEOUT_SECONDS
    return arguments.positive_seconds("--timeout", args["--timeout"])


def _usage_problem(argv: list[str]) -> str:
    """One line: the forms of the command the user tried, or the commands."""
    words = [word for word in argv if not word.startswith("-")][:2]
    groups = list(dict.fromkeys(command[0] for command, _ in COMMANDS))
    if not words or words[0] not in groups:
        tried = f"unknown command {words[0]!r}" if words else "no command given"
        return f"{tried}; commands: {', '.join(groups)}; see 'pulse-ops --help'"
    forms = [form for form in _usage_forms() if _names_command(form, words)]
    if not forms:
        forms = [form for form in _usage_forms() if _names_command(form, words[:1])]
    if len(forms) > 2:
        subcommands = dict.fromkeys(
            command[1] for command, _ in COMMANDS if command[0] == words[0]
        )
        forms = [f"pulse-ops {words[0]} ({' | '.join(subcommands)}) ..."]
    return (
        f"invalid use of {words[0]!r}: {'  or  '.join(forms)}; see 'pulse-ops --help'"
    )


def _names_command(form: str, words: list[str]) -> bool:
    """Whether the usage ``form`` starts with the command ``words``."""
    alternatives = []
    for token in re.findall(r"\([^)]*\)|\S+", form)[1:]:
        names = re.findall(r"[a-z]+", token) if token.startswith("(") else [token]
        if not all(name.isalpha() and name.islower() for name in names):
            break
        alternatives.append(names)
    if len(words) > len(alternatives):
        return False
    return all(word in names for word, names in zip(words, alternatives, strict=False))


def _usage_forms() -> list[str]:
    """The usage patterns of the docstring, each on one line."""
    usage = (__doc__ or "").split("Usage:", 1)[1].split("\n\n", 1)[0]
    forms: list[str] = []
    for line in usage.strip().splitlines():
        if line.strip().startswith("pulse-ops"):
            forms.append(line.strip())
        else:
            forms[-1] += " " + line.strip()
    return forms


def _version() -> str:
    try:
        return f"pulse-ops {importlib.metadata.version('pulse-queue')}"
    except importlib.metadata.PackageNotFoundError:
        return "pulse-ops (version unknown: not installed)"


if __name__ == "__main__":
    sys.exit(main())

"""Credentials: saving the connection settings, showing where each one comes
from, and hashing a password for the server's ``PULSE_AUTH_USERS``."""

from __future__ import annotations

import getpass
import os
from typing import TextIO

from pulse_client import InvalidArgument
from pulse_client.connection import parse_addresses
from pulse_ops import render, settings
from pulse_ops.arguments import UsageError
from pulse_ops.session import Session
from pulsed.passwords import hash_password


def save_creds(session: Session) -> int:
    args = session.args
    for option, instead in (("--addr", "--url"), ("--user", "--username")):
        if args[option] is not None:
            raise UsageError(f"save creds takes {instead}, not {option}")
    try:
        parse_addresses(args["--url"])
    except InvalidArgument as exc:
        raise UsageError(f"--url: {exc}") from None
    username = args["--username"]
    password = args["--password"]
    if password is not None and username is None:
        raise UsageError("--password needs --username")
    if username is not None and password is None:
        password = read_password(session.stdin, f"Password for {username}: ")
    ca_file = args["--ca-file"]
    if ca_file is not None:
        if not os.path.isfile(ca_file):
            raise UsageError(f"--ca-file {ca_file!r} is not a file")
        ca_file = os.path.abspath(ca_file)

    path = session.settings.config_path
    try:
        settings.save_config(
            path,
            {
                "url": args["--url"],
                "username": username,
                "password": password,
                "tls": bool(args["--tls"]) or None,
                "ca_file": ca_file,
            },
        )
    except OSError as exc:
        print(f"pulse-ops: cannot save {path}: {exc.strerror}", file=session.err)
        return 1
    session.emit({"saved": str(path)}, f"saved to {path} (readable by you alone)")
    return 0


def config_view(session: Session) -> int:
    shown = session.settings.shown()
    timeout_source = settings.FLAG if session.args["--timeout"] else settings.DEFAULT
    path = session.settings.config_path
    exists = path.is_file()
    data = {
        name: {"value": setting.value, "source": setting.source}
        for name, setting in shown.items()
    }
    data["timeout_seconds"] = {
        "value": session.timeout_seconds,
        "source": timeout_source,
    }

    def text() -> str:
        rows = [
            (name, _shown_value(setting.value), setting.source)
            for name, setting in shown.items()
        ]
        rows.append(("timeout", f"{session.timeout_seconds:g}s", timeout_source))
        state = "exists" if exists else "not saved yet"
        return (
            render.table(("SETTING", "VALUE", "SOURCE"), rows)
            + f"\nconfig file: {path} ({state})"
        )

    session.emit({**data, "config_file": str(path), "config_file_exists": exists}, text)
    return 0


def _shown_value(value: object) -> str:
    if value is None:
        return render.NONE
    if isinstance(value, bool):
        return render.yes_no(value)
    return str(value)


def passwd(session: Session) -> int:
    password = session.args["PASSWORD"]
    if password is None:
        password = read_password(session.stdin, "Password: ", confirm=True)
    try:
        hashed = hash_password(password)
    except InvalidArgument as exc:
        raise UsageError(str(exc)) from None
    print(hashed, file=session.out)
    return 0


def read_password(stdin: TextIO, prompt: str, *, confirm: bool = False) -> str:
    """A password typed without echo on a terminal, else stdin's first line."""
    if not stdin.isatty():
        line = stdin.readline()
        return line.removesuffix("\n").removesuffix("\r")
    password = getpass.getpass(prompt)
    if confirm and getpass.getpass("Again: ") != password:
        raise UsageError("the two passwords differ; nothing was hashed")
    return password

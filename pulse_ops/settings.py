"""Where pulse-ops connects, with what credentials, and where each value
came from.

Each value is taken from the first layer that sets it: command-line flags,
then the environment (``PULSE_ADDR``, ``PULSE_USER``, ``PULSE_PASSWORD``),
then the saved config file, then the default (``localhost:50051``, no
credentials, no TLS). The password is the exception: it comes from the layer
that gave the user, or a higher one. The config file is
``$XDG_CONFIG_HOME/pulse/config.json`` (``~/.config/pulse/config.json``
without it); it is only ever written with mode 0600, in a directory of mode
0700.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import secrets
from collections.abc import Mapping
from typing import Any

from pulse_client.connection import DEFAULT_ADDR

FLAG = "flag"
ENV = "env"
CONFIG_FILE = "config file"
DEFAULT = "default"

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700
REDACTED = "********"

# Keys of the config file, and the environment variable of each (if any).
_KEYS = ("url", "username", "password", "tls", "ca_file")
_ENVIRONMENT = {"url": "PULSE_ADDR", "username": "PULSE_USER"}


class SettingsError(Exception):
    """The settings cannot be used; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One resolved value and the layer it came from."""

    value: Any
    source: str


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything needed to connect, resolved through the layers."""

    addr: Setting
    user: Setting
    password: Setting
    tls: Setting
    ca_file: Setting
    config_path: pathlib.Path

    def check(self) -> None:
        """Refuse a user without a password, or a password without a user."""
        if self.user.value is not None and self.password.value is None:
            how = {
                FLAG: "pass --password with --user",
                CONFIG_FILE: "save both again with 'pulse-ops save creds'",
            }.get(self.user.source, "set PULSE_PASSWORD")
            raise SettingsError(
                f"user {self.user.value!r} (from {self.user.source}) has no "
                f"password: {how}"
            )
        if self.user.value is None and self.password.value is not None:
            raise SettingsError(
                f"a password (from {self.password.source}) but no user: pass "
                "--user, set PULSE_USER or save one with 'pulse-ops save creds'"
            )

    def shown(self) -> dict[str, Setting]:
        """Each setting by name, the password redacted."""
        password = self.password
        if password.value is not None:
            password = Setting(REDACTED, password.source)
        return {
            "addr": self.addr,
            "user": self.user,
            "password": password,
            "tls": self.tls,
            "ca_file": self.ca_file,
        }


def config_path(environ: Mapping[str, str]) -> pathlib.Path:
    """The config file: under ``$XDG_CONFIG_HOME``, else ``~/.config``."""
    base = environ.get("XDG_CONFIG_HOME") or ""
    if not base or not os.path.isabs(base):
        # The XDG spec says a relative value is to be ignored.
        home = environ.get("HOME") or str(pathlib.Path.home())
        base = os.path.join(home, ".config")
    return pathlib.Path(base) / "pulse" / "config.json"


def read_config(path: pathlib.Path) -> dict[str, Any]:
    """The saved values ({} when there is no file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        saved = json.loads(text)
    except ValueError as exc:
        raise SettingsError(
            f"config file {path} is not valid JSON ({exc}); fix it or save it "
            "again with 'pulse-ops save creds'"
        ) from None
    if not isinstance(saved, dict):
        raise SettingsError(f"config file {path} does not hold a JSON object")
    return {key: saved[key] for key in _KEYS if saved.get(key) not in (None, "")}


def resolve(
    flags: Mapping[str, Any], environ: Mapping[str, str], path: pathlib.Path
) -> Settings:
    """Resolve each setting through flags, environment, config file, default.

    ``flags`` holds the command line's values by config key (``url``,
    ``username``, ``password``, ``tls``, ``ca_file``); None or False means
    not given.
    """
    saved = read_config(path)
    env = {key: environ.get(name) or None for key, name in _ENVIRONMENT.items()}
    # With PULSE_USER set, an empty PULSE_PASSWORD is a password (the SDK
    # reads it so); alone, an empty one counts as unset.
    if env["username"] is not None:
        env["password"] = environ.get("PULSE_PASSWORD", "")
    elif environ.get("PULSE_PASSWORD"):
        env["password"] = environ["PULSE_PASSWORD"]

    layers = [(FLAG, flags), (ENV, env), (CONFIG_FILE, saved)]

    def pick(key: str, default: Any, *, down_to: str | None = None) -> Setting:
        for source, values in layers:
            if values.get(key) not in (None, False):
                return Setting(values[key], source)
            if source == down_to:
                break
        return Setting(default, DEFAULT)

    user = pick("username", None)
    # A password belongs with its user: it comes from the user's layer or a
    # higher one, never from a lower layer that may hold another user's.
    down_to = user.source if user.value is not None else None
    tls = pick("tls", False)
    return Settings(
        addr=pick("url", DEFAULT_ADDR),
        user=user,
        password=pick("password", None, down_to=down_to),
        tls=Setting(bool(tls.value), tls.source),
        ca_file=pick("ca_file", None),
        config_path=path,
    )


def save_config(path: pathlib.Path, values: Mapping[str, Any]) -> None:
    """Write the config file, readable by its owner only at every moment.

    The new content goes to a new file beside the old one and is renamed
    over it, so that a reader never sees half a file.
    """
    directory = path.parent
    directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    if (directory.stat().st_mode & 0o777) != DIRECTORY_MODE:
        directory.chmod(DIRECTORY_MODE)
    content = json.dumps(
        {key: values[key] for key in _KEYS if values.get(key) not in (None, "")},
        indent=2,
        sort_keys=True,
    )
    temporary = directory / f".config.json.{os.getpid()}.{secrets.token_hex(4)}"
    # Created with its final mode (O_EXCL: never through a planted link), so
    # the credentials are never in a file that others may read.
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(content + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise

"""Password hashing: bcrypt through the passlib API (the maintained libpass).

bcrypt reads at most 72 bytes of a password and ignores the rest. pulse never
truncates silently: a longer password is refused where it is configured or
hashed, and a longer password presented by a client matches no hash.
``hash_password`` is what ``pulse-ops passwd`` calls.
"""

from __future__ import annotations

from passlib.hash import bcrypt as _bcrypt  # type: ignore[import-untyped]

from pulse_client.errors import InvalidArgument

MAX_PASSWORD_BYTES = 72
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
DEFAULT_ROUNDS = 12
MIN_ROUNDS = 4
MAX_ROUNDS = 15


class PasswordRefused(InvalidArgument):
    """A password cannot be used: empty, too long for bcrypt, or with NUL."""


def password_problem(password: str) -> str | None:
    """Why ``password`` cannot be configured or hashed; None if it can.

    The answer never contains the password.
    """
    if not password:
        return "the password is empty"
    size = len(password.encode())
    if size > MAX_PASSWORD_BYTES:
        return (
            f"the password is {size} bytes long in UTF-8; bcrypt reads at most "
            f"{MAX_PASSWORD_BYTES}, and pulse does not truncate: use a shorter one"
        )
    if "\0" in password:
        return "the password contains a NUL character"
    return None


def hash_password(password: str, *, rounds: int = DEFAULT_ROUNDS) -> str:
    """A ``$2b$`` bcrypt hash of ``password`` for ``PULSE_AUTH_USERS``.

    Raises ``PasswordRefused`` for an empty password, one over 72 bytes in
    UTF-8, or one with a NUL character.
    """
    problem = password_problem(password)
    if problem is not None:
        raise PasswordRefused(problem)
    if not MIN_ROUNDS <= rounds <= MAX_ROUNDS:
        raise PasswordRefused(
            f"rounds {rounds} is out of range {MIN_ROUNDS}..{MAX_ROUNDS}"
        )
    hashed: str = _bcrypt.using(rounds=rounds, ident="2b").hash(password)
    return hashed


def is_bcrypt_hash(value: str) -> bool:
    """Whether ``value`` claims to be a bcrypt hash (by its prefix)."""
    return value.startswith(BCRYPT_PREFIXES)


def bcrypt_hash_problem(value: str) -> str | None:
    """Why ``value`` is not a usable bcrypt hash; None if it is."""
    if not is_bcrypt_hash(value):
        return "it does not start with " + ", ".join(BCRYPT_PREFIXES)
    try:
        parsed = _bcrypt.from_string(value)
    except (ValueError, TypeError):
        return "it is not a well-formed bcrypt hash ($2b$RR$ and 53 characters)"
    # Each round doubles the cost of every first login with the credential
    # (and of every wrong guess): past the limit one check takes minutes and
    # holds a server thread, even through a shutdown.
    if not MIN_ROUNDS <= parsed.rounds <= MAX_ROUNDS:
        return (
            f"its cost is {parsed.rounds} rounds; use {MIN_ROUNDS} to {MAX_ROUNDS} "
            "(pulse-ops passwd makes 12)"
        )
    return None


def looks_like_other_hash(value: str) -> bool:
    """Whether ``value`` looks like a bcrypt hash of a variant pulse does not
    take ($2$, $2x$): used as a plaintext password it would never match
    what its owner types."""
    return value.startswith("$2") and not is_bcrypt_hash(value)


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches the bcrypt hash ``hashed``.

    A password bcrypt would truncate, or that has a NUL, matches nothing.
    """
    if password_problem(password) is not None:
        return False
    return bool(_bcrypt.verify(password, hashed))

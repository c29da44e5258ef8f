"""Who may do what: roles, user names, password hashing and API tokens (no I/O).

Roles are what a person or a client system may do, not a ladder: a ``reviewer`` rules on
decisions, an ``editor`` changes rule sets, an ``admin`` manages accounts and tokens (and
may do everything); every role may read, every role but ``viewer`` may hand files in for
analysis.

Passwords are hashed with Argon2id through argon2-cffi (memory-hard, salted, parameters
in the hash, so stronger settings later only need a rehash at the next login). API tokens
are random 256-bit secrets: a plain SHA-256 of one cannot be brute-forced, and checking it
costs microseconds on every request instead of Argon2's deliberate ~50 ms.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from functools import cache
from typing import Any

from policy_engine.errors import ConfigError

ROLES = ("viewer", "reviewer", "editor", "admin")
READ, OVERRULE, EDIT_RULES, MANAGE_ACCOUNTS = "read", "overrule", "edit-rules", "manage-accounts"
ANALYSE = "analyse"  # hand files to the engine (it costs the workers' time)
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({READ}),
    "reviewer": frozenset({READ, OVERRULE, ANALYSE}),
    "editor": frozenset({READ, EDIT_RULES, ANALYSE}),
    "admin": frozenset({READ, OVERRULE, EDIT_RULES, MANAGE_ACCOUNTS, ANALYSE}),
}
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # hashing a megabyte "password" is a denial of service
TOKEN_PREFIX = "pe_"
# Logins: a browser session lasts SESSION_HOURS; failed logins are limited per account
# (against guessing one password) and per address (against trying many accounts).
SESSION_HOURS = 12.0
LOGIN_WINDOW_MINUTES = 15.0
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 20
_NAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")


def local_operator() -> str:
    """The OS user running a command on the server itself: who the audit trail names for
    what is done from its command line (recorded with ``via: cli``)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "unknown"


def may(role: str, permission: str) -> bool:
    return permission in PERMISSIONS.get(role, frozenset())


def check_role(role: str) -> str:
    if role not in ROLES:
        from policy_engine.policy.choices import did_you_mean

        hint = did_you_mean(role, ROLES)
        raise ConfigError(f"role {role!r} does not exist{hint}; roles: {', '.join(ROLES)}")
    return role


def check_name(name: str, what: str = "user name") -> str:
    """Lower-case letters, digits and . _ @ - (an e-mail address fits), 1 to 64 long:
    names appear in logs, pages and the audit trail, so nothing that could disguise
    itself there (spaces, control characters, look-alike Unicode)."""
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"{what} {name!r} is not allowed: use 1 to 64 lower-case letters, digits and"
            " . _ @ - (starting with a letter or digit)"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(
            f"the password is too short ({len(password)} characters): use at least"
            f" {MIN_PASSWORD_LENGTH}, or let the engine generate one"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ConfigError(f"the password is longer than {MAX_PASSWORD_LENGTH} characters")
    return password


def generate_password() -> str:
    return secrets.token_urlsafe(18)  # 24 characters, 144 bits


@cache
def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2-cffi's defaults follow RFC 9106's recommendations


def hash_password(password: str) -> str:
    return str(_hasher().hash(check_password(password)))


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches; never raises for a wrong or malformed one."""
    from argon2.exceptions import InvalidHashError, VerificationError

    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return bool(_hasher().verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return bool(_hasher().check_needs_rehash(password_hash))


@dataclass(frozen=True)
class NewToken:
    """A token as shown once to its owner, and what is stored of it."""

    secret: str  # pe_<lookup>_<secret>: shown once, never stored
    lookup: str  # stored in clear, indexed: finds the row without scanning
    sha256: str  # stored: what the secret is checked against


def new_token() -> NewToken:
    lookup = secrets.token_hex(6)
    secret = f"{TOKEN_PREFIX}{lookup}_{secrets.token_urlsafe(32)}"
    return NewToken(secret, lookup, token_sha256(secret))


def new_session_secret() -> tuple[str, str]:
    """A session cookie's secret and the hash kept of it. The secret is 256 random bits
    looked up on the server, so signing the cookie as well would add nothing."""
    secret = secrets.token_urlsafe(32)
    return secret, token_sha256(secret)


def token_sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def token_lookup(secret: str) -> str | None:
    """The lookup part of a token as presented, or None if it is not one of ours."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    lookup, _, rest = secret[len(TOKEN_PREFIX) :].partition("_")
    return lookup if len(lookup) == 12 and rest else None


def token_matches(secret: str, stored_sha256: str) -> bool:
    return hmac.compare_digest(token_sha256(secret), stored_sha256)

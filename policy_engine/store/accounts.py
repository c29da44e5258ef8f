"""Users and API tokens in the database. Hashing and the rules on names, roles and
passwords live in ``policy_engine.accounts``; this module only keeps the rows."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError

from policy_engine import accounts
from policy_engine.errors import ConfigError, StoreError
from policy_engine.store.database import retries_transient_errors
from policy_engine.store.repository import StoreFacet
from policy_engine.store.schema import (
    ApiToken,
    LoginAttempt,
    LoginEvent,
    User,
    WebSession,
    utcnow,
)

LAST_USE_RESOLUTION = timedelta(minutes=1)
# read on every request with a token: built once, the columns only
_TOKEN_BY_LOOKUP = select(
    ApiToken.id, ApiToken.name, ApiToken.role, ApiToken.secret_sha256, ApiToken.revoked_at,
    ApiToken.last_used_at,
).where(ApiToken.lookup == bindparam("lookup"))  # fmt: skip


@dataclass(frozen=True)
class Account:
    """Who is acting: a user or a client system's token, with its role."""

    kind: str  # user | token
    name: str
    role: str

    def may(self, permission: str) -> bool:
        return accounts.may(self.role, permission)


@dataclass(frozen=True)
class UserRow:
    name: str
    role: str
    created_at: datetime
    created_by: str
    disabled_at: datetime | None
    last_login_at: datetime | None


@dataclass(frozen=True)
class TokenRow:
    name: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class Login:
    """A new browser session: the cookie's secret (never stored) and its CSRF token."""

    secret: str
    csrf_token: str
    expires_at: datetime
    account: Account


class TooManyAttempts(ConfigError):
    """Too many failed logins lately for this account or this address."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after} s")
        self.retry_after = retry_after


@retries_transient_errors
class Accounts(StoreFacet):
    """The accounts of one database. ``by`` names who makes a change (e.g. ``root via
    cli``), kept with the row."""

    def _insert(self, row: object, exists: str) -> None:
        """Add ``row``; a name taken already is the caller's mistake (``exists``)."""
        try:
            with self._transaction() as s:
                s.add(row)
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise ConfigError(exists) from None
            raise

    # -- users ----------------------------------------------------------------------------
    def add_user(self, name: str, role: str, password: str, *, by: str) -> None:
        row = User(
            name=accounts.check_name(name),
            role=accounts.check_role(role),
            password_hash=accounts.hash_password(password),
            created_by=by,
        )
        self._insert(row, f"user {name!r} exists already; `users list` shows them")

    def users(self) -> list[UserRow]:
        with self._transaction() as s:
            return [
                UserRow(u.name, u.role, u.created_at, u.created_by, u.disabled_at, u.last_login_at)
                for u in s.scalars(select(User).order_by(User.name))
            ]

    def set_password(self, name: str, password: str) -> None:
        digest = accounts.hash_password(password)
        self._update_user(name, password_hash=digest, password_changed_at=utcnow())
        self.end_sessions_of(name)  # a new password logs every browser out

    def set_role(self, name: str, role: str) -> None:
        self._update_user(name, role=accounts.check_role(role))

    def disable(self, name: str) -> None:
        """The user can no longer log in, and their open sessions end."""
        self._update_user(name, disabled_at=utcnow())
        self.end_sessions_of(name)

    def enable(self, name: str) -> None:
        self._update_user(name, disabled_at=None)

    def _update_user(self, name: str, **values: object) -> None:
        with self._transaction() as s:
            done = s.execute(update(User).where(User.name == name).values(**values))
            if not done.rowcount:
                raise ConfigError(f"no user {name!r}; `users list` shows them")

    def authenticate(self, name: str, password: str) -> Account | None:
        """The user, if the password is right and the account enabled; else None (the
        same for every reason, so a caller cannot tell a wrong name from a wrong
        password). A hash made with older parameters is renewed on the way."""
        with self._transaction() as s:
            user = s.scalar(select(User).where(User.name == name))
            if user is None:
                accounts.verify_password(_dummy_hash(), password)  # the same time either way
                return None
            if not accounts.verify_password(user.password_hash, password):
                return None
            if user.disabled_at is not None:
                return None
            if accounts.needs_rehash(user.password_hash):
                user.password_hash = accounts.hash_password(password)
            user.last_login_at = utcnow()
            return Account("user", user.name, user.role)

    # -- tokens ---------------------------------------------------------------------------
    def create_token(self, name: str, role: str, *, by: str) -> str:
        """A new token for a client system; returns the secret, which is not kept."""
        token = accounts.new_token()
        row = ApiToken(
            name=accounts.check_name(name, "token name"),
            role=accounts.check_role(role),
            lookup=token.lookup,
            secret_sha256=token.sha256,
            created_by=by,
        )
        self._insert(row, f"a token named {name!r} exists already; choose another name")
        return token.secret

    def tokens(self) -> list[TokenRow]:
        with self._transaction() as s:
            return [
                TokenRow(t.name, t.role, t.created_at, t.created_by, t.revoked_at, t.last_used_at)
                for t in s.scalars(select(ApiToken).order_by(ApiToken.name))
            ]

    def revoke_token(self, name: str) -> None:
        with self._transaction() as s:
            done = s.execute(
                update(ApiToken)
                .where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            if not done.rowcount:
                raise ConfigError(f"no live token {name!r}; `tokens list` shows them")

    def verify_token(self, secret: str) -> Account | None:
        """The client a presented token belongs to, if it is live; else None."""
        lookup = accounts.token_lookup(secret)
        if lookup is None:
            return None
        with self._transaction() as s:
            row = s.execute(_TOKEN_BY_LOOKUP, {"lookup": lookup}).first()
            if row is None:
                return None
            token_id, name, role, digest, revoked_at, last_used_at = row
            if revoked_at is not None or not accounts.token_matches(secret, digest):
                return None
            now = utcnow()
            # a write per request would serialise every request on SQLite: the time of
            # last use is kept to the minute, so most requests only read
            if last_used_at is None or now - last_used_at > LAST_USE_RESOLUTION:
                s.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))
            return Account("token", name, role)

    def enabled_user(self, name: str) -> Account | None:
        """The user ``name`` if it exists and is enabled (single sign-on by a proxy that
        has already checked who it is)."""
        with self._transaction() as s:
            user = s.scalar(select(User).where(User.name == name))
        if user is None or user.disabled_at is not None:
            return None
        return Account("user", user.name, user.role)

    # -- browser sessions ---------------------------------------------------------------------
    def login(self, name: str, password: str, address: str) -> Login | None:
        """A new session for the user, or None for a wrong name or password (the same
        answer either way); TooManyAttempts once the limits are reached."""
        try:
            self._check_limits(name, address)
        except TooManyAttempts:
            self._log_event(name, address, "locked")
            raise
        account = self.authenticate(name, password)
        if account is None:
            with self._transaction() as s:
                s.add(LoginAttempt(user_name=name[:64], address=address[:64]))
                s.add(LoginEvent(user_name=name[:64], address=address[:64], outcome="failed"))
            return None
        secret, digest = accounts.new_session_secret()
        csrf = secrets.token_urlsafe(24)
        expires = utcnow() + timedelta(hours=accounts.SESSION_HOURS)
        with self._transaction() as s:
            s.add(
                WebSession(
                    secret_sha256=digest, user_name=account.name, csrf_token=csrf,
                    address=address[:64], expires_at=expires,
                )
            )  # fmt: skip
            s.add(LoginEvent(user_name=account.name, address=address[:64], outcome="login"))
        return Login(secret, csrf, expires, account)

    def _log_event(self, name: str, address: str, outcome: str) -> None:
        """A line of the audit log's logins (append-only)."""
        with self._transaction() as s:
            s.add(LoginEvent(user_name=name[:64], address=address[:64], outcome=outcome))

    def _check_limits(self, name: str, address: str) -> None:
        since = utcnow() - timedelta(minutes=accounts.LOGIN_WINDOW_MINUTES)
        with self._transaction() as s:
            recent = select(func.count(), func.min(LoginAttempt.at)).where(LoginAttempt.at >= since)
            by_name = s.execute(recent.where(LoginAttempt.user_name == name[:64])).one()
            by_address = s.execute(recent.where(LoginAttempt.address == address[:64])).one()
        for (count, oldest), limit in (
            (by_name, accounts.MAX_FAILURES_PER_ACCOUNT),
            (by_address, accounts.MAX_FAILURES_PER_ADDRESS),
        ):
            if count >= limit:
                free = oldest + timedelta(minutes=accounts.LOGIN_WINDOW_MINUTES) - utcnow()
                raise TooManyAttempts(max(int(free.total_seconds()) + 1, 1))

    def session(self, secret: str) -> tuple[Account, str] | None:
        """The user of a live session and its CSRF token; None if the session is unknown,
        ended or expired, or the user is disabled."""
        with self._transaction() as s:
            row = s.execute(
                select(WebSession, User)
                .join(User, User.name == WebSession.user_name)
                .where(WebSession.secret_sha256 == accounts.token_sha256(secret))
            ).first()
        if row is None:
            return None
        session, user = row
        if session.ended_at or session.expires_at <= utcnow() or user.disabled_at:
            return None
        return Account("user", user.name, user.role), session.csrf_token

    def end_session(self, secret: str, address: str = "unknown") -> None:
        """Log out: the session ends on the server, and the audit log says so."""
        with self._transaction() as s:
            row = s.scalar(
                select(WebSession).where(
                    WebSession.secret_sha256 == accounts.token_sha256(secret),
                    WebSession.ended_at.is_(None),
                )
            )
            if row is not None:
                row.ended_at = utcnow()
                s.add(LoginEvent(user_name=row.user_name, address=address[:64], outcome="logout"))

    def end_sessions_of(self, name: str) -> None:
        with self._transaction() as s:
            s.execute(
                update(WebSession)
                .where(WebSession.user_name == name, WebSession.ended_at.is_(None))
                .values(ended_at=utcnow())
            )


@cache
def _dummy_hash() -> str:
    """A hash to check against when the name is unknown, so that answering takes as long
    as for a known name (made once, lazily: hashing takes time)."""
    return accounts.hash_password("x" * accounts.MIN_PASSWORD_LENGTH)

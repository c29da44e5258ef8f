"""Connecting to the database, and keeping its schema in step with the code.

SQLite (the default: a file in the working folder) runs in WAL mode with a busy
timeout, so a report reader never blocks the nightly writer and a second writer waits
instead of failing at once. PostgreSQL is reached by URL (``postgresql://…`` uses
psycopg 3). Alembic migrations in ``migrations/`` are the only way the schema is made:
a new, empty database is migrated to the head on first use; an existing database whose
schema is behind is refused with the command that fixes it.
"""

from __future__ import annotations

import functools
import inspect as pyinspect
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from policy_engine.config import DEFAULT_DB_URL
from policy_engine.errors import ConfigError, StoreError

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 30.0
TRANSIENT_RETRY_S = 30.0  # how long a store operation retries a transient database error
_RETRY_FIRST_S, _RETRY_MAX_S = 0.1, 2.0
_SCHEMA_LOCK_KEY = 0x706F6C6963790001  # pg_advisory_lock key: "policy" + 1
_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


class SchemaBehindError(StoreError):
    """The database's schema is older than this software's: run ``policy-engine db upgrade``."""


def default_url() -> str:
    return DEFAULT_DB_URL


def parse_url(text: str) -> URL:
    """A SQLAlchemy URL; ``postgresql://`` means psycopg 3 (the driver we ship)."""
    try:
        url = make_url(text)
    except ArgumentError:
        raise ConfigError(
            f"database URL {text!r} is not a URL; e.g. sqlite:///policy-engine.sqlite or"
            " postgresql://user@host:5432/dbname"
        ) from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def describe(url: URL) -> str:
    """The URL without its password, for messages and logs."""
    return url.render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint; WAL-safe
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(
    text: str, *, pool_size: int | None = None, application_name: str | None = None
) -> Engine:
    """``pool_size``: at most this many connections to a server database (None: the
    default pool). A cluster's worker keeps one, so that hundreds of them do not exhaust
    PostgreSQL's connection limit; ``application_name`` names its connections on the
    server (pg_stat_activity), so a DBA can tell whose they are."""
    url = parse_url(text)
    options: dict[str, Any] = {"future": True}
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or "mode=memory" in database:
            raise ConfigError(
                f"database {text!r} is an in-memory SQLite database: everything stored in it"
                " is lost when the command ends. Give a file, e.g."
                " sqlite:///policy-engine.sqlite (three slashes, then a relative path) or"
                " sqlite:////var/lib/policy-engine/engine.sqlite (four: an absolute path)"
            )
        if not database.startswith("file:"):
            folder = Path(database).expanduser().resolve().parent
            if not folder.is_dir():
                raise StoreError(
                    f"database {describe(url)}: folder {folder} does not exist; create it or"
                    " point --db / POLICY_ENGINE_DB elsewhere"
                )
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    else:
        options["pool_pre_ping"] = True  # a server restarted overnight is not an error
        if pool_size is not None:
            options.update(pool_size=pool_size, max_overflow=0)
        if application_name and url.get_backend_name() == "postgresql":
            options["connect_args"] = {"application_name": application_name[:63]}
    try:
        engine = create_engine(url, **options)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise ConfigError(f"database {describe(url)}: no driver for it ({exc})") from exc
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def explain_database_error(engine: Engine, exc: DBAPIError) -> str:
    """What went wrong with the database, in words, and what to do."""
    where = describe(engine.url)
    detail = re.sub(r"\s+", " ", str(exc.orig)).strip()
    if "locked" in detail or "busy" in detail:
        return (
            f"database {where} is locked by another process (waited"
            f" {SQLITE_BUSY_TIMEOUT_S:g} s): {detail}. Retry when the other job has finished;"
            " for several concurrent workers use PostgreSQL."
        )
    if isinstance(exc, OperationalError) and engine.url.get_backend_name() != "sqlite":
        return (
            f"cannot use database {where}: {detail}. Is the server running and reachable,"
            " and is the URL (--db / POLICY_ENGINE_DB) right?"
        )
    return f"database {where}: {detail}"


@contextmanager
def database_errors(engine: Engine) -> Iterator[None]:
    """Turn driver errors into StoreError with a readable message."""
    try:
        yield
    except DBAPIError as exc:
        raise StoreError(explain_database_error(engine, exc)) from exc


# -- transient errors ----------------------------------------------------------------------
# PostgreSQL error classes that say "not now" rather than "never": connection exceptions
# (08), the server shutting down or starting up (57P01-57P03), serialisation failures and
# deadlocks (40001, 40P01), lock not available (55P03).
_TRANSIENT_SQLSTATES = ("08", "57P01", "57P02", "57P03", "40001", "40P01", "55P03")
_TRANSIENT_WORDS = (
    "database is locked",
    "database table is locked",
    "connection refused",
    "connection failed",
    "server closed the connection",
    "terminating connection",
    "the database system is",
    "could not connect",
    "connection is closed",
    "consuming input failed",
)


class CommitOutcomeUnknown(StoreError):
    """The connection was lost while the server committed: the transaction may or may not
    have been applied, so it is never simply run again (that could record twice)."""


def commit(session: Any, engine: Engine) -> None:
    """Commit ``session``; a PostgreSQL connection lost during the commit is reported as
    ``CommitOutcomeUnknown`` (SQLite commits locally: a failed commit did not happen)."""
    try:
        session.commit()
    except DBAPIError as exc:
        if engine.url.get_backend_name() == "sqlite" or not _connection_lost(exc):
            raise
        raise CommitOutcomeUnknown(
            f"{explain_database_error(engine, exc)} The connection was lost while committing,"
            " so whether this change was recorded is unknown; it is not retried."
        ) from exc


def _connection_lost(exc: DBAPIError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    return exc.connection_invalidated or not sqlstate or sqlstate.startswith(("08", "57P"))


def is_transient(exc: BaseException) -> bool:
    """Whether a database error may go away by itself (a restart, a dropped connection,
    a lock held a little too long), so that the same operation is worth trying again."""
    if isinstance(exc, CommitOutcomeUnknown):
        return False
    cause = exc.__cause__ if isinstance(exc, StoreError) else exc
    if not isinstance(cause, DBAPIError):
        return False
    if cause.connection_invalidated:
        return True
    sqlstate = getattr(cause.orig, "sqlstate", None) or ""
    if sqlstate.startswith(_TRANSIENT_SQLSTATES):
        return True
    text = str(cause.orig).lower()
    return isinstance(cause, OperationalError) and any(w in text for w in _TRANSIENT_WORDS)


_retrying = threading.local()
F = TypeVar("F", bound=Callable[..., Any])


def _retry_transient(method: F) -> F:
    """Run ``method`` (one or a few whole transactions) again, with doubling pauses, while
    it fails with a transient database error, for up to ``self.transient_retry_s``. Only
    the outermost call retries: nested store calls are retried with it."""

    @functools.wraps(method)
    def retried(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_retrying, "active", False):
            return method(self, *args, **kwargs)
        _retrying.active = True
        try:
            deadline = time.monotonic() + self.transient_retry_s
            pause = _RETRY_FIRST_S
            while True:
                try:
                    return method(self, *args, **kwargs)
                except StoreError as exc:
                    if not is_transient(exc) or time.monotonic() + pause > deadline:
                        raise
                    log.warning("database error, trying again in %.1f s: %s", pause, exc)
                    time.sleep(pause)
                    pause = min(pause * 2, _RETRY_MAX_S)
        finally:
            _retrying.active = False

    return retried  # type: ignore[return-value]


C = TypeVar("C", bound=type)


def retries_transient_errors(cls: C) -> C:
    """Every public method of ``cls`` retries transient database errors (see
    ``_retry_transient``); the class gives ``transient_retry_s``."""
    for name, value in list(vars(cls).items()):
        if not name.startswith("_") and pyinspect.isfunction(value):
            setattr(cls, name, _retry_transient(value))
    return cls


# -- migrations ---------------------------------------------------------------------------
def migrations_dir() -> Path:
    if not (_MIGRATIONS / "env.py").is_file():
        raise StoreError(
            f"the Alembic migrations are missing (looked in {_MIGRATIONS}); reinstall"
            " policy_engine from its source tree"
        )
    return _MIGRATIONS


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    config = _alembic_config(None)
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None, "migrations/ holds no revision"
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with database_errors(engine), engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Run the migrations up to ``revision``; returns (before, after)."""
    from alembic import command

    before = current_revision(engine)
    with database_errors(engine), engine.begin() as connection:
        command.upgrade(_alembic_config(connection), revision)
    return before, current_revision(engine) or ""


def is_empty(engine: Engine) -> bool:
    with database_errors(engine), engine.connect() as connection:
        return not inspect(connection).get_table_names()


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[None]:
    """On PostgreSQL, one process at a time makes a schema (workers starting together on
    a new database); SQLite serialises writers by itself."""
    if engine.url.get_backend_name() != "postgresql":
        yield
        return
    with database_errors(engine), engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _SCHEMA_LOCK_KEY})
            connection.commit()


def ensure_schema(engine: Engine, *, on_create: Callable[[str], None] | None = None) -> None:
    """Make a new, empty database; refuse one whose schema is behind or ahead."""
    if current_revision(engine) == head_revision():
        return
    with _schema_lock(engine):
        _ensure_schema(engine, on_create)


def _ensure_schema(engine: Engine, on_create: Callable[[str], None] | None) -> None:
    current, head = current_revision(engine), head_revision()
    if current == head:
        return  # made by another process while this one waited for the lock
    where = describe(engine.url)
    if current is None and is_empty(engine):
        if on_create is not None:
            on_create(f"new database {where}: creating the schema (migrations to {head})")
        upgrade(engine)
        return
    if current is None:
        raise SchemaBehindError(
            f"database {where} has tables but no policy_engine schema version; it belongs to"
            " something else. Point --db / POLICY_ENGINE_DB at a database of its own."
        )
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(_alembic_config(None))
    known = {script.revision for script in scripts.walk_revisions()}
    if current not in known:
        raise StoreError(
            f"database {where} is at schema {current}, newer than this software knows"
            f" (head {head}); upgrade policy_engine."
        )
    raise SchemaBehindError(
        f"database {where} is at schema {current}, behind this software's {head}; run:"
        f" policy-engine --db '{where}' db upgrade"
    )

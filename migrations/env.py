"""Alembic environment for policy_engine.

Used two ways: by ``policy-engine db upgrade`` (and first use of a new database), which
hands over its own connection in ``config.attributes["connection"]``; and by developers
running ``alembic`` from the repository root (alembic.ini), where the URL comes from
``-x db=URL``, else ``POLICY_ENGINE_DB``, else the default SQLite file.
"""

from __future__ import annotations

import os

from alembic import context

from policy_engine.store.database import default_url, make_engine
from policy_engine.store.schema import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata


def _render_item(kind: str, obj: object, autogen_context: object) -> str | bool:
    """Autogenerate writes our UTC type as the plain type it is, so that migrations never
    import application code (which changes; migrations must not)."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("db") or os.environ.get(
        "POLICY_ENGINE_DB", default_url()
    )
    with make_engine(url).begin() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()

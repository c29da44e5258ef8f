"""Overrides say who really acted and how: the authenticated account (or the OS user on
the server's command line), the way in (cli, api, app) and a reason code.

Plain ADD COLUMN on both databases, never a batch rebuild of the table: rebuilding
``overrides`` on SQLite would drop its append-only triggers.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("overrides", sa.Column("actor", sa.String(length=200), nullable=True))
    op.add_column(
        "overrides", sa.Column("via", sa.String(length=16), server_default="cli", nullable=False)
    )
    op.add_column("overrides", sa.Column("reason_code", sa.String(length=64), nullable=True))


def downgrade() -> None:
    """Downgrade schema (SQLite 3.35+ drops columns in place)."""
    for column in ("reason_code", "via", "actor"):
        op.drop_column("overrides", column)

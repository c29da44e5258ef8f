"""The photosensitivity check's result on each scan (verdict, failing intervals, series).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29

ADD COLUMN, not a batch rebuild: rebuilding the table would drop SQLite's triggers that
freeze completed scans. The result is written with the scan's completion, in the same
transaction, so a completed scan stays frozen with it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("scans", sa.Column("photosensitivity", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("scans", "photosensitivity")

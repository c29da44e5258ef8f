"""How the numbers behind each decision were measured (``one-vs-null/1``): decisions
made before, on one softmax over a rule set's prompts, keep NULL and are read that way.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30

ADD COLUMN, not a batch rebuild: rebuilding the table would drop SQLite's append-only
triggers on decisions. The value is written with the decision and never changed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("decisions", sa.Column("measure", sa.String(length=32), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("decisions", "measure")

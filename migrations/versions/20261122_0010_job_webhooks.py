"""Job webhooks: where to tell a client its job finished, and how delivery went.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("analysis_jobs", sa.Column("webhook_url", sa.Text(), nullable=True))
    op.add_column(
        "analysis_jobs",
        sa.Column("webhook_attempts", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "analysis_jobs",
        sa.Column("webhook_delivered_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("analysis_jobs", sa.Column("webhook_error", sa.Text(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    for column in ("webhook_error", "webhook_delivered_at", "webhook_attempts", "webhook_url"):
        op.drop_column("analysis_jobs", column)

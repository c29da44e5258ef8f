"""Evidence thumbnails as they were, where a detector's hidden classes (nudity) were
pixelated: kept only with the setting ``reveal_hidden_evidence``, shown only in the app
to reviewers logged in there. Reports and every other copy read ``thumbnail``.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05

ADD COLUMN, not a batch rebuild: rebuilding the table would drop SQLite's triggers that
freeze completed scans' frames. The value is written with the frame.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("frames", sa.Column("revealed_thumbnail", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("frames", "revealed_thumbnail")

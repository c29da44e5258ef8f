"""Each scan's X-CLIP windows (the model's identity, the prompts scored, per window its
extent and one logit per prompt): X-CLIP categories are judged, and their thresholds
re-evaluated, from them without decoding. Older scans keep NULL: X-CLIP did not run.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05

ADD COLUMN, not a batch rebuild: rebuilding the table would drop SQLite's triggers that
freeze completed scans. The value is written with the scan's completion.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("scans", sa.Column("xclip", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("scans", "xclip")

"""Each scan's object detections (the detectors' identities, every sampled frame's boxes):
detector categories are judged, and re-evaluated, from them without decoding. Older scans
keep NULL: no detector ran.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05

ADD COLUMN, not a batch rebuild: rebuilding the table would drop SQLite's triggers that
freeze completed scans. The value is written with the scan's completion.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("scans", sa.Column("detections", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("scans", "detections")

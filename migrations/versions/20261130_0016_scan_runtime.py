"""What ran each scan's image tower (``torch``, ``openvino 2026.4.1``): a scan made with
another runtime is not reused as if it were the same. Older scans keep NULL: torch.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30

ADD COLUMN, not a batch rebuild: rebuilding the table would drop SQLite's triggers that
freeze completed scans. The value is written with the scan's completion.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("scans", sa.Column("runtime", sa.String(length=64), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("scans", "runtime")

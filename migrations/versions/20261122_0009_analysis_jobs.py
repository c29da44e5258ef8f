"""Analysis jobs through the API, queued as ingest_files rows (with the file to read in
``source_path``), so workers claim, retry and quarantine them like any file.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("ingest_files", sa.Column("source_path", sa.Text(), nullable=True))
    op.create_table(
        "analysis_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("original_name", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ingest_file_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ingest_file_id"],
            ["ingest_files.id"],
            name=op.f("fk_analysis_jobs_ingest_file_id_ingest_files"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analysis_jobs")),
        sa.UniqueConstraint(
            "created_by",
            "idempotency_key",
            name=op.f("uq_analysis_jobs_created_by"),
        ),  # fmt: skip
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("analysis_jobs")
    op.drop_column("ingest_files", "source_path")

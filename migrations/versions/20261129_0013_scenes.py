"""Scenes per scan: spans, frames inside, keyframe, embedding; per-scene coverage.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29

``scans.scenes`` (ADD COLUMN, not a batch rebuild: rebuilding the table would drop
SQLite's triggers that freeze completed scans) records how cuts were found, and
``scans.frame_spans`` where each frame's span starts under ``scenes`` sampling (a
scene's middle frame stands for the scene from its cut); both are written with the
scan's completion, in the same transaction. ``scenes`` and
``scene_shares`` are new tables, append-only like frames and score sets (reports list
scenes; search answers from them), with the triggers of migration 0004.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Migrations never import application code: 0004's function name is written out here.
FUNCTION = "policy_engine_audit_trail"
APPEND_ONLY = ("scenes", "scene_shares")


def _message(table: str, what: str) -> str:
    return (
        f"{table}: {what} refused, these rows are part of the audit trail; record a new row instead"
    )


def _append_only(table: str, postgres: bool) -> None:
    if postgres:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION {FUNCTION}()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
        )
        return
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only_{action.lower()} BEFORE {action} ON {table}"
            f" FOR EACH ROW BEGIN SELECT RAISE(ABORT, '{_message(table, action)}'); END"
        )


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("scans", sa.Column("scenes", sa.JSON(), nullable=True))
    op.add_column("scans", sa.Column("frame_spans", sa.LargeBinary(), nullable=True))
    op.create_table(
        "scenes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("start", sa.Float(), nullable=False),
        sa.Column("end", sa.Float(), nullable=False),
        sa.Column("first_frame", sa.Integer(), nullable=False),
        sa.Column("frame_count", sa.Integer(), nullable=False),
        sa.Column("keyframe", sa.Integer(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["scan_id"], ["scans.id"], name=op.f("fk_scenes_scan_id_scans")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scenes")),
        sa.UniqueConstraint("scan_id", "index", name=op.f("uq_scenes_scan_id")),
    )
    op.create_table(
        "scene_shares",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=False),
        sa.Column("categories_sha256", sa.String(length=80), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("shares", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scans.id"], name=op.f("fk_scene_shares_scan_id_scans")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scene_shares")),
        sa.UniqueConstraint("scan_id", "categories_sha256", name=op.f("uq_scene_shares_scan_id")),
    )
    postgres = op.get_context().dialect.name == "postgresql"
    for table in APPEND_ONLY:
        _append_only(table, postgres)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("scene_shares")  # drops their triggers with them
    op.drop_table("scenes")
    op.drop_column("scans", "frame_spans")
    op.drop_column("scans", "scenes")

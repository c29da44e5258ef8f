"""Evidence pictures as they were, where a detector's hidden classes (nudity) were
pixelated, and who looked at them.

``revealed_pictures``: kept only with the setting ``reveal_hidden_evidence``, shown only
in the app to reviewers logged in there; reports and every other copy read
``frames.thumbnail``. Not append-only, unlike the frames: explicit material must be
deletable (``policy-engine db purge-revealed``), so it is kept apart from them.

``revealed_views``: each showing of one (who, when, which frame), for the audit log:
append-only, like the other audit records (triggers below, and TRUNCATE refused on
PostgreSQL through 0004's function).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTION = "policy_engine_audit_trail"  # made by 0004


def _when(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "revealed_pictures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=False),
        sa.Column("frame_index", sa.Integer(), nullable=False),
        sa.Column("jpeg", sa.LargeBinary(), nullable=False),
        _when("kept_at"),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scans.id"], name=op.f("fk_revealed_pictures_scan_id_scans")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revealed_pictures")),
        sa.UniqueConstraint(
            "scan_id", "frame_index", name=op.f("uq_revealed_pictures_scan_id")
        ),
    )
    op.create_index("ix_revealed_pictures_kept_at", "revealed_pictures", ["kept_at"])
    op.create_table(
        "revealed_views",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=False),
        sa.Column("frame_index", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=True),
        _when("at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revealed_views")),
    )
    op.create_index("ix_revealed_views_at", "revealed_views", ["at"])
    if op.get_context().dialect.name == "postgresql":
        for name, when, level in (("append_only", "UPDATE OR DELETE", "ROW"),
                                  ("no_truncate", "TRUNCATE", "STATEMENT")):  # fmt: skip
            op.execute(
                f"CREATE TRIGGER revealed_views_{name} BEFORE {when} ON revealed_views"
                f" FOR EACH {level} EXECUTE FUNCTION {FUNCTION}()"
            )
        return
    for action in ("UPDATE", "DELETE"):
        message = (
            f"revealed_views: {action} refused, these rows are part of the audit trail;"
            " record a new row instead"
        )
        op.execute(
            f"CREATE TRIGGER revealed_views_append_only_{action.lower()} BEFORE {action}"
            f" ON revealed_views FOR EACH ROW BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("revealed_views")  # its triggers go with it
    op.drop_table("revealed_pictures")

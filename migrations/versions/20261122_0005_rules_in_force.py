"""Rule sets in force: from when each version of a rule file (by its resolved path) was
the one loaded, so a broken file falls back on the version last in force.

The table is append-only, like the rest of the audit trail (0004): a revert is a new row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "rulesets_in_force",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("ruleset_id", sa.Integer(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ruleset_id"],
            ["rulesets.id"],
            name=op.f("fk_rulesets_in_force_ruleset_id_rulesets"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rulesets_in_force")),
    )
    with op.batch_alter_table("rulesets_in_force", schema=None) as batch_op:
        batch_op.create_index("ix_rulesets_in_force_path", ["path", "id"], unique=False)
    # What was the fallback until now (the newest text recorded from each path) stays it
    # until the file next loads.
    op.execute(
        "INSERT INTO rulesets_in_force (path, ruleset_id, since)"
        " SELECT path, id, first_seen FROM rulesets"
        " WHERE id IN (SELECT max(id) FROM rulesets GROUP BY path)"
    )
    _append_only("rulesets_in_force")


def _append_only(table: str) -> None:
    """UPDATE, DELETE and TRUNCATE refused, as 0004 does for the audit tables."""
    if op.get_context().dialect.name == "postgresql":
        for when, level in (("UPDATE OR DELETE", "ROW"), ("TRUNCATE", "STATEMENT")):
            name = f"{table}_{'append_only' if level == 'ROW' else 'no_truncate'}"
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {when} ON {table} FOR EACH {level}"
                " EXECUTE FUNCTION policy_engine_audit_trail()"
            )
        return
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only_{action.lower()} BEFORE {action} ON {table}"
            f" FOR EACH ROW BEGIN SELECT RAISE(ABORT, '{table}: {action} refused, these rows"
            " are part of the audit trail; record a new row instead'); END"
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("rulesets_in_force", schema=None) as batch_op:
        batch_op.drop_index("ix_rulesets_in_force_path")
    op.drop_table("rulesets_in_force")

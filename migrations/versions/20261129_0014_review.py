"""The review app: claims on assets, four-eyes proposals and their confirmations, and a
record of every login and logout.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29

New tables only (CREATE TABLE): nothing existing is rebuilt, so SQLite keeps the
append-only triggers of 0004. Proposals, confirmations and login events are audit
records: append-only, like overrides (triggers below, and TRUNCATE refused on
PostgreSQL through 0004's function). A claim is a lock that lapses, changed in place.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("override_proposals", "override_confirmations", "login_events")
FUNCTION = "policy_engine_audit_trail"  # made by 0004


def _when(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "review_claims",
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        _when("claimed_at"),
        _when("expires_at"),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name=op.f("fk_review_claims_asset_id_assets")
        ),
        sa.PrimaryKeyConstraint("asset_id", name=op.f("pk_review_claims")),
    )
    op.create_table(
        "override_proposals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(length=200), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("reason_code", sa.String(length=64), nullable=True),
        sa.Column("schedule", sa.String(length=64), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("justification", sa.Text(), nullable=False),
        _when("created_at"),
        sa.ForeignKeyConstraint(
            ["decision_id"], ["decisions.id"],
            name=op.f("fk_override_proposals_decision_id_decisions"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_override_proposals")),
    )
    op.create_index(
        "ix_override_proposals_decision_id", "override_proposals", ["decision_id"]
    )
    op.create_table(
        "override_confirmations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reviewer", sa.String(length=200), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("justification", sa.Text(), nullable=True),
        sa.Column("override_id", sa.Integer(), nullable=True),
        _when("created_at"),
        sa.ForeignKeyConstraint(
            ["proposal_id"], ["override_proposals.id"],
            name=op.f("fk_override_confirmations_proposal_id_override_proposals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_override_confirmations")),
        sa.UniqueConstraint("proposal_id", name=op.f("uq_override_confirmations_proposal_id")),
    )  # fmt: skip
    op.create_table(
        "login_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        _when("at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_events")),
    )
    op.create_index("ix_login_events_at", "login_events", ["at"])
    op.create_index("ix_login_events_user_name", "login_events", ["user_name"])
    if op.get_context().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            for name, when, level in (("append_only", "UPDATE OR DELETE", "ROW"),
                                      ("no_truncate", "TRUNCATE", "STATEMENT")):  # fmt: skip
                op.execute(
                    f"CREATE TRIGGER {table}_{name} BEFORE {when} ON {table}"
                    f" FOR EACH {level} EXECUTE FUNCTION {FUNCTION}()"
                )
        return
    for table in APPEND_ONLY:
        for action in ("UPDATE", "DELETE"):
            message = (
                f"{table}: {action} refused, these rows are part of the audit trail;"
                " record a new row instead"
            )
            op.execute(
                f"CREATE TRIGGER {table}_append_only_{action.lower()} BEFORE {action}"
                f" ON {table} FOR EACH ROW BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )


def downgrade() -> None:
    """Downgrade schema."""
    for table in ("login_events", "override_confirmations", "override_proposals",
                  "review_claims"):  # fmt: skip
        op.drop_table(table)  # their triggers go with them

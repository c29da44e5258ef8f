"""Initial schema: assets, scans, frames, score sets, rule sets, decisions, reasons,
overrides; decisions, reasons and overrides append-only (triggers refuse UPDATE/DELETE).

Revision ID: 0001
Revises:
Create Date: 2026-11-21

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The engine never updates or deletes these; the database refuses it from anyone else too.
APPEND_ONLY = ("decisions", "reasons", "overrides")


def _append_only(tables: Sequence[str]) -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION policy_engine_append_only() RETURNS trigger AS $$"
            " BEGIN RAISE EXCEPTION '% rows are append-only: insert a new row instead',"
            " TG_TABLE_NAME; END $$ LANGUAGE plpgsql"
        )
        for table in tables:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
                " FOR EACH ROW EXECUTE FUNCTION policy_engine_append_only()"
            )
        return
    for table in tables:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_append_only_{action.lower()} BEFORE {action} ON {table}"
                f" BEGIN SELECT RAISE(ABORT, '{table} rows are append-only: insert a new row"
                " instead'); END"
            )


def _drop_append_only(tables: Sequence[str]) -> None:
    postgres = op.get_context().dialect.name == "postgresql"
    for table in tables:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        else:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only_{action}")
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS policy_engine_append_only()")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "assets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("content_sha256", sa.String(length=80), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("probe", sa.JSON(), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assets")),
        sa.UniqueConstraint("content_sha256", name=op.f("uq_assets_content_sha256")),
    )
    op.create_table(
        "rulesets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=80), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rulesets")),
        sa.UniqueConstraint("sha256", name=op.f("uq_rulesets_sha256")),
    )
    with op.batch_alter_table("rulesets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rulesets_name"), ["name"], unique=False)

    op.create_table(
        "asset_paths",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name=op.f("fk_asset_paths_asset_id_assets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_asset_paths")),
        sa.UniqueConstraint("asset_id", "path", name=op.f("uq_asset_paths_asset_id")),
    )
    with op.batch_alter_table("asset_paths", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_asset_paths_asset_id"), ["asset_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_asset_paths_path"), ["path"], unique=False)

    op.create_table(
        "scans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sampling", sa.JSON(), nullable=False),
        sa.Column("sampling_key", sa.String(length=80), nullable=False),
        sa.Column("model_name", sa.Text(), nullable=False),
        sa.Column("model_path", sa.Text(), nullable=False),
        sa.Column("model_revision", sa.String(length=64), nullable=True),
        sa.Column("weights_sha256", sa.String(length=80), nullable=False),
        sa.Column("device_asked", sa.String(length=16), nullable=True),
        sa.Column("device_used", sa.String(length=16), nullable=True),
        sa.Column("dtype", sa.String(length=16), nullable=True),
        sa.Column("embed_dim", sa.Integer(), nullable=True),
        sa.Column("logit_scale", sa.Float(), nullable=True),
        sa.Column("software_version", sa.String(length=32), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=True),
        sa.Column("window_end", sa.Float(), nullable=True),
        sa.Column("frame_count", sa.Integer(), nullable=True),
        sa.Column("frame_times", sa.LargeBinary(), nullable=True),
        sa.Column("timings", sa.JSON(), nullable=True),
        sa.Column("decoding", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], name=op.f("fk_scans_asset_id_assets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scans")),
    )
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_scans_asset_id"), ["asset_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_scans_finished_at"), ["finished_at"], unique=False)
        batch_op.create_index(
            "ix_scans_reuse", ["asset_id", "weights_sha256", "sampling_key"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_scans_status"), ["status"], unique=False)

    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("ruleset_id", sa.Integer(), nullable=False),
        sa.Column("ruleset_name", sa.String(length=200), nullable=False),
        sa.Column("schedule", sa.String(length=64), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("review", sa.Boolean(), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("slots", sa.JSON(), nullable=False),
        sa.Column("cause", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name=op.f("fk_decisions_asset_id_assets")
        ),
        sa.ForeignKeyConstraint(
            ["ruleset_id"], ["rulesets.id"], name=op.f("fk_decisions_ruleset_id_rulesets")
        ),
        sa.ForeignKeyConstraint(["scan_id"], ["scans.id"], name=op.f("fk_decisions_scan_id_scans")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_decisions_current", ["asset_id", "ruleset_name", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_decisions_scan_id"), ["scan_id"], unique=False)

    op.create_table(
        "frames",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("crops", sa.Integer(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("thumbnail", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["scan_id"], ["scans.id"], name=op.f("fk_frames_scan_id_scans")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_frames")),
        sa.UniqueConstraint("scan_id", "index", name=op.f("uq_frames_scan_id")),
    )
    op.create_table(
        "score_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=False),
        sa.Column("categories_sha256", sa.String(length=80), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("probabilities", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scans.id"], name=op.f("fk_score_sets_scan_id_scans")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_sets")),
        sa.UniqueConstraint("scan_id", "categories_sha256", name=op.f("uq_score_sets_scan_id")),
    )
    op.create_table(
        "overrides",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(length=200), nullable=False),
        sa.Column("schedule", sa.String(length=64), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["decision_id"], ["decisions.id"], name=op.f("fk_overrides_decision_id_decisions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_overrides")),
    )
    with op.batch_alter_table("overrides", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_overrides_decision_id"), ["decision_id"], unique=False)

    op.create_table(
        "reasons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("rule_id", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("outcome", sa.JSON(), nullable=False),
        sa.Column("measurements", sa.JSON(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["decision_id"], ["decisions.id"], name=op.f("fk_reasons_decision_id_decisions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reasons")),
    )
    with op.batch_alter_table("reasons", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reasons_decision_id"), ["decision_id"], unique=False)

    _append_only(APPEND_ONLY)


def downgrade() -> None:
    """Downgrade schema."""
    _drop_append_only(APPEND_ONLY)
    with op.batch_alter_table("reasons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reasons_decision_id"))

    op.drop_table("reasons")
    with op.batch_alter_table("overrides", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_overrides_decision_id"))

    op.drop_table("overrides")
    op.drop_table("score_sets")
    op.drop_table("frames")
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decisions_scan_id"))
        batch_op.drop_index("ix_decisions_current")

    op.drop_table("decisions")
    with op.batch_alter_table("scans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scans_status"))
        batch_op.drop_index("ix_scans_reuse")
        batch_op.drop_index(batch_op.f("ix_scans_finished_at"))
        batch_op.drop_index(batch_op.f("ix_scans_asset_id"))

    op.drop_table("scans")
    with op.batch_alter_table("asset_paths", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_asset_paths_path"))
        batch_op.drop_index(batch_op.f("ix_asset_paths_asset_id"))

    op.drop_table("asset_paths")
    with op.batch_alter_table("rulesets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rulesets_name"))

    op.drop_table("rulesets")
    op.drop_table("assets")

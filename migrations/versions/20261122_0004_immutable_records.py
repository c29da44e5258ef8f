"""Immutable records: what a decision stands on can be neither edited nor wiped.

0001 made decisions, reasons and overrides refuse UPDATE and DELETE. This adds:

* TRUNCATE guards (PostgreSQL; statement-level) on every audit table: ``TRUNCATE
  decisions CASCADE`` no longer wipes the trail. SQLite has no TRUNCATE (its
  ``DELETE FROM t`` without WHERE is what the DELETE triggers already refuse).
* frames, score sets and reports: append-only (no UPDATE, no DELETE). A report written
  again is a new reports row; the latest row of an asset is the one in force.
* rule sets: their name, version, text and hash can never change, and no row is deleted.
* assets: their content hash and size can never change, and no row is deleted.
* scans: a completed scan (model identity, sampling, frame times) is frozen; running
  scans are still finished or failed in place.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Migrations never import application code: these lists are written out here.
APPEND_ONLY = ("frames", "score_sets", "reports")
# table -> the columns that never change once a row exists
FROZEN_COLUMNS = {
    "rulesets": ("name", "version", "text", "sha256"),
    "assets": ("content_sha256", "size_bytes"),
}
NO_TRUNCATE = (
    "decisions", "reasons", "overrides", "frames", "score_sets", "reports",
    "rulesets", "scans", "assets",
)  # fmt: skip
FUNCTION = "policy_engine_audit_trail"


def _message(table: str, what: str) -> str:
    return (
        f"{table}: {what} refused, these rows are part of the audit trail; record a new row instead"
    )


def _pg_trigger(name: str, table: str, when: str, condition: str = "") -> None:
    guard = f" WHEN ({condition})" if condition else ""
    level = "STATEMENT" if when == "TRUNCATE" else "ROW"
    op.execute(
        f"CREATE TRIGGER {name} BEFORE {when} ON {table} FOR EACH {level}{guard}"
        f" EXECUTE FUNCTION {FUNCTION}()"
    )


def _sqlite_trigger(name: str, table: str, when: str, message: str, condition: str = "") -> None:
    guard = f" WHEN {condition}" if condition else ""
    op.execute(
        f"CREATE TRIGGER {name} BEFORE {when} ON {table} FOR EACH ROW{guard}"
        f" BEGIN SELECT RAISE(ABORT, '{message}'); END"
    )


def _changed(columns: Sequence[str], postgres: bool) -> str:
    differs = "IS DISTINCT FROM" if postgres else "IS NOT"
    return " OR ".join(f"OLD.{c} {differs} NEW.{c}" for c in columns)


def _upgrade_postgresql() -> None:
    op.execute(
        f"CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger AS $$"
        " BEGIN RAISE EXCEPTION '%: % refused, these rows are part of the audit trail;"
        " record a new row instead', TG_TABLE_NAME, TG_OP; END $$ LANGUAGE plpgsql"
    )
    for table in NO_TRUNCATE:
        _pg_trigger(f"{table}_no_truncate", table, "TRUNCATE")
    for table in APPEND_ONLY:
        _pg_trigger(f"{table}_append_only", table, "UPDATE OR DELETE")
    for table, columns in FROZEN_COLUMNS.items():
        _pg_trigger(f"{table}_frozen", table, "UPDATE", _changed(columns, postgres=True))
        _pg_trigger(f"{table}_no_delete", table, "DELETE")
    _pg_trigger("scans_completed_frozen", "scans", "UPDATE OR DELETE", "OLD.status = 'completed'")


def _upgrade_sqlite() -> None:
    for table in APPEND_ONLY:
        for action in ("UPDATE", "DELETE"):
            _sqlite_trigger(
                f"{table}_append_only_{action.lower()}", table, action, _message(table, action)
            )
    for table, columns in FROZEN_COLUMNS.items():
        _sqlite_trigger(
            f"{table}_frozen",
            table,
            "UPDATE",
            _message(table, f"changing {', '.join(columns)}: UPDATE"),
            _changed(columns, postgres=False),
        )
        _sqlite_trigger(f"{table}_no_delete", table, "DELETE", _message(table, "DELETE"))
    for action in ("UPDATE", "DELETE"):
        _sqlite_trigger(
            f"scans_completed_frozen_{action.lower()}",
            "scans",
            action,
            _message("scans", f"a completed scan is frozen: {action}"),
            "OLD.status = 'completed'",
        )


def upgrade() -> None:
    """Upgrade schema."""
    if op.get_context().dialect.name == "postgresql":
        _upgrade_postgresql()
    else:
        _upgrade_sqlite()


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_context().dialect.name == "postgresql":
        for table in NO_TRUNCATE:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        for table in FROZEN_COLUMNS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_frozen ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete ON {table}")
        op.execute("DROP TRIGGER IF EXISTS scans_completed_frozen ON scans")
        op.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
        return
    names = [f"{t}_append_only_{a}" for t in APPEND_ONLY for a in ("update", "delete")]
    names += [f"{t}_{kind}" for t in FROZEN_COLUMNS for kind in ("frozen", "no_delete")]
    names += [f"scans_completed_frozen_{a}" for a in ("update", "delete")]
    for name in names:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")

"""The store on SQLite and PostgreSQL: migrations are the schema, decisions are
append-only, values round-trip, and database trouble reads as a clear error."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, text

from policy_engine.analysis.scoring import Category
from policy_engine.errors import ConfigError, StoreError
from policy_engine.policy.evaluate import evaluate
from policy_engine.policy.loader import parse_ruleset
from policy_engine.store import NewDecision, Store, database
from policy_engine.store.schema import AppendOnlyError, Base, DecisionRecord
from policy_engine.store.synthetic import labelled_probabilities, seed_scan

CATEGORIES = (
    Category("violence", ("people fighting",)),
    Category("computer", ("a laptop screen",)),
    Category("background", ("something else",), null=True),
)
RULES = """\
ruleset: test-rules
version: 1
categories:
  violence: {prompts: ["people fighting"]}
  computer: {prompts: ["a laptop screen"]}
  background: {prompts: ["something else"], null: true}
rules:
  - id: violence-late
    when: {category: violence, coverage_above: 5%}
    then: {schedule: post-watershed, review: true}
  - id: tech
    when: {category: computer, coverage_above: 10%}
    then: {tag: Technology}
"""


def test_migrations_and_models_agree(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    assert database.current_revision(store.engine) == database.head_revision()


def _decided(store: Store) -> int:
    ruleset = parse_ruleset(RULES, "test-rules.yaml")
    asset_id, scan_id = seed_scan(
        store,
        name="clip",
        categories=CATEGORIES,
        probabilities=labelled_probabilities([0] * 2 + [2] * 18, 3),
        duration=10.0,
    )
    scan = store.completed_scans(scan_ids=[scan_id])[0]
    from policy_engine.pipeline.judging import judge

    judgement = judge(store, [scan], [ruleset], None).judgements[0]
    return store.append_decisions(
        [NewDecision(scan_id, asset_id, ruleset, judgement.decision, "scan")]
    )[0]


def test_decisions_are_append_only_in_the_orm_and_in_the_database(store: Store) -> None:
    decision_id = _decided(store)
    store.add_override(decision_id, reviewer="ann", justification="fine")
    from sqlalchemy.orm import Session

    with Session(store.engine) as session:
        row = session.get_one(DecisionRecord, decision_id)
        row.schedule = "unrestricted"
        with pytest.raises(AppendOnlyError, match="append-only"):
            session.flush()
        session.rollback()
        session.delete(session.get_one(DecisionRecord, decision_id))
        with pytest.raises(AppendOnlyError):
            session.flush()
    for statement in (
        "UPDATE decisions SET schedule = 'unrestricted'",
        "DELETE FROM reasons",
        "UPDATE overrides SET reviewer = 'mallory'",
        "DELETE FROM overrides",
    ):
        with pytest.raises(Exception, match="append-only"), store.engine.begin() as connection:
            connection.execute(text(statement))
    assert store.decision(decision_id).schedule == "post-watershed"


# Everything a decision stands on, and how each is tampered with. "audit trail" is the
# 0004 triggers' wording, "append-only" the 0001 triggers'.
TAMPERING = [
    ("UPDATE rulesets SET text = 'rules: []'", "audit trail"),
    ("UPDATE rulesets SET sha256 = 'sha256:0', version = '99'", "audit trail"),
    ("DELETE FROM rulesets", "audit trail"),
    ("UPDATE frames SET time = time + 1", "audit trail"),
    ("UPDATE frames SET embedding = thumbnail", "audit trail"),
    ("DELETE FROM frames", "audit trail"),
    ("UPDATE score_sets SET probabilities = embedding FROM frames", "audit trail"),
    ("DELETE FROM score_sets", "audit trail"),
    ("UPDATE reports SET sha256 = 'sha256:forged'", "audit trail"),
    ("DELETE FROM reports", "audit trail"),
    ("UPDATE assets SET content_sha256 = 'sha256:other'", "audit trail"),
    ("DELETE FROM asset_paths; DELETE FROM assets", "audit trail"),
    ("UPDATE scans SET weights_sha256 = 'sha256:other'", "audit trail"),
    ("UPDATE scans SET status = 'failed'", "audit trail"),
]
TRUNCATE = [
    "TRUNCATE decisions CASCADE",
    "TRUNCATE overrides",
    "TRUNCATE reasons",
    "TRUNCATE rulesets CASCADE",
    "TRUNCATE frames",
    "TRUNCATE score_sets",
    "TRUNCATE reports",
    "TRUNCATE scans CASCADE",
    "TRUNCATE assets CASCADE",
]


def _everything_recorded(store: Store) -> int:
    decision_id = _decided(store)
    store.add_override(decision_id, reviewer="ann", justification="fine")
    asset_id = store.decision(decision_id).asset_id
    store.record_report(asset_id, [decision_id], "/reports/clip.html", "sha256:" + "a" * 64)
    return decision_id


def _snapshot(store: Store) -> dict[str, list[tuple[object, ...]]]:
    tables = ("assets", "scans", "frames", "score_sets", "rulesets", "decisions", "reasons",
              "overrides", "reports")  # fmt: skip
    with store.engine.connect() as connection:
        return {
            t: [tuple(row) for row in connection.execute(text(f"SELECT * FROM {t} ORDER BY id"))]
            for t in tables
        }


def test_what_a_decision_stands_on_cannot_be_edited_or_deleted(store: Store) -> None:
    _everything_recorded(store)
    before = _snapshot(store)
    postgres = store.engine.url.get_backend_name() == "postgresql"
    for statement, refusal in TAMPERING:
        if "FROM frames" in statement and not postgres:
            statement = statement.replace(
                "embedding FROM frames", "(SELECT embedding FROM frames LIMIT 1)"
            )
        with pytest.raises(Exception, match=refusal), store.engine.begin() as connection:
            for part in statement.split("; "):
                connection.execute(text(part))
    assert _snapshot(store) == before
    # What may change still does: a probe learnt later, a new path, a new report row.
    asset_id = store.decision(_decided_id(store)).asset_id
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE rulesets SET path = '/elsewhere/test-rules.yaml'"))
    store.record_report(asset_id, [], "/reports/clip.html", "sha256:" + "b" * 64)
    assert [r.sha256[-1] for r in store.reports(asset_id)] == ["a", "b"]  # latest wins


def _decided_id(store: Store) -> int:
    with store.engine.connect() as connection:
        return connection.execute(text("SELECT max(id) FROM decisions")).scalar_one()


def test_the_orm_refuses_to_edit_what_a_decision_stands_on(store: Store) -> None:
    from sqlalchemy.orm import Session

    from policy_engine.store.schema import Frame, ReportRecord, RuleSetRecord, Scan, ScoreSet

    _everything_recorded(store)
    edits = [
        (RuleSetRecord, "text", "rules: []"),
        (Frame, "time", 99.0),
        (ScoreSet, "probabilities", b""),
        (ReportRecord, "sha256", "sha256:forged"),
        (Scan, "weights_sha256", "sha256:other"),
    ]
    with Session(store.engine) as session:
        for model, column, value in edits:
            row = session.scalars(select(model).limit(1)).one()
            setattr(row, column, value)
            with pytest.raises(AppendOnlyError, match="append-only|can never change|frozen"):
                session.flush()
            session.rollback()


def test_truncate_cannot_wipe_the_audit_trail(store: Store) -> None:
    if store.engine.url.get_backend_name() != "postgresql":
        pytest.skip("SQLite has no TRUNCATE; its DELETE triggers refuse `DELETE FROM t`")
    _everything_recorded(store)
    before = _snapshot(store)
    for statement in TRUNCATE:
        with pytest.raises(Exception, match="TRUNCATE refused"), store.engine.begin() as c:
            c.execute(text(statement))
    assert _snapshot(store) == before


def test_sqlite_delete_without_where_is_refused_as_truncate_would_be(store: Store) -> None:
    if store.engine.url.get_backend_name() != "sqlite":
        pytest.skip("the SQLite counterpart of the TRUNCATE guard")
    _everything_recorded(store)
    before = _snapshot(store)
    for table in ("decisions", "overrides", "reasons", "frames", "score_sets", "reports"):
        with pytest.raises(Exception, match="append-only|audit trail"), store.engine.begin() as c:
            c.execute(text(f"DELETE FROM {table}"))
    assert _snapshot(store) == before


def test_decision_round_trip_with_reasons_evidence_and_override(store: Store) -> None:
    decision_id = _decided(store)
    stored = store.decision(decision_id)
    assert stored is not None
    assert (stored.schedule, stored.review, stored.tags) == ("post-watershed", True, [])
    assert stored.ruleset.text == RULES and stored.ruleset.sha256.startswith("sha256:")
    fired = [r for r in stored.reasons if r.kind == "fired"]
    assert [r.rule_id for r in fired] == ["violence-late"]
    measurement = fired[0].measurements[0]
    assert measurement["metric"] == "coverage_above"
    assert measurement["measured"] == pytest.approx(0.1) and measurement["threshold"] == 0.05
    assert [e["frame"] for e in fired[0].evidence] == [0, 1, 2]  # own frames first
    assert stored.created_at.tzinfo is not None
    assert {s["territory"] for s in stored.slots} == {"UK", "US"}  # default territories

    first = store.add_override(decision_id, reviewer="ann", justification="cartoon <b>only</b>")
    second = store.add_override(
        decision_id, reviewer="bob", justification="on appeal", schedule="unrestricted", tags=[]
    )
    current = store.current_decisions()
    (only,) = current.values()
    assert only.id == decision_id and only.override is not None and only.override.id == second
    ruled = only.ruled()
    assert (ruled.schedule, ruled.tags, ruled.review) == ("unrestricted", (), False)
    assert [o.id for o in store.decision(decision_id).overrides] == [first, second]
    with pytest.raises(ConfigError, match="justification"):  # the caller's mistake, not the db's
        store.add_override(decision_id, reviewer="ann", justification="  ")
    with pytest.raises(ConfigError, match="reviewer"):
        store.add_override(decision_id, reviewer="", justification="x")
    with pytest.raises(ConfigError, match="no decision 999"):
        store.add_override(999, reviewer="ann", justification="x")


def test_a_later_decision_becomes_current_and_earlier_overrides_are_counted(store: Store) -> None:
    decision_id = _decided(store)
    store.add_override(decision_id, reviewer="ann", justification="ok")
    ruleset = parse_ruleset(RULES.replace("version: 1", "version: 2"), "test-rules.yaml")
    scan = store.completed_scans()[0]
    coverage_decision = evaluate(ruleset, *_coverage(store, scan.id))
    (newer,) = store.append_decisions(
        [NewDecision(scan.id, scan.asset_id, ruleset, coverage_decision, "reevaluate")]
    )
    (current,) = store.current_decisions().values()
    assert current.id == newer and current.override is None and current.overrides_before == 1
    assert current.ruleset_version == "2"


def _coverage(store: Store, scan_id: int):
    from policy_engine.analysis.coverage import coverage_from_scores
    from policy_engine.analysis.scoring import categories_key, scores_from_probabilities

    scan = store.completed_scans(scan_ids=[scan_id])[0]
    probs = store.score_sets([scan_id], categories_key(CATEGORIES))[scan_id]
    scores = scores_from_probabilities(CATEGORIES, scan.times, probs)
    return coverage_from_scores(scores, start=0.0, end=scan.window_end), scores


def test_assets_are_identified_by_content_and_remember_every_path(store: Store) -> None:
    first = store.record_asset("/in/a.mp4", "sha256:" + "ab" * 32, 10, {"duration": 1.0})
    again = store.record_asset("/in/copy of a.mp4", "sha256:" + "ab" * 32, 10, None)
    other = store.record_asset("/in/a.mp4", "sha256:" + "cd" * 32, 11, None)  # changed file
    assert first == again != other
    assert [a.id for a in store.find_assets("copy of a.mp4")] == [first]
    assert [a.id for a in store.find_assets("/in/a.mp4")] == [first, other]
    assert [a.id for a in store.find_assets("abababab")] == [first]
    assert [a.id for a in store.find_assets(str(other))] == [other]
    assert store.find_assets("100%_.mp4") == []  # LIKE wildcards are literal


def test_frames_and_scores_round_trip(store: Store) -> None:
    embeddings = np.random.default_rng(1).standard_normal((6, 16)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    probs = labelled_probabilities([0, 1, 2, 2, 1, 0], 3)
    _, scan_id = seed_scan(
        store,
        name="frames",
        categories=CATEGORIES,
        probabilities=probs,
        duration=3.0,
        embeddings=embeddings,
    )
    (scan,) = store.completed_scans()
    assert scan.id == scan_id and np.allclose(scan.times, [0, 0.5, 1, 1.5, 2, 2.5])
    assert scan.finished_at.tzinfo is not None and scan.finished_at <= datetime.now(UTC)
    stored = np.stack([e[0] for e in store.frame_embeddings([scan_id])[scan_id]])
    assert np.abs(stored - embeddings).max() < 1e-3  # float16 storage
    from policy_engine.analysis.scoring import categories_key

    got = store.score_sets([scan_id], categories_key(CATEGORIES))[scan_id]
    assert np.array_equal(got.reshape(6, 3), probs)  # float32: exactly what was stored
    assert store.score_sets([scan_id], "sha256:other") == {}


def test_failed_scans_keep_their_reason_and_are_never_reused(store: Store) -> None:
    from policy_engine.store.synthetic import SYNTHETIC_MODEL

    asset = store.record_asset("/in/bad.mp4", "sha256:" + "ee" * 32, 0, None)
    scan_id = store.start_scan(
        path="/in/bad.mp4",
        asset_id=asset,
        sampling={},
        sampling_key="k",
        model=SYNTHETIC_MODEL,
        software_version="t",
    )
    store.fail_scan(scan_id, "file is empty (0 bytes)")
    assert store.reusable_scan(asset, SYNTHETIC_MODEL.weights_sha256, "k") is None
    (failed,) = store.failed_scans()
    assert (failed.status, failed.error) == ("failed", "file is empty (0 bytes)")
    assert store.completed_scans() == []


# -- schema versions -----------------------------------------------------------------------
def _migrations_with_an_extra_revision(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    shutil.copytree(database.migrations_dir(), folder)
    (folder / "versions" / "9999_test.py").write_text(
        f'revision = "9999"\ndown_revision = "{database.head_revision()}"\n'
        "branch_labels = None\ndepends_on = None\n"
        "from alembic import op\nimport sqlalchemy as sa\n"
        "def upgrade():\n    op.create_table('extra', sa.Column('id', sa.Integer, primary_key=True))\n"
        "def downgrade():\n    op.drop_table('extra')\n"
    )
    return folder


def test_a_database_behind_the_software_is_refused_with_the_fix(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store.open(db_url).close()  # at this software's head
    head = database.head_revision()
    monkeypatch.setattr(database, "_MIGRATIONS", _migrations_with_an_extra_revision(tmp_path))
    with pytest.raises(database.SchemaBehindError, match=r"behind .*9999.*db upgrade"):
        Store.open(db_url)
    engine = database.make_engine(db_url)
    assert database.upgrade(engine) == (head, "9999")
    Store.open(db_url).close()
    engine.dispose()


def test_a_database_ahead_of_the_software_or_foreign_is_refused(db_url: str) -> None:
    engine = database.make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE somebody_elses (id INTEGER)"))
    with pytest.raises(StoreError, match="belongs to something else"):
        Store.open(db_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32))"))
        connection.execute(text("INSERT INTO alembic_version VALUES ('ffff')"))
    with pytest.raises(StoreError, match="newer than this software"):
        Store.open(db_url)
    engine.dispose()


def test_a_new_database_is_created_and_announced(db_url: str) -> None:
    notes: list[str] = []
    Store.open(db_url, on_create=notes.append).close()
    Store.open(db_url, on_create=notes.append).close()
    assert len(notes) == 1 and "creating the schema" in notes[0]


# -- database trouble ----------------------------------------------------------------------
def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'x.sqlite'}")
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_a_locked_sqlite_database_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    path = tmp_path / "locked.sqlite"
    Store.open(f"sqlite:///{path}").close()
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    store = Store.open(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match=r"locked by another process .*Retry"):
            store.record_asset("/in/a.mp4", "sha256:" + "ab" * 32, 1, None)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.record_asset("/in/a.mp4", "sha256:" + "ab" * 32, 1, None) == 1  # nothing lost


def test_an_unreachable_server_or_bad_url_is_a_clear_error(tmp_path: Path) -> None:
    from policy_engine.errors import ConfigError

    with pytest.raises(StoreError, match=r"cannot use database .*127\.0\.0\.1:1.*server running"):
        Store.open("postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=2")
    try:
        Store.open("postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=2")
    except StoreError as exc:
        assert "secret" not in str(exc)  # passwords never reach messages
    with pytest.raises(ConfigError, match="not a URL"):
        Store.open("not a url")
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(f"sqlite:///{tmp_path / 'missing' / 'x.sqlite'}")

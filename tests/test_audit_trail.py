"""The audit trail as a reviewer and an auditor meet it on the command line: overrides
build on the verdict in force and say truthfully what they changed, a rule text edited
behind the engine's back is called out, and every command that changes a verdict
rewrites the pages that show it."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from policy_engine.analysis.scoring import Category
from policy_engine.cli import app
from policy_engine.pipeline.judging import judge
from policy_engine.policy.loader import parse_ruleset
from policy_engine.store import NewDecision, Store
from policy_engine.store.synthetic import labelled_probabilities, seed_scan

runner = CliRunner()
CATEGORIES = (
    Category("violence", ("people fighting",)),
    Category("background", ("something else",), null=True),
)
RULES = """\
ruleset: house
version: 1
categories:
  violence: {prompts: ["people fighting"]}
  background: {prompts: ["something else"], null: true}
rules:
  - id: violence
    when: {category: violence, coverage_above: 5%}
    then: {schedule: not-for-broadcast, review: true, tag: Violence}
"""


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _decided(store: Store) -> tuple[int, int]:
    """One asset judged not-for-broadcast (violence 50% of the time): (asset, decision)."""
    ruleset = parse_ruleset(RULES, "house.yaml")
    asset_id, scan_id = seed_scan(
        store,
        name="trailer",
        categories=CATEGORIES,
        probabilities=labelled_probabilities([0] * 10 + [1] * 10, 2),
        duration=10.0,
    )
    scan = store.completed_scans(scan_ids=[scan_id])[0]
    decision = judge(store, [scan], [ruleset], None).judgements[0].decision
    assert decision.schedule == "not-for-broadcast"
    (decision_id,) = store.append_decisions(
        [NewDecision(scan_id, asset_id, ruleset, decision, "scan")]
    )
    return asset_id, decision_id


def _verdict_in(page: Path) -> str:
    """The verdict in words at the top of an asset report."""
    found = re.search(r'id="verdict">\s*<div class="level">([^<]*)</div>', page.read_text())
    assert found, page
    return html.unescape(found.group(1))


# -- overrides build on the verdict in force --------------------------------------------------
def test_a_later_override_keeps_what_an_earlier_one_ruled(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = Store.open(db_url)
    asset_id, decision = _decided(store)
    store.close()
    code, _, stderr = run(
        "--db", db_url, "override", str(decision), "--reviewer", "ann",
        "-j", "cartoon violence", "--schedule", "unrestricted",
    )  # fmt: skip
    assert code == 0, stderr
    # B names only the tags: the level Ann set stays in force.
    code, stdout, stderr = run(
        "--db", db_url, "override", str(decision), "--reviewer", "bob",
        "-j", "it is about sport", "--tag", "Sport",
    )  # fmt: skip
    assert code == 0, stderr

    store = Store.open(db_url)
    ruled = store.current_decisions([asset_id])[(asset_id, "house")].ruled()
    store.close()
    assert (ruled.schedule, ruled.tags, ruled.review) == ("unrestricted", ("Sport",), False)

    code, stdout, _ = run("--db", db_url, "history", str(asset_id))
    assert code == 0
    lines = [line.strip() for line in stdout.splitlines() if "override" in line]
    assert "level not-for-broadcast -> unrestricted; tags [Violence] (unchanged);" in lines[0]
    assert "review settled" in lines[0]
    assert "level unrestricted (unchanged); tags [Violence] -> [Sport]" in lines[1]
    code, stdout, _ = run("--db", db_url, "history")
    row = next(line for line in stdout.splitlines() if "trailer.mp4" in line)
    assert "unrestricted" in row and "not-for-broadcast" not in row and "Sport" in row

    report = next((tmp_path / "reports").glob("trailer-*.html"))
    assert _verdict_in(report) == "Unrestricted: may air at any time"
    history = html.unescape(report.read_text())
    assert "level unrestricted (unchanged);\ntags [Violence] → [Sport]" in history
    assert "level not-for-broadcast → unrestricted" in history


def test_an_override_can_add_and_remove_tags_from_those_in_force(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = Store.open(db_url)
    asset_id, decision = _decided(store)
    store.close()
    code, stdout, stderr = run(
        "--db", db_url, "override", str(decision), "--reviewer", "ann", "-j", "sport too",
        "--add-tag", "Sport", "--add-tag", "Violence",
    )  # fmt: skip
    assert code == 0, stderr
    assert "not-for-broadcast +review [Violence] -> not-for-broadcast [Violence, Sport]" in stdout
    code, stdout, stderr = run(
        "--db", db_url, "override", str(decision), "--reviewer", "bob", "-j", "no violence",
        "--remove-tag", "Violence", "--schedule", "post-watershed",
    )  # fmt: skip
    assert code == 0, stderr
    assert "-> post-watershed [Sport]" in stdout
    code, stdout, _ = run("--db", db_url, "show", str(decision))
    assert code == 0 and "in force after review: post-watershed [Sport]" in stdout


# -- a rule text edited in the database is called out -----------------------------------------
def _tamper_with_rule_text(db_url: str) -> None:
    """What a DBA with superuser rights could do: drop the guard, edit the threshold."""
    store = Store.open(db_url)
    postgres = store.engine.url.get_backend_name() == "postgresql"
    with store.engine.begin() as connection:
        connection.execute(
            text("DROP TRIGGER rulesets_frozen" + (" ON rulesets" if postgres else ""))
        )
        connection.execute(text("UPDATE rulesets SET text = replace(text, '5%', '50%')"))
    store.close()


def test_a_rule_text_that_no_longer_matches_its_hash_is_called_out(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = Store.open(db_url)
    asset_id, decision = _decided(store)
    store.close()
    code, stdout, stderr = run("--db", db_url, "show", str(decision))
    assert code == 0 and "does not match" not in stdout + stderr
    code, _, _ = run("--db", db_url, "report", str(asset_id))
    report = next((tmp_path / "reports").glob("trailer-*.html"))
    assert 'class="tampered"' not in report.read_text()

    _tamper_with_rule_text(db_url)

    code, stdout, stderr = run("--db", db_url, "show", str(decision))
    assert code == 5
    assert "WARNING: the stored text of rule set house v1 does not match its hash" in stdout
    assert "does not match its hash" in stderr
    code, stdout, stderr = run("--db", db_url, "show", str(decision), "--json")
    assert code == 5 and json.loads(stdout)["ruleset"]["text_matches_hash"] is False
    code, stdout, _ = run("--db", db_url, "history", str(asset_id))
    assert "WARNING: the stored text of rule set house v1 does not match its hash" in stdout

    code, _, stderr = run("--db", db_url, "report", str(asset_id))
    assert code == 0, stderr
    page = report.read_text()
    banner = re.search(r'<section class="tampered" role="alert".*?</section>', page, re.S)
    assert banner and "does not match its hash" in banner.group(0)
    assert page.index('class="tampered"') < page.index('id="verdict"')  # above everything

    # Edited into something that no longer even parses: the report still says so.
    store = Store.open(db_url)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE rulesets SET text = 'rules: [unclosed'"))
    store.close()
    code, _, stderr = run("--db", db_url, "report", str(asset_id))
    assert code == 0, stderr
    assert "does not match its hash" in report.read_text()


# -- every command that changes a verdict rewrites what shows it -------------------------------
ALWAYS = """\
ruleset: house
version: {version}
categories:
  red: {{prompts: ["a red wall"]}}
  background: {{prompts: ["something else"], null: true}}
rules:
  - id: refused
    when: {when}
    then: {{schedule: not-for-broadcast}}
"""
FIRES = ALWAYS.format(version=1, when="{not: {category: red, coverage_above: 100%}}")
NEVER = ALWAYS.format(version=2, when="{category: red, coverage_above: 100%}")


@pytest.fixture
def scanned(tmp_path: Path, colour_video: Path, tiny_clip_dir: Path, monkeypatch):
    """A trailer scanned under rules that refuse it whatever the model sees (sqlite)."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "house.yaml").write_text(FIRES)
    (tmp_path / "edited").mkdir()
    (tmp_path / "edited" / "house.yaml").write_text(NEVER)
    (tmp_path / "ingest").mkdir()
    shutil.copy(colour_video, tmp_path / "ingest" / "trailer.mp4")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POLICY_ENGINE_RULES", str(tmp_path / "rules"))
    monkeypatch.setenv("POLICY_ENGINE_MODEL", str(tiny_clip_dir))
    monkeypatch.setenv("POLICY_ENGINE_DEVICE", "cpu")
    db = f"sqlite:///{tmp_path / 'engine.sqlite'}"
    code, stdout, stderr = run("--db", db, "scan", "ingest", "--json")
    assert code == 0, stderr
    (outcome,) = json.loads(stdout)
    report, index = Path(outcome["report"]), tmp_path / "reports" / "index.html"
    assert _verdict_in(report) == "Not for broadcast"
    assert _index_verdicts(index) == {"trailer.mp4": "not-for-broadcast"}
    return db, outcome["decisions"][0]["id"], report, index


def _index_verdicts(index: Path) -> dict[str, str]:
    """File name -> verdict, as the index page shows them."""
    row = re.compile(r'<td class="path">([^<]*)</td>\s*<td class="\w+">([^<]*)</td>')
    return {Path(html.unescape(p)).name: v for p, v in row.findall(index.read_text())}


def test_reevaluate_rewrites_the_reports_and_index_of_changed_verdicts(scanned) -> None:
    db, _, report, index = scanned
    code, stdout, stderr = run("--db", db, "reevaluate", "--rules", "edited")
    assert code == 0, stderr
    assert "1 report(s) rewritten" in stdout
    assert _verdict_in(report) == "Unrestricted: may air at any time"
    assert "v2" in report.read_text()
    assert _index_verdicts(index) == {"trailer.mp4": "unrestricted"}
    assert "Verdicts as in force at" in index.read_text()
    run_page = next(index.parent.glob("run-*.html"))
    assert "not-for-broadcast" in run_page.read_text()  # what the run found stays on record


def test_override_rewrites_the_report_and_the_index(scanned) -> None:
    db, decision, report, index = scanned
    code, _, stderr = run(
        "--db", db, "override", str(decision), "--reviewer", "ann", "-j", "edited for TV",
        "--schedule", "post-watershed",
    )  # fmt: skip
    assert code == 0, stderr
    assert _verdict_in(report) == "Post-watershed only"
    assert _index_verdicts(index) == {"trailer.mp4": "post-watershed"}
    # Scanned again, the engine decides as before: the reviewer's ruling stays in force,
    # and the new run's pages say so.
    code, stdout, stderr = run("--db", db, "scan", "ingest", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)[0]["verdict"]["schedule"] == "post-watershed"
    assert _verdict_in(report) == "Post-watershed only"
    assert _index_verdicts(index) == {"trailer.mp4": "post-watershed"}


def test_an_override_whose_pages_cannot_be_written_is_recorded_with_a_warning(scanned) -> None:
    """The ruling is stored before the pages are written: a folder that cannot take them
    is a warning with the fix, not an internal error inviting a second, duplicate ruling."""
    db, decision_id, report, _ = scanned
    shutil.rmtree(report.parent)
    report.parent.write_text("a file where the reports folder was")  # cannot hold pages
    code, stdout, stderr = run(
        "--db", db, "override", str(decision_id), "--reviewer", "A. Reviewer",
        "-j", "Stylised", "--schedule", "unrestricted", "--reports", str(report.parent),
    )  # fmt: skip
    assert code == 0, stderr
    assert "override 1 recorded" in stdout
    assert "could not be written" in stderr and "policy-engine report" in stderr
    store = Store.open(db)
    (current,) = store.current_decisions().values()
    store.close()
    assert current.ruled().schedule == "unrestricted"

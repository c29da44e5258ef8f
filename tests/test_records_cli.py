"""The database commands end to end: scan, history, show, override, reevaluate,
rules diff and db, with --db on both databases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from policy_engine.cli import app

runner = CliRunner()
RULES = """\
ruleset: house
version: {version}
categories:
  red: {{prompts: ["a red wall"]}}
  green: {{prompts: ["a green field"]}}
  background: {{prompts: ["something else"], null: true}}
rules:
  - id: anything-red
    when: {{category: red, coverage_above: {threshold}}}
    then: {{schedule: post-watershed, review: true}}
  - id: anything-green
    when: {{category: green, coverage_above: {threshold}}}
    then: {{tag: Outdoors}}
"""


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def workspace(tmp_path: Path, colour_video: Path, tiny_clip_dir: Path, monkeypatch):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "house.yaml").write_text(RULES.format(version=1, threshold="0%"))
    ingest = tmp_path / "ingest"
    ingest.mkdir()
    shutil.copy(colour_video, ingest / "[red]trailer[bold].mp4")  # rich markup in a name
    (ingest / "zero.mp4").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POLICY_ENGINE_MODEL", str(tiny_clip_dir))
    monkeypatch.setenv("POLICY_ENGINE_DEVICE", "cpu")
    monkeypatch.setenv("POLICY_ENGINE_RULES", "rules")  # the workspace's own, not the shipped
    return tmp_path


def test_scan_then_inspect_override_and_reevaluate(workspace: Path, db_url: str) -> None:
    code, stdout, stderr = run("--db", db_url, "scan", "ingest", "--json")
    assert code == 0, stderr
    outcomes = {Path(o["path"]).name: o for o in json.loads(stdout)}
    good = outcomes["[red]trailer[bold].mp4"]
    assert good["status"] == "scanned" and len(good["decisions"]) == 1
    assert outcomes["zero.mp4"]["status"] == "failed"
    assert "empty" in outcomes["zero.mp4"]["error"]
    assert Path(good["report"]).is_file() and Path(good["report"]).parent.name == "reports"
    decision = good["decisions"][0]["id"]

    code, stdout, _ = run("--db", db_url, "scan", "ingest", "--strict")
    assert code == 1 and "reused" in stdout  # the bad file still fails, --strict says so
    assert "[red]trailer[bold].mp4" in stdout  # shown literally, not as markup

    code, stdout, _ = run("--db", db_url, "history")
    assert code == 0 and "[red]trailer[bold].mp4" in stdout and "zero.mp4" in stdout
    code, stdout, _ = run("--db", db_url, "history", "ingest/[red]trailer[bold].mp4")
    assert code == 0 and f"decision {decision}" in stdout and "house v1" in stdout
    assert "completed: 20 frames" in stdout

    code, stdout, stderr = run(
        "--db", db_url, "override", str(decision), "--reviewer", "Ann <ann@example.org>",
        "-j", "Stylised, <b>no</b> blood", "--schedule", "unrestricted",
    )  # fmt: skip
    assert code == 0, stderr
    code, stdout, stderr = run(
        "--db", db_url, "override", str(decision), "--reviewer", "x", "-j", "y",
        "--schedule", "after-dark",
    )  # fmt: skip
    assert code == 2 and "unrestricted < post-watershed < not-for-broadcast" in stderr

    code, stdout, _ = run("--db", db_url, "show", str(decision), "--json")
    shown = json.loads(stdout)
    assert shown["ruleset"]["name"] == "house" and shown["ruleset"]["sha256"].startswith("sha256:")
    assert shown["scan"]["device_used"] == "cpu" and shown["scan"]["weights_sha256"]
    assert [o["reviewer"] for o in shown["overrides"]] == ["Ann <ann@example.org>"]
    code, stdout, _ = run("--db", db_url, "show", str(decision))
    assert "override 1 by Ann <ann@example.org>" in stdout and "Stylised, <b>no</b> blood" in stdout

    # Raise the thresholds: nothing fires any more.
    edited = workspace / "edited"
    edited.mkdir()
    (edited / "house.yaml").write_text(RULES.format(version=2, threshold="100%"))
    code, stdout, _ = run("--db", db_url, "rules", "diff", "edited")
    assert code == 0 and "dry run" in stdout and "would change" in stdout
    code, stdout, _ = run("--db", db_url, "rules", "diff", "edited", "--json")
    diff = json.loads(stdout)
    assert diff["dry_run"] and diff["appended"] == 0 and len(diff["changes"]) == 1
    assert diff["changes"][0]["after"]["schedule"] == "unrestricted"
    assert "house v1 -> v2" in diff["changes"][0]["why"][0]
    assert any("overridden by Ann" in w for w in diff["changes"][0]["why"])

    code, stdout, _ = run("--db", db_url, "reevaluate", "--rules", "edited", "--json")
    applied = json.loads(stdout)
    assert applied["appended"] == 1 and applied["changes"][0]["after"]["decision_id"] > decision
    code, stdout, _ = run("--db", db_url, "reevaluate", "--rules", "edited")
    assert code == 0 and "0 of 1 scanned asset(s) changed" in stdout


def test_db_commands_and_errors(workspace: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    code, stdout, _ = run("--db", url, "db", "status")
    assert code == 0 and "no schema yet" in stdout
    from policy_engine.store.database import head_revision

    code, stdout, _ = run("--db", url, "db", "upgrade")
    assert code == 0 and f"(empty) -> {head_revision()}" in stdout
    code, stdout, _ = run("--db", url, "db", "upgrade")
    assert f"already at {head_revision()}" in stdout
    code, stdout, _ = run("--db", url, "db", "status")
    assert code == 0 and "up to date" in stdout and "(flag)" in stdout
    code, _, stderr = run("--db", url, "show", "42")
    assert code == 2 and "no decision 42" in stderr
    code, _, stderr = run("--db", url, "history", "nothing-like-it")
    assert code == 2 and "no asset matches" in stderr
    code, _, stderr = run("--db", "postgresql://u:pw@127.0.0.1:1/x?connect_timeout=2", "history")
    assert code == 5 and "cannot use database" in stderr and "pw" not in stderr
    code, _, stderr = run("--db", url, "reevaluate", "--since", "last tuesday")
    assert code == 2 and "--since" in stderr


def test_the_database_url_comes_from_the_environment(workspace: Path, tmp_path: Path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'env.sqlite'}"
    monkeypatch.setenv("POLICY_ENGINE_DB", url)
    code, stdout, _ = run("db", "status")
    assert code == 0 and "env.sqlite" in stdout and "env POLICY_ENGINE_DB" in stdout

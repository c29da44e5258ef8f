"""Which rule sets are in force when a rule file breaks: the version last in force,
found by the file's resolved path, and a file with no such version said loudly."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from policy_engine.cli import app
from policy_engine.ingest import load_rules
from policy_engine.store import Store

REPO_ROOT = Path(__file__).resolve().parent.parent
RULE_FILE = REPO_ROOT / "policy_engine" / "rules" / "genre-tags.yaml"
BROKEN = "\n  - this: [is not, valid\n"


def version(text: str, number: int) -> str:
    return text.replace("version:", f"version: {number}\n# was:", 1)


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    shutil.copy(RULE_FILE, folder / RULE_FILE.name)
    return folder


def versions_in_force(rulesets) -> list[str]:
    return [r.version for r in rulesets]


def test_the_last_good_version_does_not_depend_on_how_the_path_is_spelt(
    store: Store, rules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(rules.parent)
    file = rules / RULE_FILE.name
    file.write_text(version(RULE_FILE.read_text(), 7))
    loaded, problems = load_rules("rules", store)  # recorded as spelt relatively
    assert versions_in_force(loaded) == ["7"] and problems == []
    file.write_text(file.read_text() + BROKEN)
    loaded, problems = load_rules(os.path.abspath("rules"), store)  # read absolutely
    assert versions_in_force(loaded) == ["7"]
    (problem,) = problems
    assert "its last good version (genre-tags 7, in force since" in problem


def test_after_a_revert_the_version_last_in_force_comes_back(store: Store, rules: Path) -> None:
    file = rules / RULE_FILE.name
    original = RULE_FILE.read_text()
    for number in (1, 2, 1):  # v1, then v2, then reverted to v1 (an older text)
        file.write_text(version(original, number))
        loaded, _ = load_rules(rules, store)
        assert versions_in_force(loaded) == [str(number)]
    file.write_text(version(original, 1) + BROKEN)
    loaded, problems = load_rules(rules, store)
    assert versions_in_force(loaded) == ["1"], problems


def test_a_rule_file_that_never_loaded_heads_the_summary_and_fails_strict(
    rules: Path, tmp_path: Path
) -> None:
    (rules / "never.yaml").write_text("ruleset: never\ncategories: [oops\n")
    (tmp_path / "in").mkdir()
    args = [
        "--db", f"sqlite:///{tmp_path / 'e.sqlite'}", "schedule", "--once",
        "--ingest", str(tmp_path / "in"), "--rules", str(rules),
        "--reports", str(tmp_path / "reports"), "--log-format", "json",
    ]  # fmt: skip
    lenient = CliRunner().invoke(app, args)
    assert lenient.exit_code == 0, lenient.output  # the other rule sets still apply
    summary = (tmp_path / "reports" / "index.html").read_text()
    first_problem = summary.index("Problem: ")
    assert summary.index("never.yaml", first_problem) < summary.index("<table", first_problem)
    assert "its rules are NOT applied in this run" in summary
    strict = CliRunner().invoke(app, [*args, "--strict"])
    assert strict.exit_code == 1, strict.output
    assert "--strict: 1 problem(s)" in strict.output


def test_a_last_good_version_this_software_no_longer_accepts_is_reported_not_raised(
    store: Store, rules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = rules / RULE_FILE.name
    load_rules(rules, store)
    file.write_text(file.read_text() + BROKEN)
    monkeypatch.setattr("policy_engine.policy.yamlsafe.MAX_DEPTH", 2)  # a stricter loader
    loaded, problems = load_rules(rules, store)
    assert loaded == []
    (problem,) = problems
    assert "neither does the version last in force" in problem and "NOT applied" in problem

"""`policy-engine rules validate | test | explain` and the shipped rule sets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from policy_engine.cli import app

RULES = Path(__file__).resolve().parent.parent / "policy_engine" / "rules"
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_shipped_rules_validate() -> None:
    code, stdout, stderr = run("rules", "validate", str(RULES))
    assert code == 0, stderr
    for name in ("uk-trailers", "us-broadcast", "genre-tags"):
        assert name in stdout


def test_shipped_rule_tests_pass() -> None:
    code, stdout, _ = run("rules", "test", str(RULES))
    assert code == 0, stdout
    assert "0 failed" in stdout and "FAIL" not in stdout
    passed = int(stdout.strip().splitlines()[-1].split()[0])
    assert passed >= 19


def test_validate_reports_every_error_and_exits_2(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text((RULES / "genre-tags.yaml").read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "ruleset: bad\ncategories:\n  a: {prompts: []}\nrules:\n"
        "  - id: r\n    when: {category: b, coverage_abov: 5%}\n    then: {schedule: later}\n"
    )
    code, stdout, stderr = run("rules", "validate", str(tmp_path))
    assert code == 2
    assert "genre-tags" in stdout  # the good file still loads
    assert f"{bad}:3:16" in stderr and "empty prompt list" in stderr
    assert f"{bad}:6:25" in stderr and "did you mean 'coverage_above'" in stderr
    assert f"{bad}:7:22" in stderr and "schedule 'later' is not a level" in stderr


def test_validate_refuses_deep_nesting_with_a_position(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("ruleset: deep\ndescription: " + "[" * 500 + "]" * 500 + "\n")
    code, _, stderr = run("rules", "validate", str(deep))
    assert code == 2
    assert f"{deep}:2:" in stderr and "nested more than 64 levels deep" in stderr
    assert "RecursionError" not in stderr


def test_a_broken_file_counts_in_the_rule_test_totals(tmp_path: Path) -> None:
    for name in ("genre-tags.yaml", "genre-tags.tests.yaml"):
        (tmp_path / name).write_text((RULES / name).read_text())
    (tmp_path / "broken.yaml").write_text("ruleset: broken\ncategories: [oops\n")
    code, stdout, stderr = run("rules", "test", str(tmp_path))
    assert code == 2 and "broken.yaml" in stderr
    last = stdout.strip().splitlines()[-1]
    assert "passed, 0 failed, 1 error(s): rule file(s) that did not load" in last
    assert not last.startswith("0 passed")


def test_failing_rule_test_exits_1_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "tags.yaml"
    path.write_text(
        (RULES / "genre-tags.yaml").read_text()
        + "tests:\n  - name: wrong on purpose\n    coverage: {computer: 12%}\n"
        "    expect: {tags: [Cooking]}\n"
    )
    code, stdout, _ = run("rules", "test", str(path))
    assert code == 1
    assert "FAIL genre-tags: wrong on purpose" in stdout
    assert "tags: expected ['Cooking'], got ['Technology']" in stdout


def test_explain() -> None:
    code, stdout, _ = run("rules", "explain", str(RULES / "uk-trailers.yaml"))
    assert code == 0
    assert "if violence covers more than 5% of the running time" in stdout
    assert "then schedule at least post-watershed; require human review" in stdout
    assert "UK (Europe/London)" in stdout and "21:00-05:30" in stdout


def test_explain_bad_file_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("ruleset: [\n")
    code, _, stderr = run("rules", "explain", str(path))
    assert code == 2 and "not valid YAML" in stderr


def test_slot_check() -> None:
    uk = str(RULES / "uk-trailers.yaml")
    code, stdout, _ = run("rules", "slot", uk, "post-watershed", "2026-11-21T21:15")
    assert (
        code == 0 and "UK (Europe/London): post-watershed at 2026-11-21T21:15: permitted" in stdout
    )
    code, stdout, _ = run("rules", "slot", uk, "post-watershed", "2026-11-21T20:59")
    assert code == 1 and "not permitted" in stdout
    us = str(RULES / "us-broadcast.yaml")
    # 21:30 London = 16:30 New York = 13:30 Los Angeles
    code, stdout, _ = run(
        "rules", "slot", us, "post-watershed", "2026-11-21T21:30+00:00", "-t", "US-Eastern"
    )
    assert code == 1 and "US-Pacific" not in stdout
    code, _, stderr = run("rules", "slot", uk, "late-night", "2026-11-21T23:00")
    assert code == 2 and "unknown level" in stderr
    code, _, stderr = run("rules", "slot", uk, "post-watershed", "tonight")
    assert code == 2 and "not a date-time" in stderr


def test_outside_the_checkout_the_shipped_rules_apply_and_the_output_says_so(
    tmp_path: Path, colour_video: Path, tiny_clip_dir: Path
) -> None:
    cli = Path(sys.executable).parent / "policy-engine"
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLICY_ENGINE_")}
    env["PYTHONPATH"] = str(RULES.parent.parent)  # this checkout's code
    note = f"rules: the shipped rule sets ({RULES})"

    def run_elsewhere(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(cli), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    validated = run_elsewhere("rules", "validate")
    assert validated.returncode == 0, validated.stderr
    assert note in validated.stderr and "uk-trailers" in validated.stdout
    scanned = run_elsewhere(
        "--db", f"sqlite:///{tmp_path / 'e.sqlite'}", "scan", str(colour_video),
        "--model", str(tiny_clip_dir), "--device", "cpu", "--json",
    )  # fmt: skip
    assert scanned.returncode == 0, scanned.stderr
    assert note in scanned.stderr and '"uk-trailers"' in scanned.stdout

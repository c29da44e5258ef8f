"""The command line: flags, JSON output, and errors as one readable line with an exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from policy_engine.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_analyze_json(colour_video: Path, tiny_clip_dir: Path) -> None:
    code, stdout, stderr = run(
        "analyze",
        str(colour_video),
        "--model",
        str(tiny_clip_dir),
        "--device",
        "cpu",
        "--fps",
        "1",
        "--category",
        "violence=people fighting,a person being shot",
        "--category",
        "background=something else",
        "--null",
        "background",
        "--json",
    )
    assert code == 0, stderr
    data = json.loads(stdout)
    assert set(data["coverage"]["categories"]) == {"violence", "background"}
    assert data["coverage"]["frame_count"] == 10
    assert data["sampling"]["fps"] == 1.0
    assert data["model"]["device_asked"] == "cpu" and data["model"]["dtype"] in ("fp32", "bf16")
    assert data["framing"] == "letterbox"


def test_analyze_table_and_added_null_category(colour_video: Path, tiny_clip_dir: Path) -> None:
    code, stdout, stderr = run(
        "analyze", str(colour_video), "--model", str(tiny_clip_dir), "-c", "computer=a laptop"
    )
    assert code == 0, stderr
    assert "no null category given" in stderr
    assert "computer" in stdout and "other (null)" in stdout and "dominant per 10 s" in stdout


def test_analyze_with_rules_file_decides(
    colour_video: Path, tiny_clip_dir: Path, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "ruleset: test-set\nversion: 2\nsampling: {fps: 1}\n"
        "categories:\n"
        "  violence: {prompts: [people fighting]}\n"
        "  background: {prompts: [something else], null: true}\n"
        "rules:\n"
        "  - id: anything-at-all\n"
        "    when: {not: {category: violence, coverage_above: 100%}}\n"
        "    then: {schedule: post-watershed, tag: Checked}\n"
    )
    code, stdout, stderr = run(
        "analyze", str(colour_video), "--model", str(tiny_clip_dir), "--rules", str(rules), "--json"
    )
    assert code == 0, stderr
    data = json.loads(stdout)
    assert list(data["coverage"]["categories"]) == ["violence", "background"]
    assert data["coverage"]["frame_count"] == 10  # the rule set's sampling: 1 fps
    (decision,) = data["decisions"]
    assert data["verdict"]["schedule"] == "post-watershed"
    assert decision["ruleset"] == "test-set" and decision["schedule"] == "post-watershed"
    assert decision["tags"] == ["Checked"] and decision["ruleset_sha256"].startswith("sha256:")
    assert decision["reasons"][0]["rule_id"] == "anything-at-all"
    code, stdout, _ = run(
        "analyze",
        str(colour_video),
        "--model",
        str(tiny_clip_dir),
        "--rules",
        str(rules),
        "--fps",
        "2",
        "--json",
    )
    assert json.loads(stdout)["coverage"]["frame_count"] == 20  # a flag beats the rule set


def test_rules_file_errors_name_file_line_and_column(tmp_path: Path, colour_video: Path) -> None:
    rules = tmp_path / "bad.yaml"
    rules.write_text(
        "ruleset: x\ncategories:\n  violence:\n    promts: [people fighting]\nrules: []\n"
    )
    code, _, stderr = run("analyze", str(colour_video), "--rules", str(rules))
    assert code == 2
    assert f"{rules}:4:5" in stderr and "did you mean 'prompts'" in stderr


def test_bad_video_is_one_line_and_exit_3(tmp_path: Path, tiny_clip_dir: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    code, stdout, stderr = run("analyze", str(empty), "--model", str(tiny_clip_dir))
    assert code == 3
    assert "empty (0 bytes)" in stderr and "Traceback" not in stderr + stdout


def test_missing_accelerator_and_model(colour_video: Path, tiny_clip_dir: Path) -> None:
    code, _, stderr = run(
        "analyze", str(colour_video), "--model", str(tiny_clip_dir), "--device", "cuda"
    )
    assert code == 4 and "not available" in stderr
    code, _, stderr = run("analyze", str(colour_video), "--model", "openai/clip-vit-base-patch32")
    assert code == 4 and "--model /path/to/clip" in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--category", "no-equals-sign"], "NAME=prompt"),
        (["--sampling", "sometimes"], "fps | all | keyframes"),
        (["--framing", "zoom"], "letterbox"),
        (["--fps", "0"], "fps"),
        (["--start", "soon"], "not a duration"),
        (["--null", "ghost", "-c", "a=b"], "--null"),
    ],
)
def test_usage_errors_exit_2(
    colour_video: Path, tiny_clip_dir: Path, args: list[str], message: str
) -> None:
    code, _, stderr = run("analyze", str(colour_video), "--model", str(tiny_clip_dir), *args)
    assert code == 2 and message in stderr


def test_model_make_tiny(tmp_path: Path) -> None:
    code, stdout, _ = run("model", "make-tiny", str(tmp_path / "m"))
    assert code == 0 and (tmp_path / "m" / "model.safetensors").is_file()


def test_demo_runs_the_main_job_offline_with_the_shipped_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLICY_ENGINE_REPORTS", str(tmp_path / "reports"))
    code, stdout, stderr = run("demo", "--workdir", str(tmp_path))
    assert code == 0, stderr
    assert "tiny random-weight model" in stderr and "new database" in stderr
    rows = {Path(line.split()[0]).name: line for line in stdout.splitlines() if ".mp4 " in line}
    assert "scanned" in rows["demo-trailer.mp4"] and "scanned" in rows["demo-nature.mp4"]
    assert "failed" in rows["broken-transfer.mp4"]
    assert "3 file(s): 2 scanned, 0 reused" in stdout
    assert len(list((tmp_path / "reports").glob("demo-*.html"))) == 2
    assert (tmp_path / "policy-engine.sqlite").is_file()
    code, stdout, _ = run("demo", "--workdir", str(tmp_path))
    assert code == 0 and "0 scanned, 2 reused" in stdout


def test_analyze_with_a_folder_of_rule_sets(colour_video: Path, tiny_clip_dir: Path) -> None:
    rules = Path(__file__).resolve().parent.parent / "policy_engine" / "rules"
    code, stdout, stderr = run(
        "analyze", str(colour_video), "--model", str(tiny_clip_dir), "--rules", str(rules), "--json"
    )
    assert code == 0, stderr
    data = json.loads(stdout)
    assert [d["ruleset"] for d in data["decisions"]] == [
        "genre-tags",
        "uk-trailers",
        "us-broadcast",
    ]
    levels = ["unrestricted", "post-watershed", "not-for-broadcast"]
    assert data["verdict"]["schedule"] == max(
        (d["schedule"] for d in data["decisions"]), key=levels.index
    )


def test_broken_rule_file_in_folder_stops_analyze(tmp_path: Path, colour_video: Path) -> None:
    (tmp_path / "broken.yaml").write_text("ruleset: x\n")
    code, _, stderr = run("analyze", str(colour_video), "--rules", str(tmp_path))
    assert code == 2 and "broken.yaml" in stderr and "needs 'categories'" in stderr


def test_unexpected_errors_are_one_line_with_a_debug_hint(
    colour_video: Path, tiny_clip_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from policy_engine import cli

    def broken(*_args, **_kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr("policy_engine.pipeline.analyze_video", broken)
    monkeypatch.setattr(
        "sys.argv", ["policy-engine", "analyze", str(colour_video), "--model", str(tiny_clip_dir)]
    )
    monkeypatch.delenv("POLICY_ENGINE_DEBUG", raising=False)
    with pytest.raises(SystemExit) as caught:
        cli.main()
    assert caught.value.code == 1
    stderr = capsys.readouterr().err
    assert "simulated bug" in stderr and "POLICY_ENGINE_DEBUG=1" in stderr
    assert "Traceback" not in stderr

"""The photosensitivity check in the engine: measured in the scan's own decode pass,
stored with the scan, read by rule sets (`{check: photosensitivity, result: fail}`),
shown in the report, and on its own with `policy-engine pse`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from policy_engine.analysis.photosensitivity import PseSettings
from policy_engine.cli import app
from policy_engine.config import SHIPPED_RULES
from policy_engine.media.synthetic import write_color_segments
from policy_engine.media.video import FrameSampler, PictureTap, SamplingMode, SamplingSpec
from policy_engine.models.provider import ModelProvider
from policy_engine.pipeline import AnalysisOptions
from policy_engine.pipeline.judging import judge
from policy_engine.pipeline.scan import Scanner
from policy_engine.policy.loader import load_catalogue, parse_ruleset
from policy_engine.store import Store

runner = CliRunner()
BLACK, WHITE, GREY = (0, 0, 0), (255, 255, 255), (90, 90, 90)

CHECK_RULES = """\
ruleset: flashes
version: 1
categories:
  anything: {prompts: ["a picture"]}
  other: {prompts: ["something else"], null: true}
rules:
  - id: seizure-risk
    reference: Ofcom Broadcasting Code 2.12
    when: {check: photosensitivity, result: fail}
    then: {schedule: not-for-broadcast, review: required}
"""


def flashing(path: Path, seconds: float = 2.0, fps: int = 25) -> Path:
    """Full-screen black/white alternating every two frames (6.25 Hz: 12.5 transitions
    a second), after a second of grey."""
    pairs = round(seconds * fps / 4)
    return write_color_segments(
        path, [(1.0, GREY)] + [(2 / fps, WHITE), (2 / fps, BLACK)] * pairs + [(1.0, GREY)],
        size=(160, 90), fps=fps,
    )  # fmt: skip


def steady(path: Path) -> Path:
    return write_color_segments(path, [(2.0, GREY), (2.0, (120, 60, 30))], size=(160, 90))


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pse")
    return {"flashing": flashing(folder / "flashing.mp4"), "steady": steady(folder / "steady.mp4")}


def _scanner(store: Store, model: Path, pse: bool = True, **sampling) -> Scanner:
    rulesets = [parse_ruleset(CHECK_RULES, "flashes.yaml")]
    return Scanner(
        store, rulesets, ModelProvider(str(model), device="cpu", dtype="fp32", batch_size=8),
        AnalysisOptions(
            sampling=SamplingSpec(**sampling),
            photosensitivity=PseSettings() if pse else None,
        ),
    )  # fmt: skip


def test_the_tap_sees_every_frame_once_with_its_time(videos: dict[str, Path]) -> None:
    seen: list[tuple[float, tuple[int, ...]]] = []
    sampler = FrameSampler(
        videos["flashing"], SamplingSpec(fps=2.0), size=32,
        every_frame=PictureTap(lambda t, p: seen.append((t, p.shape)), width=64),
    )  # fmt: skip
    sampled = list(sampler)
    assert len(sampled) == 8  # 4 s at 2 fps, decoded once
    assert len(seen) == sampler.summary.decoded_frames == 98  # 1 s + 12 x 4 frames + 1 s
    times = [t for t, _ in seen]
    assert times == sorted(times) and times[1] - times[0] == pytest.approx(0.04)
    assert {shape for _, shape in seen} == {(36, 64, 3)}  # 64 wide at 16:9


def test_a_flashing_trailer_fails_and_is_not_for_broadcast(
    store: Store, tiny_clip_dir: Path, videos: dict[str, Path]
) -> None:
    outcome = _scanner(store, tiny_clip_dir).scan_file(videos["flashing"])
    assert outcome.status == "scanned", outcome.error
    [(_, decision)] = outcome.decisions
    assert decision.schedule == "not-for-broadcast" and decision.fired == ["seizure-risk"]
    [reason] = decision.reasons
    measured = reason.measurements[0]
    assert measured.describe() == "photosensitivity result fail or worse: measured fail"
    assert reason.evidence and 1.0 <= reason.evidence[0].time <= 3.0  # where it flashes
    [scan] = store.completed_scans(scan_ids=[outcome.scan_id])
    stored = scan.photosensitivity
    assert stored["verdict"] == "fail" and "frames" not in stored  # the summary, not columns
    first = stored["intervals"][0]
    assert first["kind"] == "flash" and first["area"] > 0.9
    assert 0.9 <= first["start"] <= 1.6, first


def test_the_api_gives_each_scans_check(
    store: Store, tiny_clip_dir: Path, videos: dict[str, Path], db_url: str
) -> None:
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from policy_engine.config import Settings
    from policy_engine.service.app import create_app
    from policy_engine.store.accounts import Accounts

    outcome = _scanner(store, tiny_clip_dir).scan_file(videos["flashing"])
    token = Accounts(store).create_token("mam", "viewer", by="test")
    settings = replace(Settings(), db=db_url, model=str(tiny_clip_dir), device="cpu")
    with TestClient(create_app(settings)) as client:
        asset = client.get(
            f"/api/v1/assets/{outcome.asset_id}", headers={"Authorization": f"Bearer {token}"}
        ).json()
    [scan] = asset["scans"]
    check = scan["photosensitivity"]
    assert check["verdict"] == "fail" and check["intervals"][0]["kind"] == "flash"
    assert check["settings"]["area"] == "regions" and "per_second" not in check


def test_a_steady_trailer_passes_and_re_evaluation_reads_the_stored_check(
    store: Store, tiny_clip_dir: Path, videos: dict[str, Path]
) -> None:
    outcome = _scanner(store, tiny_clip_dir).scan_file(videos["steady"])
    [(_, decision)] = outcome.decisions
    assert decision.schedule == "unrestricted" and not decision.review
    scans = store.completed_scans(scan_ids=[outcome.scan_id])
    assert scans[0].photosensitivity["verdict"] == "pass"
    # judged again from the store, with no model at all: the same
    [judgement] = judge(store, scans, [parse_ruleset(CHECK_RULES, "f.yaml")], None).judgements
    assert judgement.decision.schedule == "unrestricted"


def test_a_scan_without_the_check_cannot_clear_a_rule_that_needs_it(
    store: Store, tiny_clip_dir: Path, videos: dict[str, Path]
) -> None:
    for scanner in (
        _scanner(store, tiny_clip_dir, pse=False),
        _scanner(store, tiny_clip_dir, mode=SamplingMode.KEYFRAMES),  # key frames only
    ):
        outcome = scanner.scan_file(videos["flashing"])
        [(_, decision)] = outcome.decisions
        assert decision.schedule == "unrestricted" and decision.review, decision
        assert any("photosensitivity was not checked" in w for w in decision.warnings)
        assert store.completed_scans(scan_ids=[outcome.scan_id])[0].photosensitivity is None


def test_a_scan_without_the_check_is_not_reused_when_the_check_is_asked_for(
    store: Store, tiny_clip_dir: Path, videos: dict[str, Path]
) -> None:
    first = _scanner(store, tiny_clip_dir, pse=False).scan_file(videos["flashing"])
    again = _scanner(store, tiny_clip_dir).scan_file(videos["flashing"])
    assert again.status == "scanned" and again.scan_id != first.scan_id
    assert _scanner(store, tiny_clip_dir).scan_file(videos["flashing"]).status == "reused"


def test_the_shipped_uk_rules_hold_a_failing_trailer_with_the_ofcom_reference(
    tmp_path: Path, tiny_clip_dir: Path, videos: dict[str, Path]
) -> None:
    db = f"sqlite:///{tmp_path / 'pe.sqlite'}"
    reports = tmp_path / "reports"
    result = runner.invoke(
        app,
        ["--db", db, "scan", str(videos["flashing"]), "--model", str(tiny_clip_dir),
         "--device", "cpu", "--rules", str(SHIPPED_RULES), "--reports", str(reports), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [scanned] = json.loads(result.stdout)
    uk = next(d for d in scanned["decisions"] if d["ruleset"] == "uk-trailers")
    assert uk["schedule"] == "not-for-broadcast"
    fired = {r["rule_id"]: r for r in uk["reasons"]}
    assert fired["photosensitive-epilepsy"]["reference"] == "Ofcom Broadcasting Code 2.12"
    page = next(reports.glob("flashing-*.html")).read_text()
    assert "Photosensitivity: flashes and patterns" in page and ">FAIL<" in page
    assert 'class="flash-chart"' in page and "<td>flash</td><td>fail</td>" in page
    assert 'img class="small" src="data:image/jpeg;base64,' in page  # the interval's frame
    # --no-pse: the same rule set cannot clear it, and says why
    again = runner.invoke(
        app,
        ["--db", db, "scan", str(videos["steady"]), "--model", str(tiny_clip_dir),
         "--device", "cpu", "--rules", str(SHIPPED_RULES), "--reports", str(reports),
         "--no-pse", "--json"],
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    [steady_result] = json.loads(again.stdout)
    assert steady_result["verdict"]["review"] is True
    page = next(reports.glob("steady-*.html")).read_text()
    assert "Not checked on this scan" in page


def test_pse_checks_one_file_without_a_model_or_a_database(
    tmp_path: Path, videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["pse", str(videos["flashing"]), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["verdict"] == "fail" and data["frame_count"] == 98
    assert data["intervals"][0]["flashes_per_second"] >= 3
    assert not list(tmp_path.glob("*.sqlite"))  # no database was made
    human = runner.invoke(app, ["pse", str(videos["steady"])])
    assert human.exit_code == 0 and "PASS" in human.stdout
    strict = runner.invoke(app, ["pse", str(videos["flashing"]), "--strict"])
    assert strict.exit_code == 1 and "FAIL" in strict.stdout
    assert "flash" in strict.stdout and "worst second" in strict.stdout


def test_pse_on_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    result = runner.invoke(app, ["pse", str(empty)])
    assert result.exit_code == 3 and "empty.mp4" in result.output
    wrong = runner.invoke(app, ["pse", str(empty), "--area", "everywhere"])
    assert wrong.exit_code == 2 and "regions" in wrong.output


def test_rule_sets_name_checks_precisely(tmp_path: Path) -> None:
    bad = CHECK_RULES.replace("result: fail", "result: pass").replace(
        "rules:\n", "rules:\n  - id: typo\n    when: {check: photosensitivty, result: fail}\n"
        "    then: {review: required}\n",
    )  # fmt: skip
    (tmp_path / "bad.yaml").write_text(bad)
    _, problems = load_catalogue([tmp_path / "bad.yaml"])
    messages = [str(p) for p in problems]
    assert any("bad.yaml:8:" in m and "'photosensitivty'" in m and "did you mean" in m
               for m in messages), messages  # fmt: skip
    assert any("photosensitivity result 'pass'" in m and "warning | fail" in m
               for m in messages), messages  # fmt: skip


def test_analyze_says_what_the_check_found_or_why_it_did_not_run(
    tiny_clip_dir: Path, videos: dict[str, Path]
) -> None:
    common = ["analyze", str(videos["flashing"]), "--model", str(tiny_clip_dir), "--device", "cpu"]
    checked = runner.invoke(app, common)
    assert checked.exit_code == 0, checked.output
    assert "photosensitivity: FAIL (98 frames): 00:00:01" in checked.stdout
    keyframes = runner.invoke(app, [*common, "--sampling", "keyframes"])
    assert "photosensitivity: not checked: keyframes sampling" in keyframes.stdout
    as_json = json.loads(runner.invoke(app, [*common, "--no-pse", "--json"]).stdout)
    assert as_json["photosensitivity"] is None

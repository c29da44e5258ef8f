"""`scan` through the Python API on both databases: everything an audit needs is stored,
a file scanned alike is not scanned again, and a bad file fails alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from policy_engine.media.video import SamplingSpec
from policy_engine.models.provider import ModelProvider
from policy_engine.pipeline import AnalysisOptions
from policy_engine.pipeline.scan import Scanner, find_videos
from policy_engine.policy.loader import parse_ruleset
from policy_engine.store import Store
from policy_engine.store.schema import DecisionRecord, Frame, Scan, ScoreSet

TERRITORY_RULES = """\
ruleset: territory
version: 1
categories:
  red: {prompts: ["a red wall"]}
  green: {prompts: ["a green field"]}
  background: {prompts: ["something else"], null: true}
rules:
  - id: red-late
    when: {category: red, coverage_above: 50%}
    then: {schedule: post-watershed, review: true}
"""
TAG_RULES = """\
ruleset: tags
version: 1
categories:
  blue: {prompts: ["the sea", "a blue sky"]}
  other: {prompts: ["anything"], null: true}
rules:
  - id: blue-tag
    when: {category: blue, coverage_above: 1%}
    then: {tag: Nature}
"""


def _rulesets():
    return [parse_ruleset(TERRITORY_RULES, "territory.yaml"), parse_ruleset(TAG_RULES, "tags.yaml")]


def _scanner(store: Store, model: Path, **kwargs) -> Scanner:
    return Scanner(
        store,
        _rulesets(),
        ModelProvider(str(model), device="cpu", dtype="fp32", batch_size=8),
        AnalysisOptions(sampling=SamplingSpec(fps=2.0)),
        **kwargs,
    )


def _count(store: Store, model: type) -> int:
    with Session(store.engine) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture
def ingest(tmp_path: Path, colour_video: Path) -> Path:
    folder = tmp_path / "ingest"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(colour_video, folder / "trailer.mp4")
    shutil.copy(colour_video, folder / "sub" / "<img src=x onerror=alert(1)>.MOV")  # same content
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("not a video")
    data = colour_video.read_bytes()
    (folder / "truncated.mkv").write_bytes(data[: len(data) // 3])
    (folder / "readme.txt").write_text("ignored: not a video name")
    (folder / ".hidden.mp4").write_bytes(data)
    return folder


def test_find_videos_walks_folders_by_pattern_and_keeps_explicit_files(ingest: Path) -> None:
    found = [p.relative_to(ingest).as_posix() for p in find_videos([ingest])]
    assert found == [
        "empty.mp4",
        "notes.mp4",
        "trailer.mp4",
        "truncated.mkv",
        "sub/<img src=x onerror=alert(1)>.MOV",
    ]
    explicit = find_videos([ingest / "readme.txt", ingest / "missing.mp4"])
    assert explicit == [ingest / "readme.txt", ingest / "missing.mp4"]


def test_scan_stores_frames_scores_and_decisions_and_bad_files_fail_alone(
    store: Store, tiny_clip_dir: Path, ingest: Path, tmp_path: Path
) -> None:
    reports = tmp_path / "reports"
    scanner = _scanner(store, tiny_clip_dir, reports_dir=reports)
    files = [*find_videos([ingest]), ingest / "missing.mp4"]
    outcomes = {Path(o.path).name: o for o in scanner.scan(files)}

    good = outcomes["trailer.mp4"]
    assert good.status == "scanned" and good.error is None
    assert [d.ruleset for _, d in good.decisions] == ["territory", "tags"]
    assert good.verdict is not None and good.verdict["schedule"] in (
        "unrestricted",
        "post-watershed",
    )
    copy = outcomes["<img src=x onerror=alert(1)>.MOV"]
    assert copy.status == "reused" and copy.asset_id == good.asset_id  # same content
    assert [i for i, _ in copy.decisions] == [i for i, _ in good.decisions]  # nothing new

    reasons = {name: outcomes[name].error for name in outcomes if outcomes[name].status == "failed"}
    assert set(reasons) == {"empty.mp4", "notes.mp4", "truncated.mkv", "missing.mp4"}
    assert "empty" in reasons["empty.mp4"] and "not a readable video" in reasons["notes.mp4"]
    assert any(w in reasons["truncated.mkv"] for w in ("truncated", "corrupt", "not a readable"))
    assert reasons["missing.mp4"] == "file not found"
    assert {s.error for s in store.failed_scans()} == set(reasons.values())

    scan = store.scan(good.scan_id)
    assert (scan.status, scan.device_asked, scan.device_used, scan.dtype) == (
        "completed",
        "cpu",
        "cpu",
        "fp32",
    )
    assert scan.weights_sha256.startswith("sha256:") and scan.frame_count == 20
    assert scan.sampling["fps"] == 2.0 and scan.sampling["framing"] == "letterbox"
    assert scan.logit_scale and scan.embed_dim == 16 and scan.window_end == pytest.approx(10.0)
    with Session(store.engine) as session:
        frames = session.scalars(select(Frame).where(Frame.scan_id == good.scan_id)).all()
        assert len(frames) == 20 and all(f.thumbnail[:2] == b"\xff\xd8" for f in frames)
        assert len(frames[0].embedding) == 16 * 2  # float16
        sets = session.scalars(select(ScoreSet).where(ScoreSet.scan_id == good.scan_id)).all()
        assert sorted(len(s.categories) for s in sets) == [2, 3]  # one per rule set

    report = Path(good.report or "")
    assert report.parent == reports and report.is_file()
    html = Path(copy.report or "").read_text()
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_scanning_again_reuses_stored_frames_without_loading_the_image_model(
    store: Store, tiny_clip_dir: Path, colour_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _scanner(store, tiny_clip_dir).scan([colour_video])[0]
    decisions, scans = _count(store, DecisionRecord), _count(store, Scan)

    def no_image_model(*args, **kwargs):
        raise AssertionError("the image model must not be loaded for a file scanned alike")

    monkeypatch.setattr("policy_engine.models.clip.ClipEmbedder.load", no_image_model)
    again = _scanner(store, tiny_clip_dir).scan([colour_video])[0]
    assert again.status == "reused" and again.scan_id == first.scan_id
    assert [i for i, _ in again.decisions] == [i for i, _ in first.decisions]
    assert (_count(store, DecisionRecord), _count(store, Scan)) == (decisions, scans)

    monkeypatch.undo()
    forced = _scanner(store, tiny_clip_dir, force=True).scan([colour_video])[0]
    assert forced.status == "scanned" and forced.scan_id != first.scan_id
    assert _count(store, DecisionRecord) == decisions + 2  # a new scan: new decisions


def test_other_sampling_is_a_new_scan(store: Store, tiny_clip_dir: Path, colour_video: Path):
    first = _scanner(store, tiny_clip_dir).scan([colour_video])[0]
    other = Scanner(
        store,
        _rulesets(),
        ModelProvider(str(tiny_clip_dir), device="cpu", dtype="fp32"),
        AnalysisOptions(sampling=SamplingSpec(fps=1.0)),
    ).scan([colour_video])[0]
    assert other.status == "scanned" and other.scan_id != first.scan_id
    assert store.scan(other.scan_id).frame_count == 10


def test_an_unexpected_error_fails_one_file_and_an_interrupt_is_recorded(
    store: Store, tiny_clip_dir: Path, colour_video: Path, tmp_path: Path, monkeypatch
) -> None:
    import policy_engine.pipeline.scan as scan_module

    second = tmp_path / "second.mp4"
    second.write_bytes(colour_video.read_bytes() + b"\0")  # other content, still decodable
    real = scan_module.analyze_video

    def flaky(path, *args, **kwargs):
        if Path(path).name == "second.mp4":
            raise RuntimeError("decoder exploded")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(scan_module, "analyze_video", flaky)
    outcomes = _scanner(store, tiny_clip_dir).scan([second, colour_video])
    assert [o.status for o in outcomes] == ["failed", "scanned"]
    assert outcomes[0].error == "internal error: RuntimeError: decoder exploded"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scan_module, "analyze_video", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _scanner(store, tiny_clip_dir, force=True).scan([colour_video])
    assert store.failed_scans()[-1].error == "interrupted"
    assert all(s.status != "running" for s in [store.scan(i) for i in range(1, 4)])

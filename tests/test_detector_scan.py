"""Detector categories through a real scan: a tiny ONNX detector beside the tiny CLIP,
decisions from its boxes, every detection stored, thresholds re-evaluated from the store
without the video, evidence thumbnails with boxes where the detector counted."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the `detectors` extra is not installed")
pytest.importorskip("onnx", reason="the `test` extra (onnx) is not installed")

from PIL import Image  # noqa: E402
from tiny_detector import tiny_detector  # noqa: E402

from policy_engine.media.synthetic import write_color_segments  # noqa: E402
from policy_engine.media.video import SamplingSpec  # noqa: E402
from policy_engine.models.provider import ModelProvider  # noqa: E402
from policy_engine.pipeline import AnalysisOptions  # noqa: E402
from policy_engine.pipeline.judging import reevaluate  # noqa: E402
from policy_engine.pipeline.scan import Scanner  # noqa: E402
from policy_engine.policy.loader import parse_ruleset  # noqa: E402
from policy_engine.store import Store  # noqa: E402

RULES = """\
ruleset: weapons
categories:
  violence: {{prompts: [people fighting]}}
  background: {{prompts: [something else], null: true}}
  knives:
    detector:
      model: {model}
      classes: [knife]
      model_classes: [knife, person]
      min_confidence: {confidence}
rules:
  - id: knives-late
    when: {{category: knives, coverage_above: 50%}}
    then: {{schedule: post-watershed}}
"""


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s black, 3 s grey, 4 s white: the tiny detector's knife is as sure as the
    letterboxed picture is bright (white 0.56, grey 0.28, black nothing)."""
    folder = tmp_path_factory.mktemp("knives")
    segments = [(3.0, (0, 0, 0)), (3.0, (128, 128, 128)), (4.0, (255, 255, 255))]
    return write_color_segments(folder / "knives.mp4", segments, size=(320, 180))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_detector(tmp_path_factory.mktemp("detector") / "knife.onnx")


def rules(model: Path, confidence: str):
    return parse_ruleset(RULES.format(model=model, confidence=confidence), "weapons.yaml")


def without_detector():
    text = RULES.format(model="x", confidence="50%").split("  knives:")[0] + "rules: []\n"
    return parse_ruleset(text, "weapons.yaml")


def test_a_detector_category_decides_is_stored_and_is_reevaluated_without_the_video(
    store: Store, tiny_clip_dir: Path, video: Path, model: Path, tmp_path: Path
) -> None:
    clip = tmp_path / "knives.mp4"
    clip.write_bytes(video.read_bytes())
    models = ModelProvider(str(tiny_clip_dir), device="cpu", dtype="fp32", batch_size=8)
    options = AnalysisOptions(sampling=SamplingSpec(fps=2.0))
    reports = tmp_path / "reports"
    scanner = Scanner(store, [rules(model, "50%")], models, options, reports_dir=reports)
    outcome = scanner.scan_file(clip)
    assert outcome.status == "scanned", outcome.error and outcome.report_error
    assert outcome.report is not None
    page = Path(outcome.report).read_text()
    assert "knives (detector)" in page and f"found by the detector {model}" in page
    [(_, decision)] = outcome.decisions
    assert decision.schedule == "unrestricted"  # white only: 40% of the time
    [scan] = store.completed_scans(scan_ids=[outcome.scan_id])
    stored = store.scan_detections([scan.id])[scan.id]
    assert stored is not None and [m["name"] for m in stored["models"]] == [str(model)]
    [detector] = stored["models"]
    assert detector["identity"]["weights_sha256"].startswith("sha256:")
    found = [[detector["classes"][row[1]] for row in frame] for frame in stored["frames"]]
    assert len(found) == len(scan.times) == 20
    assert found[0] == [] and found[-1] == ["knife"]  # black: nothing; white: the knife
    # the scan records what its boxes and evidence depend on (checked before reuse)
    [held] = store.scan(outcome.scan_id).sampling["detectors"]
    assert str(model) in held and "sha256:" in held

    # evidence: where the knife counted, the thumbnail has its box drawn
    thumbs = store.thumbnails(outcome.scan_id, range(20))
    white = np.asarray(Image.open(io.BytesIO(thumbs[19])).convert("RGB")).astype(int)
    black = np.asarray(Image.open(io.BytesIO(thumbs[0])).convert("RGB")).astype(int)
    assert (np.abs(white - 255).max(axis=2) > 60).mean() > 0.005  # a coloured box on white
    assert black.max() < 40  # nothing drawn on black

    clip.unlink()  # the grey knives now count: judged from the store, not the video
    changed = reevaluate(store, [rules(model, "25%")], None)
    assert not changed.problems
    [change] = changed.changes
    assert change.after.schedule == "post-watershed"


def test_a_scan_its_detector_never_saw_is_reported_not_passed(
    store: Store, tiny_clip_dir: Path, video: Path, model: Path
) -> None:
    models = ModelProvider(str(tiny_clip_dir), device="cpu", dtype="fp32", batch_size=8)
    plain = without_detector()
    options = AnalysisOptions(sampling=SamplingSpec(fps=2.0))
    assert Scanner(store, [plain], models, options).scan_file(video).status == "scanned"
    result = reevaluate(store, [rules(model, "50%")], None)
    assert not result.changes
    [(_, problem)] = result.problems
    assert "did not run on scan" in problem and "--force" in problem


def textured(path: Path, seconds: float = 4.0) -> Path:
    """A bright checkerboard of 8-pixel squares, 320x180 at 25 fps, kept sharp."""
    import av

    y, x = np.mgrid[0:180, 0:320]
    board = np.where(((y // 8) + (x // 8)) % 2 == 0, 255, 160).astype(np.uint8)
    picture = np.repeat(board[..., None], 3, axis=2)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "8"}
        for _ in range(round(seconds * 25)):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def detail(picture: np.ndarray) -> float:
    return float(np.abs(np.diff(picture.astype(float).mean(axis=2), axis=1)).mean())


def test_hidden_classes_leave_the_scan_pixelated_and_a_scan_serves_what_it_holds(
    store: Store, tiny_clip_dir: Path, model: Path, tmp_path: Path
) -> None:
    video = textured(tmp_path / "board.mp4")
    models = ModelProvider(str(tiny_clip_dir), device="cpu", dtype="fp32", batch_size=8)
    options = AnalysisOptions(sampling=SamplingSpec(fps=2.0))
    text = RULES.format(model=model, confidence="40%")
    hiding = parse_ruleset(text.replace("40%\n", "40%\n      hide: true\n"), "w.yaml")
    assert hiding.detectors[0].detector.hide
    outcome = Scanner(store, [hiding], models, options).scan_file(video)
    assert outcome.status == "scanned", outcome.error
    [thumb] = store.thumbnails(outcome.scan_id, [3]).values()
    shown = np.asarray(Image.open(io.BytesIO(thumb)).convert("RGB"))
    inside, outside = shown[32:68, 30:68], shown[32:68, 110:180]  # 192x108
    assert detail(outside) > 5  # the board, as it was
    assert detail(inside) < 0.2 * detail(outside)  # the knife's box, pixelated

    # the same file again: a rule set without the detector reuses the scan that holds
    # more; one that shows the class instead of hiding it does not (its pictures differ)
    plain = Scanner(store, [without_detector()], models, options).scan_file(video)
    assert plain.status == "reused" and plain.scan_id == outcome.scan_id
    showing = Scanner(store, [rules(model, "40%")], models, options).scan_file(video)
    assert showing.status == "scanned" and showing.scan_id != outcome.scan_id
    [thumb] = store.thumbnails(showing.scan_id, [3]).values()
    boxed = np.asarray(Image.open(io.BytesIO(thumb)).convert("RGB"))
    assert detail(boxed[32:68, 30:68]) > 0.5 * detail(outside)  # boxed, not pixelated


def test_a_missing_detector_model_stops_the_run_with_what_to_do(
    store: Store, tiny_clip_dir: Path, video: Path, tmp_path: Path
) -> None:
    models = ModelProvider(str(tiny_clip_dir), device="cpu", dtype="fp32", batch_size=8)
    options = AnalysisOptions(sampling=SamplingSpec(fps=2.0))
    scanner = Scanner(store, [rules(tmp_path / "gone.onnx", "50%")], models, options)
    with pytest.raises(Exception, match="no detector model at .*gone.onnx"):
        scanner.scan_file(video)

"""Object detectors: a tiny generated ONNX detector with YOLO-style outputs (default tier)
and NudeNet's real 320n model (where the `nudity` extra is installed), through the same
OnnxDetector.load path; supervision's NMS and filters; pixelated evidence pictures."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the `detectors` extra is not installed")
pytest.importorskip("supervision", reason="the `detectors` extra is not installed")
onnx = pytest.importorskip("onnx", reason="the `test` extra (onnx) is not installed")

from PIL import Image  # noqa: E402
from tiny_detector import CLASSES, SIZE, tiny_detector  # noqa: E402

from policy_engine.analysis.detections import (  # noqa: E402
    NUDENET_CLASSES,
    NUDENET_EXPOSED,
    DetectorSpec,
)
from policy_engine.errors import ModelError  # noqa: E402
from policy_engine.media.evidence import draw_evidence, evidence_jpeg  # noqa: E402
from policy_engine.models.detector import (  # noqa: E402
    OnnxDetector,
    kept_detections,
    load_nudenet,
    nudenet_model_path,
    qualifying,
)


@pytest.fixture()
def tiny(tmp_path: Path) -> OnnxDetector:
    return OnnxDetector.load(tiny_detector(tmp_path / "tiny.onnx"), CLASSES)


def white(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), 255, np.uint8)


def test_boxes_come_back_in_picture_pixels_with_duplicates_suppressed(tiny: OnnxDetector) -> None:
    found = tiny.detect(white(128, 128))  # twice the input: every coordinate doubles
    assert list(found.data["class_name"]) == ["knife", "person"]
    np.testing.assert_allclose(found.xyxy, [[16, 16, 48, 48], [88, 88, 104, 104]], atol=1e-4)
    np.testing.assert_allclose(found.confidence, [1.0, 0.8], atol=1e-5)
    assert len(tiny.detect(np.zeros((128, 128, 3), np.uint8))) == 0  # dark: no scores


def test_a_wide_picture_is_padded_below_and_boxes_there_are_dropped(tiny: OnnxDetector) -> None:
    found = tiny.detect(white(64, 128))  # letterboxed: the lower half of the input is black
    np.testing.assert_allclose(found.confidence, [0.5], atol=2e-3)
    np.testing.assert_allclose(found.xyxy, [[16, 16, 48, 48]], atol=1e-4)
    # the person's box lies wholly in the padding: clipped to nothing, it is no detection
    assert list(found.data["class_name"]) == ["knife"]
    assert all(len(d) == 1 for d in tiny.detect_many([white(64, 128), white(64, 128)]))


def test_a_category_counts_only_its_classes_above_its_confidence_and_area(
    tiny: OnnxDetector,
) -> None:
    found, area = tiny.detect(white(128, 128)), 128 * 128

    def spec(classes: tuple[str, ...], **limits: float) -> DetectorSpec:
        return DetectorSpec("tiny", classes, **limits)  # type: ignore[arg-type]

    knives = qualifying(found, spec(("knife",), min_confidence=0.5, min_area=0.05), area)
    assert list(knives.data["class_name"]) == ["knife"]  # 32x32 is 6% of the picture
    assert len(qualifying(found, spec(("knife",), min_area=0.1), area)) == 0
    assert len(qualifying(found, spec(("person",), min_confidence=0.9), area)) == 0
    with pytest.raises(ValueError, match="min_confidence"):
        spec(("knife",), min_confidence=1.5)
    with pytest.raises(ValueError, match="not kept"):
        spec(("knife",), min_confidence=0.1)
    kept = kept_detections(found, "tiny", (128, 128))
    assert [d.class_name for d in kept] == ["knife", "person"]
    assert kept[0].box == pytest.approx((0.125, 0.125, 0.375, 0.375))
    assert kept[0].area == pytest.approx(0.0625)


def test_classes_and_input_size_are_read_from_an_ultralytics_export(tmp_path: Path) -> None:
    path = tiny_detector(
        tmp_path / "meta.onnx", metadata={"names": "{0: 'knife', 1: 'person'}", "imgsz": "[64, 64]"}
    )
    detector = OnnxDetector.load(path)
    assert detector.classes == CLASSES and detector.identity.input_size == SIZE
    assert detector.identity.weights_sha256.startswith("sha256:")
    assert detector.identity.runtime.startswith("onnxruntime ")


def test_unusable_models_are_refused_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no detector model at .*nudity"):
        OnnxDetector.load(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a model" * 10)
    with pytest.raises(ModelError, match="not a model onnxruntime can load"):
        OnnxDetector.load(garbage, CLASSES)
    bare = tiny_detector(tmp_path / "bare.onnx")
    with pytest.raises(ModelError, match="names no classes"):
        OnnxDetector.load(bare)
    with pytest.raises(ModelError, match="not YOLO-style"):
        OnnxDetector.load(bare, ("knife", "person", "dog"))


def checkerboard(height: int, width: int, square: int = 2) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    board = (((y // square) + (x // square)) % 2 * 255).astype(np.uint8)
    return np.repeat(board[..., None], 3, axis=2)


def detail(picture: np.ndarray) -> float:
    """Mean absolute difference between horizontal neighbours: fine detail left."""
    grey = picture.astype(np.float32).mean(axis=2)
    return float(np.abs(np.diff(grey, axis=1)).mean())


def test_hidden_classes_leave_the_engine_pixelated_and_the_rest_untouched(
    tiny: OnnxDetector,
) -> None:
    picture = checkerboard(128, 128)
    picture[:, :, :] = np.maximum(picture, 40)  # bright enough for the tiny model to fire
    found = tiny.detect(picture)
    assert "knife" in found.data["class_name"]
    shown = Image.open(io.BytesIO(evidence_jpeg(picture, found, hidden_classes={"knife"})))
    shown = np.asarray(shown.convert("RGB"))
    inside = (slice(20, 44), slice(20, 44))  # within the knife's box, clear of its outline
    assert detail(picture[inside]) > 100
    assert detail(shown[inside]) < 0.1 * detail(picture[inside])  # pixelated
    outside = (slice(60, 80), slice(20, 44))  # no box there
    assert detail(shown[outside]) > 0.5 * detail(picture[outside])
    revealed = draw_evidence(picture, found, hidden_classes={"knife"}, reveal=True)
    assert detail(revealed[inside]) == pytest.approx(detail(picture[inside]))
    drawn = draw_evidence(picture, found)
    assert not np.array_equal(drawn, picture)  # boxes and labels are drawn ...
    assert np.array_equal(picture, np.maximum(checkerboard(128, 128), 40))  # ... on a copy


# -- NudeNet's real model ------------------------------------------------------------------


@pytest.fixture(scope="module")
def nudenet() -> OnnxDetector:
    pytest.importorskip("nudenet", reason="the `nudity` extra is not installed")
    return load_nudenet()


def test_nudenet_loads_with_its_own_class_list(nudenet: OnnxDetector) -> None:
    assert nudenet.classes == NUDENET_CLASSES
    assert set(NUDENET_EXPOSED) <= set(NUDENET_CLASSES)
    assert nudenet.identity.path == str(nudenet_model_path().resolve())
    assert nudenet.identity.input_size == 320


@pytest.mark.media
def test_nudenet_scores_match_nudenets_own_code_on_a_real_frame(
    nudenet: OnnxDetector, shared_media: Path
) -> None:
    """The outside reference: NudeNet's NudeDetector on the same frame. Its NMS is across
    classes and drops scores under 0.25; each of its detections is one of ours."""
    av = pytest.importorskip("av")
    from nudenet import NudeDetector

    with av.open(str(shared_media / "opencvpy_faces.mp4")) as container:
        frame = next(f for i, f in enumerate(container.decode(video=0)) if i == 20)
    bgr = frame.to_ndarray(format="bgr24")
    theirs = NudeDetector().detect(bgr)
    ours = nudenet.detect(np.ascontiguousarray(bgr[..., ::-1]))
    assert theirs, "the meeting room's faces are found"
    for found in theirs:
        x, y, w, h = found["box"]
        match = [
            i
            for i, name in enumerate(ours.data["class_name"])
            if name == found["class"] and np.allclose(ours.xyxy[i], [x, y, x + w, y + h], atol=2)
        ]
        assert match, found
        assert ours.confidence[match[0]] == pytest.approx(found["score"], abs=1e-5)


def test_a_hidden_box_smaller_than_a_block_is_filled_and_grey_pictures_are_refused() -> None:
    import supervision as sv

    picture = checkerboard(360, 640)  # blocks of 18 pixels
    small = sv.Detections(
        xyxy=np.array([[100, 100, 108, 140]], np.float32),
        confidence=np.array([0.9], np.float32),
        class_id=np.array([0]),
        data={"class_name": np.array(["knife"], dtype=object)},
    )
    shown = draw_evidence(picture, small, hidden_classes={"knife"})
    assert detail(shown[104:136, 103:106]) < 0.1 * detail(picture[104:136, 103:106])
    with pytest.raises(ValueError, match="uint8 RGB"):
        draw_evidence(picture[..., 0], small, hidden_classes={"knife"})

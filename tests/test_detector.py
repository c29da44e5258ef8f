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

from onnx import TensorProto, helper  # noqa: E402
from PIL import Image  # noqa: E402

from policy_engine.errors import ModelError  # noqa: E402
from policy_engine.media.evidence import draw_evidence, evidence_jpeg  # noqa: E402
from policy_engine.models.detector import (  # noqa: E402
    NUDENET_CLASSES,
    NUDENET_EXPOSED,
    DetectionFilter,
    OnnxDetector,
    load_nudenet,
    nudenet_model_path,
)

SIZE = 64  # the tiny model's input
CLASSES = ("knife", "person")
# anchors: centre x, centre y, width, height (input pixels), and per-class weights; a
# class's score is the weight times the input's mean brightness
ANCHORS = [
    ((16, 16, 16, 16), (1.0, 0.0)),  # a knife
    ((18, 16, 16, 16), (0.9, 0.0)),  # the same knife again: NMS keeps one
    ((48, 48, 8, 8), (0.0, 0.8)),  # a person
    ((48, 16, 32, 32), (0.1, 0.0)),  # too unsure to keep at all
]


def tiny_detector(path: Path, *, metadata: dict[str, str] | None = None, classes: int = 2) -> Path:
    """(N, 3, S, S) -> (N, 4 + classes, anchors): constant boxes, scores from brightness."""
    anchors = len(ANCHORS)
    boxes = np.array([a[0] for a in ANCHORS], np.float32).T[None]  # (1, 4, A)
    weights = np.zeros((1, classes, anchors), np.float32)
    weights[0, :2] = np.array([a[1] for a in ANCHORS], np.float32).T
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Reshape", ["mean", "shape"], ["mean3"]),
        helper.make_node("Mul", ["mean3", "weights"], ["scores"]),
        helper.make_node("Mul", ["mean3", "zeros"], ["nothing"]),  # the batch dimension
        helper.make_node("Add", ["nothing", "boxes"], ["placed"]),
        helper.make_node("Concat", ["placed", "scores"], ["output0"], axis=1),
    ]
    initializers = [
        helper.make_tensor("shape", TensorProto.INT64, [3], [-1, 1, 1]),
        helper.make_tensor("weights", TensorProto.FLOAT, weights.shape, weights.ravel()),
        helper.make_tensor("zeros", TensorProto.FLOAT, boxes.shape, np.zeros(boxes.size)),
        helper.make_tensor("boxes", TensorProto.FLOAT, boxes.shape, boxes.ravel()),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [
            helper.make_tensor_value_info(
                "output0", TensorProto.FLOAT, ["batch", 4 + classes, anchors]
            )
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


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
    knives = DetectionFilter(("knife",), min_confidence=0.5, min_area=0.05).apply(found, area)
    assert list(knives.data["class_name"]) == ["knife"]  # 32x32 is 6% of the picture
    assert len(DetectionFilter(("knife",), min_area=0.1).apply(found, area)) == 0
    assert len(DetectionFilter(("person",), min_confidence=0.9).apply(found, area)) == 0
    with pytest.raises(ValueError, match="min_confidence"):
        DetectionFilter(("knife",), min_confidence=1.5)
    with pytest.raises(ValueError, match="dropped before NMS"):
        DetectionFilter(("knife",), min_confidence=0.1)


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

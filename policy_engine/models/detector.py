"""Object detectors: any ONNX detector with YOLO-style outputs, run by onnxruntime, its
raw predictions turned into `supervision` detections (boxes, confidences, classes) and
de-duplicated by supervision's non-max suppression.

YOLO-style (Ultralytics YOLOv5u/v8/v11 exports, NudeNet's 320n): one input image batch
(N, 3, H, W), RGB scaled to [0, 1]; one output (N, 4 + C, A): per anchor the box centre,
width and height in input pixels, then one score per class. Pictures are letterboxed:
padded to a square at the bottom and right (so a box needs no shift back, only a
scale), then resized to the model's input.

Heavy imports (onnxruntime, supervision) happen on load, so that the policy and analysis
code that only names a detector stays light; an environment without the `detectors`
extra gets a ModelError that says how to install it.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from policy_engine.analysis.detections import (
    NUDENET,
    NUDENET_CLASSES,
    RAW_CONFIDENCE,
    Detection,
    DetectorSpec,
)
from policy_engine.errors import ModelError
from policy_engine.models.checkpoint import files_sha256

if TYPE_CHECKING:
    import supervision as sv

NMS_IOU = 0.45  # boxes of one class overlapping more than this are one detection


@dataclass(frozen=True)
class DetectorIdentity:
    """What an audit needs to know about the detector that produced a scan's boxes."""

    name: str
    path: str
    weights_sha256: str
    input_size: int
    classes: tuple[str, ...]
    runtime: str  # "onnxruntime <version> (<provider>)"
    channels: str = "rgb"  # the order the model is fed: "rgb" or "bgr"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def qualifying(detections: sv.Detections, spec: DetectorSpec, picture_area: float) -> sv.Detections:
    """The detections that count for a detector category (supervision's own filtering by
    mask): its classes, at its minimum confidence and box area."""
    if len(detections) == 0:
        return detections
    names = detections.data["class_name"]
    keep = np.fromiter((name in spec.classes for name in names), bool, len(names))
    keep &= np.asarray(detections.confidence) >= spec.min_confidence
    keep &= np.asarray(detections.area) >= spec.min_area * picture_area
    return subset(detections, keep)


def kept_detections(
    detections: sv.Detections, model: str, shape: tuple[int, ...]
) -> list[Detection]:
    """Detections as a scan keeps them: boxes as shares of the picture."""
    height, width = shape[:2]
    scale = np.array([width, height, width, height], dtype=np.float64)
    names = detections.data["class_name"]
    return [
        Detection(model, str(name), float(confidence), tuple(np.asarray(box) / scale))  # type: ignore[arg-type]
        for name, confidence, box in zip(
            names, np.asarray(detections.confidence), np.asarray(detections.xyxy), strict=True
        )
    ]


class OnnxDetector:
    """One loaded ONNX detector. `detect` is thread-safe (onnxruntime sessions are)."""

    def __init__(self, session: Any, identity: DetectorIdentity) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name
        self._one_at_a_time = session.get_inputs()[0].shape[0] == 1
        self.identity = identity

    @property
    def classes(self) -> tuple[str, ...]:
        return self.identity.classes

    @classmethod
    def load(
        cls,
        path: str | Path,
        classes: tuple[str, ...] | None = None,
        *,
        name: str | None = None,
        input_size: int | None = None,
        channels: str = "rgb",
        threads: int | None = None,
    ) -> OnnxDetector:
        """Load `path` (an .onnx file). The classes come from the argument, else from the
        model's metadata (Ultralytics exports carry `names`); the input size likewise
        (`imgsz`), else 640. `channels` is the colour order the model was made for."""
        if channels not in ("rgb", "bgr"):
            raise ValueError(f"channels must be 'rgb' or 'bgr', got {channels!r}")
        path = Path(path)
        if not path.is_file():
            raise ModelError(
                f"no detector model at {path}: give the path of an .onnx file (NudeNet's"
                " ships inside the `nudenet` wheel: pip install 'policy_engine[nudity]')"
            )
        ort = _onnxruntime()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception classes
            raise ModelError(f"{path} is not a model onnxruntime can load: {exc}") from exc
        metadata = session.get_modelmeta().custom_metadata_map
        classes = tuple(classes) if classes else _metadata_classes(metadata)
        if not classes:
            raise ModelError(
                f"{path} names no classes in its metadata: give the class list in the order"
                " of the model's outputs"
            )
        outputs = session.get_outputs()[0].shape
        if len(outputs) != 3 or (isinstance(outputs[1], int) and outputs[1] != 4 + len(classes)):
            raise ModelError(
                f"{path}: output shape {outputs} is not YOLO-style (batch, 4 + {len(classes)}"
                f" classes, anchors)"
            )
        size = input_size or _metadata_size(metadata) or _fixed_input_size(session) or 640
        identity = DetectorIdentity(
            name=name or path.stem,
            path=str(path.resolve()),
            weights_sha256=files_sha256([path]),
            input_size=size,
            classes=classes,
            runtime=f"onnxruntime {ort.__version__} ({session.get_providers()[0]})",
            channels=channels,
        )
        return cls(session, identity)

    def detect(self, picture: np.ndarray) -> sv.Detections:
        """Detections in one uint8 RGB picture (H, W, 3), in its pixel coordinates, after
        non-max suppression per class; `data["class_name"]` names each class."""
        return self.detect_many([picture])[0]

    def detect_many(self, pictures: list[np.ndarray]) -> list[sv.Detections]:
        """Detections in each picture (one model call for pictures of one size)."""
        if not pictures:
            return []
        size, bgr = self.identity.input_size, self.identity.channels == "bgr"
        blobs, scales = zip(*(letterbox(p[..., ::-1] if bgr else p, size) for p in pictures))
        if self._one_at_a_time:  # an export with a fixed batch of one
            raw = np.concatenate(
                [self._session.run(None, {self._input: blob[None]})[0] for blob in blobs]
            )
        else:
            raw = self._session.run(None, {self._input: np.stack(blobs)})[0]
        return [
            self._detections(raw[i], scales[i], picture.shape[:2])
            for i, picture in enumerate(pictures)
        ]

    def _detections(self, raw: np.ndarray, scale: float, shape: tuple[int, ...]) -> sv.Detections:
        import supervision as sv

        predictions = raw.T  # (anchors, 4 + classes)
        scores = predictions[:, 4:]
        class_id = scores.argmax(axis=1)
        confidence = scores[np.arange(len(scores)), class_id]
        keep = confidence >= RAW_CONFIDENCE
        if not keep.any():
            return _empty_detections()
        centre, size = predictions[keep, :2], predictions[keep, 2:4]
        xyxy = np.concatenate([centre - size / 2, centre + size / 2], axis=1) * scale
        height, width = shape
        np.clip(xyxy, 0, [width, height, width, height], out=xyxy)
        # a box wholly in the letterbox's padding is clipped to nothing: not a detection
        inside = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        if not inside.any():
            return _empty_detections()
        detections = sv.Detections(
            xyxy=xyxy[inside].astype(np.float32),
            confidence=confidence[keep][inside].astype(np.float32),
            class_id=class_id[keep][inside].astype(int),
        )
        detections = detections.with_nms(threshold=NMS_IOU, class_agnostic=False)
        detections.data["class_name"] = np.array(
            [self.classes[i] for i in np.asarray(detections.class_id)], dtype=np.object_
        )
        return detections


def subset(detections: sv.Detections, keep: np.ndarray) -> sv.Detections:
    """The detections where `keep` is true (supervision's own indexing, typed)."""
    return cast("sv.Detections", detections[keep])


def letterbox(picture: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """The model's input (3, size, size) float32 in [0, 1] from a uint8 RGB picture:
    padded with black at the bottom and right to a square, then resized to `size`, as
    NudeNet's own code does (resizing first and padding after gives other pixels, and
    scores a few hundredths apart); and the factor from input pixels back to the
    picture's. Ultralytics' own predict resizes first and pads centred with grey: its
    exports score a little differently here than there."""
    import cv2  # installed for scene detection

    height, width = picture.shape[:2]
    longer = max(height, width)
    square = cv2.copyMakeBorder(
        np.ascontiguousarray(picture), 0, longer - height, 0, longer - width,
        cv2.BORDER_CONSTANT, value=(0, 0, 0),
    )  # fmt: skip
    blob = cv2.resize(square, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    blob *= np.float32(1 / 255)
    return blob.transpose(2, 0, 1), longer / size


def nudenet_model_path() -> Path:
    """NudeNet's 320n model inside the installed `nudenet` package (found without
    importing the package)."""
    spec = importlib.util.find_spec("nudenet")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        candidate = Path(folder) / "320n.onnx"
        if candidate.is_file():
            return candidate
    raise ModelError(
        "NudeNet's detector is not installed: pip install 'policy_engine[nudity]' (the"
        " model ships inside the nudenet wheel; its licence is in the README)"
    )


def load_nudenet(threads: int | None = None) -> OnnxDetector:
    """NudeNet's detector, fed as NudeNet's own code feeds it: BGR (it reads files with
    OpenCV, swaps the channels to RGB, then swaps them back making its blob), so that its
    scores are NudeNet's to the last digit."""
    return OnnxDetector.load(
        nudenet_model_path(),
        NUDENET_CLASSES,
        name=NUDENET,
        input_size=320,
        channels="bgr",
        threads=threads,
    )


def _onnxruntime() -> Any:
    try:
        import onnxruntime
        import supervision  # noqa: F401 - detections are supervision's: fail here, not later
    except ImportError as exc:
        raise ModelError(
            "detector categories need onnxruntime and supervision: pip install"
            " 'policy_engine[detectors]'"
        ) from exc
    return onnxruntime


def _empty_detections() -> sv.Detections:
    import supervision as sv

    detections = sv.Detections.empty()
    detections.data["class_name"] = np.array([], dtype=np.object_)
    return detections


def _metadata_classes(metadata: dict[str, str]) -> tuple[str, ...]:
    """Ultralytics writes `names` as a Python dict literal {0: 'person', ...}."""
    try:
        names = ast.literal_eval(metadata.get("names", ""))
    except (ValueError, SyntaxError):
        return ()
    if not isinstance(names, dict):
        return ()
    return tuple(str(names[k]) for k in sorted(names))


def _metadata_size(metadata: dict[str, str]) -> int | None:
    try:
        size = ast.literal_eval(metadata.get("imgsz", ""))
    except (ValueError, SyntaxError):
        return None
    if isinstance(size, list | tuple) and size and isinstance(size[0], int):
        return int(size[0])
    return None


def _fixed_input_size(session: Any) -> int | None:
    shape = session.get_inputs()[0].shape
    return shape[2] if len(shape) == 4 and isinstance(shape[2], int) else None

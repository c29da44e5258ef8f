"""Detector categories: what a rule file asks of an object detector, the detections a
scan keeps per sampled frame, and the per-frame column a category reads from them. Pure.

A detector category's frame value is the highest confidence among the frame's detections
of its classes whose box covers at least its minimum area; the frame *shows* the category
where that reaches its minimum confidence. Coverage is then time-weighted like every
other category's, so every condition works unchanged; and since the scan keeps every
detection (model, class, confidence, box), a changed class list, confidence or area is
re-evaluated from the store without decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from policy_engine.analysis.scoring import Category, FrameScores

NUDENET = "nudenet-320n"  # the name a rule file uses for NudeNet's detector
# NudeNet 3.4's classes, in the order of its model's outputs
NUDENET_CLASSES = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
# what a nudity category counts unless it lists classes: exposed intimate parts
NUDENET_EXPOSED = (
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_EXPOSED",
)
RAW_CONFIDENCE = 0.2  # detections below this are not kept (dropped before NMS)


@dataclass(frozen=True)
class DetectorSpec:
    """A detector category's detector: the model (``nudenet-320n`` or an .onnx file), the
    classes that count, a minimum confidence and a minimum box area (a share of the
    picture), whether its detections are pixelated in every picture that leaves the
    engine, and, for a model whose file names none, its classes in output order."""

    model: str
    classes: tuple[str, ...]
    min_confidence: float = 0.5
    min_area: float = 0.0
    hide: bool = False
    model_classes: tuple[str, ...] = ()
    # where the .onnx file is (a rule file's relative path, resolved): not part of what
    # the numbers depend on, which the model's weights hash is
    model_path: str = ""
    # the CLIP category this detector gives a second opinion on (review_on_disagreement)
    second_opinion_for: str = ""

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("a detector needs a model: nudenet-320n or the path of an .onnx file")
        if not self.classes:
            raise ValueError("a detector category needs at least one class")
        if not RAW_CONFIDENCE <= self.min_confidence <= 1.0:
            raise ValueError(
                f"min_confidence must be between {RAW_CONFIDENCE} and 1 (weaker detections"
                f" are not kept), got {self.min_confidence}"
            )
        if not 0.0 <= self.min_area < 1.0:
            raise ValueError(
                f"min_area must be a share of the picture below 1, got {self.min_area}"
            )
        known = self.model_classes or (NUDENET_CLASSES if self.model == NUDENET else ())
        unknown = [c for c in self.classes if known and c not in known]
        if unknown:
            raise ValueError(
                f"{self.model} has no class {', '.join(map(repr, unknown))};"
                f" its classes: {', '.join(known)}"
            )

    def key(self) -> dict[str, Any]:
        """What the numbers depend on (the stored detections do the rest)."""
        return {
            "model": self.model,
            "classes": sorted(self.classes),
            "min_confidence": self.min_confidence,
            "min_area": self.min_area,
        }


@dataclass(frozen=True)
class Detection:
    """One detection kept with a scan: its model, class, confidence and box as shares of
    the picture (x1, y1, x2, y2, each 0..1)."""

    model: str
    class_name: str
    confidence: float
    box: tuple[float, float, float, float]

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


FrameDetections = Sequence[Sequence[Detection]]  # per sampled frame, in order


def counts_for(detection: Detection, spec: DetectorSpec) -> bool:
    return (
        detection.model == spec.model
        and detection.class_name in spec.classes
        and detection.confidence >= RAW_CONFIDENCE
        and detection.area >= spec.min_area - 1e-12
    )


def category_column(frames: FrameDetections, spec: DetectorSpec) -> np.ndarray:
    """(F,) float32: per frame, the highest confidence of a detection that counts (0: none)."""
    column = np.zeros(len(frames), dtype=np.float32)
    for index, found in enumerate(frames):
        best = max((d.confidence for d in found if counts_for(d, spec)), default=0.0)
        column[index] = best
    return column


def with_detector_columns(
    scores: FrameScores, categories: Sequence[Category], frames: FrameDetections
) -> FrameScores:
    """``scores`` with a column per detector category joined (scoring.join_columns)."""
    if not categories:
        return scores
    if len(frames) != len(scores.times):
        raise ValueError(f"detections for {len(frames)} frames, scores for {len(scores.times)}")
    specs = [c.detector for c in categories]
    if any(spec is None for spec in specs):
        raise ValueError("only detector categories take their columns from detections")
    from policy_engine.analysis.scoring import join_columns

    columns = np.stack([category_column(frames, s) for s in specs if s], axis=1)
    return join_columns(scores, categories, columns)


def detections_to_json(
    models: dict[str, dict[str, Any]], frames: FrameDetections
) -> dict[str, Any]:
    """What a scan stores: each detector's name, identity and classes once, and every
    frame's detections as [model, class, confidence, x1, y1, x2, y2] with the model and
    the class as indexes into those (a film's boxes in a few megabytes at most)."""
    names = list(models)
    classes = {
        name: list(
            models[name].get("classes")
            or sorted({d.class_name for found in frames for d in found if d.model == name})
        )
        for name in names
    }
    rows = [
        [
            [names.index(d.model), classes[d.model].index(d.class_name),
             round(d.confidence, 5), *map(_rounded, d.box)]
            for d in found
        ]
        for found in frames
    ]  # fmt: skip
    return {
        "format": 2,
        "models": [{"name": n, "identity": models[n], "classes": classes[n]} for n in names],
        "frames": rows,
    }


def detections_from_json(data: dict[str, Any] | None) -> tuple[set[str], list[list[Detection]]]:
    """(the detectors that ran, per-frame detections) from what a scan stored."""
    if not data:
        return set(), []
    models = data.get("models", [])
    names = [m["name"] for m in models]
    classes = [m["classes"] for m in models]
    frames = [
        [
            Detection(names[model], classes[model][kind], float(confidence),
                      (float(x1), float(y1), float(x2), float(y2)))
            for model, kind, confidence, x1, y1, x2, y2 in found
        ]
        for found in data.get("frames", [])
    ]  # fmt: skip
    return set(names), frames


def _rounded(value: float) -> float:
    return round(float(value), 5)

"""Running the rule sets' detectors on a scan's sampled frames: every detection kept (for
re-evaluation from the store), and evidence thumbnails with the boxes that count drawn
and the classes that must not be shown pixelated where the thumbnail is made, so that no
copy of it (report, app, e-mail) ever holds the original.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from policy_engine.analysis.detections import (
    NUDENET,
    NUDENET_EXPOSED,
    Detection,
    DetectorSpec,
    counts_for,
)
from policy_engine.policy.model import RuleSet

# the picture detectors see (its long side): at least this, and at least the largest
# model's input, so that no detector is given less than it was made for
MIN_PICTURE_WIDTH = 640


def detector_specs(rulesets: Sequence[RuleSet]) -> list[DetectorSpec]:
    specs = [c.detector for rs in rulesets for c in rs.detectors]
    return [s for s in specs if s is not None]


def hidden_classes(specs: Sequence[DetectorSpec]) -> dict[str, frozenset[str]]:
    """Per model, the classes pixelated in every picture: those of categories with
    ``hide``, and NudeNet's exposed classes always (whatever a category counts: a rule
    set about faces must not put nudity in a report)."""
    hidden: dict[str, set[str]] = {}
    for spec in specs:
        chosen = hidden.setdefault(spec.model, set())
        if spec.hide:
            chosen.update(spec.classes)
        if spec.model == NUDENET:
            chosen.update(NUDENET_EXPOSED)
    return {model: frozenset(classes) for model, classes in hidden.items()}


def detector_descriptors(rulesets: Sequence[RuleSet]) -> tuple[str, ...]:
    """What a scan's boxes and evidence depend on, per detector: its model, the hash of its
    weights, and which classes its evidence draws and pixelates. A scan is reused only
    where it holds each of these exactly (a scan holding more serves fewer needs)."""
    specs = detector_specs(rulesets)
    hidden = hidden_classes(specs)
    described = []
    for model in sorted({s.model for s in specs}):
        mine = [s for s in specs if s.model == model]
        counted = sorted({json.dumps(s.key(), sort_keys=True) for s in mine})
        described.append(
            json.dumps(
                {
                    "model": model,
                    "weights": _weights(mine[0]),
                    "counted": counted,
                    "hidden": sorted(hidden.get(model, ())),
                },
                sort_keys=True,
            )
        )
    return tuple(described)


def _weights(spec: DetectorSpec) -> str:
    """The model file's hash (cached by path, size and time), without loading it."""
    from policy_engine.errors import ModelError
    from policy_engine.models.checkpoint import files_sha256

    try:
        if spec.model == NUDENET:
            from policy_engine.models.detector import nudenet_model_path

            return files_sha256([nudenet_model_path()])
        path = Path(spec.model_path or spec.model)
        return files_sha256([path]) if path.is_file() else "missing"
    except (ModelError, OSError):
        return "missing"  # loading it says why, with what to do


@dataclass
class DetectorSet:
    """The loaded detectors (by model name), what each category counts (boxes drawn on
    evidence) and which classes must be pixelated."""

    detectors: dict[str, Any]  # model name -> models.detector.OnnxDetector
    specs: tuple[DetectorSpec, ...] = ()
    hidden: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def for_specs(cls, specs: Sequence[DetectorSpec], detectors: dict[str, Any]) -> DetectorSet:
        return cls(detectors, tuple(specs), hidden_classes(specs))

    @property
    def picture_width(self) -> int:
        sizes = [d.identity.input_size for d in self.detectors.values()]
        return max([MIN_PICTURE_WIDTH, *sizes])

    def identities(self) -> dict[str, dict[str, Any]]:
        return {name: d.identity.as_dict() for name, d in self.detectors.items()}

    def run(self, pictures: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Every detector on every picture: each picture's detections, boxes as shares."""
        from policy_engine.models.detector import kept_detections

        found: list[list[Detection]] = [[] for _ in pictures]
        for name, detector in self.detectors.items():
            for index, (picture, detections) in enumerate(
                zip(pictures, detector.detect_many(list(pictures)), strict=True)
            ):
                found[index].extend(kept_detections(detections, name, picture.shape))
        return found

    def evidence(
        self,
        picture: np.ndarray,
        found: Sequence[Detection],
        thumbnail_size: int,
        keep_revealed: bool = False,
    ) -> tuple[bytes | None, bytes | None]:
        """The thumbnail with the detections that count for a category drawn, and every
        detection of a hidden class pixelated (long side ``thumbnail_size``), None where
        there is neither; and, with ``keep_revealed``, the same drawn without pixelating
        where something was hidden (for authorised reviewers in the app only)."""
        shown = [
            d
            for d in found
            if any(counts_for(d, spec) for spec in self.specs)
            or d.class_name in self.hidden.get(d.model, ())
        ]
        if not shown or thumbnail_size <= 0:
            return None, None
        import cv2
        import supervision as sv

        from policy_engine.media.evidence import evidence_jpeg

        height, width = picture.shape[:2]
        scale = thumbnail_size / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
        boxes = np.array([d.box for d in shown], dtype=np.float32) * np.array(
            [size[0], size[1], size[0], size[1]], dtype=np.float32
        )
        names = [d.class_name for d in shown]
        # a class hidden by one model's category is hidden whichever model found it
        hidden = {c for classes in self.hidden.values() for c in classes}
        detections = sv.Detections(
            xyxy=boxes,
            confidence=np.array([d.confidence for d in shown], dtype=np.float32),
            class_id=np.arange(len(shown)),
            data={"class_name": np.array(names, dtype=object)},
        )
        drawn = evidence_jpeg(small, detections, hidden_classes=hidden)
        if not (keep_revealed and any(name in hidden for name in names)):
            return drawn, None
        return drawn, evidence_jpeg(small, detections, hidden_classes=hidden, reveal=True)

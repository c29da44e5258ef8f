"""Running the rule sets' detectors on a scan's sampled frames: every detection kept (for
re-evaluation from the store), and evidence thumbnails with the boxes that count drawn
and the classes that must not be shown pixelated where the thumbnail is made, so that no
copy of it (report, app, e-mail) ever holds the original.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from policy_engine.analysis.detections import Detection, DetectorSpec
from policy_engine.policy.model import RuleSet

MIN_PICTURE_WIDTH = 640  # the picture detectors see: at least twice a 320 input


def detector_specs(rulesets: Sequence[RuleSet]) -> list[DetectorSpec]:
    specs = [c.detector for rs in rulesets for c in rs.detectors]
    return [s for s in specs if s is not None]


def detector_models(rulesets: Sequence[RuleSet]) -> tuple[str, ...]:
    """The detectors the rule sets need, by the names rule files give them."""
    return tuple(sorted({s.model for s in detector_specs(rulesets)}))


@dataclass
class DetectorSet:
    """The loaded detectors (by model name), which of their classes any category counts
    (drawn on evidence) and which must be pixelated."""

    detectors: dict[str, Any]  # model name -> models.detector.OnnxDetector
    drawn: dict[str, frozenset[str]] = field(default_factory=dict)
    hidden: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def for_specs(cls, specs: Sequence[DetectorSpec], detectors: dict[str, Any]) -> DetectorSet:
        drawn: dict[str, set[str]] = {}
        hidden: dict[str, set[str]] = {}
        for spec in specs:
            drawn.setdefault(spec.model, set()).update(spec.classes)
            if spec.hide:
                hidden.setdefault(spec.model, set()).update(spec.classes)
        return cls(
            detectors,
            {k: frozenset(v) for k, v in drawn.items()},
            {k: frozenset(v) for k, v in hidden.items()},
        )

    @property
    def picture_width(self) -> int:
        sizes = [d.identity.input_size for d in self.detectors.values()]
        return max([MIN_PICTURE_WIDTH, *(2 * s for s in sizes)])

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
        self, picture: np.ndarray, found: Sequence[Detection], thumbnail_size: int
    ) -> bytes | None:
        """The thumbnail with the detections that count drawn and hidden classes
        pixelated (long side ``thumbnail_size``); None where none counts."""
        shown = [d for d in found if d.class_name in self.drawn.get(d.model, ())]
        if not shown or thumbnail_size <= 0:
            return None
        import cv2
        import supervision as sv
        from PIL import Image

        from policy_engine.media.evidence import draw_evidence

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
        scene = draw_evidence(small, detections, hidden_classes=hidden)
        buffer = io.BytesIO()
        Image.fromarray(scene).save(buffer, "JPEG", quality=80)
        return buffer.getvalue()

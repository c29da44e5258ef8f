"""Second opinions (detector and X-CLIP categories) joined to CLIP's scores of a scan from
what the scan stored: the judging of decisions and the report read them alike. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from policy_engine.analysis.detections import detections_from_json, with_detector_columns
from policy_engine.analysis.scoring import Category, FrameScores, join_columns
from policy_engine.analysis.windows import window_columns


def join_stored(
    scores: FrameScores,
    *,
    detectors: Sequence[Category],
    xclip: Sequence[Category],
    null: Sequence[str],
    detections: dict[str, Any] | None,
    windows: dict[str, Any] | None,
    ruleset: str,
    scan_id: int,
) -> tuple[FrameScores, list[str]]:
    """``scores`` with what scan ``scan_id`` holds of each kind joined, and a problem for
    each kind it does not hold: a scan a second opinion never looked at is a problem to
    report, not a pass."""
    problems = []
    if detectors:
        needed = {c.detector.model for c in detectors if c.detector is not None}
        ran, frames = detections_from_json(detections)
        missing = sorted(needed - ran)
        if missing:
            problems.append(
                f"rule set {ruleset}: detector {', '.join(missing)} did not run on scan"
                f" {scan_id}; scan the file again (--force) with this rule set loaded"
            )
        elif len(frames) != len(scores.times):
            problems.append(
                f"rule set {ruleset}: scan {scan_id} stored boxes for {len(frames)} of its"
                f" {len(scores.times)} frames; scan the file again (--force)"
            )
        else:
            scores = with_detector_columns(scores, detectors, frames)
    if xclip:
        columns = window_columns(windows, xclip, null, list(scores.times)) if windows else None
        if columns is None:
            problems.append(
                f"rule set {ruleset}: X-CLIP did not score its prompts on scan {scan_id};"
                " scan the file again (--force) with this rule set loaded"
            )
        else:
            scores = join_columns(scores, xclip, columns)
    return scores, problems

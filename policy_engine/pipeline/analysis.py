"""One video: sample -> embed -> score -> coverage (no database; see pipeline.scan).

Decoding and the image tower overlap: a producer thread decodes and converts sampled
frames (FFmpeg and swscale release the GIL) while the caller's thread runs the model on
full batches. On two cores the two compete for the same cores, so the pipeline's job is
to keep the model fed and add nothing of its own.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from policy_engine import __version__
from policy_engine.analysis.coverage import DEFAULT_INTERVAL_SECONDS, Coverage, coverage_from_scores
from policy_engine.analysis.detections import Detection, with_detector_columns
from policy_engine.analysis.photosensitivity import (
    PhotosensitivityAnalyzer,
    PseResult,
    PseSettings,
)
from policy_engine.analysis.scenes import Scene, SceneSettings, scenes_of
from policy_engine.analysis.scoring import (
    Category,
    FrameScores,
    flatten_prompts,
    join_columns,
    null_prompts,
    score_frames,
    validate_categories,
)
from policy_engine.analysis.windows import window_columns, window_scores_to_json
from policy_engine.errors import EmptyWindowError, ModelError
from policy_engine.media.framing import Framing
from policy_engine.media.scenes import SceneCuts
from policy_engine.media.taps import ReceiverThread
from policy_engine.media.video import (
    FrameSampler,
    PictureTap,
    SampledFrame,
    SamplingMode,
    SamplingSpec,
    VideoInfo,
)
from policy_engine.models.clip import ClipEmbedder, ModelIdentity
from policy_engine.pipeline.detection import DetectorSet
from policy_engine.pipeline.xclip_windows import XClipRun
from policy_engine.policy.evaluate import Decision, evaluate
from policy_engine.policy.model import PHOTOSENSITIVITY, RuleSet

ProgressCallback = Callable[[float, float], None]  # (seconds analysed, seconds in window)
_QUEUE_BATCHES = 2  # decoded batches buffered ahead of the model
# long side of the picture X-CLIP's processor reduces to 224 on its short side: enough
# for pictures up to 2.4:1 (scope) without enlarging them
XCLIP_PICTURE = 540
PSE_THREAD_NICENESS = 10  # the photosensitivity check's thread (Linux: per thread)


@dataclass(frozen=True)
class AnalysisOptions:
    sampling: SamplingSpec = field(default_factory=SamplingSpec)
    framing: Framing = Framing.LETTERBOX
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS
    thumbnail_size: int = 0  # long side of evidence thumbnails in pixels; 0: none
    # where a detector's hidden classes were pixelated in a thumbnail, keep a copy as it
    # was too (for authorised reviewers in the app only; reports never read it)
    keep_revealed: bool = False
    # the photosensitivity check on every frame of the same decode; None: not checked
    photosensitivity: PseSettings | None = None
    pse_width: int | None = 160  # width of the pictures it measures; None: as stored
    # scene detection (PySceneDetect) on every frame of the same decode; None: not run
    # (``scenes`` sampling runs it with the defaults when this is None)
    scenes: SceneSettings | None = None
    # what the object detectors run on the sampled frames depend on (pipeline.detection.
    # detector_descriptors): recorded with the scan, and checked before one is reused;
    # the loaded models are passed apart
    detectors: tuple[str, ...] = ()


@dataclass
class AnalysisResult:
    video: VideoInfo
    model: ModelIdentity
    options: AnalysisOptions
    times: np.ndarray  # (F,) sample times, seconds
    embeddings: list[np.ndarray]  # per frame (crops, D) float32 unit vectors
    thumbnails: list[bytes | None]  # per frame JPEG (when options.thumbnail_size)
    scores: FrameScores
    coverage: Coverage
    timings: dict[str, float]
    decoding: dict[str, Any]
    software_version: str = __version__
    photosensitivity: PseResult | None = None
    photosensitivity_skipped: str | None = None  # why it was not checked, when asked for
    scenes: list[Scene] = field(default_factory=list)  # empty when not detected
    scene_detection: dict[str, Any] | None = None  # how (detector, threshold, cuts)
    scenes_skipped: str | None = None  # why scenes were not detected, when asked for
    # scenes sampling: where each frame's span starts (its scene's cut); None: its time
    span_starts: np.ndarray | None = None
    # per sampled frame, every detection of the rule sets' detectors; None: none ran
    detections: list[list[Detection]] | None = None
    detector_models: dict[str, dict[str, Any]] = field(default_factory=dict)  # identities
    # X-CLIP's windows (identity, prompts, per window its extent and logits); None: not run
    xclip_windows: dict[str, Any] | None = None
    # per frame, the thumbnail with its hidden regions as they were (options.keep_revealed;
    # None where nothing was hidden); empty when not kept
    revealed_thumbnails: list[bytes | None] = field(default_factory=list)

    def to_dict(self, *, frames: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "video": self.video.__dict__,
            "model": self.model.as_dict(),
            "sampling": self.options.sampling.describe(),
            "framing": self.options.framing.value,
            "software_version": self.software_version,
            "timings": self.timings,
            "decoding": self.decoding,
            "coverage": self.coverage.to_dict(),
            "measure": self.scores.measure,  # how the category numbers were measured
            "photosensitivity": pse_summary(self.photosensitivity),
        }
        if self.photosensitivity_skipped:
            data["photosensitivity_skipped"] = self.photosensitivity_skipped
        if self.scene_detection is not None:
            data["scene_detection"] = self.scene_detection
            data["scenes"] = [
                {"start": sc.start, "end": sc.end, "frames": sc.frame_count,
                 "keyframe": sc.keyframe}
                for sc in self.scenes
            ]  # fmt: skip
        if self.scenes_skipped:
            data["scenes_skipped"] = self.scenes_skipped
        if self.xclip_windows is not None:
            data["xclip"] = {
                "model": self.xclip_windows["identity"],
                "windows": len(self.xclip_windows["windows"]),
            }
        if self.detections is not None:
            data["detectors"] = self.detector_models
            data["detections"] = sum(len(found) for found in self.detections)
        if frames:
            names = self.scores.category_names
            data["frames"] = [
                {
                    "time": float(t),
                    "label": label,
                    "shows": [n for n, s in zip(names, shows, strict=True) if s],
                    "probabilities": {n: float(p) for n, p in zip(names, probs, strict=True)},
                }
                for t, label, shows, probs in zip(
                    self.times, self.scores.label_names(), self.scores.shown,
                    self.scores.probabilities, strict=True,
                )
            ]  # fmt: skip
        return data


class _ProducerFailed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def _decode_in_background(sampler: FrameSampler, capacity: int) -> Iterator[SampledFrame]:
    """Run the sampler in a thread; re-raise its errors here, in the caller's thread."""
    frames: queue.Queue[Any] = queue.Queue(maxsize=capacity)
    stop = threading.Event()

    def produce() -> None:
        try:
            for frame in sampler:
                while not stop.is_set():
                    try:
                        frames.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            frames.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            frames.put(_ProducerFailed(exc))

    worker = threading.Thread(target=produce, name="policy-engine-decode", daemon=True)
    worker.start()
    try:
        while True:
            item = frames.get()
            if item is _DONE:
                return
            if isinstance(item, _ProducerFailed):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)


def _check_window(path: str | Path, start: float, duration: float | None) -> None:
    """A window that starts at or after the end of the video holds nothing to measure."""
    if duration is not None and start > 0 and start >= duration:
        raise EmptyWindowError(
            path,
            f"the window starts at {start:g} s but the video is {duration:.2f} s long:"
            f" nothing to sample; give a --start before {duration:.2f} s",
        )


def analyze_video(
    path: str | Path,
    categories: Sequence[Category],
    embedder: ClipEmbedder,
    options: AnalysisOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
    detectors: DetectorSet | None = None,
    xclip: XClipRun | None = None,
) -> AnalysisResult:
    """Sample, embed, score and measure coverage for one video; ``detectors`` run on the
    same sampled frames. Raises MediaError for unreadable input (the caller decides
    whether that fails a batch: it should not)."""
    options = options or AnalysisOptions()
    validate_categories(categories)
    started = time.perf_counter()
    prompts, _ = flatten_prompts(categories)
    text_embeddings = embedder.embed_texts(prompts)

    if xclip is not None and options.sampling.mode is not SamplingMode.FPS:
        raise ValueError(
            f"X-CLIP categories need fps sampling (windows of moving pictures);"
            f" {options.sampling.mode.value} sampling would give X-CLIP stills"
        )
    flashes, skipped = _photosensitivity_check(options)
    cuts, scenes_skipped = _scene_detection(options)
    if xclip is not None:
        xclip.start = options.sampling.start  # its windows start where the analysis does
        # windows never cross a cut; a cut may be reported up to about a window late
        xclip.cut_lag = xclip.length if cuts is not None else 0.0
    # the check runs beside the decoder, not in its thread (see ReceiverThread), at a
    # lower priority: the image tower's threads wait for each other, so a check thread
    # taking one of their cores stalls both; niced, it runs in the gaps they leave
    flash_receiver = (
        ReceiverThread(flashes.add_frame, niceness=PSE_THREAD_NICENESS)
        if flashes is not None
        else None
    )
    sampler = FrameSampler(
        path,
        options.sampling,
        size=embedder.image_input.size,
        framing=options.framing,
        pad_value=embedder.image_input.pad_value,
        thumbnail_size=options.thumbnail_size,
        every_frame=(
            PictureTap(flash_receiver.receive, options.pse_width) if flash_receiver else None
        ),
        cuts=cuts,
        picture_size=max(
            detectors.picture_width if detectors else 0, XCLIP_PICTURE if xclip else 0
        ),
    )
    # Before decoding, window_end is the declared end: the progress bar's total.
    window = max(0.0, sampler.window_end - options.sampling.start)
    times: list[float] = []
    stands_from: list[float | None] = []
    embeddings: list[np.ndarray] = []
    thumbnails: list[bytes | None] = []
    revealed: list[bytes | None] = []
    detections: list[list[Detection]] | None = [] if detectors else None
    pending: list[SampledFrame] = []
    model_seconds = 0.0

    def flush() -> None:
        nonlocal model_seconds
        if not pending:
            return
        pixels = np.concatenate([f.pixels for f in pending])
        tick = time.perf_counter()
        vectors = embedder.embed_images(pixels)
        model_seconds += time.perf_counter() - tick
        found = _detect(detectors, pending) if detectors else [[] for _ in pending]
        offset = 0
        for frame, in_frame in zip(pending, found, strict=True):
            crops = len(frame.pixels)
            embeddings.append(vectors[offset : offset + crops])
            times.append(frame.time)
            stands_from.append(frame.stands_from)
            thumbnail = frame.thumbnail
            if xclip is not None and frame.picture is not None:
                tick = time.perf_counter()
                xclip.add(frame.time, frame.picture, frame.cuts)
                model_seconds += time.perf_counter() - tick
            as_it_was = None
            if detectors and detections is not None and frame.picture is not None:
                detections.append(in_frame)
                size, reveal = options.thumbnail_size, options.keep_revealed
                shown, as_it_was = detectors.evidence(frame.picture, in_frame, size, reveal)
                thumbnail = shown or thumbnail
            thumbnails.append(thumbnail)
            revealed.append(as_it_was)
            offset += crops
        if progress is not None:
            progress(max(0.0, pending[-1].time - options.sampling.start), window)
        pending.clear()

    crops_in_batch = 0
    capacity = max(4, _QUEUE_BATCHES * embedder.batch_size)
    try:
        for frame in _decode_in_background(sampler, capacity):
            pending.append(frame)
            crops_in_batch += len(frame.pixels)
            if crops_in_batch >= embedder.batch_size:
                flush()
                crops_in_batch = 0
        flush()
    except BaseException:
        if flash_receiver is not None:
            flash_receiver.close(abandon=True)
        raise
    if flash_receiver is not None:
        flash_receiver.close()
    if progress is not None:
        progress(window, window)

    end = sampler.window_end
    if not times:
        _check_window(path, options.sampling.start, end)
    start = min(options.sampling.start, end)
    scores = score_frames(categories, times, embeddings, text_embeddings, embedder.logit_scale)
    span_starts = _span_starts(times, stands_from)
    coverage = coverage_from_scores(
        scores, start=start, end=end, interval_seconds=options.interval_seconds,
        begins=span_starts,
    )  # fmt: skip
    pse = flashes.result(end_time=end) if flashes is not None else None
    windows = None
    if xclip is not None:
        tick = time.perf_counter()
        extents, logits, spans = xclip.finish(end, cuts.cuts if cuts is not None else ())
        model_seconds += time.perf_counter() - tick
        identity = xclip.scorer.identity.as_dict()
        windows = window_scores_to_json(identity, xclip.prompts, extents, logits, spans)
    total = time.perf_counter() - started
    summary = sampler.summary
    return AnalysisResult(
        video=sampler.info,
        model=embedder.identity,
        options=options,
        times=np.asarray(times),
        embeddings=embeddings,
        thumbnails=thumbnails,
        scores=scores,
        coverage=coverage,
        timings={"total_s": total, "model_s": model_seconds, "other_s": total - model_seconds},
        decoding={
            "decoded_frames": summary.decoded_frames,
            "sampled_frames": summary.sampled_frames,
            "timestamps_reordered": summary.timestamps_reordered,
            "missing_timestamps": summary.missing_timestamps,
            "crops_per_frame": sorted({p.crops_per_frame for p in summary.plans}),
            # fps sampling: how far the furthest sample is from its target time
            "largest_offset_s": round(summary.largest_offset, 6),
            **({"skip_frame": "NONREF"} if summary.nonref_skipped else {}),
            # threads and wait policies the image tower ran with (measured choices)
            "execution": _execution(embedder),
        },
        photosensitivity=pse,
        photosensitivity_skipped=skipped,
        scenes=scenes_of(cuts.cuts, np.asarray(times), start, end) if cuts is not None else [],
        scene_detection=cuts.summary() if cuts is not None else None,
        scenes_skipped=scenes_skipped,
        span_starts=span_starts,
        detections=detections,
        detector_models=detectors.identities() if detectors else {},
        xclip_windows=windows,
        revealed_thumbnails=revealed if any(r is not None for r in revealed) else [],
    )


def _detect(detectors: DetectorSet, frames: list[SampledFrame]) -> list[list[Detection]]:
    pictures = [f.picture for f in frames]
    if any(p is None for p in pictures):
        raise RuntimeError("the sampler gave no picture for the detectors")
    return detectors.run([p for p in pictures if p is not None])


def _execution(embedder: ClipEmbedder) -> dict[str, Any]:
    describe = getattr(embedder, "execution", None)  # test doubles may not say
    return describe() if callable(describe) else {}


def _span_starts(times: list[float], stands_from: list[float | None]) -> np.ndarray | None:
    """Where each sample's span starts, when the sampler said (scenes sampling)."""
    if not any(s is not None for s in stands_from):
        return None
    return np.array([t if s is None else s for t, s in zip(times, stands_from)])


def _photosensitivity_check(
    options: AnalysisOptions,
) -> tuple[PhotosensitivityAnalyzer | None, str | None]:
    """The every-frame check the options ask for, or why there is none."""
    if options.photosensitivity is None:
        return None, None
    if options.sampling.mode is SamplingMode.KEYFRAMES:
        # flashes live between key frames: measuring only those would pass anything
        return None, "keyframes sampling decodes key frames only; flashes need every frame"
    return PhotosensitivityAnalyzer(options.photosensitivity), None


def _scene_detection(options: AnalysisOptions) -> tuple[SceneCuts | None, str | None]:
    """The scene detector the options ask for (``scenes`` sampling needs one), or why
    there is none."""
    settings = options.scenes
    if settings is None and options.sampling.mode is SamplingMode.SCENES:
        settings = SceneSettings()
    if settings is None:
        return None, None
    if options.sampling.mode is SamplingMode.KEYFRAMES:
        return None, "keyframes sampling decodes key frames only; cuts need every frame"
    return SceneCuts(settings), None


def rescore(
    result: AnalysisResult, categories: Sequence[Category], embedder: ClipEmbedder
) -> tuple[FrameScores, Coverage]:
    """Scores and coverage for another category set from the frames already embedded: only
    the text tower runs (prompt embeddings are cached), no frame is decoded again."""
    validate_categories(categories)
    prompts, _ = flatten_prompts(categories)
    scores = score_frames(
        categories,
        result.times,
        result.embeddings,
        embedder.embed_texts(prompts),
        embedder.logit_scale,
    )
    return scores, _coverage_like(result, scores)


def decide(
    result: AnalysisResult, rulesets: Sequence[RuleSet], embedder: ClipEmbedder
) -> list[Decision]:
    """Each rule set's decision, each judged on its own categories (measured against its
    own null class), all from one pass of the image tower."""
    decisions = []
    for ruleset in rulesets:
        if tuple(ruleset.categories) == tuple(result.scores.categories):
            scores, coverage = result.scores, result.coverage
        else:
            scores, coverage = rescore(result, ruleset.categories, embedder)
        if ruleset.second_opinions:
            scores, coverage = _with_second_opinions(result, ruleset, scores)
        decisions.append(evaluate(ruleset, coverage, scores, checks=result_checks(result)))
    return decisions


def _with_second_opinions(
    result: AnalysisResult, ruleset: RuleSet, scores: FrameScores
) -> tuple[FrameScores, Coverage]:
    """Scores and coverage with the rule set's detector and X-CLIP categories joined."""
    if ruleset.detectors:
        if result.detections is None:
            raise ModelError(
                f"rule set {ruleset.name} has detector categories but no detector ran on"
                " this analysis"
            )
        scores = with_detector_columns(scores, ruleset.detectors, result.detections)
    if ruleset.xclip:
        columns = (
            window_columns(
                result.xclip_windows, ruleset.xclip, null_prompts(ruleset.categories),
                list(result.times),
            )
            if result.xclip_windows is not None
            else None
        )  # fmt: skip
        if columns is None:
            raise ModelError(
                f"rule set {ruleset.name} has X-CLIP categories but X-CLIP did not score"
                " their prompts on this analysis"
            )
        scores = join_columns(scores, ruleset.xclip, columns)
    return scores, _coverage_like(result, scores)


def _coverage_like(result: AnalysisResult, scores: FrameScores) -> Coverage:
    """Coverage of other scores of the same frames, over the same window and intervals."""
    return coverage_from_scores(
        scores,
        start=result.coverage.start,
        end=result.coverage.end,
        interval_seconds=result.coverage.interval_seconds,
        begins=result.span_starts,
    )


def result_checks(result: AnalysisResult) -> dict[str, dict[str, Any]]:
    """The every-frame checks of an analysis, as rules read them (absent: not measured)."""
    summary = pse_summary(result.photosensitivity)
    return {} if summary is None else {PHOTOSENSITIVITY: summary}


def pse_summary(result: PseResult | None) -> dict[str, Any] | None:
    """What is kept of the check: verdict, intervals, worst second, per-second series and
    settings; not the per-frame columns (tens of thousands of numbers for a programme)."""
    if result is None:
        return None
    return {k: v for k, v in result.to_dict().items() if k != "frames"}

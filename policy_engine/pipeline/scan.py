"""The main job: files in, stored scans, decisions and reports out.

Per file: hash the content, probe, record the asset; reuse a completed scan of the same
content with the same weights and sampling (unless forced), else sample, embed and
score it and store frames, embeddings and thumbnails; then judge it against every rule
set from the stored data (the very path re-evaluation takes, so both see the same
numbers), append the decisions and write the report. A file that cannot be read
becomes a failed scan with its reason, and the batch goes on.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from policy_engine import __version__
from policy_engine.analysis.detections import detections_to_json
from policy_engine.analysis.scenes import frame_vectors, scene_embeddings, scene_shares
from policy_engine.analysis.scoring import categories_key, category_records
from policy_engine.errors import ConfigError, MediaError, PolicyEngineError, StoreError
from policy_engine.hashing import file_sha256, text_sha256
from policy_engine.media.formats import VIDEO_PATTERNS
from policy_engine.media.video import SamplingMode, probe
from policy_engine.models.provider import ModelProvider
from policy_engine.pipeline.analysis import (
    AnalysisOptions,
    AnalysisResult,
    analyze_video,
    pse_summary,
    rescore,
)
from policy_engine.pipeline.detection import DetectorSet, detector_descriptors, detector_specs
from policy_engine.pipeline.judging import judge, outcome
from policy_engine.pipeline.xclip_windows import XClipRun, xclip_descriptors, xclip_prompts
from policy_engine.policy.evaluate import Decision, combine
from policy_engine.policy.model import RuleSet
from policy_engine.store import NewDecision, ScanFrames, ScanModel, Store
from policy_engine.store.repository import RUNNING
from policy_engine.store.scenes import ScanScenes, Scenes

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = 192  # long side, pixels: enough to see what was on screen

SCANNED, REUSED, FAILED = "scanned", "reused", "failed"


def _unexpected(exc: BaseException) -> str:
    if isinstance(exc, PolicyEngineError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"


@dataclass
class ScanOutcome:
    path: str
    status: str = FAILED  # scanned | reused | failed
    seconds: float = 0.0
    asset_id: int | None = None
    scan_id: int | None = None
    content_sha256: str | None = None
    duration: float | None = None
    decisions: list[tuple[int, Decision]] = field(default_factory=list)
    error: str | None = None
    report: str | None = None
    report_sha256: str | None = None
    report_error: str | None = None  # the decisions are stored; only the page is missing
    # the verdict in force once reviewers' overrides are applied (a reused scan keeps
    # the overridden decision when the engine would decide the same again)
    in_force: dict[str, Any] | None = None

    @property
    def verdict(self) -> dict[str, Any] | None:
        if self.in_force is not None:
            return self.in_force
        return combine([d for _, d in self.decisions]) if self.decisions else None

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k not in ("decisions", "in_force")}
        data["verdict"] = self.verdict
        data["decisions"] = [{"id": i, **d.to_dict()} for i, d in self.decisions]
        return data


class ScanListener:
    """Progress hooks for a front end; the defaults do nothing."""

    def file_started(self, path: Path, index: int, total: int) -> None: ...

    def progress(self, done_seconds: float, total_seconds: float) -> None: ...

    def file_finished(self, outcome: ScanOutcome) -> None: ...


def find_videos(
    paths: Iterable[Path],
    patterns: Sequence[str] = VIDEO_PATTERNS,
    *,
    exclude: Sequence[str] = (),
    recursive: bool = True,
    outside_links: bool = False,
    on_error: Callable[[str], None] | None = None,
) -> list[Path]:
    """Files as given (whatever their name); in folders, regular files whose name matches
    ``patterns`` and no ``exclude`` pattern (case-insensitive; an exclude pattern with a
    ``/`` is matched against the path below the folder), hidden entries skipped, in name
    order. Folders that cannot be read, and symbolic links that loop, lead nowhere or (unless
    ``outside_links``) lead out of the folder, are reported to ``on_error`` and skipped."""
    include = [p.lower() for p in patterns]
    skip = [p.lower() for p in exclude]

    def wanted(folder: Path, file: Path) -> bool:
        name, relative = file.name.lower(), file.relative_to(folder).as_posix().lower()
        return (
            not name.startswith(".")
            and any(fnmatch.fnmatch(name, p) for p in include)
            and not any(fnmatch.fnmatch(relative if "/" in p else name, p) for p in skip)
        )

    def report(problem: str) -> None:
        if on_error is not None:
            on_error(problem)

    found: list[Path] = []
    for path in paths:
        if not path.is_dir():
            found.append(path)
            continue
        inside = path.resolve()
        for root, dirs, files in os.walk(
            path, onerror=lambda exc: report(f"folder {exc.filename}: {_os_reason(exc)}")
        ):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
            for name in dirs:  # os.walk lists linked folders but never enters them: say so
                if (Path(root) / name).is_symlink():
                    report(f"{Path(root) / name}: a linked folder; not searched")
            for name in sorted(files):
                file = Path(root) / name
                if not wanted(path, file):
                    continue
                problem = _link_problem(file, inside, outside_links)
                if problem is not None:
                    report(problem)
                elif file.is_file():  # no FIFOs or devices
                    found.append(file)
    return list(dict.fromkeys(found))


def _link_problem(file: Path, folder: Path, outside_allowed: bool) -> str | None:
    """Why a symbolic link found in ``folder`` is not followed; None for a plain file or a
    link that may be followed. A link out of the folder would let anyone who can write in
    the ingest folder have any video the engine can read scanned into a report."""
    if not file.is_symlink():
        return None
    try:
        target = file.resolve(strict=True)
    except FileNotFoundError:
        return f"{file}: symbolic link to {os.readlink(file)}, which does not exist; not scanned"
    except (RuntimeError, OSError):  # ELOOP (Python < 3.13 raises RuntimeError)
        return f"{file}: symbolic link loop; not scanned"
    if not outside_allowed and not target.is_relative_to(folder):
        return (
            f"{file}: symbolic link to {target}, outside the folder {folder}; not scanned"
            " (set outside_links = true to follow links out of ingest folders)"
        )
    return None


def sampling_record(options: AnalysisOptions) -> tuple[dict[str, Any], str]:
    """What a scan records about its sampling, and the key under which it is reused
    (everything that changes which frames are embedded, and how, and what the
    every-frame checks measure: a scan without the photosensitivity check is not reused
    where the check is asked for)."""
    frames = {**options.sampling.describe(), "framing": options.framing.value}
    if options.photosensitivity is not None:
        frames["photosensitivity"] = {
            **options.photosensitivity.to_dict(),
            "width": options.pse_width,
        }
    if options.scenes is not None:  # scenes are stored with the scan: part of what it holds
        frames["scenes"] = options.scenes.to_dict()
    key = text_sha256(json.dumps(frames, sort_keys=True))
    # the detectors' boxes are recorded, not keyed: a scan holding more detectors than
    # asked for serves (Store.reusable_scan checks that it holds every one asked for)
    detectors = {"detectors": list(options.detectors)} if options.detectors else {}
    return {**frames, **detectors, "interval": options.interval_seconds}, key


def scan_scenes(analysis: AnalysisResult) -> ScanScenes | None:
    """What a scan stores of its scenes: how they were found, spans, embeddings."""
    if analysis.scene_detection is None:
        return None
    vectors = frame_vectors(analysis.embeddings)
    return ScanScenes(
        analysis.scene_detection, analysis.scenes, scene_embeddings(vectors, analysis.scenes)
    )


def shares_of(analysis: AnalysisResult, scores: Any) -> np.ndarray:
    """(S, K) time-weighted shares of each scene per category, for one category set."""
    return scene_shares(
        analysis.times, scores.shown, analysis.scenes,
        start=analysis.coverage.start, end=analysis.coverage.end, begins=analysis.span_starts,
    )  # fmt: skip


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a video file"
    if isinstance(exc, PermissionError):
        return "cannot be read: permission denied"
    return f"cannot be read: {exc.strerror or exc}"


class Scanner:
    def __init__(
        self,
        store: Store,
        rulesets: Sequence[RuleSet],
        models: ModelProvider,
        options: AnalysisOptions,
        *,
        reports_dir: Path | None = None,
        force: bool = False,
        listener: ScanListener | None = None,
        worker_id: str | None = None,
    ) -> None:
        if not rulesets:
            raise ValueError("scanning needs at least one rule set")
        self.store = store
        self.rulesets = list(rulesets)
        self.models = models
        self.detector_specs = detector_specs(self.rulesets)
        self.xclip_prompts = xclip_prompts(self.rulesets)
        if self.xclip_prompts and options.sampling.mode is not SamplingMode.FPS:
            raise ConfigError(
                "X-CLIP categories need fps sampling (windows of moving pictures):"
                f" {options.sampling.mode.value} sampling would give X-CLIP stills"
            )
        needs = detector_descriptors(self.rulesets)
        if self.xclip_prompts:
            needs += xclip_descriptors(self.xclip_prompts, models.xclip_weights())
        self.options = replace(
            options, thumbnail_size=options.thumbnail_size or THUMBNAIL_SIZE, detectors=needs
        )
        self.sampling, self.sampling_key = sampling_record(self.options)
        self.reports_dir = reports_dir
        self.force = force
        self.listener = listener or ScanListener()
        self.worker_id = worker_id

    def scan(self, paths: Sequence[Path]) -> list[ScanOutcome]:
        outcomes = []
        for index, path in enumerate(paths):
            self.listener.file_started(path, index, len(paths))
            result = self.scan_file(path)
            self.listener.file_finished(result)
            outcomes.append(result)
        return outcomes

    def scan_file(self, path: Path, *, content_sha256: str | None = None) -> ScanOutcome:
        """Scan one file; ``content_sha256``, if the caller has just hashed it, is used
        instead of reading the file twice."""
        started = time.perf_counter()
        result = ScanOutcome(path=str(path), content_sha256=content_sha256)
        try:
            self._scan_file(path.resolve(), result)  # one file, one path
        except BaseException as exc:  # a bug, a database error, Ctrl-C: close the scan row
            self._close_unfinished(result, exc)
            raise
        finally:
            result.seconds = time.perf_counter() - started
        return result

    def _close_unfinished(self, result: ScanOutcome, exc: BaseException) -> None:
        """A scan row started for this file ends as failed, never stays 'running' (if the
        database itself is away, the ingest worker closes it when it recovers)."""
        if result.scan_id is None:
            return
        why = "interrupted" if not isinstance(exc, Exception) else _unexpected(exc)
        try:
            if self.store.scan(result.scan_id).status == RUNNING:
                self.store.fail_scan(result.scan_id, why)
        except StoreError as error:
            log.error("scan %d could not be closed: %s", result.scan_id, error)

    # -- steps ---------------------------------------------------------------------------
    def _scan_file(self, path: Path, result: ScanOutcome) -> None:
        checkpoint = self.models.checkpoint()  # a missing model stops the run, not a file
        model = ScanModel(
            checkpoint.name, checkpoint.path, checkpoint.weights_sha256, checkpoint.revision
        )
        try:
            size = path.stat().st_size
            result.content_sha256 = result.content_sha256 or file_sha256(path)
        except OSError as exc:
            self._fail(result, path, None, model, _os_reason(exc))
            return
        try:
            info = probe(path)
            probe_data, problem = asdict(info), None
            result.duration = info.duration
        except MediaError as exc:
            probe_data, problem = None, exc.reason
        result.asset_id = self.store.record_asset(
            str(path), result.content_sha256, size, probe_data
        )
        if problem is not None:
            self._fail(result, path, result.asset_id, model, problem)
            return
        reusable = None
        if not self.force:
            reusable = self.store.reusable_scan(
                result.asset_id, model.weights_sha256, self.sampling_key,
                self.models.runtime_family(), detectors=self.options.detectors,
            )  # fmt: skip
        if reusable is None:
            if not self._analyse(path, result, model):
                return
            result.status = SCANNED
        else:
            result.scan_id, result.status = reusable, REUSED
        self._decide(result)

    def _fail(
        self, result: ScanOutcome, path: Path, asset_id: int | None, model: ScanModel, why: str
    ) -> None:
        scan_id = self._start(path, asset_id, model)
        self.store.fail_scan(scan_id, why)
        result.scan_id, result.status, result.error = scan_id, FAILED, why

    def _start(self, path: Path, asset_id: int | None, model: ScanModel) -> int:
        return self.store.start_scan(
            path=str(path),
            asset_id=asset_id,
            sampling=self.sampling,
            sampling_key=self.sampling_key,
            model=model,
            software_version=__version__,
            worker_id=self.worker_id,
        )

    def _analyse(self, path: Path, result: ScanOutcome, model: ScanModel) -> bool:
        """Sample, embed, store; False (and a failed scan) if the video is unreadable."""
        embedder = self.models.embedder()  # a model that fails to load stops the run here
        specs = self.detector_specs
        detectors = DetectorSet.for_specs(specs, self.models.detectors(specs)) if specs else None
        xclip = XClipRun(self.models.xclip(), self.xclip_prompts) if self.xclip_prompts else None
        scan_id = result.scan_id = self._start(path, result.asset_id, model)
        try:
            analysis = analyze_video(
                path,
                self.rulesets[0].categories,
                embedder,
                self.options,
                progress=self.listener.progress,
                detectors=detectors,
                xclip=xclip,
            )
        except MediaError as exc:
            self.store.fail_scan(scan_id, exc.reason)
            result.status, result.error = FAILED, exc.reason
            return False
        except Exception as exc:  # one file's surprise must not stop the batch
            log.exception("scan of %s failed unexpectedly", path)
            why = f"internal error: {type(exc).__name__}: {exc}"
            self.store.fail_scan(scan_id, why)
            result.status, result.error = FAILED, why
            return False
        self._store_analysis(scan_id, analysis, embedder)
        return True

    def _store_analysis(self, scan_id: int, analysis: AnalysisResult, embedder: Any) -> None:
        identity = embedder.identity
        self.store.complete_scan(
            scan_id,
            model=ScanModel(
                name=identity.name,
                path=identity.path,
                weights_sha256=identity.weights_sha256,
                revision=identity.revision,
                device_asked=identity.device_asked,
                device_used=identity.device_used,
                dtype=identity.dtype,
                runtime=identity.runtime,
                embed_dim=identity.embed_dim,
                logit_scale=embedder.logit_scale,
            ),
            frames=ScanFrames(
                times=analysis.times,
                embeddings=analysis.embeddings,
                thumbnails=analysis.thumbnails,
                window_start=analysis.coverage.start,
                window_end=analysis.coverage.end,
                span_starts=analysis.span_starts,
                revealed=analysis.revealed_thumbnails,
            ),
            timings=analysis.timings,
            decoding=analysis.decoding,
            photosensitivity=pse_summary(analysis.photosensitivity),
            scenes=scan_scenes(analysis),
            detections=(
                detections_to_json(analysis.detector_models, analysis.detections)
                if analysis.detections is not None
                else None
            ),
            xclip=analysis.xclip_windows,
        )
        # Score every rule set's categories now, from full-precision embeddings; judging
        # (now and at every re-evaluation) reads these back. Each scene's coverage too.
        for ruleset in self.rulesets:
            if tuple(ruleset.categories) == tuple(analysis.scores.categories):
                scores = analysis.scores
            else:
                scores = rescore(analysis, ruleset.categories, embedder)[0]
            key, records = categories_key(ruleset.categories), category_records(ruleset.categories)
            self.store.save_score_sets(key, records, {scan_id: scores.probabilities})
            if analysis.scene_detection is not None:
                Scenes(self.store).save_shares(key, records, {scan_id: shares_of(analysis, scores)})

    def _decide(self, result: ScanOutcome) -> None:
        """Judge the stored scan; a new scan always gets new decisions, a reused one only
        where the outcome differs from the asset's current decision."""
        assert result.scan_id is not None and result.asset_id is not None
        stored = self.store.completed_scans(scan_ids=[result.scan_id])
        judging = judge(self.store, stored, self.rulesets, self.models)
        if judging.problems:
            result.error = "; ".join(problem for _, problem in judging.problems)
        current = self.store.current_decisions([result.asset_id])
        new: list[NewDecision] = []
        existing: list[int | None] = []  # per judgement: the current decision it matches
        for j in judging.judgements:
            before = current.get((result.asset_id, j.ruleset.name))
            same = before is not None and outcome(before) == outcome(j.decision)
            if result.status == SCANNED or not same:
                new.append(
                    NewDecision(result.scan_id, result.asset_id, j.ruleset, j.decision, "scan")
                )
                existing.append(None)
            else:
                existing.append(before.id if before else None)
        ids = iter(self.store.append_decisions(new))
        result.decisions = [
            (next(ids) if known is None else known, j.decision)
            for known, j in zip(existing, judging.judgements, strict=True)
        ]
        if any(known is not None for known in existing):
            judged = {r.name for r in self.rulesets}  # the same rule sets as a fresh scan
            in_force = [
                d for (_, name), d in self.store.current_decisions([result.asset_id]).items()
                if name in judged
            ]  # fmt: skip
            result.in_force = combine([d.ruled() for d in in_force]) if in_force else None
        if self.reports_dir is not None:
            self._report(result)

    def _report(self, result: ScanOutcome) -> None:
        """Write the asset's report. A report that cannot be written (a full or read-only
        reports folder) is a problem of the run, not of the file: its decisions are stored,
        and ``policy-engine report`` writes the page later."""
        from policy_engine.reporting import write_asset_report

        assert self.reports_dir is not None and result.asset_id is not None
        try:
            path, digest = write_asset_report(self.store, result.asset_id, self.reports_dir)
        except OSError as exc:
            result.report_error = (
                f"the report could not be written to {self.reports_dir}:"
                f" {exc.strerror or exc}; the decisions are stored. Once fixed, run:"
                f" policy-engine report {result.asset_id}"
            )
            log.error("%s: %s", result.path, result.report_error)
            return
        path = path.resolve()  # where later commands find it, from any folder
        self.store.record_report(
            result.asset_id, [i for i, _ in result.decisions], str(path), digest
        )
        result.report, result.report_sha256 = str(path), digest

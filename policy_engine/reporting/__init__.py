"""HTML audit reports (Jinja2, autoescaped): one self-contained file per asset.

A report is built from the store alone (the asset, its current decision per rule set,
their scans, stored probabilities, thumbnails and overrides), so it can be written
again at any time, e.g. after a reviewer's override, and always shows what is recorded.
Everything that came from outside (file names, prompts, rule text, reviewer text) goes
through autoescaping; nothing is fetched from anywhere when the file is opened.
"""

from __future__ import annotations

import base64
import itertools
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from policy_engine import __version__
from policy_engine.analysis.coverage import Coverage, coverage_from_scores
from policy_engine.analysis.scoring import (
    LEGACY_MEASURE,
    FrameScores,
    categories_key,
    null_prompts,
    scores_from_probabilities,
)
from policy_engine.analysis.second_opinions import join_stored
from policy_engine.hashing import text_matches, text_sha256
from policy_engine.media.timecode import format_timecode
from policy_engine.policy.evaluate import Measurement, combine
from policy_engine.policy.loader import RuleSetError, parse_ruleset
from policy_engine.policy.model import RuleSet
from policy_engine.policy.overrides import Ruling, engine_ruling, review_steps
from policy_engine.policy.territory import CombinedSlot, Slot, combined_slots, earliest_slot
from policy_engine.reporting.flashes import FlashSection, flash_section
from policy_engine.reporting.scenes import SceneSection, scene_section
from policy_engine.reporting.timeline import Judged, Timeline, build_timelines

if TYPE_CHECKING:
    from policy_engine.store import CurrentDecision, Store

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
LEVEL_STYLES = {
    "unrestricted": ("ok", "Unrestricted: may air at any time"),
    "post-watershed": ("late", "Post-watershed only"),
    "not-for-broadcast": ("stop", "Not for broadcast"),
}


@dataclass
class RulesetSection:
    current: CurrentDecision  # what is in force, override applied
    decision: Any  # DecisionRecord, detached with ruleset, reasons and overrides loaded
    ruleset: RuleSet | None  # parsed from the stored text (None: edited beyond parsing)
    coverage: Coverage | None
    scores: FrameScores | None = None  # as stored for its scan (None: not found)
    coverage_begins: Any = None  # where its scan's frame spans start (None: their times)
    images: dict[int, str] = field(default_factory=dict)  # frame index -> data: URI

    @property
    def override(self) -> Any:
        return self.decision.overrides[-1] if self.decision.overrides else None

    @property
    def review_steps(self) -> list[tuple[Any, Ruling, Ruling]]:
        """Each override with the verdict in force before and after it."""
        overrides = self.decision.overrides
        steps = review_steps(engine_ruling(self.decision), overrides)
        return [(o, before, after) for o, (before, after) in zip(overrides, steps, strict=True)]

    @property
    def text_matches_hash(self) -> bool:
        """Whether the stored rule text is the text the decision's hash names."""
        return ruleset_text_intact(self.decision.ruleset)

    @property
    def slots(self) -> list[Slot]:
        """Earliest slots for the level in force (a reviewer's, where overruled)."""
        level = self.current.ruled().schedule
        if self.ruleset is None or level not in self.ruleset.levels:
            return []
        return [earliest_slot(level, self.ruleset.levels, t) for t in self.ruleset.territories]

    @property
    def fired(self) -> list[Any]:
        return [r for r in self.decision.reasons if r.kind == "fired"]

    @property
    def near_misses(self) -> list[Any]:
        return [r for r in self.decision.reasons if r.kind != "fired"]

    def evidence_of(self, reason: Any) -> list[dict[str, Any]]:
        """A fired rule's evidence frames for the clauses that held only: in a rule of
        ``any:`` the clauses that did not hold show nothing that made it fire."""
        held = {m["category"] for m in reason.measurements if m.get("holds")}
        return [e for e in reason.evidence if e["category"].split(":")[0] in held]

    @property
    def measure(self) -> str:
        """How its numbers were measured (decisions from before this was recorded: the
        one softmax over the set's prompts)."""
        return self.decision.measure or LEGACY_MEASURE


def ruleset_text_intact(record: Any) -> bool:
    """A stored rule set's text against its content hash: False means the text was
    edited in the database after the decisions that cite it were made."""
    return text_matches(record.text, record.sha256)


@dataclass
class AssetReport:
    asset: Any  # Asset with paths
    sections: list[RulesetSection]
    scan: Any  # the Scan behind the latest decision
    verdict: dict[str, Any]
    generated: str
    version: str = __version__
    flashes: FlashSection | None = None  # the photosensitivity check of that scan
    scenes: SceneSection | None = None  # that scan's scenes, each with a keyframe
    # override id -> who confirmed it (four-eyes mode)
    confirmations: dict[int, str] = field(default_factory=dict)

    @property
    def slots(self) -> list[CombinedSlot]:
        """One earliest slot per territory over every rule set, and who decided it."""
        return combined_slots([
            (s.decision.ruleset_name, s.current.ruled().schedule, s.ruleset.levels,
             s.ruleset.territories)
            for s in self.sections if s.ruleset is not None
        ])  # fmt: skip

    @property
    def timelines(self) -> list[Timeline]:
        """One timeline per scan over every rule set judged on it: a category that
        measures the same in several sets is one lane (``reporting.timeline``)."""
        return build_timelines([
            Judged(
                s.decision.ruleset_name, s.decision.scan_id, s.scores,
                (s.coverage.start, s.coverage.end, s.coverage.interval_seconds),
                s.coverage_begins,
            )
            for s in self.sections if s.scores is not None and s.coverage is not None
        ])  # fmt: skip

    @property
    def name(self) -> str:
        return Path(self.asset.path).name

    @property
    def tampered(self) -> list[Any]:
        """Rule sets whose stored text no longer matches the hash decisions cite."""
        return [s.decision.ruleset for s in self.sections if not s.text_matches_hash]

    @property
    def duration(self) -> float | None:
        return (self.asset.probe or {}).get("duration")


# Where an evidence picture comes from: (scan id, frame index) -> an image source. The
# static report inlines each as a data: URI; the app links to its (blurred) picture.
ImageSource = Callable[[int, int], str]


def _section(
    store: Store, current: CurrentDecision, scans: dict[int, Any], image_src: ImageSource | None
) -> RulesetSection:
    decision = store.decision(current.id)
    try:
        ruleset = parse_ruleset(
            decision.ruleset.text, decision.ruleset.path or decision.ruleset.name
        )
    except RuleSetError:
        if ruleset_text_intact(decision.ruleset):
            raise
        ruleset = None  # the stored text was edited into nonsense: the banner says so
    scan = scans.get(decision.scan_id)
    coverage, scores = None, None
    if scan is not None and ruleset is not None:
        measure = decision.measure or LEGACY_MEASURE
        scores = _stored_scores(store, scan.id, scan.times, ruleset.categories, measure)
        if scores is not None and ruleset.second_opinions:
            # what the scan holds is shown; what it lacks its decision says
            scores, _ = join_stored(
                scores, detectors=ruleset.detectors, xclip=ruleset.xclip,
                null=null_prompts(ruleset.categories),
                detections=store.scan_detections([scan.id])[scan.id] if ruleset.detectors else None,
                windows=store.scan_xclip([scan.id])[scan.id] if ruleset.xclip else None,
                ruleset=ruleset.name, scan_id=scan.id,
            )  # fmt: skip
        if scores is not None:
            coverage = coverage_from_scores(
                scores,
                start=scan.window_start,
                end=scan.window_end,
                interval_seconds=scan.interval_seconds,
                begins=scan.span_starts,
            )
    frames = {e["frame"] for r in decision.reasons if r.kind == "fired" for e in r.evidence}
    if image_src is not None:
        with_pictures = store.frames_with_thumbnails(decision.scan_id, frames) if frames else []
        images = {i: image_src(decision.scan_id, i) for i in with_pictures}
    else:
        thumbs = store.thumbnails(decision.scan_id, frames) if frames else {}
        images = {
            i: "data:image/jpeg;base64," + base64.b64encode(b).decode() for i, b in thumbs.items()
        }
    return RulesetSection(
        current=current,
        decision=decision,
        ruleset=ruleset,
        coverage=coverage,
        scores=scores,
        coverage_begins=scan.span_starts if scan is not None else None,
        images=images,
    )


def build_asset_report(
    store: Store, asset_id: int, image_src: ImageSource | None = None
) -> AssetReport:
    """Everything the asset report shows, from the store. ``image_src``: pictures as
    links (the app) rather than inlined (the self-contained report)."""
    asset, scans, _ = store.asset_history(asset_id)
    current = sorted(store.current_decisions([asset_id]).values(), key=lambda d: d.ruleset_name)
    stored = {s.id: s for s in store.completed_scans(scan_ids=[d.scan_id for d in current])}
    sections = [_section(store, d, stored, image_src) for d in current]
    newest_scan = max((d.scan_id for d in current), default=None)
    scan = next((s for s in scans if s.id == newest_scan), scans[-1] if scans else None)
    judged = stored.get(newest_scan) if newest_scan is not None else None
    return AssetReport(
        asset=asset,
        sections=sections,
        scan=scan,
        verdict=combine([d.ruled() for d in current]) if current else {},
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        flashes=flash_section(
            judged.photosensitivity, judged.times,
            lambda frames: store.thumbnails(judged.id, frames),
            None if image_src is None else lambda frame: image_src(judged.id, frame),
        ) if judged is not None else None,
        scenes=_scenes(store, scan, sections) if judged is not None else None,
        confirmations=store.confirmed_overrides([d.id for d in current]),
    )  # fmt: skip


# How every page of the engine is rendered: autoescaped (file names, prompts, rule text
# and reviewers' words come from outside), strict about missing values.
ENVIRONMENT_OPTIONS: dict[str, Any] = {
    "autoescape": select_autoescape(["html"], default=True),
    "undefined": StrictUndefined,
    "trim_blocks": True,
    "lstrip_blocks": True,
}


def _stored_scores(
    store: Store, scan_id: int, times: np.ndarray, categories: Sequence[Any], measure: str
) -> FrameScores | None:
    """The scan's stored scores for these categories, read as ``measure`` made them; None
    where there are none, or they do not fit the scan's frames."""
    stored = store.score_sets([scan_id], categories_key(categories, measure)).get(scan_id)
    if stored is None or stored.size != len(times) * len(categories):
        return None
    return scores_from_probabilities(categories, times, stored, measure)


def _scenes(store: Store, scan: Any, sections: list[RulesetSection]) -> SceneSection | None:
    """The judged scan's scenes with each rule set's per-scene coverage."""
    from policy_engine.store.scenes import Scenes

    if scan is None or scan.scenes is None:
        return None
    scenes = Scenes(store).of_scan(scan.id)
    shares = {
        section.decision.ruleset_name: (
            section.ruleset.categories,
            _scene_shares(store, scan, section, scenes),
        )
        for section in sections
        if section.ruleset is not None
    }
    return scene_section(
        scan.scenes, scenes, lambda frames: store.thumbnails(scan.id, frames), shares
    )


def _scene_shares(store: Store, scan: Any, section: RulesetSection, scenes: list[Any]) -> Any:
    """Stored with the scan; for a rule set that came later, from its stored scores."""
    from policy_engine.analysis.scenes import scene_shares
    from policy_engine.store.scenes import Scenes

    assert section.ruleset is not None
    key = categories_key(section.ruleset.categories, section.measure)
    values = Scenes(store).shares(scan.id, key)
    if values is not None or section.coverage is None:
        return values
    scores = section.scores
    if section.decision.scan_id != scan.id:  # decided on another scan: these scenes' own
        times = np.frombuffer(scan.frame_times or b"", dtype=np.float64)
        scores = _stored_scores(store, scan.id, times, section.ruleset.categories, section.measure)
    if scores is None:
        return None
    begins = np.frombuffer(scan.frame_spans, dtype=np.float64) if scan.frame_spans else None
    return scene_shares(
        scores.times, scores.shown, scenes,
        start=scan.window_start, end=scan.window_end, begins=begins,
    )  # fmt: skip


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("policy_engine.reporting", "templates"), **ENVIRONMENT_OPTIONS
    )
    return configure_environment(env)


def configure_environment(env: Environment) -> Environment:
    """The filters and globals the report's templates use (the app's too)."""
    env.filters["timecode"] = lambda v: format_timecode(v) if v is not None else "-"
    env.filters["percent"] = lambda v: f"{100 * v:.1f}%"
    env.filters["measurement"] = lambda m: Measurement(**m).describe()
    env.filters["when"] = lambda v: (
        v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if v else "-"
    )
    env.filters["sha256"] = text_sha256
    env.globals["level_style"] = lambda level: LEVEL_STYLES.get(level, ("other", level))
    return env


def render_asset_report(report: AssetReport) -> str:
    return _environment().get_template("asset.html").render(r=report, live=False)


def report_name(path: str, content_sha256: str | None) -> str:
    """A file name that is safe on every file system, whatever the asset was called."""
    stem = _SAFE.sub("_", Path(path).stem).strip("._")[:80] or "asset"
    digest = (content_sha256 or "").removeprefix("sha256:")[:12] or "unhashed"
    return f"{stem}-{digest}.html"


def write_asset_report(store: Store, asset_id: int, directory: Path) -> tuple[Path, str]:
    """Render the asset's report into ``directory``; returns its path and content hash."""
    report = build_asset_report(store, asset_id)
    html = render_asset_report(report)
    target = directory / report_name(report.asset.path, report.asset.content_sha256)
    write_atomically(target, html)
    return target, text_sha256(html)


def write_atomically(target: Path, text: str, *, exclusive: bool = False) -> Path:
    """Write ``text`` so that a reader never sees half a file, and a failure (a full
    disk) leaves no temporary file behind. ``exclusive``: never replace an existing file;
    the name gets a ``-2``, ``-3``… suffix instead (two workers finishing in the same
    second each keep their page). Returns the path written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{secrets.token_hex(6)}.tmp")
    try:
        # os.open, not tempfile: the report gets the usual permissions (0666 less umask)
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
        if not exclusive:
            tmp.replace(target)
            return target
        for n in itertools.count(1):
            candidate = target if n == 1 else target.with_stem(f"{target.stem}-{n}")
            try:
                os.link(tmp, candidate)  # atomic, and fails if the name is taken
            except FileExistsError:
                continue
            return candidate
    finally:
        tmp.unlink(missing_ok=True)
    raise AssertionError("unreachable")


# -- the run summary ----------------------------------------------------------------------
_RANKS = {"not-for-broadcast": 3, "post-watershed": 2, "unrestricted": 1}


def _verdict_columns(verdict: dict[str, Any]) -> dict[str, Any]:
    return {
        "rank": _RANKS.get(verdict["schedule"], 0),
        "verdict": verdict["schedule"],
        "style": LEVEL_STYLES.get(verdict["schedule"], ("other",))[0],
        "tags": list(verdict["tags"]),
        "review": verdict["review"],
    }


def _run_row(outcome: Any, directory: Path) -> dict[str, Any]:
    verdict = outcome.verdict
    asset_id = getattr(outcome, "asset_id", None)
    if verdict is None:
        return {
            "path": outcome.path, "rank": 4 if outcome.status == "failed" else 0,
            "verdict": "failed" if outcome.status == "failed" else "-", "style": "failed",
            "tags": [], "review": False, "status": outcome.status, "error": outcome.error,
            "report": None, "asset_id": asset_id,
        }  # fmt: skip
    report = Path(outcome.report) if outcome.report else None
    if report is not None and report.parent.resolve() == directory.resolve():
        report = Path(report.name)  # relative: the folder can move
    return {
        "path": outcome.path,
        **_verdict_columns(verdict),
        "status": outcome.status,
        "error": outcome.error,
        "report": str(report) if report else None,
        "asset_id": asset_id,
    }


def _summary_counts(outcomes: Sequence[Any], rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    return {
        "scanned": sum(o.status == "scanned" for o in outcomes),
        "reused": sum(o.status == "reused" for o in outcomes),
        "failed": sum(o.status == "failed" for o in outcomes),
        "review": sum(bool(r["review"]) for r in rows),
    }


def _render_run(page: dict[str, Any]) -> str:
    # The page carries its own data, so that `refresh_index` can show later verdicts.
    return _environment().get_template("run.html").render(**page, page=page)


def write_run_summary(
    outcomes: Sequence[Any],
    directory: Path,
    *,
    started: datetime,
    problems: Sequence[str] = (),
    title: str = "Compliance run",
    run_id: int | None = None,
) -> Path:
    """The index of one run next to its reports: every file with verdict, tags, review,
    failures with reasons and a link to its report; failures and the most restrictive
    verdicts first. Written as run-<time>[-<run id>].html (what the run found, kept as
    it was, under a name no other run takes) and as index.html (the latest run, its
    verdicts kept current by `refresh_index`)."""
    rows = sorted((_run_row(o, directory) for o in outcomes), key=lambda r: -r["rank"])
    page = {
        "title": f"{title} {started.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
        "rows": rows,
        "problems": list(problems),
        "counts": _summary_counts(outcomes, rows),
        "started": started.astimezone(UTC).isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "version": __version__,
        "updated": None,
    }
    html = _render_run(page)
    name = f"run-{started.astimezone(UTC):%Y%m%d-%H%M%S}" + (f"-{run_id}" if run_id else "")
    run_page = write_atomically(directory / f"{name}.html", html, exclusive=True)
    write_atomically(directory / "index.html", html)
    return run_page


_PAGE_DATA = re.compile(r'<script type="application/json" id="page-data">(.*?)</script>', re.S)


def refresh_index(store: Store, directory: Path) -> Path | None:
    """Show the verdicts now in force (after overrides and re-evaluation) in the
    folder's index.html; the run pages stay the record of what each run found. Returns
    None where there is no index (or one written before pages carried their data)."""
    import json

    index = directory / "index.html"
    try:
        found = _PAGE_DATA.search(index.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    if found is None:
        return None
    page = json.loads(found.group(1))
    asset_ids = [r["asset_id"] for r in page["rows"] if r.get("asset_id") is not None]
    current = store.current_decisions(asset_ids)
    for row in page["rows"]:
        mine = [d.ruled() for (a, _), d in current.items() if a == row.get("asset_id")]
        if mine:
            row.update(_verdict_columns(combine(mine)))
    page["rows"].sort(key=lambda r: -r["rank"])
    page["counts"]["review"] = sum(bool(r["review"]) for r in page["rows"])
    page["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_atomically(index, _render_run(page))
    return index

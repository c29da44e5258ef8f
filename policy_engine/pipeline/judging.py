"""Stored scans to decisions, without video and without the image tower.

Per rule set, frame probabilities come from the store when its category set (names,
prompts, null flags, null prompts, and how they are measured) was scored before: a
threshold or condition edit costs only coverage and evaluation, numpy over a few hundred
numbers per scan. A new or edited
prompt is scored from the stored frame embeddings with the text tower only, and the
result is stored for next time. ``reevaluate`` applies rule sets to history and appends
decisions where the outcome changed; ``dry_run`` (``rules diff``) writes nothing.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from policy_engine.analysis.coverage import coverage_from_scores
from policy_engine.analysis.scoring import (
    LEGACY_MEASURE,
    Category,
    FrameScores,
    categories_key,
    category_records,
    flatten_prompts,
    null_prompts,
    score_frames,
    scores_from_probabilities,
)
from policy_engine.analysis.second_opinions import join_stored
from policy_engine.errors import ModelError
from policy_engine.models.provider import ModelProvider
from policy_engine.policy.evaluate import Checks, Decision, evaluate
from policy_engine.policy.model import PHOTOSENSITIVITY, RuleSet
from policy_engine.store import CurrentDecision, NewDecision, Store, StoredScan


@dataclass(frozen=True)
class Judgement:
    scan: StoredScan
    ruleset: RuleSet
    decision: Decision


@dataclass
class Judging:
    judgements: list[Judgement] = field(default_factory=list)
    problems: list[tuple[StoredScan, str]] = field(default_factory=list)
    from_stored_scores: int = 0  # (scan, rule set) pairs judged on stored probabilities
    rescored: int = 0  # pairs scored anew from stored embeddings (text tower)


def _rescore(
    store: Store,
    scans: Sequence[StoredScan],
    categories: Sequence[Category],
    models: ModelProvider | None,
    judging: Judging,
) -> dict[int, np.ndarray]:
    """Probabilities for scans whose frames were never scored against these categories."""
    found: dict[int, np.ndarray] = {}
    by_weights: dict[str, list[StoredScan]] = defaultdict(list)
    for scan in scans:
        by_weights[scan.weights_sha256].append(scan)
    prompts, _ = flatten_prompts(categories)
    for weights, group in by_weights.items():
        try:
            if models is None:
                raise ModelError("no model configured to score new prompts")
            first = group[0]
            encoder = models.prompt_encoder(weights, first.model_name, first.model_path)
        except ModelError as exc:
            judging.problems.extend((scan, str(exc)) for scan in group)
            continue
        text = encoder.embed_texts(prompts)
        embeddings = store.frame_embeddings([s.id for s in group])
        for scan in group:
            scores = score_frames(
                categories, scan.times, embeddings[scan.id], text, scan.logit_scale
            )
            found[scan.id] = scores.probabilities
    return found


def frame_scores(
    store: Store,
    scans: Sequence[StoredScan],
    categories: Sequence[Category],
    models: ModelProvider | None,
    judging: Judging,
    *,
    save: bool,
) -> dict[int, FrameScores]:
    """Each scan's FrameScores for these categories: stored, else scored and (if
    ``save``) stored."""
    key = categories_key(categories)
    stored = store.score_sets([s.id for s in scans], key)
    missing = [s for s in scans if s.id not in stored]
    fresh = _rescore(store, missing, categories, models, judging) if missing else {}
    if save and fresh:
        store.save_score_sets(key, category_records(categories), fresh)
    judging.from_stored_scores += len(stored)
    judging.rescored += len(fresh)
    result = {}
    for scan in scans:
        probs = stored.get(scan.id, fresh.get(scan.id))
        if probs is None:
            continue
        if probs.size != len(scan.times) * len(categories):
            judging.problems.append((scan, "stored scores do not match its frames; rescan it"))
            continue
        result[scan.id] = scores_from_probabilities(categories, scan.times, probs)
    return result


def judge(
    store: Store,
    scans: Sequence[StoredScan],
    rulesets: Sequence[RuleSet],
    models: ModelProvider | None,
    *,
    save_scores: bool = True,
) -> Judging:
    """Every rule set's decision about every scan, from stored data only."""
    judging = Judging()
    for ruleset in rulesets:
        scores = frame_scores(store, scans, ruleset.categories, models, judging, save=save_scores)
        if ruleset.second_opinions:
            scores = _with_second_opinions(store, scans, ruleset, scores, judging)
        for scan in scans:
            if scan.id not in scores:
                continue
            coverage = coverage_from_scores(
                scores[scan.id],
                start=scan.window_start,
                end=scan.window_end,
                interval_seconds=scan.interval_seconds,
                begins=scan.span_starts,
            )
            decision = evaluate(ruleset, coverage, scores[scan.id], checks=stored_checks(scan))
            judging.judgements.append(Judgement(scan, ruleset, _of_the_part(decision, scan)))
    return judging


def _with_second_opinions(
    store: Store,
    scans: Sequence[StoredScan],
    ruleset: RuleSet,
    scores: dict[int, FrameScores],
    judging: Judging,
) -> dict[int, FrameScores]:
    """The rule set's detector and X-CLIP categories joined to each scan's scores from
    what the scan stored; a scan missing one is a problem, and not judged."""
    ids = [s.id for s in scans if s.id in scores]
    boxes = store.scan_detections(ids) if ruleset.detectors else {}
    windows = store.scan_xclip(ids) if ruleset.xclip else {}
    null = null_prompts(ruleset.categories)
    joined = {}
    for scan in scans:
        if scan.id not in scores:
            continue
        merged, problems = join_stored(
            scores[scan.id], detectors=ruleset.detectors, xclip=ruleset.xclip, null=null,
            detections=boxes.get(scan.id), windows=windows.get(scan.id),
            ruleset=ruleset.name, scan_id=scan.id,
        )  # fmt: skip
        judging.problems.extend((scan, problem) for problem in problems)
        if not problems:
            joined[scan.id] = merged
    return joined


def stored_checks(scan: StoredScan) -> Checks:
    """The every-frame checks stored with a scan, by name (absent: not measured)."""
    if scan.photosensitivity is None:
        return {}
    return {PHOTOSENSITIVITY: scan.photosensitivity}


def _of_the_part(decision: Decision, scan: StoredScan) -> Decision:
    """A scan limited to part of the video (``--start/--end/--max-frames``) judges only
    that part: what the rest shows is unknown, so its verdict must go past a reviewer and
    say why."""
    if scan.part is None:
        return decision
    warning = f"judged on part of the video only ({scan.part}): review the rest before airing"
    return replace(decision, review=True, warnings=(*decision.warnings, warning))


# -- re-evaluation ------------------------------------------------------------------------
def outcome(decision: Decision | CurrentDecision) -> tuple[object, ...]:
    """What a reader of the verdict sees; a new decision is recorded when it changes."""
    return (decision.schedule, tuple(sorted(decision.tags)), decision.review, decision.warnings)


@dataclass(frozen=True)
class Change:
    """One asset whose verdict under one rule set would change (or did)."""

    asset_id: int
    path: str
    ruleset: str
    before: CurrentDecision | None
    after: Decision
    why: tuple[str, ...]
    decision_id: int | None = None  # the appended decision (None in a dry run)


def explain_change(before: CurrentDecision | None, after: Decision, ruleset: RuleSet) -> list[str]:
    if before is None:
        return [f"first decision under {ruleset.name}"]
    why = []
    measured_before = before.measure or LEGACY_MEASURE
    if after.measure is not None and measured_before != after.measure:
        why.append(f"measured anew ({measured_before} -> {after.measure}; README: What a"
                   " category measures)")  # fmt: skip
    if before.ruleset_sha256 != after.ruleset_sha256:
        why.append(f"rule set {ruleset.name} v{before.ruleset_version} -> v{after.ruleset_version}")
    now = {r.rule_id: r for r in after.reasons}
    for rule_id, reason in now.items():
        if rule_id not in before.fired:
            measured = "; ".join(m.describe() for m in reason.measurements)
            why.append(f"now fires {rule_id}: {measured}")
    why.extend(f"no longer fires {rule_id}" for rule_id in before.fired if rule_id not in now)
    if before.override is not None:
        why.append(
            f"note: decision {before.id} was overridden by {before.override.reviewer};"
            " the override stays with it: review the new decision"
        )
    return why


@dataclass
class Reevaluation:
    rulesets: list[RuleSet]
    scans: int
    changes: list[Change]
    unchanged: int
    appended: int
    problems: list[tuple[StoredScan, str]]
    from_stored_scores: int
    rescored: int
    seconds: float
    dry_run: bool
    decided_assets: list[int] = field(default_factory=list)  # got a new decision


def reevaluate(
    store: Store,
    rulesets: Sequence[RuleSet],
    models: ModelProvider | None,
    *,
    since: datetime | None = None,
    always: bool = False,
    dry_run: bool = False,
    scan_ids: Sequence[int] | None = None,
) -> Reevaluation:
    """Apply ``rulesets`` to each asset's latest completed scan (or to ``scan_ids``: one
    part of the archive, on a cluster). Appends a decision where the outcome changed (or
    for every pair with ``always``); ``dry_run`` writes nothing."""
    started = time.perf_counter()
    scans = store.completed_scans(since=since, scan_ids=scan_ids)
    some = since is not None or scan_ids is not None
    current = store.current_decisions([s.asset_id for s in scans] if some else None)
    judging = judge(store, scans, rulesets, models, save_scores=not dry_run)
    changes: list[Change] = []
    new: list[NewDecision] = []
    for j in judging.judgements:
        before = current.get((j.scan.asset_id, j.ruleset.name))
        changed = before is None or outcome(before) != outcome(j.decision)
        if changed:
            why = tuple(explain_change(before, j.decision, j.ruleset))
            changes.append(
                Change(j.scan.asset_id, j.scan.path, j.ruleset.name, before, j.decision, why)
            )
        if changed or always:
            new.append(NewDecision(j.scan.id, j.scan.asset_id, j.ruleset, j.decision, "reevaluate"))
    if not dry_run and new:
        ids = store.append_decisions(new)
        by_pair = {(n.asset_id, n.ruleset.name): i for n, i in zip(new, ids, strict=True)}
        changes = [replace(c, decision_id=by_pair[(c.asset_id, c.ruleset)]) for c in changes]
    return Reevaluation(
        rulesets=list(rulesets),
        scans=len(scans),
        changes=changes,
        unchanged=len(judging.judgements) - len(changes),
        appended=0 if dry_run else len(new),
        problems=judging.problems,
        from_stored_scores=judging.from_stored_scores,
        rescored=judging.rescored,
        seconds=time.perf_counter() - started,
        dry_run=dry_run,
        decided_assets=[] if dry_run else list(dict.fromkeys(n.asset_id for n in new)),
    )

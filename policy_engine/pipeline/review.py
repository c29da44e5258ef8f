"""What changes a verdict after a scan, and rewrites everything that shows it.

A verdict changes by a reviewer's override or by re-evaluation under edited rules. Both
go through here, so that neither the caller nor the user has to remember the pages:
each affected asset's report is written again where its last report was written, the
new report is recorded, and the ``index.html`` of that folder shows the new verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from policy_engine.analysis.scoring import LEGACY_MEASURE
from policy_engine.config import Settings
from policy_engine.errors import ConfigError
from policy_engine.hashing import text_matches
from policy_engine.models.provider import ModelProvider
from policy_engine.pipeline.judging import Reevaluation
from policy_engine.pipeline.judging import reevaluate as judge_again
from policy_engine.policy.loader import parse_ruleset
from policy_engine.policy.model import RuleSet
from policy_engine.policy.overrides import Ruling, ruling_in_force
from policy_engine.store import Store
from policy_engine.workers.executor import executor_of


@dataclass(frozen=True)
class OverrideResult:
    override_id: int
    decision_id: int
    asset_id: int
    before: Ruling  # in force before this override (earlier overrides applied)
    after: Ruling  # in force now
    reports: list[Path]
    report_problems: list[str]


def _report_folder(store: Store, asset_id: int, default: Path) -> Path:
    """Where the asset's report is read: the folder of its latest recorded report,
    else ``default`` (a report recorded with a relative path is taken as in ``default``)."""
    recorded = store.reports(asset_id)
    if recorded:
        last = Path(recorded[-1].path)
        if last.is_absolute() and last.parent.is_dir():
            return last.parent
    return default


def write_report(store: Store, asset_id: int, directory: Path) -> Path:
    """(Re)write one asset's report from the records into ``directory`` and record it."""
    from policy_engine.reporting import write_asset_report

    path, digest = write_asset_report(store, asset_id, directory)
    current = store.current_decisions([asset_id])
    store.record_report(
        asset_id, sorted(d.id for d in current.values()), str(path.resolve()), digest
    )
    return path


@dataclass(frozen=True)
class RefreshedPages:
    written: list[Path]
    problems: list[str]  # pages that could not be written; the change itself is stored


def refresh_reports(store: Store, asset_ids: Iterable[int], default: Path) -> RefreshedPages:
    """Rewrite the reports of these assets where they are read, then the index of each
    folder touched, so no page shows a verdict that is no longer in force. A page that
    cannot be written (a full or read-only folder) is reported, not raised: the verdict
    change is already recorded, and ``policy-engine report`` writes the page later."""
    from policy_engine.reporting import refresh_index

    written, problems = [], []
    for asset_id in dict.fromkeys(asset_ids):
        folder = _report_folder(store, asset_id, default)
        try:
            written.append(write_report(store, asset_id, folder))
        except OSError as exc:
            problems.append(
                f"the report of asset {asset_id} could not be written to {folder}:"
                f" {exc.strerror or exc}; once fixed, run: policy-engine report {asset_id}"
            )
    for folder in dict.fromkeys(path.parent for path in written):
        try:
            refresh_index(store, folder)
        except OSError as exc:
            problems.append(f"{folder / 'index.html'} could not be rewritten: {exc.strerror}")
    return RefreshedPages(written, problems)


def _tags_after(
    in_force: Sequence[str],
    tags: Sequence[str] | None,
    add_tags: Sequence[str],
    remove_tags: Sequence[str],
) -> list[str] | None:
    """The tag set an override states, or None where it leaves tags alone."""
    if tags is None and not add_tags and not remove_tags:
        return None
    base = list(tags) if tags is not None else list(in_force)
    result = [t for t in dict.fromkeys([*base, *add_tags]) if t not in set(remove_tags)]
    return result


def _ruled_decision(
    store: Store, decision_id: int, schedule: str | None, reason_code: str | None,
    allowed_reasons: Sequence[str],
) -> Any:  # fmt: skip
    """The decision a ruling is on, once the ruling's reason and level are checked."""
    if reason_code is not None and allowed_reasons and reason_code not in allowed_reasons:
        from policy_engine.policy.choices import did_you_mean

        raise ConfigError(
            f"reason {reason_code!r} is not one of the configured override reasons"
            f"{did_you_mean(reason_code, allowed_reasons)}: {', '.join(allowed_reasons)}"
        )
    decision = store.decision(decision_id)
    if decision is None:
        raise ConfigError(f"no decision {decision_id}; `policy-engine history ASSET` lists them")
    if schedule is not None:
        levels = parse_ruleset(decision.ruleset.text, decision.ruleset.path).levels
        if schedule not in levels:
            raise ConfigError(
                f"--schedule {schedule!r}: rule set {decision.ruleset.name} has levels"
                f" {' < '.join(levels)}"
            )
    return decision


def record_override(
    store: Store,
    decision_id: int,
    *,
    reviewer: str,
    justification: str,
    reports_dir: Path,
    schedule: str | None = None,
    tags: Sequence[str] | None = None,
    add_tags: Sequence[str] = (),
    remove_tags: Sequence[str] = (),
    actor: str | None = None,
    via: str = "cli",
    reason_code: str | None = None,
    allowed_reasons: Sequence[str] = (),
) -> OverrideResult:
    """A reviewer's ruling on a decision. It starts from the verdict in force (the
    decision with its earlier overrides applied) and changes only what it names: the
    level, the whole tag set (``tags``), or tags added and removed. The asset's report
    and the index are rewritten."""
    decision = _ruled_decision(store, decision_id, schedule, reason_code, allowed_reasons)
    before = ruling_in_force(decision)
    stated = _tags_after(before.tags, tags, add_tags, remove_tags)
    override_id = store.add_override(
        decision_id,
        reviewer=reviewer,
        justification=justification,
        schedule=schedule,
        tags=stated,
        actor=actor,
        via=via,
        reason_code=reason_code,
    )
    pages = refresh_reports(store, [decision.asset_id], reports_dir)
    return OverrideResult(
        override_id=override_id,
        decision_id=decision_id,
        asset_id=decision.asset_id,
        before=before,
        after=before.overruled(schedule, stated),
        reports=pages.written,
        report_problems=pages.problems,
    )


# -- four eyes ------------------------------------------------------------------------------
class SecondReviewerNeeded(ConfigError):
    """Four-eyes mode: the reviewer who proposed a change may not confirm it."""


class Superseded(ConfigError):
    """The decision a proposal is on is no longer the one in force."""


@dataclass(frozen=True)
class ProposalResult:
    """A change of level waiting for a second reviewer (four-eyes mode): nothing is in
    force yet."""

    proposal_id: int
    decision_id: int
    asset_id: int
    before: Ruling  # in force, and staying so until confirmed
    proposed: Ruling


def rule_on(
    store: Store,
    decision_id: int,
    *,
    four_eyes: bool,
    reviewer: str,
    justification: str,
    reports_dir: Path,
    actor: str,
    via: str,
    reason_code: str | None,
    allowed_reasons: Sequence[str] = (),
    schedule: str | None = None,
    tags: Sequence[str] | None = None,
    add_tags: Sequence[str] = (),
    remove_tags: Sequence[str] = (),
) -> OverrideResult | ProposalResult:
    """A reviewer's ruling as the service takes it: at once, or, in four-eyes mode when
    it changes the level, as a proposal that a second reviewer must confirm."""
    decision = _ruled_decision(store, decision_id, schedule, reason_code, allowed_reasons)
    before = ruling_in_force(decision)
    if four_eyes and schedule is not None and schedule != before.schedule:
        from policy_engine.store.review import Reviews

        if not justification.strip():
            raise ConfigError("an override needs a justification")
        stated = _tags_after(before.tags, tags, add_tags, remove_tags)
        proposal_id = Reviews(store).add_proposal(
            decision_id, reviewer=reviewer, actor=actor, via=via, justification=justification,
            reason_code=reason_code, schedule=schedule, tags=stated,
        )  # fmt: skip
        return ProposalResult(
            proposal_id, decision_id, decision.asset_id, before,
            before.overruled(schedule, stated),
        )  # fmt: skip
    return record_override(
        store, decision_id, reviewer=reviewer, justification=justification,
        reports_dir=reports_dir, schedule=schedule, tags=tags, add_tags=add_tags,
        remove_tags=remove_tags, actor=actor, via=via, reason_code=reason_code,
        allowed_reasons=allowed_reasons,
    )  # fmt: skip


def answer_proposal(
    store: Store,
    proposal_id: int,
    *,
    confirm: bool,
    reviewer: str,
    actor: str,
    via: str,
    reports_dir: Path,
    justification: str | None = None,
) -> OverrideResult | None:
    """A second reviewer confirms a proposal (it becomes the override, and the pages
    that show the verdict are rewritten) or rejects it (nothing changes)."""
    from policy_engine.store.review import CONFIRMED, REJECTED, AlreadyAnswered, Reviews

    reviews = Reviews(store)
    proposal = reviews.proposal(proposal_id)
    if proposal is None:
        raise ConfigError(f"no proposal {proposal_id}")
    if proposal.outcome is not None:
        raise AlreadyAnswered(f"proposal {proposal_id} was {proposal.outcome} already")
    if proposal.actor == actor:
        raise SecondReviewerNeeded(
            "four eyes: a second reviewer must confirm or reject this change, not its author"
        )
    current = store.current_decisions([proposal.asset_id]).get(
        (proposal.asset_id, proposal.ruleset_name)
    )
    if confirm and (current is None or current.id != proposal.decision_id):
        raise Superseded(
            f"proposal {proposal_id} is on decision {proposal.decision_id}, which a newer"
            " decision has replaced: reject it and rule on the new decision"
        )
    before = current.ruled() if current is not None else None
    override_id = reviews.answer_proposal(
        proposal_id, outcome=CONFIRMED if confirm else REJECTED, reviewer=reviewer,
        actor=actor, via=via, justification=justification,
    )  # fmt: skip
    if not confirm or override_id is None or before is None:
        return None
    pages = refresh_reports(store, [proposal.asset_id], reports_dir)
    return OverrideResult(
        override_id=override_id,
        decision_id=proposal.decision_id,
        asset_id=proposal.asset_id,
        before=before,
        after=before.overruled(proposal.schedule, proposal.tags),
        reports=pages.written,
        report_problems=pages.problems,
    )


def reevaluate(
    store: Store,
    rulesets: Sequence[RuleSet],
    models: ModelProvider | None,
    *,
    reports_dir: Path | None,
    since: datetime | None = None,
    always: bool = False,
    dry_run: bool = False,
    settings: Settings | None = None,
) -> tuple[Reevaluation, RefreshedPages]:
    """Re-evaluation (see ``judging.reevaluate``), then the reports of every asset that
    got a new decision, and their index, rewritten (none in a dry run). With
    ``settings`` whose executor is ray, the archive is judged in parts on the cluster."""
    if settings is not None and executor_of(settings) == "ray":
        from policy_engine.workers.cluster_reevaluate import reevaluate_on_cluster

        result = reevaluate_on_cluster(
            settings, store, rulesets, since=since, always=always, dry_run=dry_run
        )
    else:
        result = judge_again(store, rulesets, models, since=since, always=always, dry_run=dry_run)
    if dry_run or reports_dir is None or not result.appended:
        return result, RefreshedPages([], [])
    return result, refresh_reports(store, result.decided_assets, reports_dir)


def reevaluation_summary(result: Reevaluation) -> dict[str, Any]:
    """A re-evaluation (or its dry run) as JSON-ready data: the CLI's --json and the API."""
    return {
        "dry_run": result.dry_run,
        "rulesets": [
            {"name": r.name, "version": r.version, "sha256": r.sha256} for r in result.rulesets
        ],
        "scans": result.scans,
        "unchanged": result.unchanged,
        "appended": result.appended,
        "from_stored_scores": result.from_stored_scores,
        "rescored": result.rescored,
        "seconds": result.seconds,
        "changes": [
            {
                "asset_id": c.asset_id,
                "path": c.path,
                "ruleset": c.ruleset,
                "before": None
                if c.before is None
                else {
                    "decision_id": c.before.id,
                    "schedule": c.before.schedule,
                    "tags": list(c.before.tags),
                    "review": c.before.review,
                },
                "after": {
                    "decision_id": c.decision_id,
                    "schedule": c.after.schedule,
                    "tags": list(c.after.tags),
                    "review": c.after.review,
                },
                "why": list(c.why),
            }
            for c in result.changes
        ],
        "problems": [{"scan_id": s.id, "path": s.path, "problem": p} for s, p in result.problems],
    }


def decision_summary(d: Any) -> dict[str, Any]:
    """One stored decision as JSON-ready data (``show --json`` and the API): what was
    decided, by which rule set (its text checked against its hash), on which scan, why,
    and the rulings on it."""
    s = d.scan
    return {
        "id": d.id,
        "created_at": d.created_at,
        "cause": d.cause,
        # how its category numbers were measured (analysis.scoring)
        "measure": d.measure or LEGACY_MEASURE,
        "asset": {"id": d.asset_id, "path": s.path, "content_sha256": s.asset.content_sha256},
        "ruleset": {
            "name": d.ruleset.name,
            "version": d.ruleset.version,
            "sha256": d.ruleset.sha256,
            "path": d.ruleset.path,
            "text_matches_hash": text_matches(d.ruleset.text, d.ruleset.sha256),
        },
        "schedule": d.schedule,
        "tags": d.tags,
        "review": d.review,
        "warnings": d.warnings,
        "slots": d.slots,
        "scan": {
            "id": s.id,
            "started_at": s.started_at,
            "finished_at": s.finished_at,
            "model": s.model_name,
            "model_path": s.model_path,
            "weights_sha256": s.weights_sha256,
            "device_asked": s.device_asked,
            "device_used": s.device_used,
            "dtype": s.dtype,
            "runtime": s.runtime or "torch",  # what ran the image tower
            "execution": (s.decoding or {}).get("execution"),  # its threads and policies
            "sampling": s.sampling,
            "software_version": s.software_version,
        },
        "reasons": [
            {
                "kind": r.kind,
                "rule_id": r.rule_id,
                "description": r.description,
                "reference": r.reference,
                "outcome": r.outcome,
                "measurements": r.measurements,
                "evidence": r.evidence,
            }
            for r in d.reasons
        ],
        "overrides": [
            {
                "id": o.id,
                "reviewer": o.reviewer,
                "schedule": o.schedule,
                "tags": o.tags,
                "justification": o.justification,
                "created_at": o.created_at,
                "actor": o.actor,
                "via": o.via,
                "reason": o.reason_code,
            }
            for o in d.overrides
        ],
    }

"""One asset: everything its report shows, live from the records and drawn by the same
partials, with a player kept in step with the timeline and the evidence; overruling it
(four eyes, where set), claiming it, and exporting its decision record and report."""

from __future__ import annotations

import json
import mimetypes
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from policy_engine.accounts import OVERRULE
from policy_engine.errors import ConfigError
from policy_engine.service.deps import who as author
from policy_engine.service.deps import why_not_reveal
from policy_engine.service.pages.common import (
    Form,
    PageError,
    Reviewer,
    Viewer,
    Visitor,
    checked_form,
    redirect,
    render,
)
from policy_engine.service.resources import resources
from policy_engine.store.evidence import RevealedPictures

router = APIRouter(include_in_schema=False)

NOTICES = {
    "overruled": "Your ruling is recorded and in force; the static report was rewritten.",
    "proposed": "Your change of level is recorded as a proposal: it takes effect once a"
    " second reviewer confirms it (four eyes).",
    "confirmed": "Confirmed: the proposed ruling is now in force.",
    "rejected": "Rejected: the verdict stays as it was.",
    "claimed": "You have claimed this asset; other reviewers see it is yours.",
    "released": "Your claim is released.",
}


def _found(store: Any, asset_id: int) -> Any:
    asset = store.asset(asset_id)
    if asset is None:
        raise PageError(404, "No such asset", f"there is no asset {asset_id}")
    return asset


def video_file(store: Any, asset_id: int) -> Path | None:
    """The asset's file where it can still be read: the paths it was seen at, the
    latest first (the records say where it was; the file may have gone since)."""
    asset, _, _ = store.asset_history(asset_id)
    for seen in sorted(asset.paths, key=lambda p: p.id, reverse=True):
        path = Path(seen.path)
        if path.is_file():
            return path
    return None


@router.get("/assets/{asset_id}")
def asset_page(
    asset_id: int,
    request: Request,
    who: Viewer,
    unblurred: bool = False,
    revealed: bool = False,
    done: Annotated[str, Query(max_length=20)] = "",
) -> HTMLResponse:
    from policy_engine.policy.loader import parse_ruleset
    from policy_engine.reporting import build_asset_report
    from policy_engine.store.review import Reviews

    engine = resources(request)
    store = engine.store()
    _found(store, asset_id)
    clear = unblurred and who.may(OVERRULE)  # evidence unblurred only for those who rule
    # hidden regions (nudity) as they were: only where kept, only to a reviewer here
    may_reveal = clear and why_not_reveal(who.account, engine.settings) is None
    shown_as_was = revealed and may_reveal
    kept: dict[int, set[int]] = {}  # per scan, the frames kept as they were

    def picture(scan_id: int, frame: int) -> str:
        url = f"/api/v1/scans/{scan_id}/frames/{frame}/thumbnail"
        if shown_as_was:
            if scan_id not in kept:
                kept[scan_id] = RevealedPictures(store).frames(scan_id)
            if frame in kept[scan_id]:
                return url + "?unblurred=true&revealed=true"
        return url + "?unblurred=true" if clear else url

    report = build_asset_report(store, asset_id, image_src=picture)
    reviews = Reviews(store)
    levels = {
        s.decision.id: parse_ruleset(s.decision.ruleset.text, s.decision.ruleset.path).levels
        if s.ruleset is not None else ()
        for s in report.sections
    }  # fmt: skip
    video = video_file(store, asset_id)
    return render(
        request, "asset.html", who, r=report, asset_id=asset_id, levels=levels,
        video=video, video_type=mimetypes.guess_type(video.name)[0] if video else None,
        seen_at=[p.path for p in report.asset.paths],
        claim=reviews.claims([asset_id]).get(asset_id), me=author(who.account),
        proposals=reviews.proposals(asset_ids=[asset_id]), four_eyes=engine.settings.four_eyes,
        reasons=engine.settings.override_reasons, unblurred=clear,
        may_reveal=may_reveal, revealed=shown_as_was,
        notice=NOTICES.get(done), may_rule=who.may(OVERRULE),
    )  # fmt: skip


@router.get("/assets/{asset_id}/video", response_model=None)
def asset_video(asset_id: int, request: Request, who: Viewer) -> FileResponse:
    """The asset's file, with HTTP range requests (206 Partial Content) so the player can
    seek without downloading it all."""
    store = resources(request).store()
    _found(store, asset_id)
    path = video_file(store, asset_id)
    if path is None:
        raise PageError(404, "The file is gone", "no recorded path of this asset holds it now")
    return FileResponse(
        path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
        headers={"Cache-Control": "private, no-store"}, content_disposition_type="inline",
    )  # fmt: skip


# -- ruling ---------------------------------------------------------------------------------
def _claimed_by_another(request: Request, who: Visitor, asset_id: int) -> None:
    from policy_engine.store.review import Reviews

    claim = Reviews(resources(request).store()).claims([asset_id]).get(asset_id)
    if claim is not None and claim.holder != author(who.account):
        raise PageError(
            409, "Claimed by another reviewer",
            f"{claim.holder.split(':', 1)[-1]} has claimed this asset until"
            f" {claim.expires_at:%H:%M} UTC; nothing was changed.",
        )  # fmt: skip


@router.post("/assets/{asset_id}/overrule")
def overrule(asset_id: int, request: Request, who: Reviewer, form: Form) -> RedirectResponse:
    """The overrule form, as the logged-in reviewer: level, tags and review with a
    configured reason and a justification. In four-eyes mode a change of level is a
    proposal until a second reviewer confirms it."""
    from policy_engine.pipeline.review import ProposalResult, rule_on
    from policy_engine.store.review import Reviews

    checked_form(who, form)
    engine = resources(request)
    store = engine.store()
    _found(store, asset_id)
    current = {d.id: d for d in store.current_decisions([asset_id]).values()}
    decision_id = _number(form.get("decision_id", ""))
    if decision_id not in current:
        raise PageError(
            409,
            "The verdict has changed",
            "the decision you ruled on is no longer in force; reload the page",
        )
    _claimed_by_another(request, who, asset_id)
    in_force = current[decision_id].ruled()
    tags = _tag_list(form.get("tags", ""))
    if any(len(tag) > 100 for tag in tags):
        raise PageError(422, "The ruling was not recorded", "a tag may be 100 characters long")
    try:
        result = rule_on(
            store, decision_id, four_eyes=engine.settings.four_eyes, reviewer=who.name,
            justification=form.get("justification", "")[:4000],
            reports_dir=Path(engine.settings.reports), actor=author(who.account), via="app",
            reason_code=form.get("reason") or None,
            allowed_reasons=engine.settings.override_reasons,
            schedule=form.get("schedule") or None,
            tags=None if tags == list(in_force.tags) else tags,
        )  # fmt: skip
    except ConfigError as exc:
        raise PageError(422, "The ruling was not recorded", str(exc)) from None
    Reviews(store).release(asset_id, author(who.account))  # the work is done
    done = "proposed" if isinstance(result, ProposalResult) else "overruled"
    return redirect(f"/assets/{asset_id}?done={done}")


@router.post("/assets/{asset_id}/proposals/{proposal_id}")
def answer(
    asset_id: int, proposal_id: int, request: Request, who: Reviewer, form: Form
) -> RedirectResponse:
    """Four eyes: a second reviewer confirms or rejects a proposed change of level."""
    from policy_engine.pipeline.review import SecondReviewerNeeded, Superseded, answer_proposal
    from policy_engine.store.review import AlreadyAnswered, Reviews

    checked_form(who, form)
    engine = resources(request)
    proposal = Reviews(engine.store()).proposal(proposal_id)
    if proposal is None or proposal.asset_id != asset_id:
        raise PageError(404, "No such proposal", f"asset {asset_id} has no proposal {proposal_id}")
    confirm = form.get("answer") == "confirm"
    try:
        answer_proposal(
            engine.store(), proposal_id, confirm=confirm, reviewer=who.name,
            actor=author(who.account), via="app", reports_dir=Path(engine.settings.reports),
            justification=form.get("justification", "")[:4000] or None,
        )  # fmt: skip
    except SecondReviewerNeeded as exc:
        raise PageError(403, "A second reviewer must answer", str(exc)) from None
    except (AlreadyAnswered, Superseded) as exc:
        raise PageError(409, "Not recorded", str(exc)) from None
    return redirect(f"/assets/{asset_id}?done={'confirmed' if confirm else 'rejected'}")


@router.post("/assets/{asset_id}/claim")
def claim(asset_id: int, request: Request, who: Reviewer, form: Form) -> RedirectResponse:
    """Claim the asset (or give the claim back) so two reviewers do not work on it."""
    from policy_engine.store.review import Reviews

    checked_form(who, form)
    engine = resources(request)
    store = engine.store()
    _found(store, asset_id)
    reviews, me = Reviews(store), author(who.account)
    if form.get("release"):
        reviews.release(asset_id, me)
        return redirect(_back(form, asset_id, "released"))
    held = reviews.claim(asset_id, me, engine.settings.review_claim_minutes)
    if held.holder != me:
        _claimed_by_another(request, who, asset_id)
    return redirect(_back(form, asset_id, "claimed"))


def _back(form: dict[str, str], asset_id: int, done: str) -> str:
    return "/queue" if form.get("back") == "queue" else f"/assets/{asset_id}?done={done}"


# -- exports --------------------------------------------------------------------------------
@router.get("/assets/{asset_id}/decision-record.json")
def decision_record(asset_id: int, request: Request, who: Viewer) -> Response:
    """The asset's decision record: its verdict in force and, for each rule set, the
    decision in full (as `show --json`), with every ruling on it."""
    from policy_engine.pipeline.review import decision_summary
    from policy_engine.policy.evaluate import combine
    from policy_engine.store.review import Reviews

    store = resources(request).store()
    asset = _found(store, asset_id)
    current = sorted(store.current_decisions([asset_id]).values(), key=lambda d: d.ruleset_name)
    record = {
        "asset": {"id": asset_id, "path": asset.path, "content_sha256": asset.content_sha256},
        "verdict": combine([d.ruled() for d in current]) if current else None,
        "decisions": [decision_summary(store.decision(d.id)) for d in current],
        "proposals": [asdict(p) for p in Reviews(store).proposals(asset_ids=[asset_id],
                                                                  pending=False)],
    }  # fmt: skip
    body = json.dumps(record, indent=2, default=str, ensure_ascii=False)
    return Response(
        body, media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="asset-{asset_id}-decision.json"'},
    )  # fmt: skip


@router.get("/assets/{asset_id}/report.html")
def report_download(asset_id: int, request: Request, who: Viewer) -> Response:
    """The self-contained HTML report, as written to the reports folder, made now."""
    from policy_engine.reporting import build_asset_report, render_asset_report, report_name

    store = resources(request).store()
    asset = _found(store, asset_id)
    html = render_asset_report(build_asset_report(store, asset_id))
    name = report_name(asset.path, asset.content_sha256)
    return Response(
        html, media_type="text/html; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"',
                 # its own inline styles and pictures: the report's own policy, not the app's
                 "Content-Security-Policy": "default-src 'none'; img-src data:;"
                 " style-src 'unsafe-inline'; sandbox"},
    )  # fmt: skip


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _tag_list(text: str) -> list[str]:
    return list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))[:100]

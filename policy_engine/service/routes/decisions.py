"""One decision, its evidence pictures, and overruling it."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from policy_engine.accounts import OVERRULE
from policy_engine.errors import ConfigError
from policy_engine.service.deps import Reader, Reviewer, who, why_not_reveal
from policy_engine.service.problems import Problem
from policy_engine.service.resources import resources
from policy_engine.store.accounts import Account
from policy_engine.store.evidence import RevealedPictures

router = APIRouter(prefix="/api/v1", tags=["decisions"])
logger = logging.getLogger(__name__)

Tag = Annotated[str, Field(min_length=1, max_length=100)]


class OverrideRequest(BaseModel):
    """A reviewer's ruling: it changes only what it names (the level, the whole tag set,
    or tags added and removed) and settles the review."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored

    reason: str = Field(min_length=1, max_length=64, description="A configured reason code.")
    justification: str = Field(min_length=1, max_length=4000)
    schedule: str | None = Field(default=None, min_length=1, max_length=64)
    tags: list[Tag] | None = Field(default=None, max_length=100)
    add_tags: list[Tag] = Field(default_factory=list, max_length=100)
    remove_tags: list[Tag] = Field(default_factory=list, max_length=100)


@router.get("/decisions/{decision_id}")
def decision(decision_id: int, request: Request, caller: Reader) -> dict[str, Any]:
    """One decision: level, tags, review, earliest slots, the rule set (its text
    checked against its hash), the scan and model, every reason with its measured
    values and evidence frames (time, probability), and the rulings on it."""
    from policy_engine.pipeline.review import decision_summary

    found = resources(request).store().decision(decision_id)
    if found is None:
        raise Problem(404, "no-such-decision", f"no decision {decision_id}")
    summary = decision_summary(found)
    for reason in summary["reasons"]:  # each evidence frame's picture, blurred
        for item in reason["evidence"]:
            item["thumbnail"] = f"/api/v1/scans/{found.scan_id}/frames/{item['frame']}/thumbnail"
    return summary


@router.get(
    "/scans/{scan_id}/frames/{index}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def thumbnail(
    scan_id: int,
    index: Annotated[int, PathParam(ge=0)],
    request: Request,
    caller: Reader,
    unblurred: bool = False,
    revealed: bool = False,
) -> Response:
    """A sampled frame's picture, blurred: evidence that leaves the engine never shows
    explicit material as it is. `unblurred=true` is for roles that may overrule; the
    regions of a detector's hidden classes (nudity) stay pixelated. `revealed=true` shows
    them as they were, only in the app (a reviewer logged in there, never a token), only
    where the `reveal_hidden_evidence` setting kept them; each time is logged."""
    if unblurred and not caller.may(OVERRULE):
        raise Problem(403, "forbidden", f"{caller.role} may not see evidence unblurred")
    headers = {
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "same-origin",  # no other site may embed it
    }
    if revealed:
        data = _revealed(request, caller, scan_id, index)
    else:
        pictures = resources(request).store().thumbnails(scan_id, [index])
        if index not in pictures:
            raise Problem(404, "no-such-frame", f"scan {scan_id} has no picture for frame {index}")
        data = pictures[index] if unblurred else blurred(pictures[index])
    return Response(data, media_type="image/jpeg", headers=headers)


@router.post("/decisions/{decision_id}/overrides", status_code=201)
def overrule(
    decision_id: int,
    ruling: OverrideRequest,
    request: Request,
    response: Response,
    caller: Reviewer,
) -> dict[str, Any]:
    """Overrule a decision as the authenticated reviewer; answers with the verdict
    before and after. The asset's report and its index are rewritten. With the
    `four_eyes` setting a change of level answers 202 with a proposal that a second
    reviewer confirms (`POST /api/v1/proposals/{id}/confirm`) before it takes effect."""
    from dataclasses import asdict

    from policy_engine.pipeline.review import ProposalResult, rule_on

    engine = resources(request)
    store = engine.store()
    if store.decision(decision_id) is None:
        raise Problem(404, "no-such-decision", f"no decision {decision_id}")
    result = rule_on(
        store,
        decision_id,
        four_eyes=engine.settings.four_eyes,
        reviewer=caller.name,
        justification=ruling.justification,
        reports_dir=Path(engine.settings.reports),
        schedule=ruling.schedule,
        tags=ruling.tags,
        add_tags=ruling.add_tags,
        remove_tags=ruling.remove_tags,
        actor=who(caller),
        via="api",
        reason_code=ruling.reason,
        allowed_reasons=engine.settings.override_reasons,
    )
    if isinstance(result, ProposalResult):
        response.status_code = 202
        return {
            "proposal_id": result.proposal_id,
            "status": "awaiting-confirmation",
            "decision_id": result.decision_id,
            "asset_id": result.asset_id,
            "before": asdict(result.before),
            "proposed": asdict(result.proposed),
        }
    return {
        "override_id": result.override_id,
        "decision_id": result.decision_id,
        "asset_id": result.asset_id,
        "before": asdict(result.before),
        "after": asdict(result.after),
        "report_problems": result.report_problems,
    }


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    justification: str | None = Field(default=None, max_length=4000)


@router.post("/proposals/{proposal_id}/{answer}")
def answer_proposal(
    proposal_id: int,
    answer: Annotated[str, PathParam(pattern="^(confirm|reject)$")],
    body: Answer,
    request: Request,
    caller: Reviewer,
) -> dict[str, Any]:
    """Four eyes: a second reviewer (not the proposal's author: 403) confirms a proposed
    change of level, which then takes effect, or rejects it; 409 when it was answered
    already or its decision has been replaced."""
    from dataclasses import asdict

    from policy_engine.pipeline.review import SecondReviewerNeeded, Superseded
    from policy_engine.pipeline.review import answer_proposal as answer_it
    from policy_engine.store.review import AlreadyAnswered

    engine = resources(request)
    try:
        result = answer_it(
            engine.store(), proposal_id, confirm=answer == "confirm", reviewer=caller.name,
            actor=who(caller), via="api", reports_dir=Path(engine.settings.reports),
            justification=body.justification,
        )  # fmt: skip
    except SecondReviewerNeeded as exc:
        raise Problem(403, "second-reviewer-needed", str(exc)) from None
    except (AlreadyAnswered, Superseded) as exc:
        raise Problem(409, "conflict", str(exc)) from None
    except ConfigError as exc:
        raise Problem(404, "no-such-proposal", str(exc)) from None
    if result is None:
        return {"proposal_id": proposal_id, "status": "rejected"}
    return {
        "proposal_id": proposal_id,
        "status": "confirmed",
        "override_id": result.override_id,
        "before": asdict(result.before),
        "after": asdict(result.after),
    }


def _revealed(request: Request, caller: Account, scan_id: int, index: int) -> bytes:
    engine = resources(request)
    refused = why_not_reveal(caller, engine.settings)
    if refused is not None:
        raise Problem(403, "forbidden", refused)
    # a browser says where a request comes from: a picture embedded by another site (an
    # <img> on its page, the reviewer's cookies riding along) is refused
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise Problem(
            403, "forbidden", f"hidden regions are shown only on the app's own pages ({site})"
        )
    pictures = RevealedPictures(engine.store())
    data = pictures.picture(scan_id, index)
    if data is None:
        raise Problem(
            404, "no-such-picture",
            f"scan {scan_id} kept no picture of frame {index} with hidden regions shown",
        )  # fmt: skip
    pictures.record_view(caller.name, scan_id, index)  # the audit log's "reveal" events
    logger.info(
        "evidence shown with its hidden regions: scan %s frame %s to %s",
        scan_id, index, caller.name,
        extra={"scan_id": scan_id, "frame": index, "user": caller.name},
    )  # fmt: skip
    return data


def blurred(jpeg: bytes) -> bytes:
    """The picture too blurred to show what it shows, but enough to place the scene."""
    from PIL import Image, ImageFilter

    with Image.open(io.BytesIO(jpeg)) as picture:
        radius = max(picture.size) / 24
        out = io.BytesIO()
        picture.convert("RGB").filter(ImageFilter.GaussianBlur(radius)).save(out, "JPEG")
    return out.getvalue()

"""One decision, its evidence pictures, and overruling it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from policy_engine.accounts import OVERRULE
from policy_engine.service.deps import Reader, Reviewer, who
from policy_engine.service.problems import Problem
from policy_engine.service.resources import resources

router = APIRouter(prefix="/api/v1", tags=["decisions"])

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
) -> Response:
    """A sampled frame's picture, blurred: evidence that leaves the engine never shows
    explicit material as it is. `unblurred=true` is for roles that may overrule."""
    if unblurred and not caller.may(OVERRULE):
        raise Problem(403, "forbidden", f"{caller.role} may not see evidence unblurred")
    pictures = resources(request).store().thumbnails(scan_id, [index])
    if index not in pictures:
        raise Problem(404, "no-such-frame", f"scan {scan_id} has no picture for frame {index}")
    data = pictures[index] if unblurred else blurred(pictures[index])
    return Response(
        data, media_type="image/jpeg",
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )  # fmt: skip


@router.post("/decisions/{decision_id}/overrides", status_code=201)
def overrule(
    decision_id: int, ruling: OverrideRequest, request: Request, caller: Reviewer
) -> dict[str, Any]:
    """Overrule a decision as the authenticated reviewer; answers with the verdict
    before and after. The asset's report and its index are rewritten."""
    from dataclasses import asdict

    from policy_engine.pipeline.review import record_override

    engine = resources(request)
    store = engine.store()
    if store.decision(decision_id) is None:
        raise Problem(404, "no-such-decision", f"no decision {decision_id}")
    result = record_override(
        store,
        decision_id,
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
    return {
        "override_id": result.override_id,
        "decision_id": result.decision_id,
        "asset_id": result.asset_id,
        "before": asdict(result.before),
        "after": asdict(result.after),
        "report_problems": result.report_problems,
    }


def blurred(jpeg: bytes) -> bytes:
    """The picture too blurred to show what it shows, but enough to place the scene."""
    from PIL import Image, ImageFilter

    with Image.open(io.BytesIO(jpeg)) as picture:
        radius = max(picture.size) / 24
        out = io.BytesIO()
        picture.convert("RGB").filter(ImageFilter.GaussianBlur(radius)).save(out, "JPEG")
    return out.getvalue()

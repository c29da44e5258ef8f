"""The catalogue: every asset with its verdict in force, its earliest slot per territory,
tags, review state and last scan; filters and sorting live in the URL (a filtered view
can be bookmarked and sent), and pages follow a cursor (an asset id), so the thousandth
page costs what the first does."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from policy_engine.policy.model import DEFAULT_LEVELS
from policy_engine.service.pages.common import PageText, Viewer, render, utc_day
from policy_engine.service.resources import resources

router = APIRouter(include_in_schema=False)
Text = PageText
SORTS = ("newest", "oldest")


@router.get("/")
def catalogue(
    request: Request,
    who: Viewer,
    name: Text = "",
    verdict: Text = "",
    review: Text = "",
    tag: Text = "",
    ruleset: Text = "",
    rule: Text = "",
    territory: Text = "",
    airs_at: Text = "",
    scanned_since: Text = "",
    scanned_until: Text = "",
    sort: Text = "newest",
    cursor: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> HTMLResponse:
    from policy_engine.pipeline.catalogue import AssetFilter, list_assets
    from policy_engine.store.review import Reviews

    given = {
        "name": name, "verdict": verdict, "review": review, "tag": tag, "ruleset": ruleset,
        "rule": rule, "territory": territory, "airs_at": airs_at,
        "scanned_since": scanned_since, "scanned_until": scanned_until,
    }  # fmt: skip
    query = {k: v for k, v in given.items() if v}  # what the URL keeps
    problems: list[str] = []
    wanted = AssetFilter(
        verdict=verdict or None,
        review={"pending": True, "settled": False}.get(review),
        tag=tag or None, ruleset=ruleset or None, rule=rule or None, name=name or None,
        scanned_since=_day(scanned_since, "Scanned from", problems),
        scanned_until=_day(scanned_until, "Scanned before", problems),
        territory=territory or None if airs_at else None,
        airs_at=_moment(airs_at, problems) if territory else None,
    )  # fmt: skip
    if bool(territory) != bool(airs_at):
        problems.append("To see what may air, give both a territory and a time.")
    sort = sort if sort in SORTS else "newest"
    store = resources(request).store()
    page = list_assets(store, wanted, after=cursor, limit=limit, newest_first=sort == "newest")
    ids = [item["id"] for item in page.items]
    reviews = Reviews(store)
    kept = {**query, "sort": sort, **({"limit": str(limit)} if limit != 50 else {})}
    return render(
        request, "catalogue.html", who,
        q={**given, "sort": sort}, items=page.items, levels=DEFAULT_LEVELS,
        problems=problems, claims=reviews.claims(ids),
        proposed={p.asset_id for p in reviews.proposals(asset_ids=ids)},
        next_url=f"/?{urlencode({**kept, 'cursor': page.cursor})}" if page.cursor else None,
        first_url=f"/?{urlencode(kept)}" if cursor else None,
        searched_on=page.cursor is not None and len(page.items) < limit,
    )  # fmt: skip


def _day(text: str, label: str, problems: list[str]) -> datetime | None:
    if not text:
        return None
    try:
        return utc_day(text)
    except ValueError:
        problems.append(f"{label}: {text!r} is not a date (YYYY-MM-DD); ignored.")
        return None


def _moment(text: str, problems: list[str]) -> Any:
    try:
        return datetime.fromisoformat(text)  # no zone: local time in the territory
    except ValueError:
        problems.append(f"{text!r} is not a time (YYYY-MM-DDTHH:MM); ignored.")
        return None

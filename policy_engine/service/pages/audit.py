"""The audit log: every override, four-eyes proposal and confirmation, rule-set version
coming into force, and login, filterable, newest first, and exportable as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from policy_engine.service.deps import PRINTABLE
from policy_engine.service.pages.common import PageError, Viewer, render
from policy_engine.service.resources import resources

router = APIRouter(include_in_schema=False)
Text = Annotated[str, Query(max_length=200, pattern=PRINTABLE)]
PAGE = 200
CSV_LIMIT = 100_000


def _filters(kind: str, actor: str, asset: str, since: str, until: str) -> dict[str, Any]:
    from policy_engine.store.review import AUDIT_KINDS

    if kind and kind not in AUDIT_KINDS:
        raise PageError(422, "Unknown kind", f"kind is one of {', '.join(AUDIT_KINDS)}")
    if asset and not asset.isdigit():
        raise PageError(422, "Not an asset", "asset is an asset's number")
    return {
        "kinds": [kind] if kind else list(AUDIT_KINDS),
        "actor": actor or None,
        "asset_id": int(asset) if asset else None,
        "since": _moment(since),
        "until": _moment(until),
    }


def _moment(text: str) -> datetime | None:
    if not text:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PageError(422, "Not a time", f"{text!r} is not a date (YYYY-MM-DD)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@router.get("/audit")
def audit(
    request: Request, who: Viewer, kind: Text = "", actor: Text = "", asset: Text = "",
    since: Text = "", until: Text = "",
) -> HTMLResponse:  # fmt: skip
    from policy_engine.store.review import AUDIT_KINDS, Reviews

    given = {"kind": kind, "actor": actor, "asset": asset, "since": since, "until": until}
    events = Reviews(resources(request).store()).audit_events(
        **_filters(kind, actor, asset, since, until), limit=PAGE
    )
    kept = {k: v for k, v in given.items() if v and k != "until"}
    older = None
    if len(events) == PAGE:
        older = f"/audit?{urlencode({**kept, 'until': events[-1].at.isoformat()})}"
    return render(
        request, "audit.html", who, events=events, q=given, kinds=AUDIT_KINDS, older=older,
        csv_url=f"/audit.csv?{urlencode({k: v for k, v in given.items() if v})}",
    )  # fmt: skip


@router.get("/audit.csv")
def audit_csv(
    request: Request, who: Viewer, kind: Text = "", actor: Text = "", asset: Text = "",
    since: Text = "", until: Text = "",
) -> StreamingResponse:  # fmt: skip
    from policy_engine.store.review import Reviews

    events = Reviews(resources(request).store()).audit_events(
        **_filters(kind, actor, asset, since, until), limit=CSV_LIMIT
    )
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        _csv_lines(events), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.csv"'},
    )  # fmt: skip


def _csv_lines(events: list[Any]) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["at", "kind", "actor", "via", "asset_id", "decision_id", "what"])
    for e in events:
        writer.writerow([e.at.isoformat(), e.kind, *(_cell(v) for v in (
            e.actor, e.via or "", e.asset_id or "", e.decision_id or "", e.summary))])  # fmt: skip
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    yield out.getvalue()


def _cell(value: Any) -> Any:
    """A spreadsheet must not run what a reviewer typed: text that starts like a formula
    is quoted (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value

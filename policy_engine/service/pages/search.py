"""Search the archive from the app: a description, a picture (or both), or "more like
this" from any hit, over every asset's current scan, as frames or as scenes. The page is
a skin over `pipeline.search` like the API's route; a query lives in the URL (a search
can be bookmarked and sent) except a picture, which is posted as a form upload.

Searching changes nothing, so its forms carry no CSRF token: a person signed on by the
proxy can search as well as one with a session."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from policy_engine.errors import ConfigError, ModelError, StoreError
from policy_engine.policy.model import DEFAULT_LEVELS
from policy_engine.service.pages.common import PageError, PageText, Viewer, render, utc_day
from policy_engine.service.resources import resources

router = APIRouter(include_in_schema=False)
Text = PageText
KINDS = ("frames", "scenes")
# a stored frame: ASCII digits only (str.isdigit takes "²", which int() refuses) and
# numbers every database's integer columns hold
LIKE = re.compile(r"([0-9]{1,15}):([0-9]{1,9})")
PAGE_LIMIT = 100  # hits a page shows at most (the API allows more)
MAX_PICTURE_BYTES = 10 * 1024 * 1024  # as the API's /search/image (BodyCap: the form's)


@router.get("/search")
def search_page(
    request: Request,
    who: Viewer,
    q: Text = "",
    kind: Text = "frames",
    verdict: Text = "",
    since: Text = "",
    like: Text = "",
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT)] = 20,
) -> HTMLResponse:
    """The form, and the hits for a text (`q`) or a stored frame (`like=SCAN:FRAME`)."""
    fields = {"q": q, "kind": kind, "verdict": verdict, "since": since, "like": like, "weight": ""}
    if not (q.strip() or like):
        return _page(request, who, fields, limit)  # the empty form
    return _answer(request, who, fields, limit, picture=None)


@router.post("/search")
async def search_by_picture(request: Request, who: Viewer) -> HTMLResponse:
    """The hits for an uploaded picture, alone or with a text (its share: `weight`)."""
    if who.proxied and not who.same_origin:
        # it changes nothing, but loads a model: not for any site's form to set off with
        # the proxy's sign-on (a session's cookie is SameSite=Strict: it never rides along)
        raise PageError(403, "Not sent from this site", "search from this site's own page")
    fields, picture, limit = await _upload(request)
    if picture is None:
        problem = "Choose a picture to search with (JPEG, PNG, …)."
        return _page(request, who, fields, limit, problems=[problem], status=422)
    return await run_in_threadpool(_answer, request, who, fields, limit, picture)


def _answer(
    request: Request, who: Any, fields: dict[str, str], limit: int, picture: bytes | None
) -> HTMLResponse:
    from policy_engine.pipeline.search import SearchRequest, search

    problems: list[str] = []
    wanted = _request_fields(fields, problems)
    if problems:
        return _page(request, who, fields, limit, problems=problems, status=422)
    engine = resources(request)
    try:
        result = search(
            engine.store(), engine.models(), engine.settings,
            SearchRequest(image=picture, limit=limit, **wanted),
        )  # fmt: skip
    except ConfigError as exc:  # what was asked cannot be answered: say why, keep the form
        return _page(request, who, fields, limit, problems=[_sentence(exc)], status=422)
    except (ModelError, StoreError) as exc:
        raise PageError(503, "Search is unavailable", str(exc)) from None
    return _page(request, who, fields, limit, result=result, picture=picture is not None)


def _request_fields(fields: dict[str, str], problems: list[str]) -> dict[str, Any]:
    """The form's fields as SearchRequest's; what cannot be read goes to `problems`."""
    wanted: dict[str, Any] = {"kind": fields["kind"] if fields["kind"] in KINDS else "frames"}
    if fields.get("like"):
        found = LIKE.fullmatch(fields["like"])
        if found is None:
            problems.append(f"like={fields['like']!r} is not SCAN:FRAME (two numbers).")
        else:
            wanted["like"] = (int(found[1]), int(found[2]))
    elif fields["q"].strip():
        wanted["text"] = fields["q"]
    if fields.get("weight"):
        try:
            wanted["weight"] = float(fields["weight"])
        except ValueError:
            problems.append(f"The text's share {fields['weight']!r} is not a number.")
    if fields["verdict"]:
        wanted["verdict"] = fields["verdict"]
    if fields["since"]:
        try:
            wanted["since"] = utc_day(fields["since"])
        except ValueError:
            problems.append(f"Scanned from: {fields['since']!r} is not a date (YYYY-MM-DD).")
    return wanted


async def _upload(request: Request) -> tuple[dict[str, str], bytes | None, int]:
    """The picture form: its fields, the picture's bytes (None when none was chosen), and
    the limit. A body that is not a form, or a picture over the cap, is a page error."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "multipart/form-data":
        raise PageError(415, "Unsupported form", "send the picture with the page's form")
    try:
        form = await request.form(max_files=1, max_fields=10, max_part_size=64 * 1024)
    except HTTPException as exc:  # Starlette's word for a malformed or oversized form
        raise PageError(400, "The form could not be read", str(exc.detail)) from None
    try:
        fields = {
            name: str(form.get(name) or "")[:500]
            for name in ("q", "kind", "verdict", "since", "weight")
        }
        fields["like"] = ""
        try:
            limit = min(max(int(str(form.get("limit") or 20)), 1), PAGE_LIMIT)
        except ValueError:
            limit = 20
        upload = form.get("picture")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return fields, None, limit
        data = await upload.read(MAX_PICTURE_BYTES + 1)
        if len(data) > MAX_PICTURE_BYTES:
            raise PageError(413, "The picture is too large", "a picture may be at most 10 MiB")
        return fields, data or None, limit
    finally:
        await form.close()


def _page(
    request: Request,
    who: Any,
    fields: dict[str, str],
    limit: int,
    *,
    result: Any = None,
    picture: bool = False,
    problems: list[str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    kept = {k: v for k, v in fields.items() if v and k in ("kind", "verdict", "since")}
    return render(
        request, "search.html", who, status, q=fields, limit=limit, result=result,
        picture=picture, problems=problems or [], levels=DEFAULT_LEVELS, kinds=KINDS,
        similar=lambda hit: "/search?" + urlencode(
            {**kept, "like": f"{hit.scan_id}:{hit.frame}", "limit": limit}
        ),
    )  # fmt: skip


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")

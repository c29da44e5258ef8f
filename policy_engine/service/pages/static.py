"""The app's stylesheets and script, served by the app itself (no CDN): the report's
stylesheet is the very file the static reports inline."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources as package_files

from fastapi import APIRouter, Request, Response

from policy_engine.service.pages.common import PageError

router = APIRouter(include_in_schema=False)

FILES = {
    "app.css": ("policy_engine.service", "static/app.css", "text/css"),
    "app.js": ("policy_engine.service", "static/app.js", "text/javascript"),
    "report.css": ("policy_engine.reporting", "templates/report.css", "text/css"),
}


@cache
def _read(name: str) -> tuple[bytes, str]:
    package, path, _ = FILES[name]
    data = package_files.files(package).joinpath(path).read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:16] + '"'


@router.get("/static/{name}")
def static_file(name: str, request: Request) -> Response:
    if name not in FILES:
        raise PageError(404, "Not found", f"no file {name!r} here")
    data, etag = _read(name)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}  # revalidated: cheap with ETag
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=FILES[name][2] + "; charset=utf-8", headers=headers)

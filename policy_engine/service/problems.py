"""Errors as RFC 9457 problem documents (``application/problem+json``): type, title,
status, detail, with the same wording as the command line, and the field at fault for
bad input."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from policy_engine.errors import ConfigError, ModelError, PolicyEngineError, StoreError
from policy_engine.escaping import visible_controls

MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """An error to answer with: ``kind`` names it (its ``type`` is ``urn:policy-engine:
    problem:<kind>``), ``detail`` says what went wrong and what to do."""

    def __init__(
        self, status: int, kind: str, detail: str, headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:  # fmt: skip
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail
        self.headers = headers or {}
        self.extra = extra


def problem_response(
    status: int, kind: str | None, detail: str, headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:  # fmt: skip
    body = {
        "type": f"urn:policy-engine:problem:{kind}" if kind else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": visible_controls(detail),
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


# What an engine error means over HTTP (the CLI's exit codes, as statuses)
_STATUS_OF = ((ConfigError, 422, "invalid"), (ModelError, 503, "model-unavailable"),
              (StoreError, 503, "database-unavailable"))  # fmt: skip


MAX_BODY_BYTES = 64 * 1024  # a JSON request body; uploads have their own cap
UPLOAD_PATHS = frozenset({"/api/v1/analyses/upload", "/api/v1/search/image"})  # own caps
LARGER_BODIES = {
    "/rulesets/dry-run": 512 * 1024,  # a whole rule file, urlencoded (up to 3x its size)
    "/search": 10 * 1024 * 1024 + 64 * 1024,  # the search page's picture and a few fields
}


class BodyCap:
    """Refuse a request body over ``MAX_BODY_BYTES`` (or of unknown size) before reading
    it; a plain ASGI middleware, so a request it lets through costs a header lookup."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope) if scope["type"] == "http" else None
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)

    @staticmethod
    def _refusal(scope: Scope) -> JSONResponse | None:
        request = HTTPConnection(scope)
        if request.url.path in UPLOAD_PATHS:  # streamed to disk under their own cap
            return None
        declared = request.headers.get("content-length")
        cap = LARGER_BODIES.get(request.url.path, MAX_BODY_BYTES)
        if declared is not None and (not declared.isdigit() or int(declared) > cap):
            return problem_response(413, "too-large", f"a request body may be at most {cap} bytes")
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        if declared is None and chunked:  # its size cannot be known before reading it all
            return problem_response(411, "length-required", "send a Content-Length")
        return None


def install(app: FastAPI) -> None:
    app.add_middleware(BodyCap)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.kind, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(PolicyEngineError)
    async def _engine(request: Request, exc: PolicyEngineError) -> JSONResponse:
        status, kind = next(((s, k) for t, s, k in _STATUS_OF if isinstance(exc, t)), (500, None))
        return problem_response(status, kind, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p not in ("body", "query", "path")),
             "in": str(e["loc"][0]) if e["loc"] else "", "message": e["msg"]}
            for e in exc.errors()
        ]  # fmt: skip
        first = errors[0] if errors else {"field": "", "message": "invalid request"}
        detail = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
        return problem_response(422, "invalid", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return problem_response(exc.status_code, None, detail, dict(exc.headers or {}))

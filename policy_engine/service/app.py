"""The FastAPI application: health, readiness, the JSON API under ``/api/v1``, and the
review app's HTML pages (``pages/``) at ``/``.

Endpoints (``routes/``, one module per resource) are plain functions that FastAPI runs in
its thread pool, over the same store and pipeline functions the CLI calls; none speaks
SQL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from policy_engine import __version__
from policy_engine.config import Settings, load_settings
from policy_engine.service import problems
from policy_engine.service.pages import PAGES
from policy_engine.service.pages import common as page_errors
from policy_engine.service.resources import Resources
from policy_engine.service.routes import (
    accounts,
    analyses,
    assets,
    decisions,
    health,
    rulesets,
    search,
    session,
)

ROUTERS = (health, session, assets, decisions, rulesets, accounts, analyses, search)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.engine.close()  # graceful shutdown: connections returned

    app = FastAPI(
        title="policy_engine",
        version=__version__,
        description="Broadcast-compliance decisions: assets, verdicts, questions.",
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.engine = Resources(settings)
    problems.install(app)
    page_errors.install(app)
    page_errors.security_headers(app)
    if settings.allowed_hosts:  # a public bind: answer only for the names it is served as
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))
    _access_log(app)  # added last: the outermost, so refusals by the others are logged too
    for module in (*ROUTERS, *PAGES):
        app.include_router(module.router)
    return app


def app_from_environment() -> FastAPI:
    """For ``uvicorn --factory`` (in each worker process): settings from the environment
    and the settings file, logs in the engine's format."""
    from policy_engine import logsetup

    settings = load_settings()
    logsetup.configure(settings.log_format, also=("uvicorn", "uvicorn.error"))
    return create_app(settings)


access = logging.getLogger("policy_engine.access")


def _access_log(app: FastAPI) -> None:
    """One record per request, in the same format as every other log of the engine
    (JSON lines for a log shipper): method, path, status, duration, client, caller."""
    app.add_middleware(AccessLog)


class AccessLog:
    """The access log as a plain ASGI middleware: it only watches the status go by (an
    ``@app.middleware("http")`` one runs every request through a task and streams)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope.setdefault("state", {})  # shared with the request: the caller is noted there
        status = 500

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            request = HTTPConnection(scope)
            account = scope["state"].get("account")
            path = request.url.path
            access.info(
                "%s %s %d",
                scope["method"],
                path,
                status,
                extra={
                    "method": scope["method"],
                    "path": path,
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                    "client": request.client.host if request.client else None,
                    "caller": f"{account.kind}:{account.name}" if account else None,
                },
            )

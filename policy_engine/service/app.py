"""The FastAPI application: health, readiness, and the JSON API under ``/api/v1``.

Endpoints are plain functions (FastAPI runs them in its thread pool) over the same store
and pipeline functions the CLI calls; none speaks SQL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi import Path as Path_
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from policy_engine import __version__
from policy_engine.accounts import ANALYSE, EDIT_RULES, MANAGE_ACCOUNTS, OVERRULE, READ
from policy_engine.analysis.ask import DEFAULT_THRESHOLD
from policy_engine.config import Settings, load_settings
from policy_engine.errors import StoreError
from policy_engine.service import problems
from policy_engine.service.auth import SESSION_COOKIE, caller, require
from policy_engine.service.problems import Problem
from policy_engine.store.accounts import Account, Accounts


class Resources:
    """What requests share: the store (opened on first use, so the service starts, and
    says it is not ready, while the database is down), accounts and the model."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._store: Any = None
        self._models: Any = None

    def store(self) -> Any:
        with self._lock:
            if self._store is None:
                from policy_engine.store import Store

                self._store = Store.open(self.settings.db)
            return self._store

    def accounts(self) -> Accounts:
        return Accounts(self.store())

    def models(self) -> Any:
        with self._lock:
            if self._models is None:
                from policy_engine.models.provider import ModelProvider

                self._models = ModelProvider(
                    self.settings.model, device=self.settings.device, dtype=self.settings.dtype
                )
            return self._models

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


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
    if settings.allowed_hosts:  # a public bind: answer only for the names it is served as
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))
    _access_log(app)  # added last: the outermost, so refusals by the others are logged too
    _health(app)
    _sessions(app)
    _api(app)
    _jobs(app)
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

    @app.middleware("http")
    async def log_request(request: Request, call_next: Any) -> Any:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            account = getattr(request.state, "account", None)
            access.info(
                "%s %s %d",
                request.method,
                request.url.path,
                status,
                extra={
                    "method": request.method,
                    "path": request.url.path,
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                    "client": request.client.host if request.client else None,
                    "caller": f"{account.kind}:{account.name}" if account else None,
                },
            )


def _utc(moment: datetime | None) -> datetime | None:
    """A time from a query: one without a zone is taken as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _resources(request: Request) -> Resources:
    return request.app.state.engine  # type: ignore[no-any-return]


def _health(app: FastAPI) -> None:
    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process answers (for a liveness probe)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz(request: Request) -> dict[str, str]:
        """The database is reachable and its schema is this software's (for a load
        balancer): 503 otherwise, saying why."""
        from policy_engine.store.database import current_revision, head_revision

        try:
            store = _resources(request).store()
            current, head = current_revision(store.engine), head_revision()
        except StoreError as exc:
            raise Problem(503, "not-ready", str(exc)) from None
        if current != head:
            raise Problem(503, "not-ready", f"database schema {current}, this software {head}")
        return {"status": "ready", "schema": current}


# Module level: FastAPI resolves these (string) annotations in the module's namespace.
Reader = Annotated[Account, Depends(require(READ))]
Admin = Annotated[Account, Depends(require(MANAGE_ACCOUNTS))]
Reviewer = Annotated[Account, Depends(require(OVERRULE))]
Editor = Annotated[Account, Depends(require(EDIT_RULES))]
Analyst = Annotated[Account, Depends(require(ANALYSE))]
# Text from a query: no control characters (a NUL would end a LIKE pattern early in
# SQLite and is refused by PostgreSQL; none belongs in a name, tag or prompt).
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"

IdempotencyKey = Annotated[
    str | None,
    Header(max_length=200, description="The same key again returns the first job."),
]


class AnalysisRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=4096, description="A file on the server.")
    webhook_url: str | None = Field(
        default=None, max_length=2000, description="POSTed (signed) when the job finishes."
    )


Tag = Annotated[str, Field(min_length=1, max_length=100)]


class DiffRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=60_000, description="An edited rule file (YAML).")
    since: datetime | None = Field(default=None, description="Only scans finished since.")


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


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


def _sessions(app: FastAPI) -> None:
    @app.post("/api/v1/session", tags=["session"])
    def log_in(login: LoginRequest, request: Request, response: Response) -> dict[str, Any]:
        """Log in: sets the session cookie and answers with the CSRF token to send in
        X-CSRF-Token with every change. 401 for a wrong name or password (the same for
        both); 429 with Retry-After once too many attempts failed."""
        from policy_engine.store.accounts import TooManyAttempts

        resources = _resources(request)
        address = request.client.host if request.client else "unknown"
        try:
            session = resources.accounts().login(login.name, login.password, address)
        except TooManyAttempts as exc:
            raise Problem(
                429, "too-many-attempts", str(exc), {"Retry-After": str(exc.retry_after)}
            ) from None
        if session is None:
            raise Problem(401, "unauthenticated", "wrong name or password")
        response.set_cookie(
            SESSION_COOKIE, session.secret, httponly=True, samesite="strict", path="/",
            secure=resources.settings.secure_cookies,
            max_age=int((session.expires_at - datetime.now(UTC)).total_seconds()),
        )  # fmt: skip
        return {
            "name": session.account.name,
            "role": session.account.role,
            "csrf_token": session.csrf_token,
            "expires_at": session.expires_at,
        }

    @app.get("/api/v1/session", tags=["session"])
    def who_am_i(account: Annotated[Account, Depends(caller)]) -> dict[str, str]:
        return {"kind": account.kind, "name": account.name, "role": account.role}

    @app.delete("/api/v1/session", tags=["session"], status_code=204)
    def log_out(
        request: Request, response: Response, account: Annotated[Account, Depends(caller)]
    ) -> None:
        """End the session on the server (the cookie alone is worthless afterwards)."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie is not None:
            _resources(request).accounts().end_session(cookie)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")


def _api(app: FastAPI) -> None:
    @app.get("/api/v1/assets", tags=["assets"])
    def assets(
        request: Request,
        caller: Reader,
        verdict: Annotated[str | None, Query(max_length=64, pattern=PRINTABLE)] = None,
        review: Annotated[bool | None, Query(description="Review pending.")] = None,
        tag: Annotated[str | None, Query(max_length=100, pattern=PRINTABLE)] = None,
        ruleset: Annotated[str | None, Query(max_length=200, pattern=PRINTABLE)] = None,
        rule: Annotated[
            str | None, Query(max_length=200, pattern=PRINTABLE, description="A rule that fired.")
        ] = None,
        name: Annotated[
            str | None, Query(max_length=500, pattern=PRINTABLE, description="Text in a path.")
        ] = None,
        scanned_since: datetime | None = None,
        scanned_until: datetime | None = None,
        territory: Annotated[
            str | None, Query(max_length=64, pattern=PRINTABLE, description="e.g. uk")
        ] = None,
        airs_at: Annotated[
            datetime | None,
            Query(description="With territory: may air then (no zone: the territory's)."),
        ] = None,
        cursor: Annotated[int, Query(ge=0, description="`next_cursor` of the page before.")] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """The catalogue: assets with their verdict in force, filtered, by pages. Follow
        `next_cursor` until it is null (a page may hold fewer items than `limit`)."""
        from policy_engine.pipeline.catalogue import AssetFilter, list_assets

        wanted = AssetFilter(
            verdict=verdict, review=review, tag=tag, ruleset=ruleset, rule=rule, name=name,
            scanned_since=_utc(scanned_since), scanned_until=_utc(scanned_until),
            territory=territory, airs_at=airs_at,
        )  # fmt: skip
        if (territory is None) != (airs_at is None):
            raise Problem(422, "invalid", "territory and airs_at go together",
                          errors=[{"field": "airs_at" if airs_at is None else "territory",
                                   "message": "give both or neither"}])  # fmt: skip
        page = list_assets(_resources(request).store(), wanted, after=cursor, limit=limit)
        return {"items": page.items, "next_cursor": page.cursor}

    @app.get("/api/v1/assets/{asset_id}", tags=["assets"])
    def asset(asset_id: int, request: Request, caller: Reader) -> dict[str, Any]:
        """One asset: where it was seen, its verdict in force, each rule set's current
        decision (rules fired, rulings with who made them), its scans and its report."""
        from dataclasses import asdict

        from policy_engine.policy.evaluate import combine

        store = _resources(request).store()
        found = store.asset(asset_id)
        if found is None:
            raise Problem(404, "no-such-asset", f"no asset {asset_id}")
        current = store.current_decisions([asset_id])
        _, scans, _ = store.asset_history(asset_id)
        reports = store.reports(asset_id)
        rulings = {name: d.ruled() for (_, name), d in current.items()}
        return {
            "id": asset_id,
            "path": found.path,
            "content_sha256": found.content_sha256,
            "verdict": combine(list(rulings.values())) if rulings else None,
            "decisions": [
                {"id": d.id, "ruleset": name, "ruleset_version": d.ruleset_version,
                 "schedule": rulings[name].schedule, "tags": list(rulings[name].tags),
                 "review": rulings[name].review, "fired": list(d.fired),
                 "overrides": [asdict(o) for o in d.overrides],
                 "url": f"/api/v1/decisions/{d.id}"}
                for (_, name), d in sorted(current.items())
            ],
            "scans": [
                {"id": sc.id, "status": sc.status, "finished_at": sc.finished_at,
                 "model": sc.model_name, "weights_sha256": sc.weights_sha256,
                 "error": sc.error}
                for sc in scans
            ],
            "report": {"path": reports[-1].path, "sha256": reports[-1].sha256}
            if reports else None,
        }  # fmt: skip

    @app.get("/api/v1/assets/{asset_id}/ask", tags=["assets"])
    def ask(
        asset_id: int,
        request: Request,
        caller: Reader,
        q: Annotated[
            str,
            Query(min_length=1, max_length=500, pattern=PRINTABLE, description="What to look for."),
        ],
        threshold: Annotated[float, Query(gt=0.0, lt=1.0)] = DEFAULT_THRESHOLD,
    ) -> dict[str, Any]:
        """Does the asset show ``q``, when first, for how long: from stored frame
        embeddings with the text model alone (no video is opened)."""
        from policy_engine.pipeline.ask import ask as ask_store

        resources = _resources(request)
        store = resources.store()
        if store.asset(asset_id) is None:
            raise Problem(404, "no-such-asset", f"no asset {asset_id}")
        result = ask_store(store, resources.models(), asset_id, q, threshold=threshold)
        return {
            "asset_id": result.asset_id,
            "scan_id": result.scan_id,
            "model": result.model,
            "weights_sha256": result.weights_sha256,
            "other_weights": list(result.other_weights),
            **result.answer.to_dict(),
        }

    @app.get("/api/v1/decisions/{decision_id}", tags=["decisions"])
    def decision(decision_id: int, request: Request, caller: Reader) -> dict[str, Any]:
        """One decision: level, tags, review, earliest slots, the rule set (its text
        checked against its hash), the scan and model, every reason with its measured
        values and evidence frames (time, probability), and the rulings on it."""
        from policy_engine.pipeline.review import decision_summary

        found = _resources(request).store().decision(decision_id)
        if found is None:
            raise Problem(404, "no-such-decision", f"no decision {decision_id}")
        summary = decision_summary(found)
        for reason in summary["reasons"]:  # each evidence frame's picture, blurred
            for item in reason["evidence"]:
                item["thumbnail"] = (
                    f"/api/v1/scans/{found.scan_id}/frames/{item['frame']}/thumbnail"
                )
        return summary

    @app.get(
        "/api/v1/scans/{scan_id}/frames/{index}/thumbnail",
        tags=["decisions"],
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    def thumbnail(
        scan_id: int,
        index: Annotated[int, Path_(ge=0)],
        request: Request,
        caller: Reader,
        unblurred: bool = False,
    ) -> Response:
        """A sampled frame's picture, blurred: evidence that leaves the engine never shows
        explicit material as it is. `unblurred=true` is for roles that may overrule."""
        if unblurred and not caller.may(OVERRULE):
            raise Problem(403, "forbidden", f"{caller.role} may not see evidence unblurred")
        pictures = _resources(request).store().thumbnails(scan_id, [index])
        if index not in pictures:
            raise Problem(404, "no-such-frame", f"scan {scan_id} has no picture for frame {index}")
        data = pictures[index] if unblurred else _blurred(pictures[index])
        return Response(
            data, media_type="image/jpeg",
            headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
        )  # fmt: skip

    @app.post("/api/v1/decisions/{decision_id}/overrides", tags=["decisions"], status_code=201)
    def overrule(
        decision_id: int, ruling: OverrideRequest, request: Request, caller: Reviewer
    ) -> dict[str, Any]:
        """Overrule a decision as the authenticated reviewer; answers with the verdict
        before and after. The asset's report and its index are rewritten."""
        from dataclasses import asdict

        from policy_engine.pipeline.review import record_override

        resources = _resources(request)
        store = resources.store()
        if store.decision(decision_id) is None:
            raise Problem(404, "no-such-decision", f"no decision {decision_id}")
        result = record_override(
            store,
            decision_id,
            reviewer=caller.name,
            justification=ruling.justification,
            reports_dir=Path(resources.settings.reports),
            schedule=ruling.schedule,
            tags=ruling.tags,
            add_tags=ruling.add_tags,
            remove_tags=ruling.remove_tags,
            actor=f"{caller.kind}:{caller.name}",
            via="api",
            reason_code=ruling.reason,
            allowed_reasons=resources.settings.override_reasons,
        )
        return {
            "override_id": result.override_id,
            "decision_id": result.decision_id,
            "asset_id": result.asset_id,
            "before": asdict(result.before),
            "after": asdict(result.after),
            "report_problems": result.report_problems,
        }

    @app.get("/api/v1/rulesets", tags=["rule sets"])
    def rulesets(request: Request, caller: Reader) -> list[dict[str, Any]]:
        """The rule sets in force: for each rule file, its version and since when."""
        return _resources(request).store().rulesets_in_force()

    @app.get("/api/v1/rulesets/{name}/versions", tags=["rule sets"])
    def ruleset_versions(name: str, request: Request, caller: Reader) -> list[dict[str, Any]]:
        """Every recorded text of a rule set with its hash, the newest first."""
        versions = _resources(request).store().ruleset_versions(name)
        if not versions:
            raise Problem(404, "no-such-ruleset", f"no rule set {name!r} is on record")
        return versions

    @app.post("/api/v1/rulesets/diff", tags=["rule sets"])
    def ruleset_diff(edit: DiffRequest, request: Request, caller: Editor) -> dict[str, Any]:
        """Dry run of an edited rule file (as `policy-engine rules diff`): which stored
        assets would change verdict, and why. Writes nothing. A file that does not load is
        422 with every problem and its line and column."""
        from policy_engine.pipeline.review import reevaluate, reevaluation_summary
        from policy_engine.policy.loader import RuleSetError, parse_ruleset

        try:
            ruleset = parse_ruleset(edit.text, "edited.yaml")
        except RuleSetError as exc:
            raise Problem(
                422, "invalid-rules", f"the rule file does not load: {exc.problems[0]}",
                errors=[{"line": p.line, "column": p.column, "message": p.message}
                        for p in exc.problems],
            ) from None  # fmt: skip
        resources = _resources(request)
        result, _ = reevaluate(
            resources.store(), [ruleset], resources.models(), reports_dir=None,
            since=_utc(edit.since), dry_run=True,
        )  # fmt: skip
        return reevaluation_summary(result)

    @app.get("/api/v1/tokens", tags=["accounts"])
    def tokens(request: Request, caller: Admin) -> list[dict[str, Any]]:
        """Every API token (never its secret)."""
        return [vars(t) for t in _resources(request).accounts().tokens()]


def _jobs(app: FastAPI) -> None:
    @app.post("/api/v1/analyses", tags=["analyses"], status_code=202)
    def submit(
        job: AnalysisRequest,
        request: Request,
        response: Response,
        caller: Analyst,
        idempotency_key: IdempotencyKey = None,
    ) -> dict[str, Any]:
        """Queue a file on the server (under the configured `job_roots`) for the ingest
        workers; answers 202 with Location. Poll `GET /api/v1/analyses/{id}`."""
        from policy_engine.pipeline.jobs import PathNotAllowed, submit_path

        resources = _resources(request)
        store = resources.store()
        try:
            view, _ = submit_path(
                resources.settings, store, job.path, created_by=_who(caller),
                key=idempotency_key, webhook_url=job.webhook_url,
            )  # fmt: skip
        except PathNotAllowed as exc:
            raise Problem(403, "path-not-allowed", str(exc)) from None
        response.headers["Location"] = f"/api/v1/analyses/{view.id}"
        return _job(store, view)

    @app.post("/api/v1/analyses/upload", tags=["analyses"], status_code=202)
    async def upload(
        request: Request,
        response: Response,
        caller: Analyst,
        name: Annotated[str, Query(min_length=1, max_length=255, description="promo.mp4")],
        idempotency_key: IdempotencyKey = None,
    ) -> dict[str, Any]:
        """Upload a video as the request body (any content type); streamed to disk and
        capped by `upload_max_mb` (413, nothing kept). Queued like a submitted path."""
        from policy_engine.pipeline.jobs import TooLarge, spool_upload, submit_upload

        resources = _resources(request)
        declared = request.headers.get("content-length")
        try:
            file = await spool_upload(
                resources.settings, request.stream(), name,
                int(declared) if declared and declared.isdigit() else None,
            )  # fmt: skip
        except TooLarge as exc:
            raise Problem(413, "too-large", str(exc)) from None
        store = await run_in_threadpool(resources.store)
        view, _ = await run_in_threadpool(
            lambda: submit_upload(
                store, file, name=name, created_by=_who(caller), key=idempotency_key
            )
        )
        response.headers["Location"] = f"/api/v1/analyses/{view.id}"
        return await run_in_threadpool(_job, store, view)

    @app.get("/api/v1/analyses/{job_id}", tags=["analyses"])
    def job(job_id: int, request: Request, caller: Reader) -> dict[str, Any]:
        """A job: queued, running, succeeded (with the asset and its verdict) or failed
        (with the reason); a queued job that failed before shows its last error."""
        from policy_engine.store.jobs import Jobs

        store = _resources(request).store()
        view = Jobs(store).get(job_id)
        if view is None:
            raise Problem(404, "no-such-job", f"no analysis job {job_id}")
        return _job(store, view)


def _blurred(jpeg: bytes) -> bytes:
    """The picture too blurred to show what it shows, but enough to place the scene."""
    import io

    from PIL import Image, ImageFilter

    with Image.open(io.BytesIO(jpeg)) as picture:
        radius = max(picture.size) / 24
        out = io.BytesIO()
        picture.convert("RGB").filter(ImageFilter.GaussianBlur(radius)).save(out, "JPEG")
    return out.getvalue()


def _who(account: Account) -> str:
    return f"{account.kind}:{account.name}"


def _job(store: Any, view: Any) -> dict[str, Any]:
    from policy_engine.pipeline.jobs import job_payload

    return job_payload(store, view)

"""Analysis jobs: a server path or an upload, queued for the ingest workers through the
database (never an in-process task a restart would lose), and polled by id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from policy_engine.service.deps import Analyst, Reader, who
from policy_engine.service.problems import Problem
from policy_engine.service.resources import resources

router = APIRouter(prefix="/api/v1/analyses", tags=["analyses"])

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


@router.post("", status_code=202)
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

    engine = resources(request)
    store = engine.store()
    try:
        view, _ = submit_path(
            engine.settings, store, job.path, created_by=who(caller),
            key=idempotency_key, webhook_url=job.webhook_url,
        )  # fmt: skip
    except PathNotAllowed as exc:
        raise Problem(403, "path-not-allowed", str(exc)) from None
    response.headers["Location"] = f"/api/v1/analyses/{view.id}"
    return _payload(store, view)


@router.post("/upload", status_code=202)
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

    engine = resources(request)
    declared = request.headers.get("content-length")
    try:
        file = await spool_upload(
            engine.settings, request.stream(), name,
            int(declared) if declared and declared.isdigit() else None,
        )  # fmt: skip
    except TooLarge as exc:
        raise Problem(413, "too-large", str(exc)) from None
    store = await run_in_threadpool(engine.store)
    view, _ = await run_in_threadpool(
        lambda: submit_upload(store, file, name=name, created_by=who(caller), key=idempotency_key)
    )
    response.headers["Location"] = f"/api/v1/analyses/{view.id}"
    return await run_in_threadpool(_payload, store, view)


@router.get("/{job_id}")
def job(job_id: int, request: Request, caller: Reader) -> dict[str, Any]:
    """A job: queued, running, succeeded (with the asset and its verdict) or failed
    (with the reason); a queued job that failed before shows its last error."""
    from policy_engine.store.jobs import Jobs

    store = resources(request).store()
    view = Jobs(store).get(job_id)
    if view is None:
        raise Problem(404, "no-such-job", f"no analysis job {job_id}")
    return _payload(store, view)


def _payload(store: Any, view: Any) -> dict[str, Any]:
    from policy_engine.pipeline.jobs import job_payload

    return job_payload(store, view)

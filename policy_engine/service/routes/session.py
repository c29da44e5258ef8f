"""Browser sessions: log in, who am I, log out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from policy_engine.service.auth import SESSION_COOKIE, caller
from policy_engine.service.problems import Problem
from policy_engine.service.resources import resources
from policy_engine.store.accounts import Account

router = APIRouter(prefix="/api/v1/session", tags=["session"])


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


@router.post("")
def log_in(login: LoginRequest, request: Request, response: Response) -> dict[str, Any]:
    """Log in: sets the session cookie and answers with the CSRF token to send in
    X-CSRF-Token with every change. 401 for a wrong name or password (the same for
    both); 429 with Retry-After once too many attempts failed."""
    from policy_engine.store.accounts import TooManyAttempts

    engine = resources(request)
    address = request.client.host if request.client else "unknown"
    try:
        session = engine.accounts().login(login.name, login.password, address)
    except TooManyAttempts as exc:
        raise Problem(
            429, "too-many-attempts", str(exc), {"Retry-After": str(exc.retry_after)}
        ) from None
    if session is None:
        raise Problem(401, "unauthenticated", "wrong name or password")
    response.set_cookie(
        SESSION_COOKIE, session.secret, httponly=True, samesite="strict", path="/",
        secure=engine.settings.secure_cookies,
        max_age=int((session.expires_at - datetime.now(UTC)).total_seconds()),
    )  # fmt: skip
    return {
        "name": session.account.name,
        "role": session.account.role,
        "csrf_token": session.csrf_token,
        "expires_at": session.expires_at,
    }


@router.get("")
def who_am_i(account: Annotated[Account, Depends(caller)]) -> dict[str, str]:
    return {"kind": account.kind, "name": account.name, "role": account.role}


@router.delete("", status_code=204)
def log_out(
    request: Request, response: Response, account: Annotated[Account, Depends(caller)]
) -> None:
    """End the session on the server (the cookie alone is worthless afterwards)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is not None:
        address = request.client.host if request.client else "unknown"
        resources(request).accounts().end_session(cookie, address)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")

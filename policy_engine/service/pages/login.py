"""Logging in and out through a form: the same sessions as ``POST /api/v1/session``
(server-side, HttpOnly, SameSite=Strict), rate-limited the same way, and recorded in the
audit log."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from policy_engine.service.auth import SESSION_COOKIE
from policy_engine.service.pages.common import (
    Form,
    Viewer,
    checked_form,
    redirect,
    render,
    safe_next,
)
from policy_engine.service.resources import resources

router = APIRouter(include_in_schema=False)


@router.get("/login")
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", None, next=safe_next(next), name="", problem=None)


@router.post("/login", response_model=None)
def log_in(request: Request, form: Form) -> HTMLResponse | RedirectResponse:
    from policy_engine.store.accounts import TooManyAttempts

    engine = resources(request)
    name, target = form.get("name", "")[:64], safe_next(form.get("next"))
    address = request.client.host if request.client else "unknown"
    try:
        session = engine.accounts().login(name, form.get("password", "")[:1024], address)
    except TooManyAttempts as exc:
        page = render(request, "login.html", None, 429, next=target, name=name, problem=str(exc))
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    if session is None:
        return render(request, "login.html", None, 401, next=target, name=name,
                      problem="Wrong name or password.")  # fmt: skip
    response = redirect(target)
    response.set_cookie(
        SESSION_COOKIE, session.secret, httponly=True, samesite="strict", path="/",
        secure=engine.settings.secure_cookies,
        max_age=int((session.expires_at - datetime.now(UTC)).total_seconds()),
    )  # fmt: skip
    return response


@router.post("/logout")
def log_out(request: Request, who: Viewer, form: Form) -> RedirectResponse:
    checked_form(who, form)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is not None:
        address = request.client.host if request.client else "unknown"
        resources(request).accounts().end_session(cookie, address)
    response = redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response

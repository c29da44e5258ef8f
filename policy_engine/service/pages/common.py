"""What the HTML pages share: who is looking (a person's session, or single sign-on),
rendering with the report's own templates beside the app's, forms with their CSRF
token, and errors as pages rather than problem documents.

Pages are for people: a missing or ended session is a redirect to the login page, a
role without the permission a 403 page that changes nothing. A change is a form POST
that carries the session's CSRF token in a hidden field (the cookie is SameSite=Strict
as well); the token also sits in a meta tag for the few lines of JavaScript."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import ChoiceLoader, Environment, PackageLoader
from starlette.datastructures import MutableHeaders

from policy_engine import __version__
from policy_engine.accounts import EDIT_RULES, OVERRULE, READ
from policy_engine.service.auth import SESSION_COOKIE, _signed_on_by_proxy
from policy_engine.service.deps import PRINTABLE
from policy_engine.service.problems import Problem
from policy_engine.service.resources import resources
from policy_engine.store.accounts import Account

CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Visitor:
    """A person looking at the app: their account, and the CSRF token their forms carry.
    Signed on by a proxy there is no session and no token: a form is then believed when
    the browser says it was sent from this site's own pages (``same_origin``)."""

    account: Account
    csrf: str | None
    same_origin: bool = False

    @property
    def proxied(self) -> bool:
        return self.csrf is None

    @property
    def name(self) -> str:
        return self.account.name

    def may(self, permission: str) -> bool:
        return self.account.may(permission)


class LoginNeeded(Exception):
    """No live session: the page answers with a redirect to the login page."""


class PageError(Exception):
    """An error shown as a page (status, a title and what to do)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def visitor(request: Request) -> Visitor:
    accounts = resources(request).accounts()
    try:
        proxied = _signed_on_by_proxy(request, accounts, changes_need_header=False)
    except Problem as exc:
        raise PageError(exc.status, "Refused", exc.detail) from None
    if proxied is not None:
        request.state.account = proxied
        return Visitor(proxied, None, same_origin=sent_from_this_site(request))
    cookie = request.cookies.get(SESSION_COOKIE)
    found = accounts.session(cookie) if cookie else None
    if found is None:
        raise LoginNeeded()
    account, csrf = found
    request.state.account = account  # for the access log
    return Visitor(account, csrf)


def sent_from_this_site(request: Request) -> bool:
    """Whether the browser says this request comes from this site's own pages: its
    ``Sec-Fetch-Site`` (every current browser sends it), else the host of its ``Origin``
    against the host the proxy forwarded. A cross-site form carries the proxy's sign-on
    as well (cookies, Kerberos), so for a user it signs on, this is the CSRF defence
    (OWASP: verifying origin with standard headers); neither header: not believed."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site == "same-origin"
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return False
    host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
    host = host.split(",")[0].strip().lower()
    return bool(host) and urlsplit(origin).netloc.lower() == host


def page_require(permission: str) -> Callable[..., Visitor]:
    def allowed(who: Annotated[Visitor, Depends(visitor)]) -> Visitor:
        if not who.may(permission):
            raise PageError(
                403, "Not allowed",
                f"{who.name} ({who.account.role}) may not {permission}; nothing was changed.",
            )  # fmt: skip
        return who

    return allowed


Viewer = Annotated[Visitor, Depends(page_require(READ))]
# a filter or query typed into a page: printable, and no longer than a sentence or two
PageText = Annotated[str, Query(max_length=500, pattern=PRINTABLE)]


def utc_day(text: str) -> datetime:
    """The start (UTC) of a day given as YYYY-MM-DD; ValueError otherwise."""
    day = date.fromisoformat(text)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


Reviewer = Annotated[Visitor, Depends(page_require(OVERRULE))]
Editor = Annotated[Visitor, Depends(page_require(EDIT_RULES))]


async def form_fields(request: Request) -> dict[str, str]:
    """A urlencoded form body as a dict (the last value of a repeated field). Parsed
    here with the standard library: the app needs no multipart parser for its forms."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise PageError(415, "Unsupported form", "send the form as the page does")
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


def checked_form(who: Visitor, fields: Mapping[str, str]) -> Mapping[str, str]:
    """The form, if it carries this session's CSRF token, or for a user the proxy signs
    on, if the browser sent it from this site's pages (else 403, nothing written)."""
    if who.proxied:
        if not who.same_origin:
            raise PageError(
                403, "Not sent from this site",
                "the browser did not say this form came from this site's own pages;"
                " reload the page and send it from there",
            )  # fmt: skip
        return fields
    assert who.csrf is not None
    if not hmac.compare_digest(fields.get(CSRF_FIELD, ""), who.csrf):
        raise PageError(403, "The form has expired", "reload the page and try again")
    return fields


Form = Annotated[dict[str, str], Depends(form_fields)]


# -- rendering -------------------------------------------------------------------------
@cache
def environment() -> Environment:
    """The app's templates first, then the report's: the asset page includes the very
    partials the static report is made of."""
    from policy_engine.reporting import ENVIRONMENT_OPTIONS, configure_environment

    env = Environment(
        loader=ChoiceLoader([
            PackageLoader("policy_engine.service", "templates"),
            PackageLoader("policy_engine.reporting", "templates"),
        ]),
        **ENVIRONMENT_OPTIONS,
    )  # fmt: skip
    configure_environment(env)
    env.globals["version"] = __version__
    env.filters["basename"] = lambda v: str(v).replace("\\", "/").rsplit("/", 1)[-1]
    env.filters["person"] = lambda v: str(v).split(":", 1)[-1]  # user:alice -> alice
    env.filters["urlpart"] = lambda v: quote(str(v), safe="")
    return env


def render(
    request: Request, template: str, who: Visitor | None, status: int = 200, **context: Any
) -> HTMLResponse:
    html = (
        environment()
        .get_template(template)
        .render(request=request, who=who, path=request.url.path, live=True, **context)
    )
    return HTMLResponse(html, status_code=status)


def redirect(url: str) -> RedirectResponse:
    """After a change: see the result with a GET (a reload does not post again)."""
    return RedirectResponse(url, status_code=303)


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site only (no //host, no scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def install(app: Any) -> None:
    """Errors of pages as pages; a missing session as a redirect to the login page."""

    @app.exception_handler(LoginNeeded)
    async def _login(request: Request, exc: LoginNeeded) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            target = "/"
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> HTMLResponse:
        who = None
        return render(request, "error.html", who, exc.status, error=exc)


# -- security headers ---------------------------------------------------------------------
# Every script and style comes from the app itself: no inline script, no CDN, nothing
# framed. The report's own (inline) policy is in its template; this one is the app's.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class SecurityHeaders:
    """The headers above on every HTTP response that has not set its own. A plain ASGI
    middleware: ``@app.middleware("http")`` runs each request through a task and a
    streamed response, a cost every API call paid."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


def security_headers(app: Any) -> None:
    app.add_middleware(SecurityHeaders)

"""Who is calling, and whether they may. Client systems send ``Authorization: Bearer
<token>`` (``policy-engine tokens create``); people log in (``POST /api/v1/session``) and
their browser sends the session cookie, HttpOnly and SameSite=Strict, plus the session's
CSRF token in ``X-CSRF-Token`` with every request that changes something. A missing or
unknown credential is 401, a role without the permission 403; neither writes anything."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from policy_engine.service.problems import Problem
from policy_engine.store.accounts import Account

SESSION_COOKIE = "pe_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_bearer = HTTPBearer(auto_error=False, description="A token from `policy-engine tokens create`.")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="policy-engine"'}


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Account:
    accounts = request.app.state.engine.accounts()
    if credentials is not None:
        account = accounts.verify_token(credentials.credentials)
        if account is None:
            raise Problem(
                401, "unauthenticated", "the token is unknown or revoked; ask an admin for one",
                _CHALLENGE,
            )  # fmt: skip
        request.state.account = account  # for the access log
        return account
    proxied = _signed_on_by_proxy(request, accounts)
    if proxied is not None:
        request.state.account = proxied
        return proxied
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is None:
        raise Problem(
            401, "unauthenticated", "log in, or send Authorization: Bearer <token>", _CHALLENGE
        )
    found = accounts.session(cookie)
    if found is None:
        raise Problem(401, "unauthenticated", "the session has ended or expired; log in again")
    account, csrf = found
    request.state.account = account
    if request.method not in SAFE_METHODS and not hmac.compare_digest(
        request.headers.get(CSRF_HEADER, ""), csrf
    ):
        raise Problem(403, "csrf", f"send the session's {CSRF_HEADER} with every change")
    return account


def _signed_on_by_proxy(
    request: Request, accounts: Any, *, changes_need_header: bool = True
) -> Account | None:
    """Single sign-on: the user a trusted reverse proxy names in ``remote_user_header``,
    believed only from ``trusted_proxies`` (anyone else could send the header). An API
    change must carry X-Requested-With, which a cross-site form cannot send (CSRF); the
    pages' forms cannot send it either, and are checked by their origin instead
    (``changes_need_header=False``: pages.common.checked_form)."""
    settings = request.app.state.engine.settings
    header = settings.remote_user_header
    if not header or request.headers.get(header) is None:
        return None
    if request.client is None or request.client.host not in settings.trusted_proxies:
        raise Problem(403, "untrusted-proxy", f"{header} is only accepted from the proxy")
    account = accounts.enabled_user(request.headers[header].strip())
    if account is None:
        raise Problem(403, "forbidden", "the proxy names no enabled user of this service")
    if (
        changes_need_header
        and request.method not in SAFE_METHODS
        and not request.headers.get("X-Requested-With")
    ):
        raise Problem(403, "csrf", "send X-Requested-With with every change")
    return account


def require(permission: str) -> Callable[..., Account]:
    """A dependency: the caller, if their role has ``permission``."""

    def allowed(account: Annotated[Account, Depends(caller)]) -> Account:
        if not account.may(permission):
            raise Problem(
                403, "forbidden",
                f"{account.kind} {account.name} ({account.role}) may not {permission}",
            )  # fmt: skip
        return account

    return allowed

"""Who is calling, and whether they may: API clients send ``Authorization: Bearer
<token>`` (``policy-engine tokens create``). A missing or unknown token is 401, a role
without the permission 403; neither writes anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from policy_engine.service.problems import Problem
from policy_engine.store.accounts import Account

_bearer = HTTPBearer(auto_error=False, description="A token from `policy-engine tokens create`.")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="policy-engine"'}


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Account:
    if credentials is None:
        raise Problem(401, "unauthenticated", "send Authorization: Bearer <token>", _CHALLENGE)
    account = request.app.state.engine.accounts().verify_token(credentials.credentials)
    if account is None:
        raise Problem(
            401, "unauthenticated", "the token is unknown or revoked; ask an admin for one",
            _CHALLENGE,
        )  # fmt: skip
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

"""What the routes have in common: the caller by permission, and checks on query text.

Module level: FastAPI resolves these annotations in the namespace of each route module
that imports them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends

from policy_engine.accounts import ANALYSE, EDIT_RULES, MANAGE_ACCOUNTS, OVERRULE, READ
from policy_engine.service.auth import require
from policy_engine.store.accounts import Account

Reader = Annotated[Account, Depends(require(READ))]
Admin = Annotated[Account, Depends(require(MANAGE_ACCOUNTS))]
Reviewer = Annotated[Account, Depends(require(OVERRULE))]
Editor = Annotated[Account, Depends(require(EDIT_RULES))]
Analyst = Annotated[Account, Depends(require(ANALYSE))]

# Text from a query: no control characters (a NUL would end a LIKE pattern early in
# SQLite and is refused by PostgreSQL; none belongs in a name, tag or prompt).
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


def utc(moment: datetime | None) -> datetime | None:
    """A time from a query: one without a zone is taken as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def who(account: Account) -> str:
    """How an account is recorded as the author of a change."""
    return f"{account.kind}:{account.name}"

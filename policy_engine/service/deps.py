"""What the routes have in common: the caller by permission, and checks on query text.

Module level: FastAPI resolves these annotations in the namespace of each route module
that imports them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends

from policy_engine.accounts import ANALYSE, EDIT_RULES, MANAGE_ACCOUNTS, OVERRULE, READ
from policy_engine.config import Settings
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


def why_not_reveal(account: Account, settings: Settings) -> str | None:
    """Why this caller may not see the regions a detector hides (nudity) as they were;
    None where they may: a role that may overrule, the setting on, a person in the app
    (never a client system's token). The picture endpoint and the asset page both ask."""
    if not account.may(OVERRULE):
        return f"{account.role} may not see evidence unblurred"
    if not settings.reveal_hidden_evidence:
        return "hidden regions are shown only where the reveal_hidden_evidence setting is on"
    if account.kind != "user":
        return (
            f"{account.kind} {account.name}: hidden regions are shown only in the app, to a"
            " reviewer logged in there"
        )
    return None


def who(account: Account) -> str:
    """How an account is recorded as the author of a change."""
    return f"{account.kind}:{account.name}"

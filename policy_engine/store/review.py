"""What the review app keeps beside the decisions: reviewers' claims on assets, four-eyes
proposals and their confirmations, the review queue, and the audit log read across
overrides, proposals, confirmations, rule-set changes and logins."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, and_, case, cast, exists, func, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from policy_engine.errors import ConfigError, StoreError
from policy_engine.store.database import retries_transient_errors
from policy_engine.store.repository import StoreFacet
from policy_engine.store.schema import (
    DecisionRecord,
    LoginEvent,
    Override,
    OverrideConfirmation,
    OverrideProposal,
    ReasonRecord,
    RevealedView,
    ReviewClaim,
    RuleSetInForce,
    RuleSetRecord,
    utcnow,
)

CONFIRMED, REJECTED = "confirmed", "rejected"
# A deterministic sample: an asset is in it when its id hashes below the rate. Knuth's
# multiplicative hash spreads consecutive ids evenly, and the sample stays the same from
# one page load to the next (a reviewer can finish it).
_SAMPLE_MULTIPLIER, _SAMPLE_BUCKETS = 2654435761, 10_000


@dataclass(frozen=True)
class Claim:
    asset_id: int
    holder: str  # user:alice
    claimed_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Proposal:
    id: int
    decision_id: int
    asset_id: int
    ruleset_name: str
    reviewer: str
    actor: str
    via: str
    reason_code: str | None
    schedule: str | None
    tags: tuple[str, ...] | None
    justification: str
    created_at: datetime
    outcome: str | None = None  # None: pending
    answered_by: str | None = None


@dataclass(frozen=True)
class QueueItem:
    asset_id: int
    since: datetime  # when the oldest decision that puts it in the queue was made


@dataclass(frozen=True)
class AuditEvent:
    at: datetime
    kind: str  # override | proposal | confirmation | ruleset | login | reveal
    actor: str
    via: str | None
    asset_id: int | None
    decision_id: int | None
    summary: str


AUDIT_KINDS = ("override", "proposal", "confirmation", "ruleset", "login", "reveal")


class AlreadyAnswered(ConfigError):
    """A proposal that another reviewer confirmed or rejected first."""


def _latest() -> Any:
    """The decision is its (asset, rule set)'s latest: no newer one exists. Checked per
    candidate on the (asset_id, ruleset_name, id) index, after the cheaper conditions
    have picked the candidates (grouping every decision of a 100k archive costs more)."""
    newer = aliased(DecisionRecord)
    return ~exists().where(
        newer.asset_id == DecisionRecord.asset_id,
        newer.ruleset_name == DecisionRecord.ruleset_name,
        newer.id > DecisionRecord.id,
    )


def _not_overruled() -> Any:
    return ~exists().where(Override.decision_id == DecisionRecord.id)


@retries_transient_errors
class Reviews(StoreFacet):
    # -- claims ---------------------------------------------------------------------------
    def claim(self, asset_id: int, holder: str, minutes: float) -> Claim:
        """Claim the asset for ``holder`` (or renew their claim) unless someone else holds
        a live claim; returns the claim in force afterwards, whoever holds it."""
        now = utcnow()
        until = now + timedelta(minutes=minutes)
        try:
            with self._transaction() as s:
                row = s.get(ReviewClaim, asset_id, with_for_update=True)
                if row is None:
                    row = ReviewClaim(
                        asset_id=asset_id, holder=holder, claimed_at=now, expires_at=until
                    )
                    s.add(row)
                elif row.holder == holder or row.expires_at <= now:
                    row.holder, row.claimed_at, row.expires_at = holder, now, until
                return Claim(row.asset_id, row.holder, row.claimed_at, row.expires_at)
        except StoreError as exc:
            if not isinstance(exc.__cause__, IntegrityError):
                raise
        # another reviewer's claim was inserted first: theirs stands
        found = self.claims([asset_id]).get(asset_id)
        if found is None:
            return self.claim(asset_id, holder, minutes)
        return found

    def release(self, asset_id: int, holder: str) -> None:
        with self._transaction() as s:
            row = s.get(ReviewClaim, asset_id)
            if row is not None and row.holder == holder:
                s.delete(row)

    def claims(self, asset_ids: Sequence[int]) -> dict[int, Claim]:
        """The live claims on these assets."""
        if not asset_ids:
            return {}
        with self._transaction() as s:
            rows = s.scalars(
                select(ReviewClaim).where(
                    ReviewClaim.asset_id.in_(list(asset_ids)), ReviewClaim.expires_at > utcnow()
                )
            )
            return {r.asset_id: Claim(r.asset_id, r.holder, r.claimed_at, r.expires_at)
                    for r in rows}  # fmt: skip

    # -- four eyes ------------------------------------------------------------------------
    def add_proposal(
        self, decision_id: int, *, reviewer: str, actor: str, via: str, justification: str,
        reason_code: str | None, schedule: str | None, tags: Sequence[str] | None,
    ) -> int:  # fmt: skip
        with self._transaction() as s:
            row = OverrideProposal(
                decision_id=decision_id, reviewer=reviewer, actor=actor, via=via,
                reason_code=reason_code, schedule=schedule,
                tags=list(tags) if tags is not None else None,
                justification=justification.strip(),
            )  # fmt: skip
            s.add(row)
            s.flush()
            return row.id

    def proposals(
        self, *, asset_ids: Sequence[int] | None = None, pending: bool = True
    ) -> list[Proposal]:
        """Proposals (oldest first), of these assets; only those nobody answered yet."""
        query = (
            select(OverrideProposal, DecisionRecord.asset_id, DecisionRecord.ruleset_name,
                   OverrideConfirmation.outcome, OverrideConfirmation.reviewer)
            .join(DecisionRecord, DecisionRecord.id == OverrideProposal.decision_id)
            .outerjoin(OverrideConfirmation,
                       OverrideConfirmation.proposal_id == OverrideProposal.id)
            .order_by(OverrideProposal.id)
        )  # fmt: skip
        if asset_ids is not None:
            query = query.where(DecisionRecord.asset_id.in_(list(asset_ids)))
        if pending:
            query = query.where(OverrideConfirmation.id.is_(None))
        with self._transaction() as s:
            return [
                Proposal(
                    p.id, p.decision_id, asset_id, ruleset, p.reviewer, p.actor, p.via,
                    p.reason_code, p.schedule, tuple(p.tags) if p.tags is not None else None,
                    p.justification, p.created_at, outcome, answered_by,
                )
                for p, asset_id, ruleset, outcome, answered_by in s.execute(query)
            ]  # fmt: skip

    def proposal(self, proposal_id: int) -> Proposal | None:
        with self._transaction() as s:
            row = s.execute(
                select(OverrideProposal, DecisionRecord.asset_id, DecisionRecord.ruleset_name,
                       OverrideConfirmation.outcome, OverrideConfirmation.reviewer)
                .join(DecisionRecord, DecisionRecord.id == OverrideProposal.decision_id)
                .outerjoin(OverrideConfirmation,
                           OverrideConfirmation.proposal_id == OverrideProposal.id)
                .where(OverrideProposal.id == proposal_id)
            ).first()  # fmt: skip
        if row is None:
            return None
        p, asset_id, ruleset, outcome, answered_by = row
        return Proposal(
            p.id, p.decision_id, asset_id, ruleset, p.reviewer, p.actor, p.via, p.reason_code,
            p.schedule, tuple(p.tags) if p.tags is not None else None, p.justification,
            p.created_at, outcome, answered_by,
        )  # fmt: skip

    def answer_proposal(
        self, proposal_id: int, *, outcome: str, reviewer: str, actor: str, via: str,
        justification: str | None = None,
    ) -> int | None:  # fmt: skip
        """Confirm (the proposal becomes an override, in the same transaction) or reject
        it; returns the override's id when confirmed. AlreadyAnswered if another reviewer
        answered first: one proposal never makes two overrides."""
        try:
            with self._transaction() as s:
                proposal = s.get_one(OverrideProposal, proposal_id)
                override_id = None
                if outcome == CONFIRMED:
                    override = Override(
                        decision_id=proposal.decision_id, reviewer=proposal.reviewer,
                        schedule=proposal.schedule, tags=proposal.tags,
                        justification=proposal.justification, actor=proposal.actor,
                        via=proposal.via, reason_code=proposal.reason_code,
                    )  # fmt: skip
                    s.add(override)
                    s.flush()
                    override_id = override.id
                s.add(
                    OverrideConfirmation(
                        proposal_id=proposal_id, outcome=outcome, reviewer=reviewer,
                        actor=actor, via=via, justification=justification,
                        override_id=override_id,
                    )
                )  # fmt: skip
                s.flush()
                return override_id
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise AlreadyAnswered(
                    f"proposal {proposal_id} was answered by another reviewer first"
                ) from None
            raise

    # -- the queue --------------------------------------------------------------------------
    def needing_review(self, limit: int) -> list[QueueItem]:
        """Assets whose verdict in force asks for review, the longest waiting first."""
        return self._queue(DecisionRecord.review.is_(True), limit)

    def near_misses(self, limit: int) -> list[QueueItem]:
        """Assets not asking for review but with a rule within its margin of firing."""
        near = select(ReasonRecord.decision_id).where(ReasonRecord.kind == "near_miss")
        return self._queue(
            and_(DecisionRecord.review.is_(False), DecisionRecord.id.in_(near)), limit
        )

    def _queue(self, condition: Any, limit: int) -> list[QueueItem]:
        since = func.min(DecisionRecord.created_at)
        query = (
            select(DecisionRecord.asset_id, since)
            .where(condition, _latest(), _not_overruled())
            .group_by(DecisionRecord.asset_id)
            .order_by(since, DecisionRecord.asset_id)
            .limit(limit)
        )
        with self._transaction() as s:
            return [QueueItem(a, at) for a, at in s.execute(query)]

    def sample(self, rate: float, level: str, limit: int) -> list[QueueItem]:
        """A fixed random share ``rate`` of the assets the engine cleared at ``level``
        (every rule set) without review, that no reviewer has looked at yet."""
        if rate <= 0:
            return []
        cut = round(min(rate, 1.0) * _SAMPLE_BUCKETS)
        bucket = (
            cast(DecisionRecord.asset_id, BigInteger) * literal(_SAMPLE_MULTIPLIER, BigInteger)
        ) % _SAMPLE_BUCKETS
        cleared = and_(DecisionRecord.schedule == level, DecisionRecord.review.is_(False),
                       _not_overruled())  # fmt: skip
        other = func.sum(case((cleared, 0), else_=1))
        since = func.min(DecisionRecord.created_at)
        query = (
            select(DecisionRecord.asset_id, since)
            .where(bucket < cut, _latest())
            .group_by(DecisionRecord.asset_id)
            .having(other == 0)
            .order_by(since, DecisionRecord.asset_id)
            .limit(limit)
        )
        with self._transaction() as s:
            return [QueueItem(a, at) for a, at in s.execute(query)]

    # -- the audit log ----------------------------------------------------------------------
    def audit_events(
        self, *, kinds: Sequence[str] = AUDIT_KINDS, actor: str | None = None,
        asset_id: int | None = None, since: datetime | None = None,
        until: datetime | None = None, limit: int = 200,
    ) -> list[AuditEvent]:  # fmt: skip
        """The newest ``limit`` events before ``until`` (and from ``since``), newest first:
        overrides, four-eyes proposals and confirmations, rule-set versions coming into
        force, logins, evidence shown with its hidden regions. ``actor``: text in who
        acted; ``asset_id``: that asset's only."""
        events: list[AuditEvent] = []
        with self._transaction() as s:
            for kind in kinds:
                if asset_id is not None and kind in ("ruleset", "login"):
                    continue
                reader = getattr(self, f"_{kind}_events")
                events.extend(reader(s, actor, asset_id, since, until, limit))
        events.sort(key=lambda e: e.at, reverse=True)
        return events[:limit]

    @staticmethod
    def _window(query: Any, column: Any, since: Any, until: Any, limit: int) -> Any:
        if since is not None:
            query = query.where(column >= since)
        if until is not None:
            query = query.where(column < until)
        return query.order_by(column.desc()).limit(limit)

    def _override_events(self, s: Any, actor: Any, asset_id: Any, since: Any, until: Any,
                         limit: int) -> list[AuditEvent]:  # fmt: skip
        who = func.coalesce(Override.actor, Override.reviewer)
        query = select(Override, DecisionRecord.asset_id, DecisionRecord.ruleset_name).join(
            DecisionRecord, DecisionRecord.id == Override.decision_id
        )
        if actor:
            query = query.where(func.lower(who).contains(actor.lower(), autoescape=True))
        if asset_id is not None:
            query = query.where(DecisionRecord.asset_id == asset_id)
        query = self._window(query, Override.created_at, since, until, limit)
        return [
            AuditEvent(o.created_at, "override", o.actor or o.reviewer, o.via, a, o.decision_id,
                       f"{ruleset}: {_ruling(o.schedule, o.tags)}; reason {o.reason_code or '-'}:"
                       f" {o.justification}")
            for o, a, ruleset in s.execute(query)
        ]  # fmt: skip

    def _proposal_events(self, s: Any, actor: Any, asset_id: Any, since: Any, until: Any,
                         limit: int) -> list[AuditEvent]:  # fmt: skip
        query = select(OverrideProposal, DecisionRecord.asset_id, DecisionRecord.ruleset_name).join(
            DecisionRecord, DecisionRecord.id == OverrideProposal.decision_id
        )
        if actor:
            query = query.where(
                func.lower(OverrideProposal.actor).contains(actor.lower(), autoescape=True)
            )
        if asset_id is not None:
            query = query.where(DecisionRecord.asset_id == asset_id)
        query = self._window(query, OverrideProposal.created_at, since, until, limit)
        return [
            AuditEvent(p.created_at, "proposal", p.actor, p.via, a, p.decision_id,
                       f"{ruleset}: proposed {_ruling(p.schedule, p.tags)} (four eyes,"
                       f" proposal {p.id}); reason {p.reason_code or '-'}: {p.justification}")
            for p, a, ruleset in s.execute(query)
        ]  # fmt: skip

    def _confirmation_events(self, s: Any, actor: Any, asset_id: Any, since: Any, until: Any,
                             limit: int) -> list[AuditEvent]:  # fmt: skip
        query = (
            select(OverrideConfirmation, OverrideProposal, DecisionRecord.asset_id,
                   DecisionRecord.ruleset_name)
            .join(OverrideProposal, OverrideProposal.id == OverrideConfirmation.proposal_id)
            .join(DecisionRecord, DecisionRecord.id == OverrideProposal.decision_id)
        )  # fmt: skip
        if actor:
            query = query.where(
                func.lower(OverrideConfirmation.actor).contains(actor.lower(), autoescape=True)
            )
        if asset_id is not None:
            query = query.where(DecisionRecord.asset_id == asset_id)
        query = self._window(query, OverrideConfirmation.created_at, since, until, limit)
        return [
            AuditEvent(c.created_at, "confirmation", c.actor, c.via, a, p.decision_id,
                       f"{ruleset}: {c.outcome} proposal {p.id} by {p.actor}"
                       f" ({_ruling(p.schedule, p.tags)})"
                       + (f": {c.justification}" if c.justification else ""))
            for c, p, a, ruleset in s.execute(query)
        ]  # fmt: skip

    def _ruleset_events(self, s: Any, actor: Any, asset_id: Any, since: Any, until: Any,
                        limit: int) -> list[AuditEvent]:  # fmt: skip
        if actor:  # rule files come into force by the ingest loading them, not by a person
            return []
        query = select(RuleSetInForce, RuleSetRecord).join(
            RuleSetRecord, RuleSetRecord.id == RuleSetInForce.ruleset_id
        )
        query = self._window(query, RuleSetInForce.since, since, until, limit)
        return [
            AuditEvent(f.since, "ruleset", "ingest", None, None, None,
                       f"{r.name} v{r.version} ({r.sha256}) in force from {f.path}")
            for f, r in s.execute(query)
        ]  # fmt: skip

    def _login_events(self, s: Any, actor: Any, asset_id: Any, since: Any, until: Any,
                      limit: int) -> list[AuditEvent]:  # fmt: skip
        query = select(LoginEvent)
        if actor:
            query = query.where(
                func.lower(LoginEvent.user_name).contains(actor.lower(), autoescape=True)
            )
        query = self._window(query, LoginEvent.at, since, until, limit)
        return [
            AuditEvent(e.at, "login", f"user:{e.user_name}", None, None, None,
                       f"{e.outcome} from {e.address}")
            for e in s.scalars(query)
        ]  # fmt: skip

    def _reveal_events(self, s: Any, actor: Any, asset_id: Any, since: Any, until: Any,
                       limit: int) -> list[AuditEvent]:  # fmt: skip
        query = select(RevealedView)
        if actor:
            query = query.where(
                func.lower(RevealedView.user_name).contains(actor.lower(), autoescape=True)
            )
        if asset_id is not None:
            query = query.where(RevealedView.asset_id == asset_id)
        query = self._window(query, RevealedView.at, since, until, limit)
        return [
            AuditEvent(v.at, "reveal", f"user:{v.user_name}", "app", v.asset_id, None,
                       f"shown frame {v.frame_index} of scan {v.scan_id} with the regions a"
                       " detector hides as they were")
            for v in s.scalars(query)
        ]  # fmt: skip


def _ruling(schedule: str | None, tags: Sequence[str] | None) -> str:
    parts = [f"level {schedule}" if schedule else "level unchanged"]
    parts.append(f"tags [{', '.join(tags)}]" if tags is not None else "tags unchanged")
    return ", ".join(parts)

"""What the review app keeps in the store: claims that lapse, four-eyes proposals that
become one override only when a second reviewer confirms, the review queue, and the
audit log across overrides, proposals, confirmations, rule-set changes and logins."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from test_audit_trail import _decided

from policy_engine.store import Store
from policy_engine.store.accounts import Accounts
from policy_engine.store.review import AlreadyAnswered, Reviews
from policy_engine.store.schema import utcnow


def test_a_claim_keeps_others_out_until_it_lapses_or_is_released(store: Store) -> None:
    asset_id, _ = _decided(store)
    reviews = Reviews(store)
    mine = reviews.claim(asset_id, "user:alice", 30)
    assert mine.holder == "user:alice" and mine.expires_at > utcnow() + timedelta(minutes=29)
    assert reviews.claim(asset_id, "user:carol", 30).holder == "user:alice"  # refused
    assert reviews.claims([asset_id])[asset_id].holder == "user:alice"
    reviews.release(asset_id, "user:carol")  # not hers to release
    assert reviews.claims([asset_id])[asset_id].holder == "user:alice"
    reviews.release(asset_id, "user:alice")
    assert reviews.claims([asset_id]) == {}
    assert reviews.claim(asset_id, "user:carol", -1).holder == "user:carol"  # lapsed at once
    assert reviews.claims([asset_id]) == {}
    assert reviews.claim(asset_id, "user:alice", 30).holder == "user:alice"  # taken over


def test_a_proposal_becomes_one_override_when_confirmed(store: Store) -> None:
    asset_id, decision_id = _decided(store)
    reviews = Reviews(store)
    proposal = reviews.add_proposal(
        decision_id, reviewer="alice", actor="user:alice", via="app", justification="fiction",
        reason_code="context", schedule="unrestricted", tags=None,
    )  # fmt: skip
    assert [p.id for p in reviews.proposals(asset_ids=[asset_id])] == [proposal]
    assert store.current_decisions([asset_id])[(asset_id, "house")].overrides == ()  # not yet
    override = reviews.answer_proposal(
        proposal, outcome="confirmed", reviewer="carol", actor="user:carol", via="app"
    )
    current = store.current_decisions([asset_id])[(asset_id, "house")]
    assert [o.id for o in current.overrides] == [override]
    assert current.ruled().schedule == "unrestricted" and current.override.actor == "user:alice"
    assert store.confirmed_overrides([decision_id]) == {override: "user:carol"}
    with pytest.raises(AlreadyAnswered):  # a second confirmation makes no second override
        reviews.answer_proposal(
            proposal, outcome="confirmed", reviewer="dave", actor="user:dave", via="app"
        )
    assert len(store.current_decisions([asset_id])[(asset_id, "house")].overrides) == 1
    assert reviews.proposals(asset_ids=[asset_id]) == []
    answered = reviews.proposal(proposal)
    assert (answered.outcome, answered.answered_by) == ("confirmed", "carol")


def test_review_records_are_append_only_in_the_database(store: Store) -> None:
    asset_id, decision_id = _decided(store)
    reviews = Reviews(store)
    proposal = reviews.add_proposal(
        decision_id, reviewer="alice", actor="user:alice", via="app", justification="x",
        reason_code=None, schedule="unrestricted", tags=None,
    )  # fmt: skip
    reviews.answer_proposal(proposal, outcome="rejected", reviewer="c", actor="user:c", via="app")
    Accounts(store).add_user("alice", "reviewer", "alice's long password", by="test")
    assert Accounts(store).login("alice", "alice's long password", "127.0.0.1") is not None
    for statement in (
        "UPDATE override_proposals SET schedule = 'not-for-broadcast'",
        "DELETE FROM override_proposals",
        "UPDATE override_confirmations SET outcome = 'confirmed'",
        "DELETE FROM override_confirmations",
        "UPDATE login_events SET user_name = 'mallory'",
        "DELETE FROM login_events",
    ):
        with pytest.raises(Exception, match="audit trail"), store.engine.begin() as connection:
            connection.execute(text(statement))


def test_the_audit_log_reads_every_kind_of_event(store: Store) -> None:
    asset_id, decision_id = _decided(store)
    store.add_override(decision_id, reviewer="bob", justification="fine", actor="user:bob",
                       via="app", reason_code="context", schedule="post-watershed")  # fmt: skip
    reviews = Reviews(store)
    reviews.add_proposal(
        decision_id, reviewer="alice", actor="user:alice", via="app", justification="fiction",
        reason_code="context", schedule="unrestricted", tags=None,
    )  # fmt: skip
    accounts = Accounts(store)
    accounts.add_user("alice", "reviewer", "alice's long password", by="test")
    assert accounts.login("alice", "wrong password!!", "10.0.0.9") is None
    session = accounts.login("alice", "alice's long password", "10.0.0.9")
    accounts.end_session(session.secret, "10.0.0.9")
    from test_audit_trail import RULES

    from policy_engine.policy.loader import parse_ruleset

    store.record_rules_in_force({"/rules/house.yaml": parse_ruleset(RULES, "house.yaml")})
    events = reviews.audit_events()
    kinds = {e.kind for e in events}
    assert kinds == {"override", "proposal", "ruleset", "login"}
    assert [e.at for e in events] == sorted((e.at for e in events), reverse=True)
    logins = [e.summary for e in events if e.kind == "login"]
    assert logins == ["logout from 10.0.0.9", "login from 10.0.0.9", "failed from 10.0.0.9"]
    assert {e.kind for e in reviews.audit_events(actor="BOB")} == {"override"}
    assert {e.kind for e in reviews.audit_events(asset_id=asset_id)} == {"override", "proposal"}
    assert reviews.audit_events(asset_id=asset_id + 1000) == []
    assert len(reviews.audit_events(limit=2)) == 2
    newest = reviews.audit_events(limit=1)[0]
    assert all(e.at < newest.at for e in reviews.audit_events(until=newest.at))


def test_the_queue_holds_what_needs_review_the_near_misses_and_a_sample(store: Store) -> None:
    asset_id, decision_id = _decided(store)  # not-for-broadcast, review required
    reviews = Reviews(store)
    assert [i.asset_id for i in reviews.needing_review(10)] == [asset_id]
    assert reviews.sample(1.0, "unrestricted", 10) == []  # not cleared: not in the sample
    store.add_override(decision_id, reviewer="bob", justification="ok", schedule="unrestricted")
    assert reviews.needing_review(10) == []  # an override settles the review
    assert reviews.sample(1.0, "unrestricted", 10) == []  # a reviewer has looked at it
    assert reviews.near_misses(10) == []


def _judged(store: Store, name: str, labels: list[int]) -> tuple[int, int]:
    from test_audit_trail import CATEGORIES, RULES

    from policy_engine.pipeline.judging import judge
    from policy_engine.policy.loader import parse_ruleset
    from policy_engine.store import NewDecision
    from policy_engine.store.synthetic import labelled_probabilities, seed_scan

    ruleset = parse_ruleset(RULES, "house.yaml")
    asset_id, scan_id = seed_scan(
        store, name=name, categories=CATEGORIES,
        probabilities=labelled_probabilities(labels, 2), duration=10.0,
    )  # fmt: skip
    scan = store.completed_scans(scan_ids=[scan_id])[0]
    decision = judge(store, [scan], [ruleset], None).judgements[0].decision
    (decision_id,) = store.append_decisions(
        [NewDecision(scan_id, asset_id, ruleset, decision, "scan")]
    )
    return asset_id, decision_id


def test_the_sample_is_a_fixed_share_of_what_the_engine_cleared(store: Store) -> None:
    clean = [_judged(store, f"clean-{i}", [1] * 20)[0] for i in range(40)]
    near = _judged(store, "near", [0] * 1 + [1] * 19)[0]  # violence 5 %: at the threshold
    reviews = Reviews(store)
    everything = {i.asset_id for i in reviews.sample(1.0, "unrestricted", 100)}
    assert set(clean) <= everything
    some = [i.asset_id for i in reviews.sample(0.25, "unrestricted", 100)]
    assert 0 < len(some) < len(clean) and some == [i.asset_id for i in reviews.sample(0.25, "unrestricted", 100)]
    assert reviews.sample(0.0, "unrestricted", 100) == []
    assert near in {i.asset_id for i in reviews.near_misses(10)}

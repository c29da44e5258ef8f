"""The review app over HTTP (httpx against the real app, both databases): logging in,
the pages' security headers, the catalogue's filters in the URL, and every refusal
writing nothing. The browser tier (tests/test_app_browser.py) drives the same pages in
Chromium."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_audit_trail import CATEGORIES, RULES

from policy_engine.config import Settings
from policy_engine.service.app import create_app
from policy_engine.store import NewDecision, Store
from policy_engine.store.accounts import Accounts

PASSWORDS = {
    "alice": ("reviewer", "alice's long password"),
    "carol": ("reviewer", "carol's long password"),
    "bob": ("viewer", "bob's long password!"),
    "eve": ("editor", "eve's long password!"),
}


def seed(store: Store, count: int = 7) -> list[tuple[int, int]]:
    """``count`` trailers judged by the house rules: promo-0 clean, the others violent
    (10 % x i of the time): (asset id, decision id) each."""
    from policy_engine.pipeline.judging import judge
    from policy_engine.policy.loader import parse_ruleset
    from policy_engine.store.synthetic import labelled_probabilities, seed_scan

    ruleset = parse_ruleset(RULES, "house.yaml")
    ids = []
    for i in range(count):
        labels = [0] * (2 * i) + [1] * (20 - 2 * i)
        asset_id, scan_id = seed_scan(
            store, name=f"promo-{i}", categories=CATEGORIES,
            probabilities=labelled_probabilities(labels, 2), duration=10.0,
        )  # fmt: skip
        scan = store.completed_scans(scan_ids=[scan_id])[0]
        decision = judge(store, [scan], [ruleset], None).judgements[0].decision
        (decision_id,) = store.append_decisions(
            [NewDecision(scan_id, asset_id, ruleset, decision, "scan")]
        )
        ids.append((asset_id, decision_id))
    return ids


@pytest.fixture
def app_setup(db_url: str, tmp_path: Path):
    store = Store.open(db_url)
    ids = seed(store)
    accounts = Accounts(store)
    for name, (role, password) in PASSWORDS.items():
        accounts.add_user(name, role, password, by="test")
    settings = replace(Settings(), db=db_url, reports=str(tmp_path / "reports"))
    yield store, ids, settings
    store.close()


@pytest.fixture
def client(app_setup):
    store, ids, settings = app_setup
    with TestClient(create_app(settings)) as client:
        yield client, store, ids


def log_in(client: TestClient, name: str) -> str:
    """Log in through the form; returns the session's CSRF token (from the page)."""
    client.cookies.clear()
    answer = client.post(
        "/login", data={"name": name, "password": PASSWORDS[name][1], "next": "/"},
        follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
    page = client.get("/")
    return csrf_of(page.text)


def csrf_of(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def rows(html: str) -> list[str]:
    """The asset names in the catalogue's table, in order."""
    return re.findall(r'<td class="path"><a href="/assets/\d+">([^<]+)</a>', html)


# -- logging in ---------------------------------------------------------------------------
def test_pages_send_people_to_the_login_page_and_back(client) -> None:
    client, *_ = client
    answer = client.get("/?verdict=unrestricted", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2F%3Fverdict%3Dunrestricted"
    login = client.get(answer.headers["location"])
    assert login.status_code == 200 and 'name="next" value="/?verdict=unrestricted"' in login.text
    done = client.post(
        "/login", data={"name": "bob", "password": PASSWORDS["bob"][1],
                        "next": "/?verdict=unrestricted"},
        follow_redirects=False,
    )  # fmt: skip
    assert done.status_code == 303 and done.headers["location"] == "/?verdict=unrestricted"
    cookie = done.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil"])
def test_after_login_only_a_path_on_this_site(client, target: str) -> None:
    client, *_ = client
    done = client.post(
        "/login", data={"name": "bob", "password": PASSWORDS["bob"][1], "next": target},
        follow_redirects=False,
    )  # fmt: skip
    assert done.headers["location"] == "/"


def test_a_wrong_password_is_a_page_that_says_so(client) -> None:
    client, store, _ = client
    answer = client.post("/login", data={"name": "bob", "password": "wrong password!!"})
    assert answer.status_code == 401 and "Wrong name or password." in answer.text
    assert "pe_session" not in client.cookies
    from policy_engine.store.review import Reviews

    assert [e.summary.split()[0] for e in Reviews(store).audit_events(kinds=["login"])] == [
        "failed"
    ]


def test_logging_out_needs_the_csrf_token_and_ends_the_session(client) -> None:
    client, *_ = client
    csrf = log_in(client, "bob")
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 200  # still logged in
    out = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert client.get("/", follow_redirects=False).status_code == 303


def test_every_page_has_a_strict_content_security_policy(client) -> None:
    client, *_ = client
    log_in(client, "bob")
    for path in ("/login", "/", "/static/app.js"):
        answer = client.get(path)
        policy = answer.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert "unsafe-inline" not in policy and answer.headers["x-frame-options"] == "DENY"
    page = client.get("/").text
    assert "<script>" not in page and " style=" not in page and "on" + "click" not in page
    for asset in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert asset.startswith(("/", "#", "?", "data:")), asset  # nothing from elsewhere
    assert client.get("/static/report.css").text.startswith(":root")  # the report's own
    assert client.get("/static/nothing.js").status_code == 404


def test_api_answers_and_errors_carry_the_security_headers_and_a_report_keeps_its_own(
    client,
) -> None:
    client, _, ids = client
    log_in(client, "bob")
    for path in ("/healthz", "/api/v1/assets", "/api/v1/assets/999999", "/no/such/page"):
        answer = client.get(path)
        assert answer.headers["x-content-type-options"] == "nosniff", path
        assert answer.headers["content-security-policy"].startswith("default-src 'self'"), path
    report = client.get(f"/assets/{ids[0][0]}/report.html")
    assert report.status_code == 200
    assert report.headers["content-security-policy"].startswith("default-src 'none'")


# -- the catalogue ------------------------------------------------------------------------
def test_the_catalogue_filters_and_sorts_from_the_url(client) -> None:
    client, store, ids = client
    log_in(client, "bob")
    assert rows(client.get("/").text)[:3] == ["promo-6.mp4", "promo-5.mp4", "promo-4.mp4"]
    assert rows(client.get("/?sort=oldest").text)[:2] == ["promo-0.mp4", "promo-1.mp4"]
    assert rows(client.get("/?verdict=unrestricted").text) == ["promo-0.mp4"]
    assert rows(client.get("/?review=pending&name=PROMO-3").text) == ["promo-3.mp4"]
    assert rows(client.get("/?tag=Violence&sort=oldest").text)[0] == "promo-1.mp4"
    assert rows(client.get("/?rule=violence&ruleset=house").text)[-1] == "promo-1.mp4"
    assert rows(client.get("/?scanned_since=2999-01-01").text) == []
    uk = client.get("/?territory=UK&airs_at=2026-11-22T10:00").text
    assert rows(uk) == ["promo-0.mp4"] and "UK any time" in uk
    bad = client.get("/?scanned_since=yesterday")
    assert bad.status_code == 200 and "is not a date" in bad.text
    assert client.get("/?name=%00").status_code == 422  # control characters are refused


def test_the_catalogue_pages_by_cursor_links(client) -> None:
    client, *_ = client
    log_in(client, "bob")
    seen, url = [], "/?limit=3&verdict=not-for-broadcast"
    for _ in range(5):
        page = client.get(url).text
        seen += rows(page)
        found = re.search(r'<a href="([^"]+)" rel="next">', page)
        if not found:
            break
        url = found.group(1).replace("&amp;", "&")
        assert "verdict=not-for-broadcast" in url  # the filter goes with the cursor
    assert seen == [f"promo-{i}.mp4" for i in range(6, 0, -1)]


# -- the asset page -----------------------------------------------------------------------
def _overrides(store: Store) -> int:
    return sum(len(d.overrides) for d in store.current_decisions().values())


def _with_file(store: Store, tmp_path: Path, name: str = "promo-3") -> tuple[Path, bytes]:
    """Give a seeded asset a file that exists (the asset keeps its synthetic path too)."""
    from policy_engine.hashing import text_sha256

    data = bytes(range(256)) * 40  # 10 240 bytes
    path = tmp_path / f"{name}.mp4"
    path.write_bytes(data)
    store.record_asset(str(path), text_sha256(f"synthetic asset {name}"), len(data), None)
    return path, data


def test_the_video_is_served_with_range_requests_to_every_role(client, tmp_path: Path) -> None:
    client, store, ids = client
    asset_id = ids[3][0]
    path, data = _with_file(store, tmp_path)
    assert client.get(f"/assets/{asset_id}/video", follow_redirects=False).status_code == 303
    log_in(client, "bob")  # a viewer
    whole = client.get(f"/assets/{asset_id}/video")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes" and whole.headers["content-type"] == "video/mp4"
    part = client.get(f"/assets/{asset_id}/video", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = client.get(f"/assets/{asset_id}/video", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    beyond = client.get(f"/assets/{asset_id}/video", headers={"Range": "bytes=999999-"})
    assert beyond.status_code == 416
    page = client.get(f"/assets/{asset_id}").text
    assert f'<video id="player" controls preload="metadata" src="/assets/{asset_id}/video">' in page
    path.unlink()  # the file is gone: a clear notice, and 404 for the file
    gone = client.get(f"/assets/{asset_id}")
    assert gone.status_code == 200 and "The file is gone" in gone.text and "<video" not in gone.text
    assert client.get(f"/assets/{asset_id}/video").status_code == 404
    assert client.get("/assets/99999").status_code == 404


def test_the_page_shows_what_the_report_shows_with_blurred_evidence(client) -> None:
    from policy_engine.reporting import build_asset_report, render_asset_report

    client, store, ids = client
    asset_id = ids[4][0]
    log_in(client, "bob")
    page = client.get(f"/assets/{asset_id}").text
    report = render_asset_report(build_asset_report(store, asset_id))
    for section in ("verdict", "reasons", "timeline", "evidence", "coverage", "provenance",
                    "history"):  # fmt: skip
        block = re.search(rf'<section class="[^"]*" aria-label="[^"]*" id="{section}">', page)
        assert block and block.group(0) in report, section  # the same partial drew both
    assert "UK: earliest not permitted (Europe/London) · decided by house" in page
    assert 'data-seek="' in page and 'class="playhead"' in page  # live: seeking, a playhead
    assert "unblurred" not in page.replace("Show the evidence unblurred", "")  # a viewer: no
    assert "unblurred=true" not in client.get(f"/assets/{asset_id}?unblurred=1").text
    log_in(client, "alice")  # a reviewer may ask for the evidence unblurred
    assert "Show the evidence unblurred" in client.get(f"/assets/{asset_id}").text


def _form(client: TestClient, asset_id: int, **fields: str):
    page = client.get(f"/assets/{asset_id}").text
    data = {"csrf_token": csrf_of(page), **fields}
    return client.post(f"/assets/{asset_id}/overrule", data=data, follow_redirects=False)


RULING = {"schedule": "unrestricted", "tags": "", "reason": "context",
          "justification": "Stylised, brief"}  # fmt: skip


def test_a_reviewer_overrules_and_the_verdict_changes_everywhere(client, app_setup) -> None:
    from test_audit_trail import _verdict_in

    client, store, ids = client
    asset_id, decision_id = ids[5]
    log_in(client, "alice")
    done = _form(client, asset_id, decision_id=str(decision_id), **RULING)
    assert done.status_code == 303 and done.headers["location"] == f"/assets/{asset_id}?done=overruled"
    page = client.get(done.headers["location"]).text
    assert re.search(r'id="verdict">\s*<div class="level">Unrestricted', page)
    assert "Your ruling is recorded" in page and "alice" in page and "Stylised, brief" in page
    assert "promo-5.mp4" in rows(client.get("/?verdict=unrestricted").text)  # the catalogue
    report = Path(store.reports(asset_id)[-1].path)  # the static report, rewritten
    assert _verdict_in(report) == "Unrestricted: may air at any time"
    (override,) = store.current_decisions([asset_id])[(asset_id, "house")].overrides
    assert (override.reviewer, override.actor, override.via, override.reason_code) == (
        "alice", "user:alice", "app", "context"
    )
    assert override.tags == ()  # the tag set was emptied on purpose


def test_refusals_write_nothing(client) -> None:
    client, store, ids = client
    asset_id, decision_id = ids[5]
    log_in(client, "bob")  # a viewer: no form, and a forged POST is refused
    page = client.get(f"/assets/{asset_id}").text
    assert "/overrule" not in page and "Record the ruling" not in page
    forged = client.post(
        f"/assets/{asset_id}/overrule",
        data={"csrf_token": csrf_of(page), "decision_id": str(decision_id), **RULING},
    )  # fmt: skip
    assert forged.status_code == 403 and "may not overrule" in forged.text
    log_in(client, "alice")
    for data in (
        {"decision_id": str(decision_id), **RULING},  # no CSRF token
        {"csrf_token": "forged", "decision_id": str(decision_id), **RULING},
    ):
        assert client.post(f"/assets/{asset_id}/overrule", data=data).status_code == 403
    assert _form(client, asset_id, decision_id=str(decision_id), **{**RULING, "reason": "contxt"}
                 ).status_code == 422  # fmt: skip
    assert _form(client, asset_id, decision_id=str(decision_id),
                 **{**RULING, "justification": " "}).status_code == 422  # fmt: skip
    assert _form(client, asset_id, decision_id=str(ids[0][1]), **RULING).status_code == 409
    assert _form(client, asset_id, decision_id=str(decision_id),
                 **{**RULING, "tags": "x" * 101}).status_code == 422  # fmt: skip
    assert _form(client, asset_id, decision_id=str(decision_id),
                 **{**RULING, "schedule": "nonsense"}).status_code == 422  # fmt: skip
    json_body = client.post(f"/assets/{asset_id}/overrule", json={"decision_id": decision_id})
    assert json_body.status_code == 415
    assert _overrides(store) == 0


def test_a_claim_keeps_another_reviewer_from_ruling(client) -> None:
    client, store, ids = client
    asset_id, decision_id = ids[2]
    csrf = log_in(client, "carol")
    claimed = client.post(f"/assets/{asset_id}/claim", data={"csrf_token": csrf},
                          follow_redirects=False)  # fmt: skip
    assert claimed.status_code == 303 and "Release my claim" in client.get(f"/assets/{asset_id}").text
    log_in(client, "alice")
    page = client.get(f"/assets/{asset_id}").text
    assert "Claimed by carol" in page
    refused = _form(client, asset_id, decision_id=str(decision_id), **RULING)
    assert refused.status_code == 409 and "carol has claimed" in refused.text
    assert _overrides(store) == 0
    log_in(client, "carol")
    assert _form(client, asset_id, decision_id=str(decision_id), **RULING).status_code == 303
    from policy_engine.store.review import Reviews

    assert Reviews(store).claims([asset_id]) == {}  # ruling gives the claim back


def test_four_eyes_a_change_of_level_waits_for_a_second_reviewer(app_setup) -> None:
    from test_audit_trail import _verdict_in

    store, ids, settings = app_setup
    asset_id, decision_id = ids[6]
    with TestClient(create_app(replace(settings, four_eyes=True))) as client:
        log_in(client, "alice")
        proposed = _form(client, asset_id, decision_id=str(decision_id), **RULING)
        assert proposed.headers["location"] == f"/assets/{asset_id}?done=proposed"
        page = client.get(f"/assets/{asset_id}").text
        assert re.search(r'id="verdict">\s*<div class="level">Not for broadcast', page)
        assert "Awaiting a second reviewer" in page and "Confirm the change" not in page
        (proposal,) = re.findall(rf'action="/assets/{asset_id}/proposals/(\d+)"', client.get(
            f"/assets/{asset_id}").text) or [None]  # fmt: skip
        assert proposal is None  # the author is offered no confirm button …
        from policy_engine.store.review import Reviews

        (pending,) = Reviews(store).proposals(asset_ids=[asset_id])
        own = client.post(
            f"/assets/{asset_id}/proposals/{pending.id}",
            data={"csrf_token": csrf_of(page), "answer": "confirm"},
        )  # fmt: skip
        assert own.status_code == 403 and _overrides(store) == 0  # … nor may confirm by hand
        assert "awaiting second reviewer" in client.get("/?name=promo-6").text
        log_in(client, "bob")  # a viewer may not confirm either
        page = client.get(f"/assets/{asset_id}").text
        viewer = client.post(
            f"/assets/{asset_id}/proposals/{pending.id}",
            data={"csrf_token": csrf_of(page), "answer": "confirm"},
        )  # fmt: skip
        assert viewer.status_code == 403 and _overrides(store) == 0
        log_in(client, "carol")
        page = client.get(f"/assets/{asset_id}").text
        assert "Confirm the change" in page
        confirmed = client.post(
            f"/assets/{asset_id}/proposals/{pending.id}",
            data={"csrf_token": csrf_of(page), "answer": "confirm"}, follow_redirects=False,
        )  # fmt: skip
        assert confirmed.headers["location"] == f"/assets/{asset_id}?done=confirmed"
        page = client.get(f"/assets/{asset_id}").text
        assert re.search(r'id="verdict">\s*<div class="level">Unrestricted', page)
        assert "confirmed by user:carol (four eyes)" in page
        assert _verdict_in(Path(store.reports(asset_id)[-1].path)).startswith("Unrestricted")
        again = client.post(
            f"/assets/{asset_id}/proposals/{pending.id}",
            data={"csrf_token": csrf_of(page), "answer": "confirm"},
        )  # fmt: skip
        assert again.status_code == 409 and _overrides(store) == 1
        # a change of tags alone is not a change of level: in force at once
        tags_only = _form(client, asset_id, decision_id=str(decision_id), schedule="",
                          tags="Fiction", reason="context", justification="tag it")  # fmt: skip
        assert tags_only.headers["location"].endswith("done=overruled")


def test_the_exports_of_an_asset(client) -> None:
    client, store, ids = client
    asset_id, decision_id = ids[1]
    log_in(client, "bob")
    record = client.get(f"/assets/{asset_id}/decision-record.json")
    assert record.status_code == 200 and "attachment" in record.headers["content-disposition"]
    body = record.json()
    assert body["verdict"]["schedule"] == "not-for-broadcast"
    assert body["decisions"][0]["id"] == decision_id and body["decisions"][0]["reasons"]
    report = client.get(f"/assets/{asset_id}/report.html")
    assert report.status_code == 200 and report.headers["content-disposition"].endswith('.html"')
    assert "<style>" in report.text and 'src="/' not in report.text  # self-contained
    assert "sandbox" in report.headers["content-security-policy"]


def test_four_eyes_through_the_api(app_setup) -> None:
    store, ids, settings = app_setup
    asset_id, decision_id = ids[6]
    accounts = Accounts(store)
    desk = {"Authorization": f"Bearer {accounts.create_token('desk', 'reviewer', by='t')}"}
    other = {"Authorization": f"Bearer {accounts.create_token('qc', 'reviewer', by='t')}"}
    with TestClient(create_app(replace(settings, four_eyes=True))) as client:
        ruling = {"reason": "context", "justification": "fiction", "schedule": "unrestricted"}
        asked = client.post(f"/api/v1/decisions/{decision_id}/overrides", json=ruling, headers=desk)
        assert asked.status_code == 202 and asked.json()["status"] == "awaiting-confirmation"
        proposal = asked.json()["proposal_id"]
        assert client.get(f"/api/v1/assets/{asset_id}", headers=desk).json()["verdict"][
            "schedule"] == "not-for-broadcast"  # fmt: skip
        own = client.post(f"/api/v1/proposals/{proposal}/confirm", json={}, headers=desk)
        assert own.status_code == 403 and _overrides(store) == 0
        done = client.post(f"/api/v1/proposals/{proposal}/confirm", json={}, headers=other)
        assert done.status_code == 200 and done.json()["after"]["schedule"] == "unrestricted"
        again = client.post(f"/api/v1/proposals/{proposal}/reject", json={}, headers=other)
        assert again.status_code == 409 and _overrides(store) == 1
        assert client.post("/api/v1/proposals/999/confirm", json={}, headers=other).status_code == 404


# -- the queue, the audit log, rule sets ----------------------------------------------------
def test_the_queue_lists_what_needs_review_oldest_first_and_claims(client) -> None:
    client, store, ids = client
    csrf = log_in(client, "alice")
    page = client.get("/queue").text
    needing = page[page.index('id="needs-review"'):page.index('id="near-misses"')]
    assert rows_of(needing) == [f"promo-{i}.mp4" for i in range(1, 7)]  # oldest first
    claimed = client.post(f"/assets/{ids[1][0]}/claim",
                          data={"csrf_token": csrf, "back": "queue"}, follow_redirects=False)  # fmt: skip
    assert claimed.headers["location"] == "/queue"
    assert "(yours until" in client.get("/queue").text
    log_in(client, "carol")
    assert "claimed by alice" in client.get("/queue").text
    log_in(client, "bob")  # a viewer sees the queue, without claim buttons
    viewer_page = client.get("/queue").text
    assert "promo-1.mp4" in viewer_page and "Claim</button>" not in viewer_page


def rows_of(html: str) -> list[str]:
    return re.findall(r'<td class="path"><a href="/assets/\d+">([^<]+)</a>', html)


def test_the_sample_shows_a_configured_share_of_cleared_verdicts(app_setup) -> None:
    store, ids, settings = app_setup
    with TestClient(create_app(replace(settings, review_sample=1.0))) as client:
        log_in(client, "bob")
        page = client.get("/queue").text
        assert "promo-0.mp4" in rows_of(page[page.index('id="sample"'):])
    with TestClient(create_app(replace(settings, review_sample=0.0))) as client:
        log_in(client, "bob")
        assert "Nothing sampled now." in client.get("/queue").text


def test_the_audit_log_filters_and_exports_csv(client) -> None:
    import csv
    import io

    client, store, ids = client
    asset_id, decision_id = ids[4]
    log_in(client, "alice")
    _form(client, asset_id, decision_id=str(decision_id),
          **{**RULING, "justification": "=HYPERLINK(\"http://x\")"})  # fmt: skip
    page = client.get("/audit").text
    assert 'data-kind="override"' in page and 'data-kind="login"' in page
    only = client.get(f"/audit?kind=override&asset={asset_id}").text
    assert 'data-kind="login"' not in only and "user:alice" in only
    assert 'data-kind="override"' not in client.get("/audit?actor=carol").text
    assert client.get("/audit?kind=nonsense").status_code == 422
    exported = client.get(f"/audit.csv?asset={asset_id}")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(exported.text)))
    assert table[0] == ["at", "kind", "actor", "via", "asset_id", "decision_id", "what"]
    (row,) = table[1:]
    assert row[1:6] == ["override", "user:alice", "app", str(asset_id), str(decision_id)]
    assert "'=HYPERLINK" not in row[6] and "=HYPERLINK" in row[6]  # not at a cell's start
    assert client.get("/audit.csv?actor=%3D1").status_code == 200


def test_rule_sets_are_for_editors_with_versions_diff_and_a_dry_run(client) -> None:
    client, store, ids = client
    from policy_engine.policy.loader import parse_ruleset

    store.record_rules_in_force({"/rules/house.yaml": parse_ruleset(RULES, "house.yaml")})
    edited = RULES.replace("version: 1", "version: 2").replace("coverage_above: 5%",
                                                                "coverage_above: 35%")  # fmt: skip
    store.record_rules_in_force({"/rules/house.yaml": parse_ruleset(edited, "house.yaml")})
    log_in(client, "alice")  # a reviewer: not an editor
    assert client.get("/rulesets").status_code == 403
    assert "/rulesets" not in client.get("/").text.split("<main")[0]  # not in the menu
    csrf = log_in(client, "eve")
    listing = client.get("/rulesets").text
    assert "house" in listing and parse_ruleset(edited, "h").sha256 in listing
    versions = client.get("/rulesets/house").text
    assert "Version 2" in versions and "Version 1" in versions
    old, new = parse_ruleset(RULES, "h").sha256, parse_ruleset(edited, "h").sha256
    diff = client.get(f"/rulesets/house/diff?old={old}&new={new}").text
    assert '<span class="del">-    when: {category: violence, coverage_above: 5%}' in diff
    assert '<span class="add">+    when: {category: violence, coverage_above: 35%}' in diff
    assert client.get("/rulesets/nothing").status_code == 404
    form = client.get("/rulesets/dry-run?start=house").text
    assert "coverage_above: 35%" in form  # begins from the latest text
    tried = client.post("/rulesets/dry-run", data={"csrf_token": csrf, "text": edited})
    assert tried.status_code == 200
    changed = re.findall(r'<td><a href="/assets/\d+">(promo-\d)\.mp4</a></td>', tried.text)
    assert changed == ["promo-1", "promo-2", "promo-3"]  # 10-30 % violence: now cleared
    why = tried.text[tried.text.index('id="changes"'):]
    assert "<td>unrestricted</td>" in why and "no longer fires violence" in why
    broken = client.post("/rulesets/dry-run", data={"csrf_token": csrf, "text": "rules: [\n"})
    assert broken.status_code == 422 and "line " in broken.text
    assert client.post("/rulesets/dry-run", data={"text": edited}).status_code == 403  # no CSRF
    assert _overrides(store) == 0 and len(store.current_decisions()) == 7  # nothing written


def test_every_role_boundary_refuses_and_writes_nothing(client) -> None:
    """Each change as each role: only those allowed get through the role check (a
    refusal is 403 and writes nothing); the others reach the form's own checks."""
    from policy_engine.store.review import Reviews

    client, store, ids = client
    asset_id, decision_id = ids[3]
    changes = {  # path, form, the roles that may
        "overrule": (f"/assets/{asset_id}/overrule",
                     {"decision_id": str(decision_id), **RULING}, {"alice", "carol"}),
        "claim": (f"/assets/{asset_id}/claim", {}, {"alice", "carol"}),
        "answer": (f"/assets/{asset_id}/proposals/999", {"answer": "confirm"},
                   {"alice", "carol"}),
        "dry-run": ("/rulesets/dry-run", {"text": RULES}, {"eve"}),
    }  # fmt: skip
    for name in PASSWORDS:
        csrf = log_in(client, name)
        for what, (path, form, allowed) in changes.items():
            if name in allowed:
                continue
            refused = client.post(path, data={"csrf_token": csrf, **form})
            assert refused.status_code == 403, (name, what)
            assert "may not" in refused.text
        for page in ("/rulesets", "/rulesets/house", "/rulesets/dry-run"):
            assert (client.get(page).status_code == 403) == (name != "eve"), (name, page)
    assert _overrides(store) == 0 and Reviews(store).claims([asset_id]) == {}
    assert Reviews(store).proposals() == []
    client.cookies.clear()
    for path in ("/", "/queue", "/audit", "/audit.csv", f"/assets/{asset_id}",
                 f"/assets/{asset_id}/video", f"/assets/{asset_id}/report.html", "/rulesets"):
        assert client.get(path, follow_redirects=False).status_code == 303, path  # fmt: skip
    anonymous = client.post(f"/assets/{asset_id}/overrule", data=RULING, follow_redirects=False)
    assert anonymous.status_code == 303 and _overrides(store) == 0


# -- single sign-on: a user the proxy names, with no session ------------------------------------
def test_a_user_signed_on_by_the_proxy_rules_from_the_pages_of_this_site_only(client) -> None:
    """No session, so no CSRF token: the proxy's sign-on rides on a cross-site form too,
    so a form is believed when the browser says it came from this site (Sec-Fetch-Site,
    else Origin against the forwarded host); neither header, nothing is written."""
    client, store, ids = client
    engine = client.app.state.engine
    engine.settings = replace(engine.settings, remote_user_header="X-Remote-User",
                              trusted_proxies=("testclient",))  # fmt: skip
    client.cookies.clear()
    alice = {"X-Remote-User": "alice"}
    asset_id, decision_id = ids[4]
    queue = client.get("/queue", headers=alice).text
    assert f'action="/assets/{ids[1][0]}/claim"' in queue  # the claim buttons are there
    page = client.get(f"/assets/{asset_id}", headers=alice).text
    assert f'action="/assets/{asset_id}/overrule"' in page and 'value="None"' not in page
    ruling = {"decision_id": str(decision_id), **RULING}
    url = f"/assets/{asset_id}/overrule"
    for refused in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"},
                    {"Origin": "null"}, {}):  # fmt: skip
        answer = client.post(url, data=ruling, headers={**alice, **refused},
                             follow_redirects=False)  # fmt: skip
        assert answer.status_code == 403, refused
        assert "Not sent from this site" in answer.text
    assert _overrides(store) == 0
    away = client.post("/search", files={"picture": ("a.png", b"x")},
                       headers={**alice, "Sec-Fetch-Site": "cross-site"})  # fmt: skip
    assert away.status_code == 403  # searching loads a model: not for another site's form
    by_origin = client.post(f"/assets/{asset_id}/claim", data={"back": "queue"},
                            headers={**alice, "Origin": "http://testserver"},
                            follow_redirects=False)  # fmt: skip
    assert by_origin.status_code == 303
    done = client.post(url, data=ruling, headers={**alice, "Sec-Fetch-Site": "same-origin"},
                       follow_redirects=False)  # fmt: skip
    assert done.status_code == 303 and _overrides(store) == 1
    (override,) = store.current_decisions([asset_id])[(asset_id, "house")].overrides
    assert (override.actor, override.via) == ("user:alice", "app")
    bob = client.post(url, data=ruling, headers={"X-Remote-User": "bob",
                                                 "Sec-Fetch-Site": "same-origin"},
                      follow_redirects=False)  # fmt: skip
    assert bob.status_code == 403 and _overrides(store) == 1  # a viewer, from this site too

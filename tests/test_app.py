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
        assert asset.startswith(("/", "#", "?")), asset  # nothing from elsewhere
    assert client.get("/static/report.css").text.startswith(":root")  # the report's own
    assert client.get("/static/nothing.js").status_code == 404


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

"""The HTTP service through HTTP (httpx against the real app): health, readiness, token
authentication and roles, problem documents, the asset and ask endpoints."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_ask import QUERY, no_video_no_image_tower, smoking_scan  # noqa: F401 - fixtures

from policy_engine.config import Settings
from policy_engine.service.app import create_app
from policy_engine.store import Store
from policy_engine.store.accounts import Accounts

PROBLEM = "application/problem+json"


@pytest.fixture
def service(smoking_scan, tiny_clip_dir: Path, db_url: str):  # noqa: F811 - a fixture
    store, asset_id = smoking_scan
    tokens = Accounts(store)
    viewer = tokens.create_token("mam", "viewer", by="test")
    admin = tokens.create_token("ops", "admin", by="test")
    settings = replace(Settings(), db=db_url, model=str(tiny_clip_dir), device="cpu")
    with TestClient(create_app(settings)) as client:
        yield client, asset_id, {"viewer": viewer, "admin": admin}, tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_and_readiness(service) -> None:
    client, *_ = service
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_not_ready_while_the_database_is_down(tmp_path: Path) -> None:
    down = "postgresql://nobody@127.0.0.1:9/none"  # nothing listens on port 9
    with TestClient(create_app(replace(Settings(), db=down))) as client:
        assert client.get("/healthz").status_code == 200  # alive, just not ready
        answer = client.get("/readyz")
    assert answer.status_code == 503 and answer.headers["content-type"] == PROBLEM
    assert (
        answer.json()["type"].endswith(":not-ready")
        and "cannot use database" in answer.json()["detail"]
    )


def test_no_token_a_wrong_one_or_a_revoked_one_is_401(service) -> None:
    client, asset_id, tokens, accounts = service
    for headers in ({}, bearer("pe_000000000000_guess"), bearer("not-even-a-token")):
        answer = client.get(f"/api/v1/assets/{asset_id}", headers=headers)
        assert answer.status_code == 401 and answer.headers["content-type"] == PROBLEM
        assert answer.headers["www-authenticate"].startswith("Bearer")
    accounts.revoke_token("mam")
    assert (
        client.get(f"/api/v1/assets/{asset_id}", headers=bearer(tokens["viewer"])).status_code
        == 401
    )


def test_a_role_without_the_permission_is_403(service) -> None:
    client, _, tokens, _ = service
    refused = client.get("/api/v1/tokens", headers=bearer(tokens["viewer"]))
    assert refused.status_code == 403 and "viewer" in refused.json()["detail"]
    listed = client.get("/api/v1/tokens", headers=bearer(tokens["admin"]))
    assert listed.status_code == 200
    assert {t["name"] for t in listed.json()} == {"mam", "ops"}
    assert not any(tokens["viewer"] in str(t) for t in listed.json())  # never the secret


def test_an_asset_with_its_verdict(service) -> None:
    client, asset_id, tokens, _ = service
    answer = client.get(f"/api/v1/assets/{asset_id}", headers=bearer(tokens["viewer"]))
    assert answer.status_code == 200
    body = answer.json()
    assert body["id"] == asset_id and body["path"].endswith("promo.mp4")
    missing = client.get("/api/v1/assets/999999", headers=bearer(tokens["viewer"]))
    assert missing.status_code == 404 and missing.json()["type"].endswith(":no-such-asset")
    invalid = client.get("/api/v1/assets/abc", headers=bearer(tokens["viewer"]))
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["field"] == "asset_id"


def test_ask_over_http_with_the_text_tower_only(
    service,
    no_video_no_image_tower: list,  # noqa: F811 - a fixture
) -> None:
    client, asset_id, tokens, _ = service
    answer = client.get(
        f"/api/v1/assets/{asset_id}/ask", params={"q": QUERY}, headers=bearer(tokens["viewer"])
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["present"] and body["first_seen"] == pytest.approx(3.0, abs=0.3)
    assert body["weights_sha256"].startswith("sha256:") and body["segments"]
    for params, field in (({"q": ""}, "q"), ({"q": QUERY, "threshold": "2"}, "threshold")):
        bad = client.get(
            f"/api/v1/assets/{asset_id}/ask", params=params, headers=bearer(tokens["viewer"])
        )
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == field


def test_concurrent_first_questions_load_the_text_model_once(
    service,
    no_video_no_image_tower: list,  # noqa: F811 - a fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first questions after a start arrive together (one per client): one loads the
    text model, the others wait for it, and every one is answered. Loading it from
    several threads at once used to answer some with 500 (transformers' lazy imports are
    not thread-safe); here a second load under way at the same time fails outright."""
    import asyncio
    import threading
    import time

    import httpx

    import policy_engine.models.clip as clip

    client, asset_id, tokens, _ = service
    spy, busy = clip.load_text_encoder, threading.Lock()

    def one_at_a_time(*args, **kwargs):
        if not busy.acquire(blocking=False):
            raise RuntimeError("a second load of the text model began during the first")
        try:
            time.sleep(0.2)  # a load takes a while: the other requests arrive meanwhile
            return spy(*args, **kwargs)
        finally:
            busy.release()

    monkeypatch.setattr(clip, "load_text_encoder", one_at_a_time)

    async def ask_together(count: int) -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(
                *(
                    http.get(f"/api/v1/assets/{asset_id}/ask", params={"q": QUERY},
                             headers=bearer(tokens["viewer"]))
                    for _ in range(count)
                )
            )  # fmt: skip

    answers = asyncio.run(ask_together(8))
    assert [a.status_code for a in answers] == [200] * 8, answers[0].text
    assert len({a.text for a in answers}) == 1
    assert len(no_video_no_image_tower) == 1  # loaded once, by the first


def test_the_openapi_document_lists_the_api(service) -> None:
    client, *_ = service
    paths = client.get("/api/openapi.json").json()["paths"]
    assert {"/api/v1/assets/{asset_id}", "/api/v1/assets/{asset_id}/ask"} <= set(paths)
    assert client.get("/api/docs").status_code == 200


def test_serve_refuses_nonsense_before_starting(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from policy_engine.cli import app

    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    result = CliRunner().invoke(app, ["--db", db, "serve", "--workers", "0"])
    assert result.exit_code == 2 and "--workers" in result.output
    store = Store.open(db)
    store.close()


def _python_children(pid: int) -> list[int]:
    """The processes ``pid`` started that are still running (Linux)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children]


def _workers_of(pid: int) -> list[int]:
    """The worker processes of a supervisor (not multiprocessing's resource tracker)."""
    return [
        child
        for child in _python_children(pid)
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def _listening_sockets(port: int) -> int:
    """How many TCP sockets listen on ``port`` (Linux: /proc/net/tcp, state 0A)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        count += state == "0A" and int(local.split(":")[1], 16) == port
    return count


def _wait_for_listening_sockets(port: int, count: int, seconds: float = 60) -> None:
    """Until ``count`` sockets listen on ``port``. Each worker listens on its own socket
    once it has started, and /readyz is answered by whichever is up first: under load
    the others may still be importing (never more than ``count``)."""
    import time

    deadline = time.monotonic() + seconds
    while (listening := _listening_sockets(port)) < count:
        assert time.monotonic() < deadline, f"{listening} of {count} sockets listening"
        time.sleep(0.2)
    assert listening == count, f"{listening} sockets listening, not {count}"


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_serve_answers_over_tcp_and_stops_gracefully_on_sigterm(
    tmp_path: Path, workers: int
) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    cli = Path(sys.executable).parent / "policy-engine"
    made = subprocess.run(
        [str(cli), "--db", db, "tokens", "create", "ops", "--role", "admin"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    token = made.stdout.strip()
    with socket.socket() as probe:  # a free port on loopback
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(cli), "--db", db, "serve", "--port", str(port), "--workers", str(workers)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "POLICY_ENGINE_DB": ""},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not get ready in 60 s"
            time.sleep(0.2)
        for _ in range(4 * workers):  # whichever process answers, the same records
            listed = httpx.get(
                f"{base}/api/v1/tokens", headers={"Authorization": f"Bearer {token}"}
            )
            assert listed.status_code == 200 and listed.json()[0]["name"] == "ops"
        serving = _python_children(server.pid)
        if workers > 1:  # a supervisor and its workers (a single process serves itself)
            assert len(serving) >= workers, serving
            # one listening socket per worker (SO_REUSEPORT): the kernel spreads
            # connections over them, where one shared socket let one worker take them all
            # (one socket would never become two; the second worker may still be starting)
            _wait_for_listening_sockets(port, workers)
            # a worker killed is replaced on its own socket: no socket left unserved
            workers_before = _workers_of(server.pid)
            os.kill(workers_before[0], signal.SIGKILL)
            deadline = time.monotonic() + 60
            while workers_before[0] in (now := _workers_of(server.pid)) or len(now) < workers:
                assert time.monotonic() < deadline, "the killed worker was not replaced"
                time.sleep(0.2)
            # new connections, hashed over both sockets. The replacement process exists
            # but may still be starting (seconds under load): a connection on its socket
            # waits in the backlog until it accepts, so wait as long as for readiness; a
            # socket left without a worker would never answer
            for _ in range(20):
                with httpx.Client(base_url=base, timeout=httpx.Timeout(5, read=60)) as fresh:
                    assert fresh.get("/healthz").status_code == 200
            assert _listening_sockets(port) == workers
            serving = _python_children(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=30)[0]
    assert server.returncode == 0, output
    deadline = time.monotonic() + 10  # orphans are reaped by init a moment later
    while [c for c in serving if Path(f"/proc/{c}").exists()] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [c for c in serving if Path(f"/proc/{c}").exists()], "workers outlived the stop"


# -- overrides through the API ------------------------------------------------------------------
@pytest.fixture
def decided(service, tmp_path: Path):
    """A not-for-broadcast decision, and a reviewer's token."""
    from test_audit_trail import _decided

    client, _, tokens, accounts = service
    asset_id, decision_id = _decided(accounts.store)
    tokens["reviewer"] = accounts.create_token("desk", "reviewer", by="test")
    return client, decision_id, tokens, accounts.store


def _overrides(store: Store) -> list:
    from sqlalchemy import select

    from policy_engine.store.schema import Override

    with store._transaction() as s:
        return list(s.scalars(select(Override)))


RULING = {"reason": "context", "justification": "Stylised, brief", "schedule": "unrestricted"}


def test_a_reviewer_overrules_as_themselves(decided) -> None:
    client, decision_id, tokens, store = decided
    answer = client.post(
        f"/api/v1/decisions/{decision_id}/overrides",
        json=RULING,
        headers=bearer(tokens["reviewer"]),
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["before"]["schedule"] == "not-for-broadcast"
    assert body["after"]["schedule"] == "unrestricted" and body["after"]["review"] is False
    (row,) = _overrides(store)
    assert (row.reviewer, row.actor, row.via, row.reason_code) == (
        "desk",
        "token:desk",
        "api",
        "context",
    )


def test_a_viewer_may_not_overrule_and_the_refusal_writes_nothing(decided) -> None:
    client, decision_id, tokens, store = decided
    answer = client.post(
        f"/api/v1/decisions/{decision_id}/overrides", json=RULING, headers=bearer(tokens["viewer"])
    )
    assert answer.status_code == 403 and answer.headers["content-type"] == PROBLEM
    assert _overrides(store) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**RULING, "reviewer": "someone else"}, "reviewer"),  # unknown fields are refused
        ({k: v for k, v in RULING.items() if k != "justification"}, "justification"),
        ({**RULING, "justification": ""}, "justification"),
        ({**RULING, "tags": ["x" * 101]}, "tags.0"),
    ],
)
def test_bad_rulings_are_422_with_the_field_and_write_nothing(decided, body, field) -> None:
    client, decision_id, tokens, store = decided
    answer = client.post(
        f"/api/v1/decisions/{decision_id}/overrides", json=body, headers=bearer(tokens["reviewer"])
    )
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == field
    assert _overrides(store) == []


def test_hostile_bodies_are_refused_cleanly(decided) -> None:
    client, decision_id, tokens, store = decided
    url, headers = f"/api/v1/decisions/{decision_id}/overrides", bearer(tokens["reviewer"])
    wrong_reason = client.post(url, json={**RULING, "reason": "contxt"}, headers=headers)
    assert (
        wrong_reason.status_code == 422
        and "did you mean 'context'" in wrong_reason.json()["detail"]
    )
    huge = client.post(
        url,
        content=b'{"justification": "' + b"x" * 70_000 + b'"}',
        headers={**headers, "content-type": "application/json"},
    )
    assert huge.status_code == 413
    deep = client.post(
        url,
        content=b"[" * 20_000 + b"]" * 20_000,
        headers={**headers, "content-type": "application/json"},
    )
    assert deep.status_code == 400 and deep.headers["content-type"] == PROBLEM  # not a 500
    missing = client.post("/api/v1/decisions/999999/overrides", json=RULING, headers=headers)
    assert missing.status_code == 404
    hostile = {**RULING, "justification": "<script>alert(1)</script>\x1b[2J\nforged line"}
    assert client.post(url, json=hostile, headers=headers).status_code == 201
    assert _overrides(store)[0].justification == hostile["justification"]  # kept as written


def test_an_override_from_the_command_line_names_the_os_user(decided, db_url: str) -> None:
    from typer.testing import CliRunner

    from policy_engine.accounts import local_operator
    from policy_engine.cli import app

    _, decision_id, _, store = decided
    args = [
        "--db",
        db_url,
        "override",
        str(decision_id),
        "-j",
        "Context",
        "--schedule",
        "unrestricted",
    ]
    wrong = CliRunner().invoke(app, [*args, "--reason", "contxt"])
    assert wrong.exit_code == 2 and "did you mean 'context'" in wrong.output
    done = CliRunner().invoke(app, [*args, "--reason", "context"])
    assert done.exit_code == 0, done.output
    (row,) = _overrides(store)
    assert (row.reviewer, row.actor, row.via, row.reason_code) == (
        local_operator(), local_operator(), "cli", "context",
    )  # fmt: skip


# -- the catalogue ----------------------------------------------------------------------------------
@pytest.fixture
def catalogue(service):
    """Seven trailers judged by the house rules: promo-0 clean, promo-1..6 violent."""
    from test_audit_trail import CATEGORIES, RULES

    from policy_engine.pipeline.judging import judge
    from policy_engine.policy.loader import parse_ruleset
    from policy_engine.store import NewDecision
    from policy_engine.store.synthetic import labelled_probabilities, seed_scan

    client, _, tokens, accounts = service
    store, ruleset = accounts.store, parse_ruleset(RULES, "house.yaml")
    ids = []
    for i in range(7):
        labels = [0] * (2 * i) + [1] * (20 - 2 * i)  # violence in 10 % x i of the time
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
    return client, ids, tokens, store


def _names(page: dict) -> list[str]:
    return [Path(item["path"]).stem for item in page["items"]]


def test_the_catalogue_pages_by_cursor_through_every_asset(catalogue) -> None:
    client, ids, tokens, _ = catalogue
    seen, cursor = [], 0
    for _ in range(10):
        page = client.get(
            "/api/v1/assets",
            params={"limit": 3, "cursor": cursor},
            headers=bearer(tokens["viewer"]),
        ).json()
        seen += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert seen == sorted(seen) and set(seen) >= {a for a, _ in ids}  # each once, in order
    assert len(seen) == len(set(seen))


def test_the_catalogue_filters_on_the_verdict_in_force(catalogue) -> None:
    client, ids, tokens, store = catalogue

    def names(**params) -> list[str]:
        answer = client.get("/api/v1/assets", params=params, headers=bearer(tokens["viewer"]))
        assert answer.status_code == 200, answer.text
        return [n for n in _names(answer.json()) if n.startswith("promo-")]

    assert names(verdict="unrestricted") == ["promo-0"]
    assert names(verdict="not-for-broadcast") == [f"promo-{i}" for i in range(1, 7)]
    assert names(tag="Violence", name="PROMO-3") == ["promo-3"]
    assert names(rule="violence") == names(review="true") == [f"promo-{i}" for i in range(1, 7)]
    assert names(ruleset="house") == [f"promo-{i}" for i in range(7)]
    assert names(scanned_since="2999-01-01T00:00:00") == []
    store.add_override(ids[2][1], reviewer="desk", justification="fine", schedule="unrestricted")
    assert names(verdict="unrestricted") == ["promo-0", "promo-2"]  # overrides count
    assert "promo-2" not in names(review="true")
    bad = client.get("/api/v1/assets", params={"limit": 0}, headers=bearer(tokens["viewer"]))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "limit"


def test_a_rare_filter_reads_a_bounded_number_of_assets_per_request(catalogue) -> None:
    from policy_engine.pipeline.catalogue import AssetFilter, list_assets

    _, ids, _, store = catalogue
    rare = AssetFilter(verdict="unrestricted")
    first = list_assets(store, rare, after=ids[0][0], limit=5, budget=2)  # after promo-0
    assert first.items == [] and first.cursor is not None  # not the end: go on from here
    rest = list_assets(store, rare, after=first.cursor, limit=5)
    assert rest.items == [] and rest.cursor is None


def test_a_catalogue_page_works_out_each_rule_set_and_level_s_slots_once(
    catalogue, monkeypatch
) -> None:
    """Slots depend only on the rule set's text and the level in force: seven assets at
    two levels are two computations, and the page says the same as computing each."""
    from policy_engine.pipeline import catalogue as pages
    from policy_engine.policy import territory

    _, _, _, store = catalogue
    pages._SLOTS.clear()
    expected = pages.list_assets(store, pages.AssetFilter(), limit=50).items
    calls = []
    real = territory.combined_slots
    monkeypatch.setattr(territory, "combined_slots", lambda r: calls.append(r) or real(r))
    pages._SLOTS.clear()
    page = pages.list_assets(store, pages.AssetFilter(), limit=50).items
    judged = [item for item in page if item["verdict"]]
    levels = {item["verdict"]["schedule"] for item in judged}
    assert len(judged) == 7 and len(levels) == 2
    assert len(calls) == len(levels)
    assert page == expected
    assert judged[0]["slots"] and judged[0]["slots"] is not judged[1]["slots"]


def test_a_rule_set_text_this_software_no_longer_reads_gives_no_slots_not_an_error(
    catalogue, monkeypatch
) -> None:
    from policy_engine.pipeline import catalogue as pages
    from policy_engine.policy import loader

    client, _, tokens, store = catalogue

    def unreadable(*args, **kwargs):
        raise ValueError("a rule the current software does not know")

    monkeypatch.setattr(loader, "parse_ruleset", unreadable)
    monkeypatch.setattr(pages, "_PARSED", {})
    pages._SLOTS.clear()
    answer = client.get("/api/v1/assets", headers=bearer(tokens["viewer"]))
    assert answer.status_code == 200, answer.text
    judged = [item for item in answer.json()["items"] if item["verdict"]]
    assert len(judged) == 7 and all(item["slots"] == [] for item in judged)
    assert not pages._SLOTS  # nothing unverified kept


# -- browser sessions ---------------------------------------------------------------------------
@pytest.fixture
def people(decided):
    """alice (reviewer) and bob (viewer) with passwords; a decision to overrule."""
    client, decision_id, tokens, store = decided
    users = Accounts(store)
    users.add_user("alice", "reviewer", "alice's long password", by="test")
    users.add_user("bob", "viewer", "bob's long password!", by="test")
    return client, decision_id, users, store


def _log_in(client, name: str, password: str):
    return client.post("/api/v1/session", json={"name": name, "password": password})


def test_a_login_sets_a_strict_http_only_cookie_and_gives_a_csrf_token(people) -> None:
    client, _, _, _ = people
    assert _log_in(client, "alice", "wrong password!").status_code == 401
    assert _log_in(client, "nobody", "alice's long password").status_code == 401
    answer = _log_in(client, "alice", "alice's long password")
    assert answer.status_code == 200 and answer.json()["role"] == "reviewer"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # loopback by default; secure_cookies for TLS
    assert client.get("/api/v1/session").json() == {
        "kind": "user",
        "name": "alice",
        "role": "reviewer",
    }


def test_changes_by_session_need_the_csrf_token(people) -> None:
    client, decision_id, _, store = people
    csrf = _log_in(client, "alice", "alice's long password").json()["csrf_token"]
    url = f"/api/v1/decisions/{decision_id}/overrides"
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        refused = client.post(url, json=RULING, headers=headers)
        assert refused.status_code == 403 and refused.json()["type"].endswith(":csrf")
    assert _overrides(store) == []
    done = client.post(url, json=RULING, headers={"X-CSRF-Token": csrf})
    assert done.status_code == 201, done.text
    assert _overrides(store)[0].actor == "user:alice"


def test_logging_out_ends_the_session_on_the_server(people) -> None:
    client, _, _, _ = people
    csrf = _log_in(client, "alice", "alice's long password").json()["csrf_token"]
    stolen = client.cookies.get("pe_session")
    assert client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    client.cookies.set("pe_session", stolen)  # the old cookie, replayed
    assert client.get("/api/v1/session").status_code == 401


def test_disabling_a_user_or_changing_the_password_ends_their_sessions(people) -> None:
    client, _, users, store = people
    _log_in(client, "bob", "bob's long password!")
    users.disable("bob")
    assert client.get("/api/v1/session").status_code == 401
    users.enable("bob")
    _log_in(client, "bob", "bob's long password!")
    users.set_password("bob", "another long password")
    assert client.get("/api/v1/session").status_code == 401


def test_an_expired_session_is_refused(people) -> None:
    from sqlalchemy import update

    from policy_engine.store.schema import WebSession, utcnow

    client, _, _, store = people
    _log_in(client, "bob", "bob's long password!")
    with store._transaction() as s:
        s.execute(update(WebSession).values(expires_at=utcnow()))
    assert client.get("/api/v1/session").status_code == 401


def test_failed_logins_are_limited_per_account_and_per_address(people) -> None:
    client, _, _, _ = people
    for _ in range(5):
        assert _log_in(client, "alice", "a wrong password").status_code == 401
    limited = _log_in(client, "alice", "alice's long password")  # even the right one
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert _log_in(client, "bob", "bob's long password!").status_code == 200  # another account
    for i in range(15):  # 20 failures from this address in all
        _log_in(client, f"guess{i}", "a wrong password")
    assert _log_in(client, "bob", "bob's long password!").status_code == 429


# -- rule sets ----------------------------------------------------------------------------------
def test_rule_sets_in_force_and_their_versions(catalogue) -> None:
    from test_audit_trail import RULES

    from policy_engine.policy.loader import parse_ruleset

    client, _, tokens, store = catalogue
    store.record_rules_in_force({"/etc/rules/house.yaml": parse_ruleset(RULES, "house.yaml")})
    listed = client.get("/api/v1/rulesets", headers=bearer(tokens["viewer"])).json()
    assert [(r["name"], r["path"]) for r in listed] == [("house", "/etc/rules/house.yaml")]
    versions = client.get("/api/v1/rulesets/house/versions", headers=bearer(tokens["viewer"]))
    assert versions.status_code == 200 and versions.json()[0]["text"] == RULES
    missing = client.get("/api/v1/rulesets/nothing/versions", headers=bearer(tokens["viewer"]))
    assert missing.status_code == 404


def test_a_rule_edit_is_tried_on_the_archive_without_writing(catalogue, tiny_clip_dir) -> None:
    from sqlalchemy import func, select
    from test_audit_trail import RULES

    from policy_engine.store.schema import DecisionRecord

    client, _, tokens, store = catalogue
    editor = Accounts(store).create_token("rules-desk", "editor", by="test")
    edited = RULES.replace("version: 1", "version: 2").replace(
        "coverage_above: 5%", "coverage_above: 55%"
    )
    url = "/api/v1/rulesets/diff"

    def decisions() -> int:
        with store._transaction() as s:
            return int(s.scalar(select(func.count()).select_from(DecisionRecord)))

    before = decisions()
    assert (
        client.post(url, json={"text": edited}, headers=bearer(tokens["viewer"])).status_code == 403
    )
    answer = client.post(url, json={"text": edited}, headers=bearer(editor))
    assert answer.status_code == 200, answer.text
    changed = {
        Path(c["path"]).stem: c["after"]["schedule"]
        for c in answer.json()["changes"]
        if Path(c["path"]).stem.startswith("promo-")
    }
    assert changed == {f"promo-{i}": "unrestricted" for i in range(1, 6)}  # 10-50 % of the time
    assert answer.json()["dry_run"] is True and decisions() == before
    broken = client.post(url, json={"text": RULES + "  - id: [unclosed\n"}, headers=bearer(editor))
    assert broken.status_code == 422 and broken.json()["errors"][0]["line"]


def test_every_request_is_one_json_line_in_the_engines_log_format(service) -> None:
    import io
    import json
    import logging

    from policy_engine.logsetup import JsonLines

    client, asset_id, tokens, _ = service
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonLines())
    logger = logging.getLogger("policy_engine.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        client.get(f"/api/v1/assets/{asset_id}", headers=bearer(tokens["viewer"]))
        client.get("/api/v1/assets/1", headers=bearer("pe_000000000000_forged"))
        client.post(
            "/api/v1/session",
            content=b"{}" + b" " * 70_000,
            headers={"content-type": "application/json"},
        )
    finally:
        logger.removeHandler(handler)
    entries = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert [(e["method"], e["status"], e["caller"]) for e in entries] == [
        ("GET", 200, "token:mam"), ("GET", 401, None), ("POST", 413, None),
    ]  # fmt: skip
    assert entries[0]["path"] == f"/api/v1/assets/{asset_id}" and entries[0]["ms"] >= 0
    assert all(e["logger"] == "policy_engine.access" and "time" in e for e in entries)


# -- single sign-on through a trusted proxy -----------------------------------------------------
def test_a_trusted_proxy_signs_users_on_and_nobody_else_can(people) -> None:
    client, decision_id, users, store = people
    engine = client.app.state.engine
    as_alice = {"X-Remote-User": "alice"}
    assert client.get("/api/v1/session", headers=as_alice).status_code == 401  # off by default
    engine.settings = replace(engine.settings, remote_user_header="X-Remote-User",
                              trusted_proxies=("testclient",))  # fmt: skip
    assert client.get("/api/v1/session", headers=as_alice).json()["name"] == "alice"
    assert client.get("/api/v1/session", headers={"X-Remote-User": "mallory"}).status_code == 403
    users.disable("bob")
    assert client.get("/api/v1/session", headers={"X-Remote-User": "bob"}).status_code == 403
    url = f"/api/v1/decisions/{decision_id}/overrides"
    assert client.post(url, json=RULING, headers=as_alice).status_code == 403  # CSRF guard
    done = client.post(url, json=RULING, headers={**as_alice, "X-Requested-With": "fetch"})
    assert done.status_code == 201 and _overrides(store)[0].actor == "user:alice"
    engine.settings = replace(engine.settings, trusted_proxies=("10.0.0.1",))
    spoofed = client.get("/api/v1/session", headers=as_alice)  # not from the proxy
    assert spoofed.status_code == 403 and spoofed.json()["type"].endswith(":untrusted-proxy")


@pytest.mark.slow
def test_the_readme_api_examples_run_against_a_live_server(
    tmp_path: Path, tiny_clip_dir: Path
) -> None:
    """The README's curl block, as written (only the port and the /srv prefix are
    replaced), against `policy-engine serve` over TCP."""
    import os
    import re
    import shutil
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx
    import numpy as np
    from test_audit_trail import CATEGORIES, RULES

    from policy_engine.media.synthetic import write_color_segments
    from policy_engine.models.clip import ClipEmbedder
    from policy_engine.pipeline.judging import judge
    from policy_engine.policy.loader import parse_ruleset
    from policy_engine.store import NewDecision, ScanModel
    from policy_engine.store.synthetic import labelled_probabilities, seed_scan

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"<!-- api-examples -->\n```sh\n(.*?)```", readme, re.S).group(1)
    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    store = Store.open(db)
    identity = ClipEmbedder.load(str(tiny_clip_dir), device="cpu", dtype="fp32")
    model = ScanModel(name=str(tiny_clip_dir), path=str(tiny_clip_dir),
                      weights_sha256=identity.identity.weights_sha256,
                      embed_dim=identity.identity.embed_dim, logit_scale=identity.logit_scale)  # fmt: skip
    frames = np.random.default_rng(3).standard_normal((20, identity.identity.embed_dim))
    frames = (frames / np.linalg.norm(frames, axis=1, keepdims=True)).astype(np.float32)
    asset_id, scan_id = seed_scan(
        store, name="trailer", categories=CATEGORIES, duration=10.0, model=model,
        probabilities=labelled_probabilities([0] * 5 + [1] * 15, 2), embeddings=frames,
    )  # fmt: skip
    ruleset = parse_ruleset(RULES, "house.yaml")
    scan = store.completed_scans(scan_ids=[scan_id])[0]
    decision = judge(store, [scan], [ruleset], None).judgements[0].decision
    store.append_decisions([NewDecision(scan_id, asset_id, ruleset, decision, "scan")])
    store.close()
    assert asset_id == 1
    promos = tmp_path / "srv" / "ingest" / "promos"
    promos.mkdir(parents=True)
    write_color_segments(promos / "new-trailer.mp4", [(1.0, (10, 200, 10))], size=(160, 90))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "POLICY_ENGINE_DB": db, "POLICY_ENGINE_MODEL": str(tiny_clip_dir),
           "POLICY_ENGINE_DEVICE": "cpu", "POLICY_ENGINE_JOB_ROOTS": str(tmp_path / "srv")}  # fmt: skip
    server = subprocess.Popen(
        [str(bin_dir / "policy-engine"), "serve", "--port", str(port)], env=env, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "no server"
            time.sleep(0.2)
        script = block.replace("http://127.0.0.1:8470", f"http://127.0.0.1:{port}")
        script = script.replace("/srv/", f"{tmp_path}/srv/")
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], env=env, cwd=tmp_path,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert '"status":"ready"' in ran.stdout and '"present"' in ran.stdout
    assert '"status":"queued"' in ran.stdout and '"items"' in ran.stdout


@pytest.mark.parametrize(
    "text", ["%", "_", "' OR 1=1 --", "promo-1'; DROP TABLE assets; --", "\x00", "\\", "promo\n"]
)
def test_filters_are_text_not_sql(catalogue, text: str) -> None:
    """LIKE wildcards, quotes and control characters in a filter match themselves only."""
    client, ids, tokens, store = catalogue
    answer = client.get("/api/v1/assets", params={"name": text}, headers=bearer(tokens["viewer"]))
    if any(ord(c) < 32 for c in text):  # control characters: refused, naming the field
        assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "name"
    else:
        assert answer.status_code == 200 and answer.json()["items"] == []
    assert len(store.assets()) >= 7  # and nothing was dropped


# -- one decision, one asset in full, hosts ------------------------------------------------------
def test_one_decision_in_full_with_the_rulings_on_it(decided) -> None:
    client, decision_id, tokens, _ = decided
    client.post(
        f"/api/v1/decisions/{decision_id}/overrides",
        json=RULING,
        headers=bearer(tokens["reviewer"]),
    )
    body = client.get(f"/api/v1/decisions/{decision_id}", headers=bearer(tokens["viewer"])).json()
    assert body["schedule"] == "not-for-broadcast" and body["ruleset"]["text_matches_hash"]
    (fired,) = [r for r in body["reasons"] if r["kind"] == "fired"]
    assert fired["rule_id"] == "violence" and fired["measurements"]
    assert fired["evidence"] and all(
        e["thumbnail"] == f"/api/v1/scans/{body['scan']['id']}/frames/{e['frame']}/thumbnail"
        for e in fired["evidence"]
    )
    (ruling,) = body["overrides"]
    assert (ruling["actor"], ruling["via"], ruling["reason"]) == ("token:desk", "api", "context")
    assert (
        client.get("/api/v1/decisions/999999", headers=bearer(tokens["viewer"])).status_code == 404
    )


def test_an_asset_in_full(decided) -> None:
    client, decision_id, tokens, store = decided
    asset_id = store.decision(decision_id).asset_id
    body = client.get(f"/api/v1/assets/{asset_id}", headers=bearer(tokens["viewer"])).json()
    (decision,) = body["decisions"]
    assert decision["fired"] == ["violence"] and decision["url"].endswith(str(decision_id))
    assert [s["status"] for s in body["scans"]] == ["completed"] and body["report"] is None


def test_only_the_allowed_host_names_are_answered(service) -> None:
    client, _, _, _ = service
    engine_settings = replace(
        client.app.state.engine.settings, allowed_hosts=("compliance.example",)
    )
    with TestClient(create_app(engine_settings), base_url="http://compliance.example") as named:
        assert named.get("/healthz").status_code == 200
    with TestClient(create_app(engine_settings), base_url="http://evil.example") as other:
        assert other.get("/healthz").status_code == 400


def test_the_catalogue_answers_what_may_air_in_a_territory_at_a_time(service) -> None:
    """UK watershed 21:00-05:30 for post-watershed material: at 19:00 only the clean
    trailer may air, at 22:00 both; a reviewer's ruling changes the answer."""
    from test_audit_trail import CATEGORIES

    from policy_engine.pipeline.judging import judge
    from policy_engine.policy.loader import parse_ruleset
    from policy_engine.store import NewDecision
    from policy_engine.store.synthetic import labelled_probabilities, seed_scan

    client, _, tokens, accounts = service
    store = accounts.store
    ruleset = parse_ruleset(
        """\
ruleset: uk
version: 1
territories:
  UK: {timezone: Europe/London, windows: {post-watershed: "21:00-05:30"}}
categories:
  violence: {prompts: ["people fighting"]}
  background: {prompts: ["something else"], null: true}
rules:
  - id: violence
    when: {category: violence, coverage_above: 5%}
    then: {schedule: post-watershed}
""",
        "uk.yaml",
    )
    decided = {}
    for name, violent in (("clean", 0), ("fight", 10)):
        asset_id, scan_id = seed_scan(
            store, name=name, categories=CATEGORIES, duration=10.0,
            probabilities=labelled_probabilities([0] * violent + [1] * (20 - violent), 2),
        )  # fmt: skip
        scan = store.completed_scans(scan_ids=[scan_id])[0]
        decision = judge(store, [scan], [ruleset], None).judgements[0].decision
        (decided[name],) = store.append_decisions(
            [NewDecision(scan_id, asset_id, ruleset, decision, "scan")]
        )

    def may_air(when: str) -> list[str]:
        answer = client.get(
            "/api/v1/assets", params={"territory": "UK", "airs_at": when},
            headers=bearer(tokens["viewer"]),
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        return sorted(Path(i["path"]).stem for i in answer.json()["items"])

    assert may_air("2026-11-22T19:00:00") == ["clean"]
    assert may_air("2026-11-22T22:00:00") == ["clean", "fight"]
    assert may_air("2026-11-22T19:00:00+00:00") == ["clean"]  # 19:00 in London too
    store.add_override(
        decided["fight"], reviewer="desk", justification="ok", schedule="unrestricted"
    )
    assert may_air("2026-11-22T19:00:00") == ["clean", "fight"]
    half = client.get(
        "/api/v1/assets", params={"territory": "UK"}, headers=bearer(tokens["viewer"])
    )
    assert half.status_code == 422 and half.json()["errors"][0]["field"] == "airs_at"


# -- the supervisor of `serve --workers N` ---------------------------------------------------
class _Pipe:
    def __init__(self, answers: bool) -> None:
        self.answers, self.sent = answers, 0

    def send(self, message: bytes) -> None:
        self.sent += 1

    def poll(self, timeout: float = 0) -> bool:
        return self.answers

    def recv(self) -> bytes:
        return b"pong"


class _Worker:
    """A worker process as uvicorn's supervisor sees it: alive, answering pings or not."""

    def __init__(self, answers: bool) -> None:
        self.parent_conn = _Pipe(answers)
        self.process = self
        self.killed, self.pid, self.exitcode = False, 4242, -9

    def is_alive(self, timeout: float | None = None) -> bool:
        return not self.killed and (timeout is None or self.parent_conn.answers)

    def kill(self) -> None:
        self.killed = True

    def join(self) -> None:
        pass


def test_a_worker_still_importing_is_given_time_and_a_hung_one_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A spawned worker answers health checks only once it has imported the engine: 12 s
    on a loaded machine, past uvicorn's 5 s check, so it was killed as hung and the next
    one too, for as long as the load lasted. Within STARTUP_GRACE_S it is left alone
    (its first ping looked for without waiting); after that, or once it has answered,
    it is checked and replaced as before."""
    import time

    import uvicorn

    from policy_engine.service import workers

    supervisor = workers.BalancedMultiprocess(uvicorn.Config("x:app"), slots=[])
    replacements: list[_Worker] = []
    monkeypatch.setattr(supervisor, "_started",
                        lambda slot: replacements.append(_Worker(True)) or replacements[-1])  # fmt: skip
    importing = _Worker(answers=False)
    supervisor.processes = [importing]
    supervisor.starting[importing] = (time.monotonic(), False)
    for _ in range(3):
        supervisor.keep_subprocess_alive()
    assert not importing.killed and replacements == []
    assert importing.parent_conn.sent == 1  # one ping on its way, not one per loop
    supervisor.starting[importing] = (time.monotonic() - workers.STARTUP_GRACE_S - 1, True)
    supervisor.keep_subprocess_alive()  # past its grace and still silent: hung
    assert importing.killed and supervisor.processes == replacements
    assert importing.parent_conn.sent == 1  # its ping was the health check: no second one
    answered = replacements[0]
    supervisor.starting[answered] = (time.monotonic(), False)
    supervisor.keep_subprocess_alive()  # its first pong: from now on checked as usual
    assert answered not in supervisor.starting and not answered.killed

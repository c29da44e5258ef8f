"""Analysis jobs through the API: files handed in (server paths under the allowed roots,
or uploads) are queued and scanned by the ingest workers, exactly like ingest files."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from policy_engine.config import SHIPPED_RULES, Settings
from policy_engine.ingest import Ingestor
from policy_engine.media.synthetic import write_color_segments
from policy_engine.service.app import create_app
from policy_engine.store import Store
from policy_engine.store.accounts import Accounts
from policy_engine.store.schema import AnalysisJob

PROBLEM = "application/problem+json"


@pytest.fixture
def setup(tmp_path: Path, tiny_clip_dir: Path, db_url: str):
    media = tmp_path / "media"
    media.mkdir()
    clip = write_color_segments(media / "promo.mp4", [(2.0, (200, 30, 30))], size=(160, 90))
    (tmp_path / "ingest").mkdir()
    settings = replace(
        Settings(), db=db_url, model=str(tiny_clip_dir), device="cpu",
        rules=str(SHIPPED_RULES), reports=str(tmp_path / "reports"),
        ingest=(str(tmp_path / "ingest"),), job_roots=(str(media),),
        job_spool=str(tmp_path / "spool"), upload_max_mb=0.5,
        settle_seconds=0.0, quiet_seconds=0.0, settle_wait=5.0, retry_backoff=0.0,
        heartbeat=0.5, claim_timeout=5.0, max_attempts=1,
    )  # fmt: skip
    store = Store.open(db_url)
    tokens = Accounts(store)
    keys = {role: tokens.create_token(role, role, by="test") for role in ("viewer", "reviewer")}
    with TestClient(create_app(settings)) as client:
        yield client, settings, keys, clip, store
    store.close()


def bearer(token: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **more}


def jobs_in(store: Store) -> int:
    with store._transaction() as s:
        return int(s.scalar(select(func.count()).select_from(AnalysisJob)))


def worker_pass(settings: Settings):
    with Ingestor(settings) as ingestor:
        return ingestor.run_pass()


def test_a_submitted_path_is_scanned_by_a_worker_and_the_job_says_so(setup) -> None:
    client, settings, keys, clip, store = setup
    submitted = client.post(
        "/api/v1/analyses", json={"path": str(clip)}, headers=bearer(keys["reviewer"])
    )
    assert submitted.status_code == 202, submitted.text
    job_url = submitted.headers["location"]
    assert submitted.json()["status"] == "queued" and job_url.endswith(str(submitted.json()["id"]))
    result = worker_pass(settings)
    assert result.counts.scanned == 1, result.problems
    done = client.get(job_url, headers=bearer(keys["viewer"])).json()
    assert done["status"] == "succeeded" and done["asset_id"] and done["scan_id"]
    assert done["verdict"]["schedule"] and {d["ruleset"] for d in done["decisions"]}


def test_the_same_idempotency_key_gives_the_same_job(setup) -> None:
    client, _, keys, clip, store = setup
    headers = bearer(keys["reviewer"], **{"Idempotency-Key": "mam-4711"})
    first = client.post("/api/v1/analyses", json={"path": str(clip)}, headers=headers)
    again = client.post("/api/v1/analyses", json={"path": str(clip)}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] and jobs_in(store) == 1
    other = client.post(
        "/api/v1/analyses", json={"path": str(clip)},
        headers=bearer(keys["reviewer"], **{"Idempotency-Key": "mam-4712"}),
    )  # fmt: skip
    assert other.json()["id"] != first.json()["id"] and jobs_in(store) == 2


def test_paths_outside_the_roots_are_refused_and_nothing_is_queued(setup, tmp_path: Path) -> None:
    client, _, keys, clip, store = setup
    secret = tmp_path / "elsewhere.mp4"
    shutil.copy(clip, secret)
    (clip.parent / "sneaky.mp4").symlink_to(secret)  # inside by name, outside in truth
    for path in (
        str(secret),
        str(clip.parent / "sneaky.mp4"),
        str(clip.parent / ".." / "elsewhere.mp4"),
    ):
        refused = client.post(
            "/api/v1/analyses", json={"path": path}, headers=bearer(keys["reviewer"])
        )
        assert refused.status_code == 403 and refused.json()["type"].endswith(":path-not-allowed")
    missing = client.post(
        "/api/v1/analyses",
        json={"path": str(clip.parent / "nope.mp4")},
        headers=bearer(keys["reviewer"]),
    )
    assert missing.status_code == 422
    viewer = client.post(
        "/api/v1/analyses", json={"path": str(clip)}, headers=bearer(keys["viewer"])
    )
    assert viewer.status_code == 403
    assert jobs_in(store) == 0


def test_an_upload_is_streamed_to_disk_capped_and_scanned(setup, tmp_path: Path) -> None:
    client, settings, keys, clip, store = setup
    url = "/api/v1/analyses/upload"
    too_big = client.post(
        url,
        params={"name": "huge.mp4"},
        content=b"\0" * (600 * 1024),
        headers=bearer(keys["reviewer"]),
    )
    assert too_big.status_code == 413 and too_big.headers["content-type"] == PROBLEM
    spool = tmp_path / "spool"
    assert not spool.exists() or not any(spool.iterdir())  # nothing left behind
    not_video = client.post(
        url, params={"name": "notes.txt"}, content=b"x", headers=bearer(keys["reviewer"])
    )
    assert not_video.status_code == 422
    sent = client.post(
        url,
        params={"name": "../../promo copy.mp4"},
        content=clip.read_bytes(),
        headers=bearer(keys["reviewer"]),
    )
    assert sent.status_code == 202, sent.text
    (stored,) = list(spool.rglob("*.mp4"))
    assert stored.name == "promo copy.mp4" and spool in stored.parents  # no way out of the spool
    worker_pass(settings)
    done = client.get(sent.headers["location"], headers=bearer(keys["viewer"])).json()
    assert done["status"] == "succeeded" and done["source"] == "upload"


def test_a_job_whose_file_cannot_be_read_fails_with_the_reason(setup) -> None:
    client, settings, keys, clip, store = setup
    broken = clip.parent / "broken.mp4"
    broken.write_text("not a video")
    job = client.post(
        "/api/v1/analyses", json={"path": str(broken)}, headers=bearer(keys["reviewer"])
    )
    worker_pass(settings)
    failed = client.get(job.headers["location"], headers=bearer(keys["viewer"])).json()
    assert failed["status"] == "failed" and failed["error"]
    assert client.get("/api/v1/analyses/999999", headers=bearer(keys["viewer"])).status_code == 404


# -- webhooks ----------------------------------------------------------------------------------------
def test_a_webhook_signature_proves_the_sender_and_the_time() -> None:
    import time

    from policy_engine.pipeline.webhooks import sign, verify

    body = b'{"event": "analysis.finished"}'
    header = sign("s3cret", int(time.time()), body)
    assert verify("s3cret", header, body)
    assert not verify("s3cret", header, body + b" ")  # tampered
    assert not verify("other", header, body)  # not our secret
    assert not verify("s3cret", sign("s3cret", int(time.time()) - 3600, body), body)  # replayed
    assert not verify("s3cret", "garbage", body)


@pytest.mark.parametrize(
    ("url", "hosts", "secret", "says"),
    [
        ("http://hooks.example/x", (), "s", "sends no webhooks"),
        ("http://hooks.example/x", ("hooks.example",), "", "sends no webhooks"),
        ("http://169.254.169.254/latest", ("hooks.example",), "s", "not in webhook_hosts"),
        ("file:///etc/passwd", ("hooks.example",), "s", "http or https"),
    ],
)
def test_webhooks_go_only_to_allowed_hosts(url, hosts, secret, says) -> None:
    from policy_engine.errors import ConfigError
    from policy_engine.pipeline.webhooks import check_url

    with pytest.raises(ConfigError, match=says):
        check_url(url, hosts, secret)


@pytest.fixture
def receiver():
    """A local HTTP receiver that records what it is sent; answers with ``status[0]``."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got: list[tuple[dict[str, str], bytes]] = []
    status = [200]

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((dict(self.headers), body))
            self.send_response(status[0])
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", got, status
    server.shutdown()


def test_a_finished_job_is_announced_to_its_signed_webhook(setup, receiver) -> None:
    import json

    from policy_engine.pipeline.webhooks import HEADER, verify

    client, settings, keys, clip, store = setup
    url, got, _ = receiver
    settings = replace(settings, webhook_hosts=("127.0.0.1",), webhook_signing_key="s3cret")
    client.app.state.engine.settings = settings
    refused = client.post(
        "/api/v1/analyses", json={"path": str(clip), "webhook_url": "http://evil.example/x"},
        headers=bearer(keys["reviewer"]),
    )  # fmt: skip
    assert refused.status_code == 422 and jobs_in(store) == 0
    job = client.post(
        "/api/v1/analyses", json={"path": str(clip), "webhook_url": url},
        headers=bearer(keys["reviewer"]),
    )  # fmt: skip
    assert job.status_code == 202, job.text
    worker_pass(settings)
    ((headers, body),) = got
    assert verify("s3cret", headers[HEADER], body)
    sent = json.loads(body)
    assert sent["event"] == "analysis.finished" and sent["job"]["id"] == job.json()["id"]
    assert sent["job"]["status"] == "succeeded" and sent["job"]["verdict"]
    with store._transaction() as s:
        row = s.get(AnalysisJob, job.json()["id"])
        assert row.webhook_delivered_at is not None and row.webhook_attempts == 1


def test_a_webhook_that_keeps_failing_is_reported_not_fatal(setup, receiver) -> None:
    client, settings, keys, clip, store = setup
    url, got, status = receiver
    status[0] = 503
    settings = replace(settings, webhook_hosts=("127.0.0.1",), webhook_signing_key="s3cret")
    client.app.state.engine.settings = settings
    job = client.post(
        "/api/v1/analyses", json={"path": str(clip), "webhook_url": url},
        headers=bearer(keys["reviewer"]),
    )  # fmt: skip
    result = worker_pass(settings)
    assert result.status == "completed" and result.counts.scanned == 1
    assert len(got) == 3 and any("webhook" in p and "HTTP 503" in p for p in result.problems)
    with store._transaction() as s:
        row = s.get(AnalysisJob, job.json()["id"])
        assert row.webhook_delivered_at is None and row.webhook_error == "HTTP 503"


@pytest.mark.slow
def test_a_job_whose_worker_is_killed_completes_exactly_once(
    tmp_path: Path, tiny_clip_dir: Path
) -> None:
    """A job handed in through the API, its worker killed -9 mid-scan: the next worker
    takes it over, and it ends with one completed scan and one decision per rule set."""
    import signal

    from test_ingest_processes import finish, query, start_worker, wait_for_running_scan, worker_env

    from policy_engine.pipeline.jobs import submit_path

    media, empty = tmp_path / "media", tmp_path / "ingest"
    media.mkdir(), empty.mkdir()
    clip = write_color_segments(
        media / "long.mp4", [(6.0, (200, 30, 30)), (6.0, (30, 30, 200))], size=(160, 90)
    )
    db_path = tmp_path / "engine.sqlite"
    db = f"sqlite:///{db_path}"
    store = Store.open(db)
    job, _ = submit_path(
        replace(Settings(), job_roots=(str(media),)), store, str(clip),
        created_by="token:mam", key="k1",
    )  # fmt: skip
    store.close()
    env = worker_env(tmp_path, tiny_clip_dir, POLICY_ENGINE_FPS="8")
    worker = start_worker(db, empty, env)
    wait_for_running_scan(db_path, worker)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    code, log = finish(start_worker(db, empty, env))
    assert code == 0, log[-3000:]
    assert query(db, "select status, count(*) from scans group by status order by 1") == [
        ("completed", 1), ("failed", 1),
    ]  # fmt: skip
    per_ruleset = query(db, "select ruleset_name, count(*) from decisions group by ruleset_name")
    assert per_ruleset and all(n == 1 for _, n in per_ruleset)
    store = Store.open(db)
    from policy_engine.store.jobs import Jobs

    done = Jobs(store).get(job.id)
    store.close()
    assert done.status == "succeeded" and done.attempts == 2  # the death counted once


def test_a_running_job_shows_how_far_its_scan_is(setup, monkeypatch) -> None:
    from policy_engine.store.ingest import IngestQueue
    from policy_engine.store.jobs import Jobs

    client, settings, keys, clip, store = setup
    job = client.post(
        "/api/v1/analyses", json={"path": str(clip)}, headers=bearer(keys["reviewer"])
    )
    job_id = job.json()["id"]
    seen: list[tuple[str, float | None]] = []
    original = IngestQueue.report_progress

    def report_and_look(self, claim, fraction):
        original(self, claim, fraction)
        view = Jobs(store).get(job_id)  # what a client polling the job sees now
        seen.append((view.status, view.progress))

    monkeypatch.setattr("policy_engine.workers.claims.PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(IngestQueue, "report_progress", report_and_look)
    worker_pass(settings)
    assert seen and all(status == "running" for status, _ in seen)
    fractions = [p for _, p in seen]
    assert fractions == sorted(fractions) and fractions[0] >= 0.0 and fractions[-1] <= 1.0
    done = client.get(job.headers["location"], headers=bearer(keys["viewer"])).json()
    assert done["status"] == "succeeded" and done["progress"] is None


def test_evidence_pictures_are_blurred_unless_a_reviewer_asks(setup) -> None:
    client, settings, keys, clip, store = setup
    job = client.post(
        "/api/v1/analyses", json={"path": str(clip)}, headers=bearer(keys["reviewer"])
    )
    worker_pass(settings)
    scan_id = client.get(job.headers["location"], headers=bearer(keys["viewer"])).json()["scan_id"]
    url = f"/api/v1/scans/{scan_id}/frames/0/thumbnail"
    blurred = client.get(url, headers=bearer(keys["viewer"]))
    assert blurred.status_code == 200 and blurred.headers["content-type"] == "image/jpeg"
    assert "no-store" in blurred.headers["cache-control"]
    assert client.get(url + "?unblurred=true", headers=bearer(keys["viewer"])).status_code == 403
    sharp = client.get(url + "?unblurred=true", headers=bearer(keys["reviewer"]))
    assert sharp.status_code == 200 and sharp.content == store.thumbnails(scan_id, [0])[0]
    assert blurred.content != sharp.content  # one flat colour here: the blur is shown below
    missing = client.get(
        f"/api/v1/scans/{scan_id}/frames/9999/thumbnail", headers=bearer(keys["viewer"])
    )
    assert missing.status_code == 404


def test_the_blur_takes_the_detail_out_of_a_picture() -> None:
    import io

    import numpy as np
    from PIL import Image

    from policy_engine.service.routes.decisions import blurred as _blurred

    squares = (np.indices((96, 160)).sum(axis=0) // 8 % 2 * 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(squares).convert("RGB").save(out, "JPEG")

    def detail(jpeg: bytes) -> float:  # how much the picture changes from pixel to pixel
        pixels = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"), dtype=float)
        return float(np.abs(np.diff(pixels, axis=1)).mean())

    assert detail(_blurred(out.getvalue())) < detail(out.getvalue()) / 5


def test_config_show_never_prints_the_webhook_signing_key(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from policy_engine.cli import app

    env = {"POLICY_ENGINE_WEBHOOK_SIGNING_KEY": "hunter2-hunter2"}
    shown = CliRunner().invoke(app, ["config", "show"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "hunter2" not in shown.output and "(set)" in shown.output

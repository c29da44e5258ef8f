"""Hidden regions (a detector's nudity classes) as they were, for authorised reviewers in
the app only: kept only with `reveal_hidden_evidence`, served only to a reviewer logged
in to the app who asks (never to a viewer, never to a client system's token, never where
the setting is off), and never in a report."""

from __future__ import annotations

import base64
import io
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the `detectors` extra is not installed")
pytest.importorskip("onnx", reason="the `test` extra (onnx) is not installed")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402
from test_app import PASSWORDS, log_in  # noqa: E402
from test_detector_scan import RULES, detail, textured  # noqa: E402
from tiny_detector import tiny_detector  # noqa: E402

from policy_engine.config import Settings  # noqa: E402
from policy_engine.media.video import SamplingSpec  # noqa: E402
from policy_engine.models.provider import ModelProvider  # noqa: E402
from policy_engine.pipeline import AnalysisOptions  # noqa: E402
from policy_engine.pipeline.scan import Scanner  # noqa: E402
from policy_engine.policy.loader import parse_ruleset  # noqa: E402
from policy_engine.service.app import create_app  # noqa: E402
from policy_engine.store import Store  # noqa: E402
from policy_engine.store.accounts import Accounts  # noqa: E402
from policy_engine.store.evidence import RevealedPictures  # noqa: E402

FRAME = 3


def picture(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def hidden_region(jpeg: bytes) -> float:
    """Detail inside the knife's box (192x108 thumbnail), against the board's outside."""
    shown = picture(jpeg)
    return detail(shown[32:68, 30:68]) / detail(shown[32:68, 110:180])


@pytest.fixture
def scanned(store: Store, tiny_clip_dir: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The board scanned with the knife hidden; one scan keeping the picture as it was."""
    model = tiny_detector(tmp_path / "knife.onnx")
    text = RULES.format(model=model, confidence="40%").replace("40%\n", "40%\n      hide: true\n")
    hiding = parse_ruleset(text, "w.yaml")
    models = ModelProvider(str(tiny_clip_dir), device="cpu", dtype="fp32", batch_size=8)
    options = AnalysisOptions(sampling=SamplingSpec(fps=2.0), keep_revealed=True)
    outcome = Scanner(store, [hiding], models, options).scan_file(textured(tmp_path / "b.mp4"))
    assert outcome.status == "scanned", outcome.error
    return outcome


def test_a_scan_keeps_the_picture_as_it_was_only_where_asked(
    store: Store, tiny_clip_dir: Path, tmp_path: Path, scanned
) -> None:  # type: ignore[no-untyped-def]
    [thumb] = store.thumbnails(scanned.scan_id, [FRAME]).values()
    as_it_was = RevealedPictures(store).picture(scanned.scan_id, FRAME)
    assert as_it_was is not None
    assert hidden_region(thumb) < 0.2  # pixelated where everything else reads it
    assert hidden_region(as_it_was) > 0.5  # the board inside the box, as it was
    assert RevealedPictures(store).frames(scanned.scan_id) == set(range(8))  # every frame boxed

    # without the setting nothing is kept (a new file: the scan above is not reused)
    model = tiny_detector(tmp_path / "knife2.onnx")
    text = RULES.format(model=model, confidence="40%").replace("40%\n", "40%\n      hide: true\n")
    models = ModelProvider(str(tiny_clip_dir), device="cpu", dtype="fp32", batch_size=8)
    options = AnalysisOptions(sampling=SamplingSpec(fps=2.0))
    video = textured(tmp_path / "other.mp4", seconds=3.0)
    plain = Scanner(store, [parse_ruleset(text, "w.yaml")], models, options).scan_file(video)
    assert plain.status == "scanned", plain.error
    assert RevealedPictures(store).frames(plain.scan_id) == set()
    assert RevealedPictures(store).picture(plain.scan_id, FRAME) is None


def app(store: Store, db_url: str, tmp_path: Path, reveal: bool) -> TestClient:
    accounts = Accounts(store)
    for name, (role, password) in PASSWORDS.items():
        if name not in {u.name for u in accounts.users()}:
            accounts.add_user(name, role, password, by="test")
    settings = replace(
        Settings(), db=db_url, reports=str(tmp_path / "reports"), reveal_hidden_evidence=reveal
    )
    return TestClient(create_app(settings))


def test_only_a_reviewer_in_the_app_sees_hidden_regions_and_never_a_report(
    store: Store, db_url: str, tmp_path: Path, scanned
) -> None:  # type: ignore[no-untyped-def]
    from policy_engine.reporting import build_asset_report, render_asset_report

    url = f"/api/v1/scans/{scanned.scan_id}/frames/{FRAME}/thumbnail"
    as_it_was = RevealedPictures(store).picture(scanned.scan_id, FRAME)
    [pixelated] = store.thumbnails(scanned.scan_id, [FRAME]).values()
    token = Accounts(store).create_token("asset-manager", "reviewer", by="test")
    page_url = f"/assets/{scanned.asset_id}"
    with app(store, db_url, tmp_path, reveal=True) as client:
        log_in(client, "alice")  # a reviewer
        page = client.get(page_url + "?unblurred=1").text
        assert "Show hidden regions as they were" in page
        assert "revealed=true" not in page  # not until asked
        page = client.get(page_url + "?unblurred=1&revealed=1").text
        assert "Pixelate hidden regions again" in page
        shown = re.findall(r"/frames/(\d+)/thumbnail\?unblurred=true&amp;revealed=true", page)
        assert shown  # the evidence pictures, each kept as it was
        for frame in map(int, shown):
            answer = client.get(url.replace(f"/{FRAME}/", f"/{frame}/") + "?revealed=true")
            assert answer.status_code == 200
            assert answer.content == RevealedPictures(store).picture(scanned.scan_id, frame)
        answer = client.get(url + "?unblurred=true&revealed=true")
        assert answer.status_code == 200 and answer.content == as_it_was
        assert answer.headers["cache-control"] == "private, no-store"
        assert client.get(url + "?unblurred=true").content == pixelated
        assert "revealed=true" not in client.get(page_url + "?revealed=1").text  # blurred view

        log_in(client, "bob")  # a viewer
        refused = client.get(url + "?revealed=true")
        assert refused.status_code == 403 and "may not see evidence" in refused.text
        assert "Show hidden regions" not in client.get(page_url + "?unblurred=1").text
        client.cookies.clear()  # a client system's token, even a reviewer's
        refused = client.get(url + "?revealed=true", headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 403 and "only in the app" in refused.text
    with app(store, db_url, tmp_path, reveal=False) as client:
        log_in(client, "alice")
        refused = client.get(url + "?unblurred=true&revealed=true")
        assert refused.status_code == 403 and "reveal_hidden_evidence" in refused.text
        page = client.get(page_url + "?unblurred=1&revealed=1").text
        assert "Show hidden regions" not in page and "revealed=true" not in page

    report = render_asset_report(build_asset_report(store, scanned.asset_id))
    assert base64.b64encode(as_it_was).decode() not in report


def test_every_showing_is_in_the_audit_log_and_another_site_cannot_embed_one(
    store: Store, db_url: str, tmp_path: Path, scanned
) -> None:  # type: ignore[no-untyped-def]
    from policy_engine.store.review import Reviews

    url = f"/api/v1/scans/{scanned.scan_id}/frames/{FRAME}/thumbnail?revealed=true"
    with app(store, db_url, tmp_path, reveal=True) as client:
        log_in(client, "alice")
        shown = client.get(url, headers={"Sec-Fetch-Site": "same-origin"})
        assert shown.status_code == 200
        assert shown.headers["cross-origin-resource-policy"] == "same-origin"
        embedded = client.get(url, headers={"Sec-Fetch-Site": "cross-site"})
        assert embedded.status_code == 403 and "the app's own pages" in embedded.text
        page = client.get(f"/audit?asset={scanned.asset_id}").text
        assert f"shown frame {FRAME} of scan {scanned.scan_id}" in page
    [event] = Reviews(store).audit_events(kinds=["reveal"])
    assert (event.actor, event.asset_id) == ("user:alice", scanned.asset_id)
    assert len(Reviews(store).audit_events(asset_id=scanned.asset_id, kinds=["reveal"])) == 1


def test_purge_deletes_the_pictures_and_keeps_who_saw_them(
    store: Store, db_url: str, tmp_path: Path, scanned
) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    from sqlalchemy import text

    from policy_engine.store.review import Reviews

    url = f"/api/v1/scans/{scanned.scan_id}/frames/{FRAME}/thumbnail?revealed=true"
    pictures = RevealedPictures(store)
    with app(store, db_url, tmp_path, reveal=True) as client:
        log_in(client, "alice")
        assert client.get(url).status_code == 200
    cli = Path(sys.executable).parent / "policy-engine"
    command = [str(cli), "--db", db_url, "db", "purge-revealed"]
    kept = subprocess.run([*command, "--older-than", "1"], capture_output=True, text=True)
    assert kept.returncode == 0, kept.stderr
    assert "deleted 0 picture(s)" in kept.stdout and "8 left" in kept.stdout  # kept today
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "deleted 8 picture(s)" in done.stdout and "0 left" in done.stdout
    assert pictures.frames(scanned.scan_id) == set() and pictures.held() == (0, 0)
    assert store.thumbnails(scanned.scan_id, [FRAME])  # the pixelated ones stay
    with app(store, db_url, tmp_path, reveal=True) as client:
        log_in(client, "alice")
        gone = client.get(url)
        assert gone.status_code == 404 and "kept no picture" in gone.text
        page = client.get(f"/assets/{scanned.asset_id}?unblurred=1&revealed=1").text
        assert "revealed=true" not in page
    assert len(Reviews(store).audit_events(kinds=["reveal"])) == 1  # who saw it stays
    refused = pytest.raises(Exception, match="audit trail|append-only|refused")
    with refused, store.engine.begin() as connection:  # who saw what is append-only
        connection.execute(text("DELETE FROM revealed_views"))

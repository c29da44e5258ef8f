"""Hidden regions as they were, in a real browser (tier `browser`): Chromium against
`policy-engine serve` with `reveal_hidden_evidence` on, over a scan whose detector hides
its class. A reviewer unblurs the evidence, asks for the hidden regions, and the page's
pictures load (the browser's own Sec-Fetch-Site and Cross-Origin-Resource-Policy let a
same-origin picture through) as the copies kept, each showing in the audit log; a
viewer is offered neither link."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="the `detectors` extra is not installed")
pytest.importorskip("onnx", reason="the `test` extra (onnx) is not installed")

from test_app import PASSWORDS  # noqa: E402
from test_app_browser import WAIT_MS, Watched, chromium, open_as, serving  # noqa: E402
from test_detector_scan import RULES, textured  # noqa: E402
from test_reports import CHROMIUM  # noqa: E402
from tiny_detector import tiny_detector  # noqa: E402

from policy_engine.media.video import SamplingSpec  # noqa: E402
from policy_engine.models.provider import ModelProvider  # noqa: E402
from policy_engine.pipeline import AnalysisOptions  # noqa: E402
from policy_engine.pipeline.scan import Scanner  # noqa: E402
from policy_engine.policy.loader import parse_ruleset  # noqa: E402
from policy_engine.store import Store  # noqa: E402
from policy_engine.store.accounts import Accounts  # noqa: E402
from policy_engine.store.evidence import RevealedPictures  # noqa: E402
from policy_engine.store.review import Reviews  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; `make test` tries)")
    pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    root = tmp_path_factory.mktemp("reveal")
    db = f"sqlite:///{root / 'engine.sqlite'}"
    store = Store.open(db)
    model = tiny_detector(root / "knife.onnx")
    text = RULES.format(model=model, confidence="40%").replace("40%\n", "40%\n      hide: true\n")
    options = AnalysisOptions(sampling=SamplingSpec(fps=2.0), keep_revealed=True)
    models = ModelProvider(str(tiny_clip_dir), device="cpu", dtype="fp32", batch_size=8)
    scanner = Scanner(store, [parse_ruleset(text, "w.yaml")], models, options)
    outcome = scanner.scan_file(textured(root / "board.mp4"))
    assert outcome.status == "scanned", outcome.error
    for name, (role, password) in PASSWORDS.items():
        Accounts(store).add_user(name, role, password, by="test")
    store.close()
    settings = {"REVEAL_HIDDEN_EVIDENCE": "true", "MODEL": str(tiny_clip_dir)}
    with serving(root, db, settings) as base:
        yield base, db, outcome


@pytest.fixture(scope="module")
def browser(served):
    with chromium("chromium-reveal-profile") as context:
        yield context


def loaded_pictures(watched: Watched) -> list[tuple[str, int]]:
    """The evidence pictures the page shows: their address and whether they loaded."""
    return watched.page.evaluate(
        "() => [...document.querySelectorAll('img[src*=\"/thumbnail\"]')]"
        ".map(i => [i.getAttribute('src'), i.complete ? i.naturalWidth : -1])"
    )


def test_a_reviewer_sees_hidden_regions_as_they_were_and_a_viewer_is_not_offered(
    served, browser
) -> None:
    base, db, outcome = served
    asset = f"/assets/{outcome.asset_id}"
    reviewer = open_as(browser, base, "alice", asset)
    page = reviewer.page
    page.get_by_role("link", name="Show the evidence unblurred").click()
    page.wait_for_url(f"{base}{asset}?unblurred=1")
    page.get_by_role("link", name="Show hidden regions as they were").click()
    page.wait_for_url(f"{base}{asset}?unblurred=1&revealed=1")
    page.wait_for_load_state("networkidle", timeout=WAIT_MS)
    assert page.get_by_role("status").filter(has_text="recorded in the audit log").is_visible()
    shown = [(src, width) for src, width in loaded_pictures(reviewer) if "revealed=true" in src]
    assert shown and all(width > 0 for _, width in shown), shown  # the browser loaded them
    src = shown[0][0]
    frame = int(src.split("/frames/")[1].split("/")[0])
    sent = page.request.get(base + src)  # the same request, its bytes
    store = Store.open(db)
    try:
        assert sent.body() == RevealedPictures(store).picture(outcome.scan_id, frame)
        assert any(e.kind == "reveal" for e in Reviews(store).audit_events(kinds=["reveal"]))
    finally:
        store.close()
    reviewer.shot("reveal")
    reviewer.check()  # no console error, nothing left loopback
    page.get_by_role("link", name="Pixelate hidden regions again").click()
    page.wait_for_url(f"{base}{asset}?unblurred=1")
    assert not [s for s, _ in loaded_pictures(reviewer) if "revealed=true" in s]

    viewer = open_as(browser, base, "bob", asset + "?unblurred=1&revealed=1")
    assert viewer.page.get_by_role("link", name="Show hidden regions as they were").count() == 0
    assert not [s for s, _ in loaded_pictures(viewer) if "revealed=true" in s]
    viewer.check()

"""The review app in a real browser (tier `browser`): Playwright drives Debian's
Chromium against `policy-engine serve` on loopback over a seeded database, with one
real scan (a video, thumbnails) among synthetic ones. Every page: no console error, no
request leaving loopback, axe-core's accessibility rules, a screenshot in .artifacts/.
Four-eyes mode is on, so overruling is also the second reviewer's confirmation."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from test_app import PASSWORDS, seed
from test_audit_trail import _verdict_in
from test_reports import ARTIFACTS, CHROMIUM, RULES

from policy_engine.media.video import SamplingSpec
from policy_engine.models.provider import ModelProvider
from policy_engine.pipeline import AnalysisOptions
from policy_engine.pipeline.scan import Scanner
from policy_engine.policy.loader import parse_ruleset
from policy_engine.store import Store
from policy_engine.store.accounts import Accounts

pytestmark = pytest.mark.browser
TRAILERS = RULES.replace("ruleset: house", "ruleset: trailers")
WAIT_MS = 60_000  # the machine may be loaded: generous waits, no timed assertions


def wait_until(page, expression: str, timeout: float = 30.0) -> None:
    """Poll ``expression`` in the page until it is true. Playwright's wait_for_function
    compiles a string predicate with eval when it has to poll, which the app's
    Content-Security-Policy (rightly) refuses; page.evaluate does not need eval."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"not true within {timeout:g} s: {expression}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path, colour_video: Path):
    """A seeded SQLite database and `policy-engine serve` on a free loopback port."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; `make test` tries)")
    pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    root = tmp_path_factory.mktemp("app")
    db = f"sqlite:///{root / 'engine.sqlite'}"
    store = Store.open(db)
    seed(store)  # promo-0 .. promo-6, synthetic (their files are gone)
    video = root / "real promo.mp4"
    shutil.copy(colour_video, video)
    scanner = Scanner(
        store, [parse_ruleset(TRAILERS, "trailers.yaml")],
        ModelProvider(str(tiny_clip_dir), device="cpu", dtype="fp32"),
        AnalysisOptions(sampling=SamplingSpec(fps=2.0)), reports_dir=root / "reports",
    )  # fmt: skip
    (outcome,) = scanner.scan([video])
    assert outcome.status == "scanned", outcome.error
    for name, (role, password) in PASSWORDS.items():
        Accounts(store).add_user(name, role, password, by="test")
    store.close()
    settings = {"FOUR_EYES": "true", "REVIEW_SAMPLE": "1", "MODEL": str(tiny_clip_dir),
                "SEARCH_CACHE": str(root / "search")}  # fmt: skip
    with serving(root, db, settings) as base:
        yield base, db, outcome


@contextmanager
def serving(root: Path, db: str, settings: dict[str, str]) -> Iterator[str]:
    """`policy-engine serve` on a free loopback port over ``db``, in ``root`` (its reports
    there), with these settings (POLICY_ENGINE_<NAME>); its base URL while it runs."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "POLICY_ENGINE_REPORTS": str(root / "reports"),
           "POLICY_ENGINE_LOG_FORMAT": "json", "POLICY_ENGINE_DEVICE": "cpu",
           **{f"POLICY_ENGINE_{name}": value for name, value in settings.items()}}  # fmt: skip
    cli = Path(sys.executable).parent / "policy-engine"
    server = subprocess.Popen(
        [str(cli), "--db", db, "serve", "--port", str(port)], cwd=root, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(server, base)
        yield base
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def _wait_ready(server: subprocess.Popen, base: str) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while True:
        assert server.poll() is None, "the server stopped"
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not get ready in 120 s"
        time.sleep(0.3)


class Watched:
    """A page whose console errors and requests are kept, to be checked."""

    def __init__(self, context, base: str) -> None:
        self.page = context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.base, self.errors, self.requests = base, [], []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def check(self) -> None:
        assert self.errors == []
        strays = [u for u in self.requests if not u.startswith((self.base + "/", "data:", "blob:"))]
        assert strays == [], strays  # nothing leaves loopback

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"app-{name}.png"), full_page=True)

    def accessible(self) -> None:
        from axe_playwright_python.sync_playwright import Axe

        found = Axe().run(self.page).response["violations"]
        assert found == [], [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3])
                             for v in found]  # fmt: skip


@pytest.fixture(scope="module")
def browser(served):
    with chromium("chromium-app-profile") as context:
        yield context


@contextmanager
def chromium(profile: str) -> Iterator[Any]:
    """Debian's Chromium, headless, with a fresh profile under .artifacts/."""
    from playwright.sync_api import sync_playwright

    user_data = ARTIFACTS / profile
    shutil.rmtree(user_data, ignore_errors=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data), executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run", "--autoplay-policy=no-user-gesture-required"],
        )  # fmt: skip
        yield context
        context.close()


def open_as(browser, base: str, name: str | None, path: str = "/") -> Watched:
    """A fresh page, logged in as ``name`` through the login form, at ``path``."""
    browser.clear_cookies()
    watched = Watched(browser, base)
    page = watched.page
    page.goto(base + path)
    if name is not None:
        page.wait_for_url(re.compile(r"/login\?next="))
        page.get_by_label("User name").fill(name)
        page.get_by_label("Password").fill(PASSWORDS[name][1])
        page.get_by_label("Password").press("Enter")  # the keyboard submits the form
        page.wait_for_url(base + path)
    return watched


def _asset_id(outcome) -> int:
    return outcome.asset_id


def test_log_in_and_filter_the_catalogue_from_the_url(served, browser) -> None:
    base, _, _ = served
    login = open_as(browser, base, None, "/")
    login.page.wait_for_url(re.compile(r"/login"))
    login.shot("login")
    login.accessible()
    login.check()
    w = open_as(browser, base, "bob")
    page = w.page
    names = page.locator("#catalogue td.path a")
    assert names.count() == 8 and names.first.inner_text() == "real promo.mp4"  # newest first
    w.shot("catalogue")
    w.accessible()
    page.get_by_label("Verdict").select_option("unrestricted")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"verdict=unrestricted"))
    assert names.all_inner_texts() == ["promo-0.mp4"]
    page.get_by_label("Name contains").fill("promo-")
    page.get_by_label("Verdict").select_option("not-for-broadcast")
    page.get_by_label("Sort").select_option("oldest")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"sort=oldest"))
    assert "verdict=not-for-broadcast" in page.url and "name=promo-" in page.url
    assert names.all_inner_texts() == [f"promo-{i}.mp4" for i in range(1, 7)]
    page.goto(page.url)  # a bookmarked view is the same view
    assert names.all_inner_texts() == [f"promo-{i}.mp4" for i in range(1, 7)]
    w.shot("catalogue-filtered")
    w.check()


def test_an_evidence_frame_or_a_segment_seeks_the_player(served, browser) -> None:
    base, _, outcome = served
    w = open_as(browser, base, "bob", f"/assets/{_asset_id(outcome)}")
    page = w.page
    wait_until(page, "document.getElementById('player').readyState >= 1")
    assert page.evaluate("document.getElementById('player').duration") == pytest.approx(10, abs=0.2)
    frame = page.locator("#evidence button.seek").nth(1)
    wanted = float(frame.get_attribute("data-seek"))
    frame.click()
    wait_until(page, f"Math.abs(document.getElementById('player').currentTime - {wanted}) < 0.05")
    head = page.locator("svg.timeline .playhead").first
    wait_until(page, "Number(document.querySelector('svg.timeline .playhead')"
                           ".getAttribute('x1')) > 150")  # fmt: skip
    moved = float(head.get_attribute("x1"))
    assert moved == pytest.approx(150 + 850 * wanted / 10, abs=2)  # the playhead follows
    segment = page.locator("svg.timeline rect.seek").last
    start = float(segment.get_attribute("data-seek"))
    segment.click()
    wait_until(page, f"Math.abs(document.getElementById('player').currentTime - {start}) < 0.05")
    images = page.locator("#evidence img")
    assert images.count() > 0 and all("/thumbnail" in images.nth(i).get_attribute("src")
                                      for i in range(images.count()))  # fmt: skip
    wait_until(page, "[...document.querySelectorAll('#evidence img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")  # fmt: skip
    w.shot("asset")
    w.accessible()
    w.check()


def test_a_viewer_sees_no_overrule_button_and_a_forged_post_is_refused(served, browser) -> None:
    base, db, outcome = served
    asset_id = _asset_id(outcome)
    w = open_as(browser, base, "bob", f"/assets/{asset_id}")
    page = w.page
    assert page.get_by_role("button", name="Record the ruling").count() == 0
    assert page.locator("form.overrule").count() == 0
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    store = Store.open(db)
    decision_id = next(iter(store.current_decisions([asset_id]).values())).id
    forged = page.request.post(
        f"{base}/assets/{asset_id}/overrule",
        form={"csrf_token": csrf, "decision_id": str(decision_id), "schedule": "unrestricted",
              "reason": "context", "justification": "forged"},
        max_redirects=0,
    )  # fmt: skip
    assert forged.status == 403
    assert all(not d.overrides for d in store.current_decisions([asset_id]).values())
    store.close()
    w.check()


def test_overrule_with_a_reason_and_a_second_reviewer_confirms(served, browser) -> None:
    base, db, outcome = served
    asset_id = _asset_id(outcome)
    report = Path(outcome.report)
    assert _verdict_in(report) == "Post-watershed only"
    w = open_as(browser, base, "alice", f"/assets/{asset_id}")
    page = w.page
    page.get_by_label("Level", exact=True).select_option("unrestricted")
    page.get_by_label("Reason", exact=True).select_option("stylised-or-fictional")
    page.get_by_label("Justification", exact=True).fill("Red paint in a fictional title card")
    page.get_by_role("button", name="Record the ruling").click()
    page.wait_for_url(re.compile(r"done=proposed"))
    assert page.locator("#verdict .level").inner_text() == "Post-watershed only"  # not yet
    assert page.get_by_role("button", name="Confirm the change").count() == 0  # not hers
    w.shot("asset-proposed")
    w.check()
    w = open_as(browser, base, "carol", f"/assets/{asset_id}")
    page = w.page
    page.get_by_role("button", name="Confirm the change").click()
    page.wait_for_url(re.compile(r"done=confirmed"))
    assert page.locator("#verdict .level").inner_text() == "Unrestricted: may air at any time"
    assert "confirmed by user:carol (four eyes)" in page.locator("#history").inner_text()
    w.shot("asset-confirmed")
    page.goto(f"{base}/?verdict=unrestricted")  # the catalogue, at once
    assert "real promo.mp4" in page.locator("#catalogue td.path a").all_inner_texts()
    assert _verdict_in(report) == "Unrestricted: may air at any time"  # the static report
    page.goto(f"{base}/audit")
    kinds = page.locator("#audit tbody tr").evaluate_all("rows => rows.map(r => r.dataset.kind)")
    assert {"override", "proposal", "confirmation", "login"} <= set(kinds)
    w.shot("audit")
    w.accessible()
    w.check()


def test_the_queue_and_the_rule_set_pages(served, browser) -> None:
    base, _, _ = served
    w = open_as(browser, base, "carol", "/queue")
    page = w.page
    page.get_by_role("button", name="claim promo-1.mp4").click()
    page.wait_for_url(base + "/queue")
    assert page.get_by_role("button", name="release promo-1.mp4").count() == 1
    w.shot("queue")
    w.accessible()
    w.check()
    w = open_as(browser, base, "eve", "/rulesets/dry-run")
    page = w.page
    page.get_by_label("Rule file (YAML)").fill(
        TRAILERS.replace("coverage_above: 0%", "coverage_above: 100%")
    )
    page.get_by_role("button", name="Try it on the archive").click()
    page.wait_for_selector("#result")
    assert "real promo.mp4" in page.locator("#changes").inner_text()
    w.shot("dry-run")
    w.accessible()
    w.check()


def test_search_by_description_and_by_picture_and_a_hit_opens_the_player_there(
    served, browser, tmp_path: Path
) -> None:
    import av

    base, _, outcome = served
    w = open_as(browser, base, "bob", "/search")
    page = w.page
    page.get_by_label("What to look for").fill("a red picture")
    page.locator("#s-limit").fill("4")
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_selector("#hits")
    assert "q=a+red+picture" in page.url  # a search is a link to send
    items = page.locator("ol.hits li")
    assert items.count() == 4
    assert {items.nth(i).get_attribute("data-asset") for i in range(4)} == {
        str(outcome.asset_id)
    }  # the synthetic assets were scanned with other weights: named, not searched
    assert "7 asset(s) scanned with other weights" in page.locator("#hits").inner_text()
    wait_until(page, "[...document.querySelectorAll('ol.hits img')]"
                     ".every(i => i.complete && i.naturalWidth > 0)")  # fmt: skip
    w.shot("search")
    w.accessible()
    page.get_by_role("link", name="more like this").first.click()
    page.wait_for_url(re.compile(r"like=\d+%3A\d+"))
    assert page.locator("ol.hits li").count() == 4
    # a green still (the clip is green from 3 s to 7 s) uploaded from the form
    still = tmp_path / "green still.png"
    with av.open(str(Path(outcome.path))) as container:
        frame = next(f for f in container.decode(video=0) if f.time >= 5.0)
        frame.to_image().save(still)
    page.goto(base + "/search")
    page.get_by_label("Picture", exact=True).set_input_files(str(still))
    page.locator("#p-limit").fill("3")
    page.get_by_role("button", name="Search by picture").click()
    page.wait_for_selector("#hits")
    top = page.locator("ol.hits li").first
    assert 6 <= int(top.get_attribute("data-frame")) <= 13  # a frame from 3 s to 6.5 s
    w.shot("search-picture")
    link = top.locator("p a").first
    at = float(re.search(r"\?t=([\d.]+)", link.get_attribute("href")).group(1))
    link.click()
    page.wait_for_url(re.compile(r"/assets/\d+\?t="))
    wait_until(page, f"Math.abs(document.getElementById('player').currentTime - {at}) < 0.05")
    w.check()


@pytest.mark.parametrize(
    "path",
    [
        "asset",
        "/",
        "/queue",
        "/audit",
        "/search",
        "/rulesets",
        "/rulesets/trailers",
        "/rulesets/dry-run",
    ],
)
def test_keyboard_alone_reaches_every_control(served, browser, path: str) -> None:
    base, _, outcome = served
    path = f"/assets/{_asset_id(outcome)}" if path == "asset" else path
    w = open_as(browser, base, "eve" if path.startswith("/rulesets") else "alice", path)
    page = w.page
    controls = page.evaluate("""() => [...document.querySelectorAll(
        'a[href], button, input:not([type=hidden]), select, textarea, video[controls]')]
        .filter(e => !e.disabled && e.offsetParent !== null)
        .map((e, i) => (e.dataset.kbd = String(i)))""")
    reached: set[str] = set()
    for _ in range(len(controls) * 3 + 20):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement && document.activeElement.dataset.kbd")
        if focused is not None:
            reached.add(focused)
        if reached >= set(controls):
            break
    assert controls and set(controls) - reached == set()
    page.reload()  # focus order starts with the way past the navigation
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    if path.startswith("/rulesets"):
        w.shot(path.strip("/").replace("/", "-"))
        w.accessible()
    w.check()


def test_print_puts_the_verdict_and_the_reasons_on_page_one(served, browser) -> None:
    import io

    from pypdf import PdfReader

    base, _, outcome = served
    w = Watched(browser, base)
    w.page.goto(Path(outcome.report).as_uri())
    pdf = w.page.pdf(format="A4", print_background=True)
    (ARTIFACTS / "app-report.pdf").write_bytes(pdf)
    pages = PdfReader(io.BytesIO(pdf)).pages
    first = pages[0].extract_text()
    assert "Unrestricted: may air at any time" in first  # the verdict (after the review) …
    assert "Reasons" in first and "anything-red" in first  # … and why, on page one
    assert "measured" in first
    assert len(pages) <= 4, f"a 10-second clip prints on {len(pages)} pages"
    assert w.errors == []

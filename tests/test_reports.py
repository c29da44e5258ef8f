"""Audit reports: what they show, that everything from outside is escaped, that they are
self-contained, and (tier `browser`) that they load cleanly in a real Chromium."""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from policy_engine.media.video import SamplingSpec
from policy_engine.models.provider import ModelProvider
from policy_engine.pipeline import AnalysisOptions
from policy_engine.pipeline.scan import Scanner
from policy_engine.policy.loader import parse_ruleset
from policy_engine.reporting import build_asset_report, write_run_summary
from policy_engine.store import Store

HOSTILE = "<script>alert('x')</script>"
RULES = """\
ruleset: house
version: 3
categories:
  red: {prompts: ["a red wall <b>bold</b>", "<script>alert('p')</script>"]}
  green: {prompts: ["a green field"]}
  background: {prompts: ["something else"], null: true}
rules:
  - id: anything-red
    description: "Red <em>anything</em> & more"
    reference: "Code <1.11>"
    when: {category: red, coverage_above: 0%}
    then: {schedule: post-watershed, review: true, warning: "Contains <blink>red</blink>"}
  - id: anything-green
    when: {category: green, coverage_above: 0%}
    then: {tag: "Out<doors>"}
"""
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["'](?!data:|#|[\w.-]+\.html)""", re.I)


@pytest.fixture
def scanned(store: Store, tiny_clip_dir: Path, colour_video: Path, tmp_path: Path):
    name = "<img src=x onerror=alert(1)> & co.mp4"
    video = tmp_path / name
    shutil.copy(colour_video, video)
    broken = tmp_path / "broken <b>.mp4"
    broken.write_bytes(b"not a video")
    scanner = Scanner(
        store,
        [parse_ruleset(RULES, "house.yaml")],
        ModelProvider(str(tiny_clip_dir), device="cpu", dtype="fp32"),
        AnalysisOptions(sampling=SamplingSpec(fps=2.0)),
        reports_dir=tmp_path / "reports",
    )
    started = datetime.now(UTC)
    outcomes = scanner.scan([video, broken])
    write_run_summary(outcomes, tmp_path / "reports", started=started, problems=[HOSTILE])
    return store, outcomes, tmp_path / "reports"


def test_the_report_shows_verdict_reasons_evidence_coverage_and_provenance(scanned) -> None:
    store, outcomes, _ = scanned
    good = outcomes[0]
    html = Path(good.report).read_text()
    report = build_asset_report(store, good.asset_id)
    decision = report.sections[0].decision
    assert good.report_sha256 and store.reports(good.asset_id)[-1].sha256 == good.report_sha256
    assert store.reports(good.asset_id)[-1].decision_ids == [decision.id]
    # The verdict in words (colour is never the only carrier), with slots and warnings.
    level_words = {"post-watershed": "Post-watershed only", "unrestricted": "Unrestricted"}
    assert level_words[report.verdict["schedule"]] in html
    # One earliest slot per territory, combined over the rule sets, naming who decided it.
    assert re.search(r"UK: earliest [^<]*\(Europe/London\) · decided by house<", html)
    assert html.count("UK: earliest") == 1
    # Every fired rule with its measured value against the threshold, and its evidence.
    for reason in report.sections[0].fired:
        assert f"<code>{reason.rule_id}</code>" in html
        assert "coverage_above 0%: measured" in html
    thumbs = re.findall(r'<img src="data:image/jpeg;base64,[A-Za-z0-9+/=]+"', html)
    assert len(thumbs) == sum(len(r.evidence) for r in report.sections[0].fired) > 0
    assert re.search(r"\d\d:\d\d:\d\d\.\d\d\d · \w+ p=0\.\d\d", html)  # HH:MM:SS.mmm
    # Timeline lanes and coverage rows for every category; provenance.
    assert html.count("<title>") >= 2 and "background (null)" in html
    scan = store.scan(good.scan_id)
    for needle in (scan.weights_sha256, decision.ruleset.sha256, "house</strong> version 3"):
        assert needle in html
    assert "used cpu (asked cpu), dtype fp32" in html
    assert "No overrides recorded." in html


def test_everything_from_outside_is_escaped(scanned) -> None:
    store, outcomes, reports = scanned
    good = outcomes[0]
    decision_id = good.decisions[0][0]
    store.add_override(decision_id, reviewer=HOSTILE, justification="<iframe src=//evil>")
    from policy_engine.reporting import write_asset_report

    path, _ = write_asset_report(store, good.asset_id, reports)
    html = path.read_text()
    for raw in ("<script>alert", "<img src=x", "<iframe", "<b>bold</b>", "<em>", "<blink>",
                "Out<doors>", "<1.11>"):  # fmt: skip
        assert raw not in html, raw
    for escaped in ("&lt;img src=x onerror=alert(1)&gt; &amp; co.mp4",
                    "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;", "&lt;iframe src=//evil&gt;",
                    "Red &lt;em&gt;anything&lt;/em&gt; &amp; more", "Out&lt;doors&gt;"):  # fmt: skip
        assert escaped in html, escaped
    assert "a red wall &lt;b&gt;bold&lt;/b&gt;" in html  # the rule text, collapsible
    assert not EXTERNAL.search(html)  # nothing is fetched from anywhere

    index = (reports / "index.html").read_text()
    assert "<script>alert" not in index.replace("<script>\ndocument", "")
    assert "broken &lt;b&gt;.mp4" in index and "&lt;script&gt;alert" in index


def test_the_run_summary_lists_failures_first_then_the_most_restrictive(scanned) -> None:
    _, outcomes, reports = scanned
    index = (reports / "index.html").read_text()
    runs = list(reports.glob("run-*.html"))
    assert len(runs) == 1 and runs[0].read_text() == index
    rows = re.findall(r'<tr data-path="([^"]*)" data-rank="(\d)"', index)
    assert [rank for _, rank in rows] == sorted((rank for _, rank in rows), reverse=True)
    assert rows[0][0].endswith("broken &lt;b&gt;.mp4") and rows[0][1] == "4"
    assert "not a readable video file" in index
    assert f'href="{Path(outcomes[0].report).name}"' in index  # relative: the folder moves
    assert "1 scanned" in index and "1 failed" in index


# -- in a real browser -----------------------------------------------------------------
CHROMIUM = os.environ.get("POLICY_ENGINE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts"


@pytest.fixture
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; `make test` tries)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    user_data = ARTIFACTS / "chromium-profile"
    shutil.rmtree(user_data, ignore_errors=True)
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data),
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
            ],  # fmt: skip
        )
        yield context
        context.close()


def _open(context, path: Path):
    page = context.new_page()
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, problems, requests


@pytest.mark.browser
def test_reports_load_cleanly_in_chromium(scanned, browser) -> None:
    _, outcomes, reports = scanned
    page, problems, requests = _open(browser, Path(outcomes[0].report))
    assert problems == []
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    verdict = page.locator("#verdict .level").inner_text()
    assert verdict in ("Post-watershed only", "Unrestricted: may air at any time")
    images = page.locator(".evidence img")
    assert images.count() > 0
    assert all(images.nth(i).evaluate("i => i.complete && i.naturalWidth > 0")
               for i in range(images.count()))  # fmt: skip
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "asset-report.png"), full_page=True)
    page.emulate_media(media="print")  # the print stylesheet applies and breaks nothing
    assert page.locator("#verdict .level").is_visible()
    page.screenshot(path=str(ARTIFACTS / "asset-report-print.png"), full_page=True)


@pytest.mark.browser
def test_the_run_summary_sorts_by_verdict_in_chromium(scanned, browser) -> None:
    _, _, reports = scanned
    page, problems, requests = _open(browser, reports / "index.html")
    assert problems == [] and all(u.startswith(("file:", "data:")) for u in requests)
    first = page.locator("#assets tbody tr").first.get_attribute("data-rank")
    page.locator("th button[data-sort=rank]").click()  # ascending now
    assert page.locator("#assets tbody tr").first.get_attribute("data-rank") < first
    page.screenshot(path=str(ARTIFACTS / "run-summary.png"), full_page=True)


def test_a_rule_set_with_forty_categories_renders(
    store: Store, tiny_clip_dir: Path, colour_video: Path, tmp_path: Path
) -> None:
    names = [f"thing{i:02d}" for i in range(40)]
    text = (
        "ruleset: many\ncategories:\n"
        + "".join(f"  {n}: {{prompts: [a photo of {n}]}}\n" for n in names)
        + "  background: {prompts: [something else], null: true}\n"
        + "rules:\n  - id: any\n    when: {category: thing00, coverage_above: 0%}\n"
        "    then: {tag: Seen}\n"
    )
    scanner = Scanner(
        store,
        [parse_ruleset(text, "many.yaml")],
        ModelProvider(str(tiny_clip_dir), device="cpu", dtype="fp32"),
        AnalysisOptions(sampling=SamplingSpec(fps=2.0)),
        reports_dir=tmp_path / "reports",
    )
    (outcome,) = scanner.scan([colour_video])
    assert outcome.status == "scanned", outcome.error
    html = Path(outcome.report).read_text()
    for name in names:  # every lane is there, and named: colour is not the only cue
        assert f">{name}<" in html

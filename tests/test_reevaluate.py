"""Re-evaluation and `rules diff` from stored data: threshold edits touch no model and no
video, prompt edits load the text tower only, and decisions are appended only where
the outcome changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from policy_engine.analysis.scoring import Category
from policy_engine.models.provider import ModelProvider
from policy_engine.pipeline.judging import reevaluate
from policy_engine.policy.loader import parse_ruleset
from policy_engine.store import Store
from policy_engine.store.repository import ScanModel
from policy_engine.store.schema import DecisionRecord, ScoreSet
from policy_engine.store.synthetic import labelled_probabilities, seed_scan

RULES = """\
ruleset: uk
version: {version}
categories:
  violence: {{prompts: [{violence}]}}
  computer: {{prompts: ["a laptop screen"]}}
  background: {{prompts: ["something else"], null: true}}
rules:
  - id: violence-late
    when: {{category: violence, coverage_above: {threshold}}}
    then: {{schedule: post-watershed, review: true}}
"""
CATEGORIES = (
    Category("violence", ("people fighting",)),
    Category("computer", ("a laptop screen",)),
    Category("background", ("something else",), null=True),
)
SHARES = {"none": 0, "three": 3, "eight": 8, "twenty": 20, "half": 50}  # % violence


def rules(version: int = 1, threshold: str = "5%", violence: str = '"people fighting"'):
    text = RULES.format(version=version, threshold=threshold, violence=violence)
    return parse_ruleset(text, "uk.yaml")


def _count(store: Store, model: type) -> int:
    with Session(store.engine) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture
def seeded(store: Store) -> Store:
    """Five trailers, 100 frames each, with 0-50% violence."""
    for name, percent in SHARES.items():
        labels = [0] * percent + [2] * (100 - percent)
        seed_scan(
            store,
            name=name,
            categories=CATEGORIES,
            probabilities=labelled_probabilities(labels, 3),
            duration=50.0,
        )
    return store


@pytest.fixture
def no_video_no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a video or load a model fails the test."""

    def forbidden(what: str):
        def fail(*args, **kwargs):
            raise AssertionError(f"re-evaluation must not {what}")

        return fail

    monkeypatch.setattr("av.open", forbidden("open a video"))
    monkeypatch.setattr("policy_engine.media.video.av.open", forbidden("open a video"))
    monkeypatch.setattr(
        "policy_engine.models.clip.ClipEmbedder.load", forbidden("load the image tower")
    )
    monkeypatch.setattr(
        "policy_engine.models.clip.ClipEmbedder.__init__", forbidden("load the image tower")
    )
    monkeypatch.setattr("transformers.CLIPModel.from_pretrained", forbidden("load CLIPModel"))


def test_threshold_edits_append_decisions_only_where_the_outcome_changed(
    seeded: Store, no_video_no_model: None
) -> None:
    first = reevaluate(seeded, [rules()], None)
    assert (first.scans, first.appended, first.unchanged) == (5, 5, 0)
    post = {c.path.split("/")[-1]: c.after.schedule for c in first.changes}
    assert post == {
        "none.mp4": "unrestricted",
        "three.mp4": "unrestricted",
        "eight.mp4": "post-watershed",
        "twenty.mp4": "post-watershed",
        "half.mp4": "post-watershed",
    }
    assert all(c.why == ("first decision under uk",) for c in first.changes)

    again = reevaluate(seeded, [rules()], None)
    assert (again.appended, again.unchanged, again.changes) == (0, 5, [])

    edited = reevaluate(seeded, [rules(version=2, threshold="10%")], None)
    (change,) = edited.changes
    assert change.path.endswith("eight.mp4") and edited.appended == 1
    assert (change.before.schedule, change.after.schedule) == ("post-watershed", "unrestricted")
    assert change.why == ("rule set uk v1 -> v2", "no longer fires violence-late")
    assert change.decision_id is not None
    assert seeded.decision(change.decision_id).cause == "reevaluate"
    assert edited.from_stored_scores == 5 and edited.rescored == 0

    tighter = reevaluate(seeded, [rules(version=3, threshold="2%")], None)
    assert sorted(c.path.split("/")[-1] for c in tighter.changes) == ["eight.mp4", "three.mp4"]
    fires = [w for c in tighter.changes for w in c.why if w.startswith("now fires")]
    assert "violence coverage_above 2%: measured 3%" in fires[0] + fires[1]

    always = reevaluate(seeded, [rules(version=3, threshold="2%")], None, always=True)
    assert (always.changes, always.appended) == ([], 5)
    assert _count(seeded, DecisionRecord) == 5 + 1 + 2 + 5


def test_rules_diff_is_a_dry_run_that_writes_nothing(seeded: Store, no_video_no_model) -> None:
    reevaluate(seeded, [rules()], None)
    before = (_count(seeded, DecisionRecord), _count(seeded, ScoreSet))
    diff = reevaluate(seeded, [rules(version=2, threshold="25%")], None, dry_run=True)
    assert diff.dry_run and diff.appended == 0
    assert sorted(c.path.split("/")[-1] for c in diff.changes) == ["eight.mp4", "twenty.mp4"]
    assert all(c.decision_id is None for c in diff.changes)
    assert (_count(seeded, DecisionRecord), _count(seeded, ScoreSet)) == before


def test_since_limits_re_evaluation_to_recent_scans(seeded: Store) -> None:
    from datetime import UTC, datetime, timedelta

    future = datetime.now(UTC) + timedelta(days=1)
    assert reevaluate(seeded, [rules()], None, since=future).scans == 0
    past = datetime.now(UTC) - timedelta(days=1)
    assert reevaluate(seeded, [rules()], None, since=past).scans == 5


def test_an_override_on_a_superseded_decision_is_pointed_out(seeded: Store) -> None:
    first = reevaluate(seeded, [rules()], None)
    eight = next(c for c in first.changes if c.path.endswith("eight.mp4"))
    seeded.add_override(eight.decision_id, reviewer="ann", justification="stylised")
    edited = reevaluate(seeded, [rules(version=2, threshold="10%")], None)
    (change,) = edited.changes
    assert any("overridden by ann" in w for w in change.why)


# -- prompt edits: the text tower, and only it --------------------------------------------
@pytest.fixture
def model_scans(store: Store, tiny_clip_dir: Path):
    """Scans whose frame embeddings are the tiny model's own prompt embeddings, so which
    prompt a frame shows is known: 4 frames of a fight (or a brawl), 16 of a laptop."""
    from policy_engine.models.clip import ClipEmbedder

    embedder = ClipEmbedder.load(str(tiny_clip_dir), device="cpu", dtype="fp32")
    vectors = embedder.embed_texts(["people fighting", "a laptop screen", "two men brawling"])
    model = ScanModel(
        name=str(tiny_clip_dir),
        path=str(tiny_clip_dir),
        weights_sha256=embedder.identity.weights_sha256,
        embed_dim=16,
        logit_scale=embedder.logit_scale,
    )
    frames = np.stack([vectors[0]] * 4 + [vectors[1]] * 16)
    probs = labelled_probabilities([0] * 4 + [1] * 16, 3)
    seed_scan(
        store,
        name="fight",
        categories=CATEGORIES,
        probabilities=probs,
        duration=10.0,
        embeddings=frames,
        model=model,
    )
    brawl = np.stack([vectors[2]] * 4 + [vectors[1]] * 16)
    seed_scan(  # the old prompts did not see the brawl as violence
        store,
        name="brawl",
        categories=CATEGORIES,
        probabilities=labelled_probabilities([2] * 4 + [1] * 16, 3),
        duration=10.0,
        embeddings=brawl,
        model=model,
    )
    return store


def test_a_new_prompt_is_scored_from_stored_embeddings_with_the_text_tower_only(
    model_scans: Store, tiny_clip_dir: Path, no_video_no_model: None, monkeypatch
) -> None:
    import policy_engine.models.clip as clip

    loaded = []
    real = clip.load_text_encoder

    def spy(*args, **kwargs):
        encoder = real(*args, **kwargs)
        loaded.append(encoder)
        return encoder

    monkeypatch.setattr(clip, "load_text_encoder", spy)
    models = ModelProvider(str(tiny_clip_dir), device="cpu", dtype="fp32")
    reevaluate(model_scans, [rules()], models)
    assert loaded == []  # stored probabilities: no model at all

    edited = rules(version=2, violence='"people fighting", "two men brawling"')
    diff = reevaluate(model_scans, [edited], models, dry_run=True)
    assert diff.rescored == 2 and len(loaded) == 1
    assert not any("vision" in n for n, _ in loaded[0].tower.named_parameters())
    assert _count(model_scans, ScoreSet) == 2  # dry run: the new scores are not kept

    applied = reevaluate(model_scans, [edited], models)
    assert applied.rescored == 2 and _count(model_scans, ScoreSet) == 4
    brawl = next(c for c in applied.changes if c.path.endswith("brawl.mp4"))
    assert brawl.after.schedule == "post-watershed"  # the new prompt now sees the brawl
    assert any(w.startswith("now fires violence-late") for w in brawl.why)
    assert [c.path.split("/")[-1] for c in diff.changes] == ["brawl.mp4"]  # fight: still late
    assert reevaluate(model_scans, [edited], models).rescored == 0  # stored this time


def test_scans_whose_model_is_gone_are_reported_not_fatal(seeded: Store, tiny_clip_dir: Path):
    models = ModelProvider(str(tiny_clip_dir), device="cpu", dtype="fp32")
    result = reevaluate(seeded, [rules(violence='"a brand new prompt"')], models)
    assert result.scans == 5 and result.appended == 0 and len(result.problems) == 5
    assert "synthetic" in result.problems[0][1] and "--model" in result.problems[0][1]

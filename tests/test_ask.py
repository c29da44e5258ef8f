"""Ask a stored asset about anything: when, for how long, from stored embeddings with the
text tower alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from policy_engine.analysis.ask import CONTRAST_PROMPTS, answer, question
from policy_engine.analysis.scoring import flatten_prompts
from policy_engine.cli import app
from policy_engine.errors import ModelError
from policy_engine.models.provider import ModelProvider
from policy_engine.pipeline.ask import ask
from policy_engine.store import ScanModel, Store
from policy_engine.store.synthetic import seed_scan

runner = CliRunner()
QUERY = "a person smoking"


# -- the answer (pure) ----------------------------------------------------------------------------
def test_sightings_are_time_weighted_runs_with_their_strongest_frame() -> None:
    times = np.arange(10) * 1.0  # one frame a second over 10 s
    probabilities = np.array([0.1, 0.7, 0.9, 0.6, 0.2, 0.1, 0.55, 0.1, 0.1, 0.1])
    found = answer(QUERY, times, probabilities, start=0.0, end=10.0)
    assert found.present and found.first_seen == 1.0
    assert [(s.start, s.end, s.peak, s.evidence_time) for s in found.segments] == [
        (1.0, 4.0, 0.9, 2.0),
        (6.0, 7.0, 0.55, 6.0),
    ]
    assert found.total_seconds == 4.0 and found.share == pytest.approx(0.4)
    assert found.longest_run == 3.0 and found.peak == 0.9 and found.peak_time == 2.0
    stricter = answer(QUERY, times, probabilities, start=0.0, end=10.0, threshold=0.8)
    assert [(s.start, s.end) for s in stricter.segments] == [(2.0, 3.0)]


def test_an_answer_does_not_depend_on_the_sampling_rate() -> None:
    """The same 3-second sighting in a 10-second clip, sampled at 2 and at 10 fps."""
    shares = []
    for fps in (2, 10):
        times = np.arange(10 * fps) / fps
        probabilities = np.where((times >= 4.0) & (times < 7.0), 0.8, 0.1)
        found = answer(QUERY, times, probabilities, start=0.0, end=10.0)
        assert found.first_seen == 4.0 and found.longest_run == pytest.approx(3.0)
        shares.append(found.share)
    assert shares == [pytest.approx(0.3), pytest.approx(0.3)]


def test_nothing_found_and_nothing_stored_are_plain_answers() -> None:
    none = answer(QUERY, np.arange(4.0), np.full(4, 0.2), start=0.0, end=4.0)
    assert not none.present and none.first_seen is None and none.segments == ()
    assert none.peak == pytest.approx(0.2)
    empty = answer(QUERY, np.zeros(0), np.zeros(0), start=0.0, end=0.0)
    assert not empty.present and empty.share == 0.0 and empty.peak_time is None
    with pytest.raises(ValueError, match="between 0 and 1"):
        answer(QUERY, np.arange(4.0), np.full(4, 0.2), start=0.0, end=4.0, threshold=1.0)
    with pytest.raises(ValueError, match="empty"):
        question("   ")


# -- from the store, with the tiny model's text tower ---------------------------------------------
@pytest.fixture
def smoking_scan(store: Store, tiny_clip_dir: Path) -> tuple[Store, int]:
    """20 frames over 10 s; frames 6-9 (3.0-5.0 s) show what the query's text embedding
    describes (made orthogonal to the contrast prompts), the others its opposite."""
    from policy_engine.models.clip import ClipEmbedder

    embedder = ClipEmbedder.load(str(tiny_clip_dir), device="cpu", dtype="fp32")
    prompts, _ = flatten_prompts(question(QUERY))
    text = embedder.embed_texts(prompts)
    contrast = np.linalg.qr(text[1:].T)[0]  # an orthonormal basis of the contrast prompts
    showing = text[0] - contrast @ (contrast.T @ text[0])
    showing /= np.linalg.norm(showing)
    frames = np.stack([showing if 6 <= i < 10 else -showing for i in range(20)])
    model = ScanModel(
        name=str(tiny_clip_dir),
        path=str(tiny_clip_dir),
        weights_sha256=embedder.identity.weights_sha256,
        embed_dim=frames.shape[1],
        logit_scale=embedder.logit_scale,
    )
    from policy_engine.analysis.scoring import Category

    categories = [Category("x", ("x",)), Category("other", ("other",), null=True)]
    asset_id, _ = seed_scan(
        store, name="promo", categories=categories, probabilities=np.tile([0.0, 1.0], (20, 1)),
        duration=10.0, embeddings=frames, model=model,
    )  # fmt: skip
    return store, asset_id


@pytest.fixture
def no_video_no_image_tower(monkeypatch: pytest.MonkeyPatch) -> list:
    """Opening a video or loading the image tower fails the test; text towers loaded are
    collected."""
    import policy_engine.models.clip as clip

    def forbidden(*args, **kwargs):
        raise AssertionError("ask must not open a video or load the image tower")

    monkeypatch.setattr("av.open", forbidden)
    monkeypatch.setattr("policy_engine.media.video.av.open", forbidden)
    monkeypatch.setattr("policy_engine.models.clip.ClipEmbedder.load", forbidden)
    loaded: list = []
    real = clip.load_text_encoder

    def spy(*args, **kwargs):
        encoder = real(*args, **kwargs)
        loaded.append(encoder)
        return encoder

    monkeypatch.setattr(clip, "load_text_encoder", spy)
    return loaded


def test_ask_answers_from_stored_embeddings_with_the_text_tower_only(
    smoking_scan, tiny_clip_dir: Path, no_video_no_image_tower: list
) -> None:
    store, asset_id = smoking_scan
    models = ModelProvider(str(tiny_clip_dir), device="cpu", dtype="fp32")
    result = ask(store, models, asset_id, QUERY)
    found = result.answer
    assert found.present and found.first_seen == pytest.approx(3.0, abs=0.3)
    assert found.total_seconds == pytest.approx(2.0, abs=0.3)
    assert [s.evidence_time for s in found.segments][0] == pytest.approx(3.0, abs=2.0)
    assert found.contrast == CONTRAST_PROMPTS and result.other_weights == ()
    (text_tower,) = no_video_no_image_tower
    assert not any("vision" in name for name, _ in text_tower.tower.named_parameters())


def test_ask_uses_only_embeddings_of_the_same_weights_and_says_so(
    smoking_scan, tiny_clip_dir: Path, tmp_path: Path
) -> None:
    from policy_engine.models.tiny import make_tiny_clip

    store, asset_id = smoking_scan
    other = make_tiny_clip(tmp_path / "other-model", seed=7)
    with pytest.raises(ModelError, match="other model weights.*same weights"):
        ask(store, ModelProvider(str(other), device="cpu"), asset_id, QUERY)


def test_ask_from_the_command_line(smoking_scan, tiny_clip_dir: Path, db_url: str) -> None:
    _, asset_id = smoking_scan
    args = ["--db", db_url, "ask", str(asset_id), QUERY, "--model", str(tiny_clip_dir)]
    shown = runner.invoke(app, args)
    assert shown.exit_code == 0, shown.output
    assert "yes: first seen at 00:00:03" in shown.stdout and "none of these" in shown.stdout
    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert data["present"] and data["weights_sha256"].startswith("sha256:")
    assert {"first_seen", "total_seconds", "share", "longest_run", "segments"} <= set(data)
    missing = runner.invoke(app, ["--db", db_url, "ask", "999", QUERY])
    assert missing.exit_code == 2 and "no asset matches" in missing.output
    empty = runner.invoke(app, [*args[:3], str(asset_id), " ", "--model", str(tiny_clip_dir)])
    assert empty.exit_code == 2 and "empty" in empty.output

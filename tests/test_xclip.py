"""X-CLIP on a tiny checkpoint built here (XCLIPConfig, random weights) and loaded through
from_pretrained like a real one: the cached text side gives XCLIPModel.forward's logits,
each prompt is encoded once, and any frame count is fitted, never a crash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from policy_engine.errors import ModelError
from policy_engine.models.tiny import make_tiny_xclip
from policy_engine.models.xclip import XClipScorer, fit_frames

PROMPTS = ["a person punching", "a person falling", "an empty street"]


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> XClipScorer:
    folder = make_tiny_xclip(tmp_path_factory.mktemp("models") / "tiny-xclip")
    return XClipScorer.load(str(folder), device="cpu", dtype="fp32")


def windows(count: int, frames: int, seed: int = 0) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        [rng.integers(0, 256, (36, 64, 3), dtype=np.uint8) for _ in range(frames)]
        for _ in range(count)
    ]


def test_cached_text_gives_the_models_own_logits(scorer: XClipScorer) -> None:
    pixels = scorer.pixels(windows(3, 8))
    ours = scorer.logits(pixels, PROMPTS)
    tokens = scorer.processor.tokenizer(PROMPTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        reference = scorer.model(pixel_values=pixels, **tokens).logits_per_video.numpy()
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)
    # the text is conditioned on each window: the same prompts rank differently per window
    assert ours.shape == (3, 3) and not np.allclose(ours[0] - ours[0, 0], ours[1] - ours[1, 0])


def test_each_prompt_goes_through_the_text_encoder_once(scorer: XClipScorer) -> None:
    encoded: list[int] = []
    hook = scorer.model.text_model.register_forward_hook(
        lambda module, args, kwargs, output: encoded.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True,
    )
    try:
        pixels = scorer.pixels(windows(2, 8, seed=1))
        scorer.logits(pixels, ["a new prompt", PROMPTS[0]])
        scorer.logits(pixels, ["a new prompt", PROMPTS[0]])
        scorer.logits(pixels, [PROMPTS[0], "another prompt"])
    finally:
        hook.remove()
    assert sum(encoded) <= 3 and encoded[-1] == 1  # never a prompt twice


def test_any_frame_count_is_fitted_to_the_checkpoints(scorer: XClipScorer) -> None:
    assert scorer.frames_per_window == scorer.identity.frames == 8
    short, long = windows(1, 3, seed=2)[0], windows(1, 13, seed=3)[0]
    pixels = scorer.pixels([short, long])
    assert pixels.shape[:2] == (2, 8)
    fitted = scorer.pixels([fit_frames(short, 8), fit_frames(long, 8)])
    assert torch.equal(pixels, fitted)
    assert scorer.logits(pixels, PROMPTS).shape == (2, 3)
    with pytest.raises(ValueError, match="takes 8"):
        scorer.logits(pixels[:, :5], PROMPTS)
    assert fit_frames(list(range(13)), 8) == [0, 2, 4, 5, 7, 8, 10, 12]
    assert fit_frames(list(range(3)), 8) == [0, 0, 0, 1, 1, 2, 2, 2]


def test_the_identity_is_recorded_like_clips(scorer: XClipScorer) -> None:
    identity = scorer.identity.as_dict()
    assert identity["weights_sha256"].startswith("sha256:")
    assert identity["device_used"] == "cpu" and identity["frames"] == 8


def test_a_missing_checkpoint_says_how_to_provide_one(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such checkpoint folder"):
        XClipScorer.load(str(tmp_path / "missing"))

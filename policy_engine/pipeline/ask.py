"""Ask a stored asset about anything: "a person smoking" -> when, for how long.

Answered from the frame embeddings stored at scan time with the text tower alone: no
video is opened and the image tower never runs. Only embeddings made with the configured
model's weights are used (the question's text embedding must come from the same model);
scans made with other weights are named in the answer, never mixed in.
"""

from __future__ import annotations

from dataclasses import dataclass

from policy_engine.analysis.ask import CONTRAST_PROMPTS, DEFAULT_THRESHOLD, Answer, answer, question
from policy_engine.analysis.scoring import flatten_prompts, score_frames
from policy_engine.errors import ConfigError, ModelError
from policy_engine.models.provider import ModelProvider
from policy_engine.store import Store


@dataclass(frozen=True)
class AskResult:
    asset_id: int
    path: str
    scan_id: int
    model: str
    weights_sha256: str
    answer: Answer
    other_weights: tuple[str, ...]  # weights of this asset's scans that were not used


def ask(
    store: Store,
    models: ModelProvider,
    asset_id: int,
    query: str,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> AskResult:
    try:
        categories = question(query, CONTRAST_PROMPTS)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"--threshold must be between 0 and 1 (exclusive), got {threshold}")
    weights = models.checkpoint().weights_sha256  # reads the hash, loads no weights
    scans = store.asset_scans(asset_id)
    same = [s for s in scans if s.weights_sha256 == weights]
    others = tuple(dict.fromkeys(s.weights_sha256 for s in scans if s.weights_sha256 != weights))
    if not same:
        raise ModelError(_no_scan_with(asset_id, models.model, weights, others))
    scan = same[0]  # the newest
    encoder = models.prompt_encoder(weights, scan.model_name, scan.model_path)
    prompts, _ = flatten_prompts(categories)
    text = encoder.embed_texts(prompts, keep=False)  # a user's question
    embeddings = store.frame_embeddings([scan.id])[scan.id]
    scores = score_frames(categories, scan.times, embeddings, text, scan.logit_scale)
    found = answer(
        query,
        scan.times,
        scores.probabilities[:, 0],
        start=scan.window_start,
        end=scan.window_end,
        threshold=threshold,
        contrast=CONTRAST_PROMPTS,
        begins=scan.span_starts,
    )
    return AskResult(asset_id, scan.path, scan.id, scan.model_name, weights, found, others)


def _no_scan_with(asset_id: int, model: str, weights: str, others: tuple[str, ...]) -> str:
    if not others:
        return f"asset {asset_id} has no completed scan to ask about; scan it first"
    listed = ", ".join(w.removeprefix("sha256:")[:12] for w in others)
    return (
        f"asset {asset_id} was scanned with other model weights ({listed}) than the"
        f" configured model {model} ({weights.removeprefix('sha256:')[:12]}); a question"
        " is only answered from embeddings of the same weights. Give that model with"
        " --model, or scan the asset again with this one."
    )

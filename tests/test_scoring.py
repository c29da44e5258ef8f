import numpy as np
import pytest

from policy_engine.analysis.scoring import Category, category_probabilities, score_frames

CATS = [
    Category("violence", ("people fighting", "a gun")),
    Category("computer", ("a laptop",)),
    Category("other", ("something else",), null=True),
]


def _unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


TEXT = np.stack([_unit([1, 0, 0]), _unit([1, 0.2, 0]), _unit([0, 1, 0]), _unit([0, 0, 1])])


def test_softmax_over_all_prompts_summed_per_category() -> None:
    image = np.stack([_unit([1, 0, 0])])
    probs = category_probabilities(image, TEXT, np.array([0, 0, 1, 2]), 3, logit_scale=100.0)
    logits = 100.0 * TEXT @ image[0]
    expected_prompt = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert probs[0] == pytest.approx(
        [expected_prompt[0] + expected_prompt[1], expected_prompt[2], expected_prompt[3]]
    )
    assert probs.sum() == pytest.approx(1.0)


def test_labels_and_null_category() -> None:
    images = np.stack([_unit([1, 0, 0]), _unit([0, 1, 0]), _unit([0, 0.1, 1])])
    scores = score_frames(CATS, [0.0, 0.5, 1.0], images, TEXT, logit_scale=100.0)
    assert scores.label_names() == ["violence", "computer", "other"]
    assert scores.probabilities.shape == (3, 3)
    assert np.allclose(scores.probabilities.sum(axis=1), 1.0)


def test_tiles_take_max_over_crops_then_renormalise() -> None:
    # One frame, two crops: the left crop is a laptop, the right one nothing in particular.
    frame = np.stack([_unit([0, 1, 0]), _unit([0, 0, 1])])[None]
    single = score_frames(CATS, [0.0], frame[:, 1], TEXT, logit_scale=100.0)
    tiled = score_frames(CATS, [0.0], frame, TEXT, logit_scale=100.0)
    assert single.label_names() == ["other"]
    assert tiled.label_names() == ["computer"]  # not diluted by the empty half
    assert tiled.probabilities.sum() == pytest.approx(1.0)


def test_frames_with_different_crop_counts() -> None:
    frames = [np.stack([_unit([0, 1, 0])]), np.stack([_unit([1, 0, 0]), _unit([0, 0, 1])])]
    scores = score_frames(CATS, [0, 1], frames, TEXT, logit_scale=100.0)
    assert scores.label_names() == ["computer", "violence"]


def test_rejects_bad_category_sets() -> None:
    with pytest.raises(ValueError):
        Category("empty", ())
    with pytest.raises(ValueError, match="duplicate"):
        score_frames([CATS[0], CATS[0]], [0], np.zeros((1, 3)), TEXT[:4], 100.0)
    with pytest.raises(ValueError, match="times"):
        score_frames(CATS, [0, 1], np.stack([_unit([1, 0, 0])]), TEXT, 100.0)

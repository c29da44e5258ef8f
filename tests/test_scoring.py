import json

import numpy as np
import pytest

from policy_engine.analysis.scoring import (
    DEFAULT_NULL_PROMPTS,
    LEGACY_MEASURE,
    MEASURE,
    NOTHING,
    Category,
    categories_key,
    category_probabilities,
    flatten_prompts,
    measurement_key,
    read_probabilities,
    score_frames,
    scores_from_probabilities,
)
from policy_engine.hashing import text_sha256

CATS = [
    Category("violence", ("people fighting", "a gun")),
    Category("computer", ("a laptop",)),
    Category("other", ("something else",), null=True),
]


def _unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


# violence: two prompts, computer: one, other (null): a little like everything
TEXT = np.stack([_unit([1, 0, 0]), _unit([1, 0, 0.3]), _unit([0, 1, 0]), _unit([0.3, 0.3, 1])])


def _random_units(rng: np.random.Generator, count: int, dim: int = 16) -> np.ndarray:
    v = rng.standard_normal((count, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_each_category_is_a_softmax_over_its_own_prompts_and_the_null_prompts() -> None:
    image = np.stack([_unit([0.2, 0.3, 0.25])])
    _, owner = flatten_prompts(CATS)
    probs = category_probabilities(image, TEXT, owner, [c.null for c in CATS], 10.0)
    logits = 10.0 * TEXT.astype(np.float64) @ image[0].astype(np.float64)

    def against_null(own: list[int]) -> float:
        mine, null = np.exp(logits[own]).mean(), np.exp(logits[3])  # means, not sums
        return float(mine / (mine + null))

    violence, computer = against_null([0, 1]), against_null([2])
    assert 0.01 < violence < computer < 0.99
    assert probs[0] == pytest.approx([violence, computer, 1 - max(violence, computer)])


def test_a_category_measures_the_same_whatever_sits_beside_it() -> None:
    """The report's complaint: violence 30% in one rule set and 67.5% in another on the
    same frames, because each set's softmax ran over its own categories."""
    rng = np.random.default_rng(7)
    images = _random_units(rng, 200)
    violence = Category("violence", ("a fight", "a shooting"))
    background = Category("background", ("people talking", "a landscape"), null=True)
    small = [violence, background]
    large = [Category("weapons", ("a gun",)), violence, Category("drugs", ("a syringe",)),
             background]  # fmt: skip
    text = {p: v for p, v in zip(["a fight", "a shooting", "people talking", "a landscape",
                                  "a gun", "a syringe"], _random_units(rng, 6), strict=True)}  # fmt: skip

    def scored(categories: list[Category]) -> np.ndarray:
        prompts, _ = flatten_prompts(categories)
        embedded = np.stack([text[p] for p in prompts])
        return score_frames(categories, np.arange(200.0), images, embedded, 100.0)

    a, b = scored(small), scored(large)
    assert np.array_equal(a.probabilities[:, 0], b.probabilities[:, 1])
    assert np.array_equal(a.shown[:, 0], b.shown[:, 1])
    assert measurement_key(violence, small) == measurement_key(violence, large)
    other_null = [violence, Category("background", ("a blank screen",), null=True)]
    assert measurement_key(violence, small) != measurement_key(violence, other_null)


def test_a_frame_may_show_several_categories_and_null_only_where_none() -> None:
    text = np.stack([_unit([1, 0, 0]), _unit([0, 1, 0]), _unit([0, 0, 1])])
    cats = [Category("fight", ("a fight",)), Category("gun", ("a gun",)),
            Category("background", ("nothing",), null=True)]  # fmt: skip
    images = np.stack([_unit([1, 1, 0]), _unit([1, 0, 0.2]), _unit([0, 0, 1])])
    scores = score_frames(cats, [0.0, 1.0, 2.0], images, text, 100.0)
    assert scores.shown.tolist() == [[True, True, False], [True, False, False],
                                     [False, False, True]]  # fmt: skip
    assert scores.label_names() == ["fight", "fight", "background"]  # ties: listed first


def test_tiles_take_the_strongest_crop_per_category() -> None:
    # One frame, two crops: the left crop is a laptop, the right one nothing in particular.
    frame = np.stack([_unit([0, 1, 0]), _unit([0, 0, 1])])[None]
    single = score_frames(CATS, [0.0], frame[:, 1], TEXT, logit_scale=100.0)
    tiled = score_frames(CATS, [0.0], frame, TEXT, logit_scale=100.0)
    assert single.label_names() == ["other"]
    assert tiled.label_names() == ["computer"]  # not diluted by the empty half


def test_frames_with_different_crop_counts() -> None:
    frames = [np.stack([_unit([0, 1, 0])]), np.stack([_unit([1, 0, 0]), _unit([0, 0, 1])])]
    scores = score_frames(CATS, [0, 1], frames, TEXT, logit_scale=100.0)
    assert scores.label_names() == ["computer", "violence"]


def test_a_set_without_a_null_category_is_measured_against_the_default_null() -> None:
    cats = [Category("sea", ("the sea",))]
    prompts, owner = flatten_prompts(cats)
    assert prompts == ["the sea", *DEFAULT_NULL_PROMPTS]
    assert owner.tolist() == [0] + [NOTHING] * len(DEFAULT_NULL_PROMPTS)
    text = np.stack([_unit([1, 0])] + [_unit([0, 1])] * len(DEFAULT_NULL_PROMPTS))
    scores = score_frames(cats, [0, 1], np.stack([_unit([1, 0]), _unit([0, 1])]), text, 100.0)
    assert scores.label_names() == ["sea", None]
    assert scores.shown.tolist() == [[True], [False]]


def test_several_null_categories_share_what_the_others_leave() -> None:
    text = np.stack([_unit([1, 0, 0]), _unit([0, 1, 0]), _unit([0, 0, 1])])
    cats = [Category("fight", ("a fight",)), Category("talk", ("people talking",), null=True),
            Category("blank", ("a blank screen",), null=True)]  # fmt: skip
    scores = score_frames(cats, [0, 1], np.stack([_unit([0, 0.2, 1]), _unit([0, 1, 0])]),
                          text, 100.0)  # fmt: skip
    assert scores.label_names() == ["blank", "talk"]
    assert scores.probabilities.sum(axis=1) == pytest.approx([1.0, 1.0], abs=1e-6)


def test_what_a_frame_shows_is_read_back_from_stored_float32_alone() -> None:
    rng = np.random.default_rng(3)
    prompts, _ = flatten_prompts(CATS)
    scores = score_frames(CATS, np.arange(50.0), _random_units(rng, 50, 3), TEXT, 100.0)
    stored = scores.probabilities.astype(np.float32).tobytes()
    again = scores_from_probabilities(CATS, scores.times, np.frombuffer(stored, np.float32))
    assert np.array_equal(again.shown, scores.shown)
    assert np.array_equal(again.labels, scores.labels)
    assert len(prompts) == len(TEXT)


def test_score_sets_stored_before_are_read_and_found_as_they_were_made() -> None:
    old_key = text_sha256(json.dumps([[c.name, list(c.prompts), c.null] for c in CATS]))
    assert categories_key(CATS, LEGACY_MEASURE) == old_key
    assert categories_key(CATS) != old_key  # a new measure never reads old numbers as new
    # the old reading: one label per frame, the most probable category
    probs = np.array([[0.4, 0.35, 0.25], [0.2, 0.1, 0.7]], np.float32)
    labels, shown = read_probabilities(probs, [c.null for c in CATS], LEGACY_MEASURE)
    assert labels.tolist() == [0, 2]
    assert shown.tolist() == [[True, False, False], [False, False, True]]
    labels, shown = read_probabilities(probs, [c.null for c in CATS], MEASURE)
    assert shown.tolist() == [[False, False, True], [False, False, True]]  # nothing reaches 0.5
    with pytest.raises(ValueError, match="this version reads"):
        read_probabilities(probs, [False, False, True], "future/9")


def test_rejects_bad_category_sets() -> None:
    with pytest.raises(ValueError):
        Category("empty", ())
    with pytest.raises(ValueError, match="duplicate"):
        score_frames([CATS[0], CATS[0]], [0], np.zeros((1, 3)), TEXT[:4], 100.0)
    with pytest.raises(ValueError, match="every category is null"):
        score_frames([CATS[2]], [0], np.zeros((1, 3)), TEXT[3:], 100.0)
    with pytest.raises(ValueError, match="times"):
        score_frames(CATS, [0, 1], np.stack([_unit([1, 0, 0])]), TEXT, 100.0)

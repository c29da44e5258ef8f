import numpy as np
import pytest

from policy_engine.media.framing import Framing, apply_plan, plan_framing


def test_letterbox_keeps_whole_16_9_picture() -> None:
    plan = plan_framing(1280, 720, 224, Framing.LETTERBOX, pad_value=(123, 117, 104))
    assert (plan.scaled_width, plan.scaled_height) == (224, 126)
    assert plan.offsets == ((0, 49),)
    scaled = np.full((126, 224, 3), 7, dtype=np.uint8)
    squares = apply_plan(plan, scaled)
    assert squares.shape == (1, 224, 224, 3)
    assert (squares[0, 49:175] == 7).all()  # all of the picture is there
    assert (squares[0, :49] == (123, 117, 104)).all()  # padding is the mean colour


def test_center_crop_drops_the_sides() -> None:
    plan = plan_framing(1280, 720, 224, Framing.CENTER)
    assert (plan.scaled_width, plan.scaled_height) == (398, 224)
    assert plan.offsets == ((87, 0),)
    scaled = np.tile(np.arange(398, dtype=np.uint16)[None, :, None] % 256, (224, 1, 3)).astype(
        np.uint8
    )
    square = apply_plan(plan, scaled)[0]
    assert square[0, 0, 0] == 87 and square[0, -1, 0] == (87 + 223) % 256


def test_tiles_cover_the_whole_picture() -> None:
    plan = plan_framing(1280, 720, 224, Framing.TILES)
    assert plan.crops_per_frame == 2
    xs = [x for x, _ in plan.offsets]
    assert xs[0] == 0 and xs[-1] + 224 == plan.scaled_width  # first and last columns covered
    square = plan_framing(720, 720, 224, Framing.TILES)
    assert square.crops_per_frame == 1
    portrait = plan_framing(720, 1280, 224, Framing.TILES)
    assert portrait.crops_per_frame == 2 and all(x == 0 for x, _ in portrait.offsets)


def test_squash_fills_the_square() -> None:
    plan = plan_framing(1920, 800, 224, Framing.SQUASH)
    assert (plan.scaled_width, plan.scaled_height, plan.offsets) == (224, 224, ((0, 0),))


def test_rotation_quarter_turn_swaps_display_shape() -> None:
    # A phone clip coded 1280x720 with a -90 degree display matrix is shown portrait.
    plan = plan_framing(1280, 720, 224, Framing.LETTERBOX, rotation_degrees=-90)
    assert plan.quarter_turns == 3
    # converter output is in coded orientation: wide; after rotation it is tall
    assert (plan.scaled_width, plan.scaled_height) == (224, 126)
    scaled = np.zeros((126, 224, 3), dtype=np.uint8)
    scaled[0, 0] = 255  # top-left of the coded picture
    squares = apply_plan(plan, scaled)
    assert squares.shape == (1, 224, 224, 3)
    x0, _ = plan.offsets[0]
    assert x0 == 49
    # rotating clockwise by 90 (k=3) moves coded top-left to display top-right
    assert squares[0, 0, x0 + 125, 0] == 255


def test_anamorphic_pixels_are_judged_at_display_shape() -> None:
    # PAL 16:9 anamorphic: 720x576 stored, 64:45 sample aspect ratio -> ~1024x576 shown
    plan = plan_framing(720, 576, 224, Framing.LETTERBOX, sample_aspect_ratio=64 / 45)
    assert plan.scaled_width == 224 and plan.scaled_height == 126


@pytest.mark.parametrize("bad", [(0, 720), (1280, -1)])
def test_rejects_empty_pictures(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        plan_framing(*bad, 224)

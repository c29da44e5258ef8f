"""The photosensitivity (PSE) check on generated frames: each case is built so that the
shortcut it guards against (the whole-frame mean, frame counting instead of real times,
per-frame instead of accumulated changes, no area or dark test) would get it wrong."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from policy_engine.analysis.photosensitivity import (
    EXTENDED_FAIL,
    FLASH_FAIL,
    WARNING,
    PhotosensitivityAnalyzer,
    PseResult,
    PseSettings,
    analyze_frames,
)
from policy_engine.analysis.photosensitivity.luminance import LINEAR

H, W = 180, 320  # the size the pipeline hands over (a downscaled picture)
NTSC = 30000 / 1001  # 29.97 frames a second


def grey(luminance: float) -> int:
    """The 8-bit grey level whose relative luminance is nearest to `luminance`."""
    return int(np.abs(LINEAR.astype(np.float64) - luminance).argmin())


def picture(level: int | tuple[int, int, int], height: int = H, width: int = W) -> np.ndarray:
    colour = (level, level, level) if isinstance(level, int) else level
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (height, width, 3)).copy()


def toggling(
    a: np.ndarray, b: np.ndarray, *, fps: float, seconds: float, every: int
) -> Iterator[tuple[float, np.ndarray]]:
    """Pictures a and b swapped every `every` frames (a transition each swap)."""
    for i in range(round(fps * seconds)):
        yield i / fps, (a if (i // every) % 2 == 0 else b)


def kinds(result: PseResult, severity: str = "fail") -> set[str]:
    return {i.kind for i in result.intervals if i.severity == severity}


# -- 1. area per region, not the whole-frame mean --------------------------------------------


def flash_in_static_surround(share_down: float = 0.5, share_across: float = 0.6):
    """A 30 % rectangle switching between 0.10 and 0.40 relative luminance at 5 Hz (ten
    transitions a second) in a static mid-grey surround: 0.3 x 0.3 = 0.09 of frame mean."""
    surround = picture(grey(0.2))
    dim, bright = surround.copy(), surround.copy()
    rows, columns = slice(40, 40 + int(H * share_down)), slice(40, 40 + int(W * share_across))
    dim[rows, columns] = grey(0.10)
    bright[rows, columns] = grey(0.40)
    return list(toggling(dim, bright, fps=30, seconds=3, every=3)), rows, columns


def test_flash_over_30_percent_in_a_static_surround_fails_per_region() -> None:
    frames, rows, columns = flash_in_static_surround()
    area = (rows.stop - rows.start) * (columns.stop - columns.start) / (H * W)
    assert area == pytest.approx(0.30)
    result = analyze_frames(frames)
    # the whole-frame mean moves by less than the 0.1 threshold ...
    assert np.abs(np.diff(result.frames.average_luminance)).max() < 0.1
    # ... yet a quarter of the screen and more flashes more than three times a second
    assert result.verdict == "fail"
    assert "flash" in kinds(result)
    flash = next(i for i in result.failures if i.kind == "flash")
    assert flash.flashes_per_second == 5.0
    assert 0.25 <= flash.area <= 0.40


def test_iris_mode_misses_the_flash_in_a_static_surround() -> None:
    """What IRIS misses: its flash-area test passes (30 % of the pixels changed) but the
    change it then looks at is the whole-frame mean, 0.09, below the threshold."""
    frames, _, _ = flash_in_static_surround()
    result = analyze_frames(frames, PseSettings.iris())
    assert result.verdict == "pass"
    assert result.frames.luminance_transitions.max() == 0
    assert result.frames.flash_area_luminance.max() == pytest.approx(0.30, abs=0.01)


# -- 2. real frame times, not frame counts -----------------------------------------------------


def flashes_at(times: list[float], transitions: set[int]) -> list[tuple[float, np.ndarray]]:
    """Full-screen black/white, switching at the given frame indices."""
    black, white = picture(0), picture(255)
    frames, state = [], False
    for i, t in enumerate(times):
        state ^= i in transitions
        frames.append((t, white if state else black))
    return frames


def test_seven_transitions_thirty_frames_apart_at_2997_are_not_within_one_second() -> None:
    """Seven transitions (three and a half flashes, the least that fails) whose first and
    last are 30 frames apart: 1.001 s at 29.97 fps, so no one-second window holds them
    all; 29 frames apart (0.968 s) one does. Times are those of a 1001/30000 time base."""
    times = [i * 1001 / 30000 for i in range(60)]
    spread = analyze_frames(flashes_at(times, {10, 15, 20, 25, 30, 35, 40}))
    assert spread.frames.luminance_transitions.max() == 6
    assert spread.verdict != "fail"
    tight = analyze_frames(flashes_at(times, {10, 15, 20, 25, 30, 35, 39}))
    assert tight.frames.luminance_transitions.max() == 7
    assert "flash" in kinds(tight)


def test_a_dropped_frame_stretches_the_second_frame_counting_ignores_it() -> None:
    """A 29.97 fps stream that lost one frame: the seven transitions are 29 frames apart
    but 30 frame times (1.001 s). Real times pass it; IRIS's 30-frame window fails it."""
    times = [i * 1001 / 30000 for i in range(60) if i != 20]  # frame 20 dropped
    frames = flashes_at(times, {10, 14, 19, 24, 29, 34, 39})  # indices into the stream
    assert frames[39][0] - frames[10][0] == pytest.approx(1.001)
    assert analyze_frames(frames).frames.luminance_transitions.max() == 6
    counted = analyze_frames(frames, PseSettings(window="frames", frame_rate=NTSC))
    assert counted.frames.luminance_transitions.max() == 7
    assert counted.verdict == "fail"


def test_a_faster_stretch_of_a_variable_rate_stream_is_timed_not_counted() -> None:
    """The other way round: the stream starts at 29.97 fps, then runs at 59.94 fps while
    flashing five times a second (a transition every 6 frames, 0.1 s). Thirty frames are
    then half a second, so frame counting sees five transitions where there are ten."""
    slow = [i * 1001 / 30000 for i in range(30)]
    fast = [slow[-1] + (i + 1) * 1001 / 60000 for i in range(120)]
    times = slow + fast
    frames = flashes_at(times, set(range(30, 150, 6)))
    timed = analyze_frames(frames)
    assert timed.frames.luminance_transitions.max() == 10
    assert "flash" in kinds(timed)
    counted = analyze_frames(frames, PseSettings(window="frames"))  # rate from frames 0-1
    assert counted.frames.luminance_transitions.max() == 5
    assert "flash" not in kinds(counted)


# -- 3. red flashes --------------------------------------------------------------------------


def test_red_on_black_at_4_hz_is_a_red_flash_not_a_luminance_flash() -> None:
    red, black = picture((160, 0, 0)), picture(0)
    assert 0.2126 * LINEAR[160] < 0.1  # the luminance change is below the threshold
    assert LINEAR[160] * 320 > 20  # the red-saturation change is above it
    result = analyze_frames(toggling(red, black, fps=24, seconds=3, every=3))
    assert result.frames.luminance_transitions.max() == 0
    assert result.frames.red_transitions.max() == 8
    assert kinds(result) == {"red-flash"}
    assert result.worst_second is not None and result.worst_second.red_transitions == 8


def test_orange_is_not_saturated_red() -> None:
    """R / (R + G + B) below 0.8 in linear light: no red value, whatever the change."""
    orange, black = picture((200, 140, 0)), picture(0)
    assert LINEAR[200] / (LINEAR[200] + LINEAR[140]) < 0.8
    result = analyze_frames(toggling(orange, black, fps=24, seconds=2, every=3))
    assert result.frames.average_red.max() == 0
    assert "red-flash" not in kinds(result)


# -- 4 and 5. changes accumulate -------------------------------------------------------------


def test_a_slow_fade_to_white_and_back_passes() -> None:
    frames = []
    for i in range(100):  # 2 s up, 2 s down at 25 fps
        level = round(255 * (i / 49 if i < 50 else (99 - i) / 49))
        frames.append((i / 25, picture(level)))
    result = analyze_frames(frames)
    assert result.verdict == "pass"
    assert result.frames.luminance_transitions.max() == 1  # one transition, not a flash


def test_a_fade_over_three_frames_is_one_transition() -> None:
    steps = [grey(y) for y in (0.0, 0.04, 0.08, 0.12)]  # three steps of 0.04 each
    frames = [(i / 25, picture(level)) for i, level in enumerate(steps + [steps[-1]] * 3)]
    counts = analyze_frames(frames).frames.luminance_transitions
    assert counts.tolist() == [0, 0, 0, 1, 1, 1, 1]


def test_three_frame_fades_up_and_down_add_up_to_a_failing_flash() -> None:
    """Fades of three frames each way: no single frame changes by 0.1, the fades do."""
    cycle = [grey(y) for y in (0.0, 0.04, 0.08, 0.12, 0.08, 0.04)]
    frames = [(i / 25, picture(cycle[i % 6])) for i in range(75)]
    result = analyze_frames(frames)
    assert np.abs(np.diff(result.frames.average_luminance)).max() < 0.1
    # a transition every 3 frames: 8 or 9 in any 25 frames
    assert result.frames.luminance_transitions.max() == 9
    assert "flash" in kinds(result)


# -- 6 and 7. area and the dark limit --------------------------------------------------------


def test_a_flash_over_a_tenth_of_the_screen_passes() -> None:
    surround = picture(grey(0.2))
    on, off = surround.copy(), surround.copy()
    on[60:120, 100:196] = 255  # 60 x 96 = 10 % of 180 x 320
    off[60:120, 100:196] = 0
    result = analyze_frames(toggling(on, off, fps=20, seconds=3, every=1))  # 10 Hz
    assert result.verdict == "pass"
    assert result.frames.luminance_transitions.max() == 0
    assert result.frames.flash_area_luminance.max() == pytest.approx(0.10, abs=0.03)


def test_bright_flashes_whose_darker_image_is_above_the_dark_limit_pass() -> None:
    light, lighter = picture(grey(0.85)), picture(255)
    result = analyze_frames(toggling(light, lighter, fps=25, seconds=3, every=2))
    assert np.abs(np.diff(result.frames.average_luminance)).max() > 0.1
    assert result.verdict == "pass"


# -- 8. spatial patterns ---------------------------------------------------------------------


def striped(pairs: int, *, dark: float = 0.05, light: float = 0.9, across: bool = True):
    """Stripes over the left half of the screen (or the top half, lying down) in a plain
    surround of their mean luminance, `pairs` light-dark pairs."""
    level = grey((dark + light) / 2)
    canvas = picture(level)
    if across:
        width = W // 2 // (2 * pairs)
        for k in range(pairs):
            canvas[:, 2 * k * width : (2 * k + 1) * width] = grey(dark)
            canvas[:, (2 * k + 1) * width : (2 * k + 2) * width] = grey(light)
    else:
        height = H // 2 // (2 * pairs)
        for k in range(pairs):
            canvas[2 * k * height : (2 * k + 1) * height] = grey(dark)
            canvas[(2 * k + 1) * height : (2 * k + 2) * height] = grey(light)
    return canvas, picture(level)


def shown_for(pattern: np.ndarray, plain: np.ndarray, seconds: float, fps: float = 25):
    """The plain picture for a second, the pattern for `seconds`, then plain again."""
    count = round(seconds * fps)
    pictures = [plain] * 25 + [pattern] * count + [plain] * 25
    return [(i / fps, p) for i, p in enumerate(pictures)]


@pytest.mark.parametrize("across", [True, False], ids=["vertical stripes", "horizontal"])
def test_eight_pairs_of_stripes_over_half_the_screen_for_a_second_fail(across: bool) -> None:
    pattern, plain = striped(8, across=across)
    result = analyze_frames(shown_for(pattern, plain, 1.0))
    assert kinds(result) == {"pattern"}
    (interval,) = result.failures
    assert interval.start == pytest.approx(1.0)
    assert interval.end == pytest.approx(2.0)
    assert interval.area == pytest.approx(0.5, abs=0.08)


def test_fine_stripes_are_seen_on_the_scans_160_pixel_wide_pictures() -> None:
    """Scans measure 160x90 pictures. Stripes three pixels wide there (twelve pairs over
    half the screen, some fifty across the whole) are a pattern; read as pixel pairs,
    as wider pictures are, they would be a pixel and a half wide and go unseen."""
    height, width, stripe = 90, 160, 3
    plain = picture(grey(0.475), height, width)
    pattern = plain.copy()
    for k in range(12):
        pattern[:, 2 * k * stripe : (2 * k + 1) * stripe] = grey(0.05)
        pattern[:, (2 * k + 1) * stripe : (2 * k + 2) * stripe] = grey(0.9)
    result = analyze_frames(shown_for(pattern, plain, 1.0))
    assert kinds(result) == {"pattern"}


def test_diagonal_stripes_and_a_checkerboard_are_patterns_too() -> None:
    y, x = np.mgrid[0:H, 0:W]
    plain = picture(grey(0.45))
    for light in (((x + y) // 10) % 2 == 1, ((x // 16) + (y // 16)) % 2 == 1):
        pattern = np.repeat(
            np.where(light, grey(0.9), grey(0.05)).astype(np.uint8)[..., None], 3, 2
        )
        pattern[:, W // 2 :] = plain[:, W // 2 :]
        assert kinds(analyze_frames(shown_for(pattern, plain, 1.0))) == {"pattern"}


def test_noise_and_plain_texture_are_not_patterns() -> None:
    rng = np.random.default_rng(3)
    frames = [(i / 25, rng.integers(0, 256, (H, W, 3), dtype=np.uint8)) for i in range(50)]
    result = analyze_frames(frames)
    assert result.frames.pattern_area.max() < 0.25
    assert "pattern" not in kinds(result)


def test_stripes_shown_for_less_than_half_a_second_pass() -> None:
    pattern, plain = striped(8)
    result = analyze_frames(shown_for(pattern, plain, 0.3))
    assert result.frames.pattern_area.max() >= 0.25  # seen ...
    assert "pattern" not in kinds(result)  # ... but too briefly


def test_stripes_that_move_fail_at_once() -> None:
    pattern, plain = striped(8)
    moved = np.roll(pattern, 10, axis=1)  # half a period
    moved[:, W // 2 :] = plain[:, W // 2 :]
    pictures = [plain] * 25 + [pattern, moved] * 3 + [plain] * 25  # 0.24 s of movement
    result = analyze_frames([(i / 25, p) for i, p in enumerate(pictures)])
    assert "pattern" in kinds(result)


@pytest.mark.parametrize(
    "make",
    [
        lambda: striped(3),  # three pairs: not a pattern in the guidance's sense
        lambda: striped(8, dark=0.40, light=0.47),  # contrast below the flash threshold
        lambda: striped(8, dark=0.85, light=1.0),  # the dark stripes are not dark
    ],
    ids=["three pairs", "low contrast", "bright"],
)
def test_harmless_stripes_pass(make: Callable[[], tuple[np.ndarray, np.ndarray]]) -> None:
    pattern, plain = make()
    result = analyze_frames(shown_for(pattern, plain, 1.0))
    assert result.frames.pattern_area.max() < 0.25
    assert result.verdict == "pass"


def test_patterns_can_be_switched_off() -> None:
    pattern, plain = striped(8)
    result = analyze_frames(shown_for(pattern, plain, 1.0), PseSettings(patterns=False))
    assert result.verdict == "pass"
    assert result.frames.pattern_area.max() == 0


# -- 9. the warning level and the extended failure -------------------------------------------


def warning_level(seconds: float) -> PseResult:
    """Full-screen black/white switching every 5 frames at 25 fps: 5 transitions a second."""
    return analyze_frames(toggling(picture(0), picture(255), fps=25, seconds=seconds, every=5))


def test_five_transitions_a_second_for_six_seconds_is_an_extended_failure() -> None:
    result = warning_level(6)
    assert result.frames.luminance_transitions.max() == 5
    assert result.verdict == "fail"
    assert kinds(result) == {"extended-flash"}
    assert (result.frames.luminance_result == EXTENDED_FAIL).any()
    assert not (result.frames.luminance_result == FLASH_FAIL).any()
    extended = next(i for i in result.intervals if i.kind == "extended-flash")
    # 80 % of five seconds at the warning level: its first frame comes 4 s after the
    # first frame at that level
    first_warning = result.frames.time[result.frames.luminance_result == WARNING][0]
    assert extended.start == pytest.approx(first_warning + 4.0, abs=0.05)


def test_five_transitions_a_second_for_two_seconds_is_a_warning() -> None:
    result = warning_level(2)
    assert result.verdict == "warning"
    assert result.failures == []
    assert kinds(result, "warning") == {"flash"}


# -- 10. the WCAG 10-degree field ------------------------------------------------------------


def test_the_wcag_field_catches_a_flash_of_its_own_size() -> None:
    """341 x 256 pixels of a 1024 x 768 screen, here 107 x 80 of 320 x 240: a ninth of
    the screen, so below a quarter of it, but the whole of one 10-degree field."""
    height, width = 240, 320
    surround = picture(grey(0.2), height, width)
    on, off = surround.copy(), surround.copy()
    on[100:180, 150:257] = 255
    off[100:180, 150:257] = 0
    frames = list(toggling(on, off, fps=25, seconds=2, every=3))
    assert analyze_frames(frames).verdict == "pass"
    field = analyze_frames(frames, PseSettings(area="wcag-field"))
    assert "flash" in kinds(field)
    assert max(i.area for i in field.failures) > 0.9  # of the field


# -- 11. results, edge cases and the streaming interface -------------------------------------


def test_result_round_trips_through_json() -> None:
    pattern, plain = striped(8)
    frames = shown_for(pattern, plain, 1.0) + [
        (3.0 + t, p)
        for t, p in toggling(picture((160, 0, 0)), picture(0), fps=25, seconds=2, every=3)
    ]
    result = analyze_frames(frames, end_time=5.1)
    data = json.loads(json.dumps(result.to_dict()))
    again = PseResult.from_dict(data)
    assert again.to_dict() == result.to_dict()
    assert again.verdict == result.verdict == "fail"
    assert again.intervals == result.intervals
    assert again.settings == result.settings
    assert len(again.frames) == result.frame_count == len(frames)
    assert again.intervals[-1].end == pytest.approx(5.1)


def test_settings_round_trip_and_validate() -> None:
    settings = PseSettings(area="wcag-field", grid=(8, 6), window="frames", frame_rate=25)
    assert PseSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    assert PseSettings().flash_delta_relative == pytest.approx(0.1)
    assert PseSettings().dark_limit_relative == pytest.approx(0.8)
    assert PseSettings.iris().area == "frame"
    with pytest.raises(ValueError, match="area"):
        PseSettings(area="screen")
    with pytest.raises(ValueError, match="unknown"):
        PseSettings.from_dict({"flash_delta": 20, "flash_delat": 20})
    with pytest.raises(ValueError, match="warning_transitions"):
        PseSettings(warning_transitions=7)


def test_no_frames_is_a_pass() -> None:
    result = PhotosensitivityAnalyzer().result()
    assert result.verdict == "pass"
    assert result.frame_count == 0
    assert result.intervals == [] and result.per_second == []
    assert result.worst_second is None
    assert PseResult.from_dict(result.to_dict()).frame_count == 0


def test_a_single_frame() -> None:
    result = analyze_frames([(0.0, picture(255))])
    assert result.verdict == "pass"
    assert result.frame_count == 1
    assert result.frames.average_luminance.tolist() == [pytest.approx(1.0)]
    assert result.frames.times.tolist() == [0.0]
    assert result.per_second == [
        {
            "second": 0,
            "luminance_transitions": 0,
            "red_transitions": 0,
            "flash_area": 0.0,
            "red_flash_area": 0.0,
            "pattern_area": 0.0,
            "result": 0,
            "pattern_fail": False,
        }
    ]


@pytest.mark.parametrize("area", ["regions", "frame", "wcag-field"])
@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3), (5, 7, 4), (1, 1, 3), (9, 1, 3)])
def test_tiny_odd_and_grey_pictures(area: str, shape: tuple[int, ...]) -> None:
    on, off = np.full(shape, 255, dtype=np.uint8), np.zeros(shape, dtype=np.uint8)
    result = analyze_frames(toggling(on, off, fps=25, seconds=2, every=2), PseSettings(area=area))
    assert result.frames.luminance_transitions.max() == 13
    assert result.verdict == "fail"
    assert result.frames.average_luminance.max() == pytest.approx(1.0)


def test_means_match_a_per_pixel_computation() -> None:
    """The paired look-ups and the cell sums against the formula, pixel by pixel."""
    rng = np.random.default_rng(7)
    analyzer = PhotosensitivityAnalyzer(PseSettings(patterns=False))
    pictures = [rng.integers(0, 256, (37, 53, 3), dtype=np.uint8) for _ in range(4)]
    pictures[1][5:20, 3:40] = (250, 10, 5)  # saturated red: computed for every pixel ...
    # ... and so is the next picture; the last goes back to the few candidate pixels
    for i, p in enumerate(pictures):
        analyzer.add_frame(i / 25, p)
    frames = analyzer.result().frames
    for p, luminance, red in zip(pictures, frames.average_luminance, frames.average_red):
        lin = LINEAR.astype(np.float64)[p]
        y = lin @ np.array([0.2126, 0.7152, 0.0722])
        total = lin.sum(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            saturated = lin[:, :, 0] / total >= 0.8
        value = np.where(saturated, (lin[:, :, 0] - lin[:, :, 1] - lin[:, :, 2]) * 320, 0)
        assert luminance == pytest.approx(y.mean(), abs=1e-6)
        assert red == pytest.approx(np.maximum(value, 0).mean(), abs=1e-3)
    assert frames.average_red[1] > 10


def test_bad_input_is_refused() -> None:
    analyzer = PhotosensitivityAnalyzer()
    with pytest.raises(ValueError, match="uint8"):
        analyzer.add_frame(0.0, np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        analyzer.add_frame(0.0, np.zeros((4, 4, 2), dtype=np.uint8))
    analyzer.add_frame(1.0, picture(0, 4, 4))
    with pytest.raises(ValueError, match="go back"):
        analyzer.add_frame(0.5, picture(0, 4, 4))
    assert analyzer.frame_count == 1


def test_a_change_of_picture_size_mid_stream_is_handled() -> None:
    analyzer = PhotosensitivityAnalyzer()
    for i in range(30):
        size = (H, W) if i < 15 else (90, 160)
        analyzer.add_frame(i / 25, picture(255 if i % 6 < 3 else 0, *size))
    result = analyzer.result()
    assert result.frame_count == 30
    assert result.frames.luminance_transitions.max() >= 7


def test_per_second_series_and_worst_second() -> None:
    result = warning_level(3)
    assert [s["second"] for s in result.per_second] == [0, 1, 2]
    assert [s["luminance_transitions"] for s in result.per_second] == [4, 5, 5]
    assert result.worst_second is not None
    assert result.worst_second.luminance_transitions == 5
    assert result.worst_second.end - result.worst_second.start < 1.0


# -- batches: pictures are measured several at a time ----------------------------------------


def varied_stream() -> list[tuple[float, np.ndarray]]:
    """Scan-sized pictures with everything the check measures: stripes that come, move and
    go, red flashes, a partial-area flash, noise, and a change of size mid-stream."""
    height, width = 90, 160
    rng = np.random.default_rng(7)
    plain = picture(grey(0.45), height, width)
    stripes = plain.copy()
    for k in range(10):
        stripes[:, 8 * k : 8 * k + 4] = grey(0.05)
        stripes[:, 8 * k + 4 : 8 * k + 8] = grey(0.9)
    red, black = picture((255, 0, 0), height, width), picture(0, height, width)
    frames = []
    for i in range(140):
        if i < 30:
            p = stripes if i % 7 else np.roll(stripes, 4, axis=1)
        elif i < 60:
            p = red if (i // 3) % 2 else black
        elif i < 90:
            p = plain.copy()
            p[20:70, 30:130] = grey(0.1 if (i // 2) % 2 else 0.5)
        elif i < 110:
            p = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        else:
            p = picture(255 if (i // 4) % 2 else 0, 45, 80)
        frames.append((i / NTSC, p))
    return frames


@pytest.mark.parametrize("area", ["regions", "wcag-field"])  # IRIS's "frame": one a batch
def test_measuring_in_batches_changes_no_result(area: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every per-frame column equals, bit for bit, what one picture at a time gives."""
    from policy_engine.analysis.photosensitivity import analyzer

    settings = PseSettings(area=area)
    batched = analyze_frames(varied_stream(), settings)
    monkeypatch.setattr(analyzer, "BATCH_BYTES", 1)  # one picture a batch
    single = analyze_frames(varied_stream(), settings)
    assert batched.frame_count == single.frame_count == 140
    for name, column in single.frames.columns.items():
        np.testing.assert_array_equal(batched.frames.columns[name], column, err_msg=name)
    assert batched.to_dict() == single.to_dict()
    assert batched.frames.pattern_area[:30].max() >= 0.25
    assert batched.frames.red_transitions.max() >= 6


def test_a_picture_array_reused_by_the_caller_is_measured_as_it_was_when_added() -> None:
    """A decoder may hand over the same array refilled: the batch keeps its own copy."""
    frames = varied_stream()[:100]
    reused = np.empty_like(frames[0][1])
    analyzer = PhotosensitivityAnalyzer()
    for time, p in frames:
        reused[...] = p
        analyzer.add_frame(time, reused)
    expected = analyze_frames(frames)
    assert analyzer.result().to_dict() == expected.to_dict()
    assert expected.verdict == "fail"

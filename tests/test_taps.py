"""The every-frame taps: pictures reduced straight from 8-bit YUV planes, and checks run
in a thread of their own beside the decoder."""

from __future__ import annotations

import os
import sys
import threading
import time

import av
import numpy as np
import pytest

from policy_engine.media.taps import PictureTap, ReceiverThread, convert
from policy_engine.media.yuv import reduced_picture

QUADRANTS = {  # top-left, top-right, bottom-left, bottom-right
    "red": (220, 30, 40),
    "green": (40, 200, 60),
    "blue": (30, 60, 210),
    "grey": (128, 128, 128),
}


def quadrant_picture(width: int, height: int) -> np.ndarray:
    picture = np.empty((height, width, 3), dtype=np.uint8)
    (tl, tr, bl, br) = QUADRANTS.values()
    picture[: height // 2, : width // 2] = tl
    picture[: height // 2, width // 2 :] = tr
    picture[height // 2 :, : width // 2] = bl
    picture[height // 2 :, width // 2 :] = br
    return picture


def yuv_frame(width: int, height: int, *, fmt: str, encode_as: str, tag: int) -> av.VideoFrame:
    """A quadrant picture as the decoder would hand it over: YUV, with its matrix tag."""
    rgb = av.VideoFrame.from_ndarray(quadrant_picture(width, height), format="rgb24")
    frame = rgb.reformat(format=fmt, dst_colorspace=encode_as)
    frame.colorspace = tag
    return frame


def quadrant_colours(picture: np.ndarray) -> list[tuple[int, ...]]:
    height, width = picture.shape[:2]
    y, x = height // 4, width // 4
    points = [(y, x), (y, 3 * x), (3 * y, x), (3 * y, 3 * x)]
    return [tuple(int(v) for v in picture[r, c]) for r, c in points]


@pytest.mark.parametrize(
    ("size", "fmt", "encode_as", "tag"),
    [
        ((1280, 720), "yuv420p", "ITU709", 1),  # tagged BT.709 (HD)
        ((640, 360), "yuv420p", "ITU601", 6),  # tagged BT.601 (SMPTE 170M)
        ((640, 360), "yuv420p", "ITU601", 2),  # untagged SD: BT.601, as players take it
        ((1280, 720), "yuv420p", "ITU709", 2),  # untagged HD: BT.709
        ((640, 480), "yuv444p", "ITU601", 5),
        ((640, 360), "yuvj420p", "ITU601", 5),  # full range
    ],
)
def test_an_8bit_yuv_frame_reduces_to_the_colours_it_shows(
    size: tuple[int, int], fmt: str, encode_as: str, tag: int
) -> None:
    frame = yuv_frame(*size, fmt=fmt, encode_as=encode_as, tag=tag)
    target = (size[0] // 8, size[1] // 8)
    for order in ("rgb24", "bgr24"):
        picture = reduced_picture(frame, target, order)
        assert picture is not None and picture.shape == (target[1], target[0], 3)
        assert picture.dtype == np.uint8
        expected = list(QUADRANTS.values())
        if order == "bgr24":
            expected = [colour[::-1] for colour in expected]
        for got, want in zip(quadrant_colours(picture), expected, strict=True):
            assert max(abs(g - w) for g, w in zip(got, want)) <= 3, (order, got, want)
    assert np.array_equal(convert(frame, target), reduced_picture(frame, target))


def test_a_reduction_averages_what_it_shrinks() -> None:
    """Fine black and white stripes become their mean grey, not one of the two."""
    stripes = np.zeros((720, 1280, 3), dtype=np.uint8)
    stripes[:, ::2] = 255
    frame = av.VideoFrame.from_ndarray(stripes, format="rgb24").reformat(
        format="yuv444p", dst_colorspace="ITU709"
    )
    frame.colorspace = 1
    picture = reduced_picture(frame, (160, 90))
    assert picture is not None
    assert 120 <= picture.mean() <= 135 and picture.std() < 3


@pytest.mark.parametrize("fmt", ["rgb24", "nv12", "yuv420p10le", "gray"])
def test_other_pixel_formats_are_left_to_swscale(fmt: str) -> None:
    frame = av.VideoFrame.from_ndarray(quadrant_picture(320, 180), format="rgb24").reformat(
        format=fmt
    )
    assert reduced_picture(frame, (80, 45)) is None
    picture = convert(frame, (80, 45))  # still converted, the other way
    assert picture.shape == (45, 80, 3)
    if fmt != "gray":
        got = quadrant_colours(picture)[0]
        assert max(abs(g - w) for g, w in zip(got, QUADRANTS["red"])) <= 6


# -- the receiver thread ------------------------------------------------------------------
def test_the_scene_picture_is_what_pyscenedetect_makes_from_the_frame(tmp_path) -> None:
    """PySceneDetect's picture: OpenCV decodes the whole frame to BGR (FFmpeg's BT.601,
    whatever the tag) and shrinks it with INTER_LINEAR. The scene tap's, from the planes,
    is the same up to rounding; swscale's FAST_BILINEAR (before) and the tagged BT.709
    matrix (what a viewer sees, wrong for the detector's thresholds) are further off."""
    cv2 = pytest.importorskip("cv2")
    from policy_engine.media.synthetic import write_moving_pattern

    clip = write_moving_pattern(tmp_path / "m.mp4", seconds=1.0, size=(1280, 720))
    capture = cv2.VideoCapture(str(clip))
    size = (256, 144)
    gaps: dict[str, list[float]] = {"planes": [], "swscale": [], "bt709": []}
    with av.open(str(clip)) as container:
        for frame in container.decode(video=0):
            ok, full = capture.read()
            assert ok
            theirs = cv2.resize(full, size, interpolation=cv2.INTER_LINEAR).astype(int)
            ours = {
                "planes": convert(frame, size, "bgr24", "LINEAR", "bt601"),
                "swscale": convert(frame, size, "bgr24", "FAST_BILINEAR"),
                "bt709": reduced_picture(frame, size, "bgr24", "LINEAR", "tagged"),
            }
            for name, picture in ours.items():
                gaps[name].append(float(np.abs(picture.astype(int) - theirs).mean()))
    capture.release()
    assert max(gaps["planes"]) < 2.0  # measured 1.25 on average, 5.2 and 6.5 the others
    assert np.mean(gaps["planes"]) < np.mean(gaps["swscale"]) / 2
    assert np.mean(gaps["planes"]) < np.mean(gaps["bt709"]) / 2
    with pytest.raises(ValueError, match="colour matrix 'bt2020'"):
        PictureTap(lambda t, p: None, matrix="bt2020")


def test_the_receiver_thread_hands_over_every_picture_in_order() -> None:
    seen: list[float] = []
    caller = threading.get_ident()
    threads: set[int] = set()

    def receive(t: float, picture: np.ndarray) -> None:
        threads.add(threading.get_ident())
        time.sleep(0.001 if t < 5 else 0)  # slower than the producer for a while
        seen.append(t)

    receiver = ReceiverThread(receive, capacity=4)
    picture = np.zeros((2, 2, 3), np.uint8)
    for index in range(200):
        receiver.receive(index / 25, picture)
    receiver.close()
    assert seen == [index / 25 for index in range(200)]
    assert threads and caller not in threads


def test_a_failing_check_stops_the_decoder_and_close_re_raises_it() -> None:
    def receive(t: float, picture: np.ndarray) -> None:
        if t >= 3:
            raise ValueError(f"frame times must not go back: {t}")

    receiver = ReceiverThread(receive, capacity=2)
    picture = np.zeros((2, 2, 3), np.uint8)
    with pytest.raises(ValueError, match="must not go back"):
        for index in range(1000):  # the producer hears of it without waiting for close()
            receiver.receive(float(index), picture)
            time.sleep(0.001)
    with pytest.raises(ValueError, match="must not go back"):
        receiver.close()


def test_abandoning_a_failed_check_raises_nothing_and_frees_a_blocked_decoder() -> None:
    """The scan's own error is the one to report; and a decoder waiting on a full queue
    when the scan is abandoned is released with an error, not left blocked."""
    release = threading.Event()

    def receive(t: float, picture: np.ndarray) -> None:
        release.wait(5)
        raise ValueError("the check failed")

    receiver = ReceiverThread(receive, capacity=1)
    picture = np.zeros((2, 2, 3), np.uint8)
    outcome: list[BaseException | None] = []

    def decoder() -> None:
        try:
            for index in range(10):
                receiver.receive(float(index), picture)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)

    feeding = threading.Thread(target=decoder)
    feeding.start()
    time.sleep(0.3)  # the decoder is now blocked: one picture in hand, one queued
    release.set()
    receiver.close(abandon=True)  # raises nothing
    feeding.join(5)
    assert not feeding.is_alive() and outcome and outcome[0] is not None


def test_a_receiver_that_never_received_has_no_thread_to_stop() -> None:
    before = threading.active_count()
    receiver = ReceiverThread(lambda t, p: None)
    assert threading.active_count() == before
    receiver.close()
    receiver.close(abandon=True)


def test_abandoning_drops_what_is_queued_without_waiting_for_it() -> None:
    calls = []
    receiver = ReceiverThread(lambda t, p: (calls.append(t), time.sleep(0.05)), capacity=50)
    picture = np.zeros((2, 2, 3), np.uint8)
    for index in range(50):
        receiver.receive(float(index), picture)
    started = time.perf_counter()
    receiver.close(abandon=True)  # a scan that failed: no error of the check's, no wait
    assert time.perf_counter() - started < 1.0
    assert len(calls) < 50


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_a_receiver_thread_runs_niceness_steps_below_its_caller_who_keeps_its_own() -> None:
    seen: list[int] = []

    def receive(t: float, picture: np.ndarray) -> None:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    receiver = ReceiverThread(receive, niceness=5)
    receiver.receive(0.0, np.zeros((2, 2, 3), np.uint8))
    receiver.close()
    assert seen == [min(19, caller + 5)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller

"""Scenes: cuts found in the sampler's own decode pass (PySceneDetect's detectors fed the
tap's pictures), checked against `scenedetect.detect` on the same clip; the `scenes`
sampling mode; scenes stored per scan with their frames, embedding and per-scene
coverage; one conversion per picture size however many checks watch every frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from policy_engine.analysis.scenes import (
    Scene,
    SceneSettings,
    frame_vectors,
    scene_embeddings,
    scene_shares,
    scenes_of,
)
from policy_engine.media.synthetic import write_color_segments
from policy_engine.media.video import FrameSampler, PictureTap, SamplingMode, SamplingSpec

scenedetect = pytest.importorskip("scenedetect", reason="scene detection needs scenedetect")

from policy_engine.media.scenes import SceneCuts, make_detector  # noqa: E402

RED, WHITE, GREEN, BLUE, BLACK = (
    (220, 20, 20),
    (250, 250, 250),
    (20, 200, 20),
    (20, 20, 220),
    (0,) * 3,
)
# 3 s red, a 0.8 s white flash cut, a static 40 s green shot, 2 s blue: cuts at 3, 3.8, 43.8
SHOTS = [(3.0, RED), (0.8, WHITE), (40.0, GREEN), (2.0, BLUE)]
CUTS = [3.0, 3.8, 43.8]


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_color_segments(tmp_path_factory.mktemp("scenes") / "shots.mp4", SHOTS)


@pytest.fixture(scope="module")
def fades(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Grey, a fade to black and back (what the threshold detector finds)."""
    grey = (120, 120, 120)
    segments = [(2.0, grey), (1.0, BLACK), (2.0, (200, 160, 40)), (1.0, BLACK), (2.0, grey)]
    return write_color_segments(tmp_path_factory.mktemp("fades") / "fades.mp4", segments)


def detected(path: Path, settings: SceneSettings, spec: SamplingSpec | None = None) -> list[float]:
    cuts = SceneCuts(settings)
    list(FrameSampler(path, spec or SamplingSpec(fps=2.0), size=32, cuts=cuts))
    return cuts.cuts


def reference(path: Path, settings: SceneSettings) -> tuple[list[float], float]:
    """scenedetect's own run (its decoder, its reduction): cut times, and one frame."""
    scenes = scenedetect.detect(str(path), make_detector(settings))
    video = scenedetect.open_video(str(path))
    return [start.seconds for start, _ in scenes[1:]], 1.0 / float(video.frame_rate)


def assert_agree(ours: list[float], theirs: list[float], frame: float) -> None:
    assert len(ours) == len(theirs), (ours, theirs)
    for mine, reference_time in zip(ours, theirs):
        assert abs(mine - reference_time) <= frame + 1e-6, (ours, theirs)


# -- the decode pass's cuts against scenedetect's own ------------------------------------------
@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_cuts_in_the_decode_pass_agree_with_scenedetect(shots: Path, detector: str) -> None:
    settings = SceneSettings(detector=detector)
    ours = detected(shots, settings)
    theirs, frame = reference(shots, settings)
    assert_agree(ours, theirs, frame)
    assert ours == pytest.approx(CUTS, abs=frame)


def test_the_threshold_detector_finds_fades_as_scenedetect_does(fades: Path) -> None:
    settings = SceneSettings(detector="threshold")
    ours = detected(fades, settings)
    theirs, frame = reference(fades, settings)
    assert ours and len(ours) == 2
    assert_agree(ours, theirs, frame)


@pytest.mark.media
@pytest.mark.parametrize("detector", ["content", "adaptive"])  # no clip fades to black
def test_cuts_agree_with_scenedetect_on_the_shared_clips(shared_media: Path, detector: str) -> None:
    """Every real clip (sintel has six cuts, bbb and the explosion one each; the AVI's
    container rate is wrong): the same detector and threshold find the same cuts, within
    one frame, in our decode pass."""
    settings = SceneSettings(detector=detector)
    found = 0
    for clip in sorted(p for p in shared_media.iterdir() if p.suffix in (".mp4", ".avi")):
        ours = detected(clip, settings)
        theirs, frame = reference(clip, settings)
        assert_agree(ours, theirs, frame)
        found += len(ours)
    assert found >= 8


def test_keyframes_sampling_says_why_scenes_are_not_detected(shots: Path, tiny_clip_dir) -> None:
    from policy_engine.models.clip import ClipEmbedder
    from policy_engine.pipeline import AnalysisOptions, analyze_video
    from policy_engine.policy.defaults import DEFAULT_CATEGORIES

    embedder = ClipEmbedder.load(str(tiny_clip_dir), device="cpu", dtype="fp32")
    options = AnalysisOptions(
        sampling=SamplingSpec(mode=SamplingMode.KEYFRAMES), scenes=SceneSettings()
    )
    result = analyze_video(shots, DEFAULT_CATEGORIES, embedder, options)
    assert result.scenes == [] and result.scene_detection is None
    assert "every frame" in (result.scenes_skipped or "")


def test_the_faster_pixel_distance_gives_pyscenedetects_numbers(shots: Path) -> None:
    """The content detector's distance, replaced by one OpenCV call, is the library's own
    to the last bit: on random planes, on identical ones, and on a real clip's frames."""
    import policy_engine.media.scenes as scenes

    make_detector(SceneSettings())
    assert scenes.library_distance is not None
    from scenedetect.detectors import content_detector

    assert content_detector._mean_pixel_distance is scenes.mean_pixel_distance
    rng = np.random.default_rng(5)
    pairs = [rng.integers(0, 256, (2, 144, 256), dtype=np.uint8) for _ in range(20)]
    pairs.append(np.zeros((2, 7, 3), dtype=np.uint8))
    pairs.append(np.stack([np.full((9, 9), 255, np.uint8), np.zeros((9, 9), np.uint8)]))
    for left, right in pairs:
        assert scenes.mean_pixel_distance(left, right) == scenes.library_distance(left, right)
    cuts = SceneCuts(SceneSettings())
    pictures: list[np.ndarray] = []
    list(FrameSampler(shots, SamplingSpec(fps=2.0, end=4.0), size=32,
                      every_frame=[PictureTap(lambda t, p: pictures.append(p[:, :, 0].copy()),
                                              width=256)], cuts=cuts))  # fmt: skip
    for left, right in zip(pictures, pictures[1:]):
        assert scenes.mean_pixel_distance(left, right) == scenes.library_distance(left, right)


# -- one decode, one conversion per size -----------------------------------------------------
def test_taps_share_one_conversion_per_size_and_format(
    shots: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import policy_engine.media.taps as taps

    conversions: list[tuple] = []
    real = taps.convert

    def counted(frame, size, format="rgb24", interpolation="AREA", matrix="tagged"):
        conversions.append((size, format, interpolation))
        return real(frame, size, format, interpolation, matrix)

    monkeypatch.setattr(taps, "convert", counted)
    seen: dict[str, list] = {"a": [], "b": [], "small": []}
    cuts = SceneCuts(SceneSettings())
    sampler = FrameSampler(
        shots, SamplingSpec(fps=2.0, end=2.0), size=32,
        every_frame=[
            PictureTap(lambda t, p: seen["a"].append((t, p.shape)), width=96),
            PictureTap(lambda t, p: seen["b"].append((t, p.shape)), width=96),
            PictureTap(lambda t, p: seen["small"].append((t, p.shape)), width=48),
        ],
        cuts=cuts,
    )  # fmt: skip
    list(sampler)
    frames = sampler.summary.decoded_frames
    assert len(seen["a"]) == len(seen["b"]) == len(seen["small"]) == cuts.frames == 50
    assert seen["a"][0][1] == (54, 96, 3) and seen["small"][0][1] == (27, 48, 3)
    assert [t for t, _ in seen["a"]] == [t for t, _ in seen["small"]]
    # per frame: 96 wide (shared by two taps), 48 wide, and the detector's 256 BGR
    assert len(conversions) == 3 * 50 and frames >= 50
    assert {c[0] for c in conversions} == {(96, 54), (48, 27), (160, 90)}


# -- scenes sampling ------------------------------------------------------------------------
def test_scenes_sampling_takes_the_middle_of_every_scene_and_spares_a_static_shot(
    shots: Path,
) -> None:
    cuts = SceneCuts(SceneSettings())
    sampler = FrameSampler(
        shots, SamplingSpec(mode=SamplingMode.SCENES, fps=1.0), size=32, cuts=cuts
    )
    times = [f.time for f in sampler]
    assert [f.index for f in FrameSampler(shots, SamplingSpec(fps=1.0), size=32)][-1] == 45
    scenes = scenes_of(cuts.cuts, np.asarray(times), 0.0, sampler.window_end)
    assert [s.frame_count for s in scenes] == [1, 1, 4, 1]  # 40 s: one per 10 s, not 40
    flash = times[scenes[1].first_frame]
    assert 3.0 <= flash < 3.8 and abs(flash - 3.4) <= 0.2  # a 1 fps grid could miss it
    assert abs(times[0] - 1.5) <= 0.5 and abs(times[-1] - 44.8) <= 0.5
    assert times == sorted(times) and len(set(times)) == len(times)
    # the fps cap: never two samples of one scene closer than 1/fps
    green = times[scenes[2].first_frame : scenes[2].first_frame + 4]
    assert min(np.diff(green)) >= 1.0


def test_scenes_sampling_needs_a_detector_and_validates_its_spec(shots: Path) -> None:
    with pytest.raises(ValueError, match="scene detector"):
        FrameSampler(shots, SamplingSpec(mode=SamplingMode.SCENES), size=32)
    with pytest.raises(ValueError, match="fps"):
        SamplingSpec(mode=SamplingMode.SCENES, fps=0.0)
    with pytest.raises(ValueError, match="scene gap"):
        SamplingSpec(mode=SamplingMode.SCENES, scene_gap=0.0)
    assert "scene_gap" in SamplingSpec(mode=SamplingMode.SCENES).describe()
    assert "scene_gap" not in SamplingSpec().describe()  # other scans keep their reuse key


# -- pure scene arithmetic -----------------------------------------------------------------
def test_scene_frames_keyframes_and_a_scene_too_short_for_a_sample() -> None:
    times = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    scenes = scenes_of([2.2, 2.6, 9.0, -1.0], times, 0.0, 6.0)
    assert [(s.start, s.end) for s in scenes] == [(0.0, 2.2), (2.2, 2.6), (2.6, 6.0)]
    assert [(s.first_frame, s.frame_count) for s in scenes] == [(0, 3), (3, 0), (3, 3)]
    assert [s.keyframe for s in scenes] == [1, 2, 4]  # the short one: the frame at 2.0 s


def test_scene_shares_are_time_weighted_and_embeddings_normalised_means() -> None:
    times = np.array([0.0, 1.0, 3.0])  # spans 0-1, 1-3, 3-4
    shown = np.array([[True, False], [False, True], [True, True]])  # the last shows both
    scenes = [Scene(0, 0.0, 2.0, 0, 2, 0), Scene(1, 2.0, 4.0, 2, 1, 2)]
    shares = scene_shares(times, shown, scenes, start=0.0, end=4.0)
    assert shares.tolist() == [[0.5, 0.5], [0.5, 1.0]]
    crops = [np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), np.array([[1.0, 0.0], [0.0, 1.0]])]
    vectors = frame_vectors(crops)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    embedded = scene_embeddings(vectors, scenes)
    assert np.allclose(embedded[0], [2**-0.5, 2**-0.5]) and np.allclose(embedded[1], vectors[2])


def test_scene_settings_refuse_what_no_detector_means() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        SceneSettings(detector="histogram")
    with pytest.raises(ValueError, match="positive"):
        SceneSettings(threshold=0.0)
    assert SceneSettings(detector="adaptive").to_dict()["threshold"] == 3.0


# -- stored with the scan -----------------------------------------------------------------
def test_a_scan_stores_its_scenes_embeddings_and_per_scene_coverage(
    store, shots: Path, tiny_clip_dir: Path
) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from policy_engine.analysis.scoring import categories_key, scores_from_probabilities
    from policy_engine.config import SHIPPED_RULES
    from policy_engine.models.provider import ModelProvider
    from policy_engine.pipeline import AnalysisOptions
    from policy_engine.pipeline.scan import Scanner
    from policy_engine.policy.loader import load_catalogue
    from policy_engine.store.scenes import Scenes

    rulesets, _ = load_catalogue([SHIPPED_RULES])
    scanner = Scanner(
        store, rulesets, ModelProvider(str(tiny_clip_dir), device="cpu", dtype="fp32"),
        AnalysisOptions(sampling=SamplingSpec(fps=2.0), scenes=SceneSettings()),
    )  # fmt: skip
    outcome = scanner.scan_file(shots)
    assert outcome.status == "scanned", outcome.error
    scenes = Scenes(store).of_scan(outcome.scan_id)
    assert [round(s.start, 2) for s in scenes] == [0.0, *CUTS]
    assert sum(s.frame_count for s in scenes) == 92
    row = store.scan(outcome.scan_id)
    assert row.scenes["detector"] == "content" and row.scenes["cuts"] == 3
    frames = store.frame_embeddings([outcome.scan_id])[outcome.scan_id]
    green = scenes[2]
    inside = np.stack([frames[i].mean(axis=0) for i in range(*green_range(green))])
    mean = inside.mean(axis=0) / np.linalg.norm(inside.mean(axis=0))
    assert np.allclose(green.embedding, mean, atol=2e-3)
    for ruleset in rulesets:
        shares = Scenes(store).shares(outcome.scan_id, categories_key(ruleset.categories))
        assert shares is not None and shares.shape == (4, len(ruleset.categories))
        # each scene's share of the time showing each category, from the stored scores
        key = categories_key(ruleset.categories)
        stored = store.score_sets([outcome.scan_id], key)[outcome.scan_id]
        [scan] = store.completed_scans(scan_ids=[outcome.scan_id])
        scores = scores_from_probabilities(ruleset.categories, scan.times, stored)
        expected = scene_shares(
            scan.times, scores.shown, scenes, start=scan.window_start, end=scan.window_end
        )
        assert np.allclose(shares, expected, atol=1e-6) and ((shares >= 0) & (shares <= 1)).all()
    # append-only, like frames: the database refuses an edit from anyone
    for statement in ("UPDATE scenes SET start = 1.0", "DELETE FROM scene_shares"):
        with pytest.raises(DBAPIError, match="refused"), store.engine.begin() as connection:
            connection.execute(text(statement))


def green_range(scene) -> tuple[int, int]:
    return scene.first_frame, scene.first_frame + scene.frame_count


def test_the_report_and_the_asset_page_list_scenes_with_a_keyframe_each(
    tmp_path: Path, shots: Path, tiny_clip_dir: Path
) -> None:
    """Through the command line (scan with a report) and HTTP (the asset's scenes)."""
    import json
    from dataclasses import replace

    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from policy_engine.cli import app
    from policy_engine.config import Settings
    from policy_engine.service.app import create_app
    from policy_engine.store import Store
    from policy_engine.store.accounts import Accounts

    db = f"sqlite:///{tmp_path / 'engine.sqlite'}"
    scanned = CliRunner().invoke(
        app, ["--db", db, "scan", str(shots), "--model", str(tiny_clip_dir), "--device", "cpu",
              "--reports", str(tmp_path / "reports"), "--json"],
    )  # fmt: skip
    assert scanned.exit_code == 0, scanned.output
    (outcome,) = json.loads(scanned.stdout)
    html = Path(outcome["report"]).read_text()
    section = html[html.index('aria-label="scenes"') : html.index('aria-label="evidence"')]
    assert "4 scenes (content detector, threshold 27.0" in section
    assert section.count('<img class="small" src="data:image/jpeg;base64,') == 4
    assert "00:00:03.800" in section and "00:00:43.800" in section
    store = Store.open(db)
    token = Accounts(store).create_token("mam", "viewer", by="test")
    store.close()
    settings = replace(Settings(), db=db, model=str(tiny_clip_dir), device="cpu")
    with TestClient(create_app(settings)) as client:
        auth = {"Authorization": f"Bearer {token}"}
        page = client.get(f"/api/v1/assets/{outcome['asset_id']}", headers=auth).json()
        listed = client.get(page["scenes"], headers=auth).json()
        picture = client.get(listed["scenes"][2]["thumbnail"], headers=auth)
    assert page["scans"][0]["scenes"]["cuts"] == 3
    assert [round(s["start"], 1) for s in listed["scenes"]] == [0.0, 3.0, 3.8, 43.8]
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"


def test_scenes_sampling_keeps_coverage_time_weighted(shots: Path, tiny_clip_dir: Path) -> None:
    """Seven samples instead of 92, the same shares: each stands for its time."""
    from policy_engine.models.clip import ClipEmbedder
    from policy_engine.pipeline import AnalysisOptions, analyze_video
    from policy_engine.policy.defaults import DEFAULT_CATEGORIES

    embedder = ClipEmbedder.load(str(tiny_clip_dir), device="cpu", dtype="fp32")
    shares = {}
    for mode in (SamplingMode.FPS, SamplingMode.SCENES):
        options = AnalysisOptions(sampling=SamplingSpec(mode=mode, fps=2.0), scenes=SceneSettings())
        result = analyze_video(shots, DEFAULT_CATEGORIES, embedder, options)
        shares[mode] = (
            {n: c.share for n, c in result.coverage.categories.items()},
            len(result.times),
        )
    (by_clock, clocked), (by_scene, sampled) = shares[SamplingMode.FPS], shares[SamplingMode.SCENES]
    assert (clocked, sampled) == (92, 7)
    for name, share in by_clock.items():
        assert by_scene[name] == pytest.approx(share, abs=0.02), name


def test_a_scenes_sampled_scan_is_judged_again_on_the_same_spans(
    store, shots: Path, tiny_clip_dir: Path
) -> None:
    """Re-evaluation reads where each frame's span starts, as the scan measured it."""
    from policy_engine.config import SHIPPED_RULES
    from policy_engine.models.provider import ModelProvider
    from policy_engine.pipeline import AnalysisOptions
    from policy_engine.pipeline.judging import judge
    from policy_engine.pipeline.scan import Scanner
    from policy_engine.policy.loader import load_catalogue

    rulesets, _ = load_catalogue([SHIPPED_RULES])
    models = ModelProvider(str(tiny_clip_dir), device="cpu", dtype="fp32")
    spec = SamplingSpec(mode=SamplingMode.SCENES, fps=2.0)
    outcome = Scanner(store, rulesets, models, AnalysisOptions(sampling=spec)).scan_file(shots)
    (stored,) = store.completed_scans(scan_ids=[outcome.scan_id])
    assert len(stored.times) == 7
    assert stored.span_starts == pytest.approx([0.0, 3.0, 3.8, 13.8, 23.8, 33.8, 43.8], abs=0.05)
    again = judge(store, [stored], rulesets, models)
    assert [j.decision.to_dict() for j in again.judgements] == [
        d.to_dict() for _, d in outcome.decisions
    ]

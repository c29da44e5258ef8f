"""Search over stored embeddings, through the pipeline, the command line and HTTP: text
queries rank the frame built to match first; only the current scan of each asset and
only embeddings of the query's weights are searched (and the rest is named); filters
return `limit` hits whenever that many match; the back ends agree; a scan is searchable
once it commits; the caches beside the database catch up and rebuild when stale."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_ask import no_video_no_image_tower  # noqa: F401 - a fixture
from typer.testing import CliRunner

from policy_engine.analysis.scoring import Category
from policy_engine.cli import app
from policy_engine.config import Settings
from policy_engine.errors import ConfigError
from policy_engine.models.provider import ModelProvider
from policy_engine.pipeline.search import SearchRequest, search
from policy_engine.search import _OPEN
from policy_engine.store import Store
from policy_engine.store.repository import ScanModel
from policy_engine.store.synthetic import SYNTHETIC_MODEL, seed_scan

runner = CliRunner()
QUERY = "a person smoking"
CATEGORIES = [Category("x", ("x",)), Category("other", ("other",), null=True)]
FRAMES = 20


@pytest.fixture(autouse=True)
def _fresh_indexes():
    """Each test opens its own indexes (a process keeps them open between searches)."""
    _OPEN.clear()
    yield
    _OPEN.clear()


def _random(count: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def archive(store: Store, tiny_clip_dir: Path, tmp_path: Path):
    """Assets scanned with the tiny model: 'smoking' (frame 7 is the query's text
    embedding), 'street'; 'rescanned' whose first scan had the query at frame 3 but whose
    re-scan does not; 'legacy', scanned with other weights."""
    from policy_engine.models.clip import load_text_encoder

    encoder = load_text_encoder(str(tiny_clip_dir), device="cpu", dtype="fp32")
    text = encoder.embed_texts([QUERY])[0]
    model = ScanModel(
        name=str(tiny_clip_dir), path=str(tiny_clip_dir),
        weights_sha256=encoder.identity.weights_sha256, embed_dim=len(text), logit_scale=100.0,
    )  # fmt: skip

    def seed(name: str, frames: np.ndarray, scan_model: ScanModel = model) -> tuple[int, int]:
        probabilities = np.tile([0.5, 0.5], (len(frames), 1))
        return seed_scan(store, name=name, categories=CATEGORIES, probabilities=probabilities,
                         duration=10.0, embeddings=frames, model=scan_model)  # fmt: skip

    dim = len(text)
    smoking = _random(FRAMES, dim, 1)
    smoking[7] = text
    ids = {"smoking": seed("smoking", smoking), "street": seed("street", _random(FRAMES, dim, 2))}
    first = _random(FRAMES, dim, 3)
    first[3] = text
    ids["rescanned-first"] = seed("rescanned", first)
    ids["rescanned"] = seed("rescanned", _random(FRAMES, dim, 4))  # the same asset, later
    other = replace(SYNTHETIC_MODEL, embed_dim=dim)
    ids["legacy"] = seed("legacy", np.tile(text, (FRAMES, 1)), other)
    settings = replace(
        Settings(), db=store.url, model=str(tiny_clip_dir), device="cpu",
        search_cache=str(tmp_path / "search-cache"),
    )  # fmt: skip
    return store, settings, ids, text


def _models(settings: Settings) -> ModelProvider:
    return ModelProvider(settings.model, device="cpu", dtype="fp32")


def _search(store, settings, **wanted):  # type: ignore[no-untyped-def]
    return search(store, _models(settings), settings, SearchRequest(**wanted))


# -- what a query finds ------------------------------------------------------------------------
def test_a_text_query_ranks_the_frame_built_to_match_first(archive) -> None:
    store, settings, ids, _ = archive
    result = _search(store, settings, text=QUERY, limit=5)
    top = result.hits[0]
    assert (top.asset_id, top.scan_id, top.frame) == (*ids["smoking"], 7)
    assert top.score == pytest.approx(1.0, abs=2e-3) and top.time == pytest.approx(3.5)
    assert all(h.score < 0.99 for h in result.hits[1:])
    assert [h.rank for h in result.hits] == [1, 2, 3, 4, 5]


def test_only_current_scans_of_the_same_weights_are_searched_and_the_rest_is_named(
    archive,
) -> None:
    store, settings, ids, _ = archive
    result = _search(store, settings, text=QUERY, limit=100)
    scans = {h.scan_id for h in result.hits}
    assert ids["rescanned-first"][1] not in scans  # superseded by the re-scan
    assert ids["legacy"][1] not in scans  # other weights: never mixed in
    assert scans == {ids["smoking"][1], ids["street"][1], ids["rescanned"][1]}
    assert result.searched_assets == 3 and len(result.hits) == 3 * FRAMES
    assert result.other_weights == {SYNTHETIC_MODEL.weights_sha256: 1}


def test_the_text_query_opens_no_video_and_loads_no_image_tower(
    archive,
    no_video_no_image_tower: list,  # noqa: F811 - a fixture
) -> None:
    store, settings, ids, _ = archive
    assert _search(store, settings, text=QUERY).hits[0].scan_id == ids["smoking"][1]
    (tower,) = no_video_no_image_tower
    assert not any("vision" in name for name, _ in tower.tower.named_parameters())


def test_more_like_a_stored_frame_needs_no_model_and_leaves_the_frame_out(
    archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, settings, ids, _ = archive
    monkeypatch.setattr(ModelProvider, "checkpoint", lambda self: pytest.fail("no model"))
    scan_id = ids["smoking"][1]
    result = _search(store, settings, like=(scan_id, 7), limit=3)
    assert (scan_id, 7) not in {(h.scan_id, h.frame) for h in result.hits}
    assert len(result.hits) == 3 and [h.rank for h in result.hits] == [1, 2, 3]
    with pytest.raises(ConfigError, match="has no frame 99"):
        _search(store, settings, like=(scan_id, 99))


def test_filters_by_asset_verdict_and_date(archive) -> None:
    from datetime import UTC, datetime, timedelta

    store, settings, ids, _ = archive
    only = _search(store, settings, text=QUERY, asset_ids=(ids["street"][0],), limit=5)
    assert {h.asset_id for h in only.hits} == {ids["street"][0]} and len(only.hits) == 5
    later = datetime.now(UTC) + timedelta(days=1)
    assert _search(store, settings, text=QUERY, since=later).hits == []
    assert _search(store, settings, text=QUERY, verdict="unrestricted").hits == []  # no decisions


# -- back ends -------------------------------------------------------------------------------
@pytest.fixture
def big_archive(store: Store, tmp_path: Path):
    """30 assets x 60 frames of random 32-d vectors under one set of weights."""
    model = replace(SYNTHETIC_MODEL, embed_dim=32)
    ids = [
        seed_scan(store, name=f"a{i}", categories=CATEGORIES,
                  probabilities=np.tile([0.5, 0.5], (60, 1)), duration=30.0,
                  embeddings=_random(60, 32, 100 + i), model=model)
        for i in range(30)
    ]  # fmt: skip
    settings = replace(Settings(), db=store.url, search_cache=str(tmp_path / "cache"))
    return store, settings, ids, model.weights_sha256


def _index(store, settings, backend, weights, kind="frames"):  # type: ignore[no-untyped-def]
    from policy_engine.search import open_index

    return open_index(store, backend, kind, weights, settings.search_cache)


def test_exact_and_hnsw_agree_and_filters_always_fill_the_limit(
    big_archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("usearch", reason="the HNSW back end needs usearch")
    import policy_engine.search.hnsw as hnsw

    monkeypatch.setattr(hnsw, "EXACT_BELOW", 0)  # the graph answers, even for small filters
    store, settings, ids, weights = big_archive
    exact = _index(store, settings, "exact", weights)
    graph = _index(store, settings, "hnsw", weights)
    scans = np.array(sorted(scan for _, scan in ids))
    recalls = []
    for seed in range(20):
        query = _random(1, 32, seed)[0]
        truth = exact.search(query, 10, scans)
        found = graph.search(query, 10, scans)
        recalls.append(len({m.id for m in truth} & {m.id for m in found}) / 10)
        scores = [m.score for m in truth]
        assert scores == sorted(scores, reverse=True) and len(truth) == 10
        # a frame scores the same whichever back end found it (the graph's candidates
        # are re-scored as exact search scores them), so ties break alike
        everything = {m.id: m.score for m in exact.search(query, 30 * 60, scans)}
        assert [m.score for m in found] == [everything[m.id] for m in found]
    assert np.mean(recalls) >= 0.95
    # a filter keeping 1 asset in 30 (60 rows) and one keeping 3: always `limit` hits
    for kept in (scans[:1], scans[5:8]):
        for index in (exact, graph):
            hits = index.search(_random(1, 32, 99)[0], 40, kept)
            assert len(hits) == 40
            assert {store_scan_of(store, m.id) for m in hits} <= set(kept.tolist())
    assert len(graph.search(_random(1, 32, 7)[0], 100, scans[:1])) == 60  # all it has


def store_scan_of(store: Store, frame_id: int) -> int:
    from policy_engine.store.search import SearchRows

    return SearchRows(store).details("frames", [frame_id])[frame_id][0]


def test_a_new_scan_is_searchable_at_once_and_the_caches_only_append(big_archive) -> None:
    """Searchable once its transaction commits: the next search catches up."""
    pytest.importorskip("usearch", reason="the HNSW back end needs usearch")
    store, settings, ids, weights = big_archive
    graph = _index(store, settings, "hnsw", weights)
    generation = graph.cache.manifest.generation
    needle = _random(1, 32, 12345)[0]
    model = replace(SYNTHETIC_MODEL, embed_dim=32)
    frames = _random(60, 32, 777)
    frames[10] = needle
    _, new_scan = seed_scan(store, name="new", categories=CATEGORIES,
                            probabilities=np.tile([0.5, 0.5], (60, 1)), duration=30.0,
                            embeddings=frames, model=model)  # fmt: skip
    for backend in ("exact", "hnsw"):
        index = _index(store, settings, backend, weights)  # refreshed on open
        allowed = np.array(sorted([*(s for _, s in ids), new_scan]))
        top = index.search(needle, 1, allowed)[0]
        assert store_scan_of(store, top.id) == new_scan and top.score > 0.999
    assert graph.cache.manifest.generation == generation  # appended, not rebuilt
    assert graph.cache.rows == 31 * 60 and graph._loaded == 31 * 60
    # persisted: a new process (here: a forgotten index) loads the graph from its file
    _OPEN.clear()
    reopened = _index(store, settings, "hnsw", weights)
    assert reopened._loaded == 31 * 60 and len(reopened.index) == 31 * 60
    # a cache that lost its manifest (or whose database changed) is rebuilt, not trusted
    reopened.cache.prefix.with_suffix(".json").unlink()
    _OPEN.clear()
    rebuilt = _index(store, settings, "exact", weights)
    assert rebuilt.cache.manifest.generation == 1 and rebuilt.cache.rows == 31 * 60


def test_the_cache_lives_beside_a_sqlite_database(tmp_path: Path) -> None:
    from policy_engine.search import cache_folder

    beside = cache_folder(f"sqlite:///{tmp_path}/engine.sqlite", "")
    assert beside == tmp_path / "engine.sqlite.search"
    assert cache_folder("postgresql+psycopg://db/x", "/srv/cache") == Path("/srv/cache")


def test_pgvector_is_detected_at_start_up_and_refused_with_the_reason(store: Store) -> None:
    from policy_engine.errors import ConfigError
    from policy_engine.search import open_index
    from policy_engine.store.vectors import PgVectors

    why = PgVectors(store).unavailable()
    if why is None:
        pytest.skip("this PostgreSQL has the vector extension: see test_pgvector_search")
    if store.engine.url.get_backend_name() == "sqlite":
        assert "needs PostgreSQL" in why
    else:
        assert "vector extension" in why
    with pytest.raises(ConfigError, match="vector|PostgreSQL"):
        open_index(store, "pgvector", "frames", SYNTHETIC_MODEL.weights_sha256)


def test_pgvector_search_agrees_with_exact(big_archive) -> None:
    from policy_engine.store.vectors import PgVectors

    store, settings, ids, weights = big_archive
    why = PgVectors(store).unavailable()
    if why is not None:
        pytest.skip(f"pgvector not usable here: {why}")
    exact = _index(store, settings, "exact", weights)
    vectors = _index(store, settings, "pgvector", weights)
    scans = np.array(sorted(scan for _, scan in ids))
    query = _random(1, 32, 5)[0]
    assert [m.id for m in vectors.search(query, 10, scans)][:5] == [
        m.id for m in exact.search(query, 10, scans)
    ][:5]
    assert len(vectors.search(query, 40, scans[:1])) == 40


def test_the_pgvector_table_and_query_are_what_pgvector_indexes(store: Store) -> None:
    """Where no server has the extension, at least the DDL and the query are checked."""
    pytest.importorskip("pgvector", reason="the pgvector back end needs the pgvector package")
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateTable

    from policy_engine.store.vectors import PgVectors

    vectors = PgVectors(store)
    table = vectors.table("frames", 512)
    ddl = str(CreateTable(table).compile(dialect=postgresql.dialect()))
    assert "embedding HALFVEC(512) NOT NULL" in ddl and "PRIMARY KEY (id)" in ddl
    query = vectors.statement(table, "sha256:w", np.ones(512) / 512**0.5, 20, [1, 2])
    sql = str(query.compile(dialect=postgresql.dialect()))
    assert "embedding <=> " in sql and "ORDER BY search_frames_512.embedding <=>" in sql
    assert "scan_id IN" in sql and "LIMIT" in sql


# -- the command line and HTTP -------------------------------------------------------------------
def test_search_from_the_command_line(archive, tmp_path: Path) -> None:
    store, settings, ids, _ = archive
    base = ["--db", settings.db, "search", "--model", settings.model, "--device", "cpu"]
    env = {"POLICY_ENGINE_SEARCH_CACHE": settings.search_cache}
    shown = runner.invoke(app, [*base, QUERY, "--limit", "3"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "3 frames like 'a person smoking'" in shown.stdout
    assert "smoking.mp4" in shown.stdout.splitlines()[1] and "00:00:03.500" in shown.stdout
    assert "not searched: 1 asset(s)" in shown.stdout
    data = json.loads(runner.invoke(app, [*base, QUERY, "--json"], env=env).stdout)
    assert data["hits"][0]["frame"] == 7 and data["backend"] == "exact"
    assert data["other_weights"] == {SYNTHETIC_MODEL.weights_sha256: 1}
    like = runner.invoke(app, [*base, "--like", f"{ids['smoking'][1]}:7", "--json"], env=env)
    assert like.exit_code == 0 and len(json.loads(like.stdout)["hits"]) == 20
    for bad, message in (([], "needs a text"), (["--like", "x"], "SCAN:FRAME"),
                         ([QUERY, "--limit", "0"], "--limit"),
                         (["--image", str(tmp_path / "none.png")], "--image"),
                         ([QUERY, "--backend", "faiss"], "search_backend")):  # fmt: skip
        refused = runner.invoke(app, [*base, *bad], env=env)
        assert refused.exit_code == 2 and message in refused.output, (bad, refused.output)


@pytest.fixture
def service(archive):
    from fastapi.testclient import TestClient

    from policy_engine.service.app import create_app
    from policy_engine.store.accounts import Accounts

    store, settings, ids, _ = archive
    token = Accounts(store).create_token("mam", "viewer", by="test")
    with TestClient(create_app(settings)) as client:
        yield client, {"Authorization": f"Bearer {token}"}, ids


def test_search_over_http(service) -> None:
    client, auth, ids = service
    answer = client.get("/api/v1/search", params={"q": QUERY, "limit": 2}, headers=auth)
    assert answer.status_code == 200, answer.text
    top = answer.json()["hits"][0]
    assert (top["asset_id"], top["frame"]) == (ids["smoking"][0], 7)
    assert top["thumbnail"] == f"/api/v1/scans/{ids['smoking'][1]}/frames/7/thumbnail"
    assert answer.json()["other_weights"] and len(answer.json()["hits"]) == 2
    missing = client.get("/api/v1/search", headers=auth)
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "q"
    similar = client.get(top["similar"], params={"limit": 4}, headers=auth)
    assert similar.status_code == 200 and len(similar.json()["hits"]) == 4
    huge = client.get("/api/v1/scans/99999999999999999999999/frames/1/similar", headers=auth)
    assert huge.status_code == 422 and huge.json()["errors"][0]["field"] == "scan_id"
    nowhere = client.get(f"/api/v1/scans/{ids['smoking'][1]}/frames/99/similar", headers=auth)
    assert nowhere.status_code == 404 and nowhere.json()["type"].endswith(":no-such-frame")
    assert client.get("/api/v1/search", params={"q": QUERY}).status_code == 401
    broken = client.post("/api/v1/search/image", content=b"not a picture", headers=auth)
    assert broken.status_code == 422 and broken.json()["errors"][0]["field"] == "body"


# -- real scans: an image cut from a stored video; scenes ------------------------------------------
@pytest.fixture
def scanned(store: Store, tiny_clip_dir: Path, tmp_path: Path):
    """A moving pattern and the shots of test_scenes, scanned at 2 fps with scenes."""
    from policy_engine.analysis.scenes import SceneSettings
    from policy_engine.config import SHIPPED_RULES
    from policy_engine.media.synthetic import write_color_segments, write_moving_pattern
    from policy_engine.media.video import SamplingSpec
    from policy_engine.pipeline import AnalysisOptions
    from policy_engine.pipeline.scan import Scanner
    from policy_engine.policy.loader import load_catalogue

    moving = write_moving_pattern(tmp_path / "moving.mp4", seconds=6.0, size=(320, 180))
    shots = write_color_segments(
        tmp_path / "shots.mp4", [(3.0, (220, 20, 20)), (3.0, (20, 200, 20)), (2.0, (20, 20, 220))]
    )
    rulesets, _ = load_catalogue([SHIPPED_RULES])
    models = ModelProvider(str(tiny_clip_dir), device="cpu", dtype="fp32")
    options = AnalysisOptions(sampling=SamplingSpec(fps=2.0), scenes=SceneSettings())
    scanner = Scanner(store, rulesets, models, options)
    outcomes = {path.stem: scanner.scan_file(path) for path in (moving, shots)}
    settings = replace(
        Settings(), db=store.url, model=str(tiny_clip_dir), device="cpu",
        search_cache=str(tmp_path / "search-cache"),
    )  # fmt: skip
    return store, settings, outcomes, moving


def test_an_image_cut_from_a_stored_video_finds_that_video_at_that_time_first(scanned) -> None:
    """Holds with random weights: the picture is the stored frame, framed the same way."""
    import io

    import av

    store, settings, outcomes, moving = scanned
    with av.open(str(moving)) as container:
        frame = next(f for f in container.decode(video=0) if abs(f.time - 3.0) < 1e-6)
        buffer = io.BytesIO()
        frame.to_image().save(buffer, "PNG")
    top = _search(store, settings, image=buffer.getvalue(), limit=3).hits[0]
    assert top.asset_id == outcomes["moving"].asset_id and top.time == pytest.approx(3.0)
    assert top.score > 0.99
    combined = _search(store, settings, image=buffer.getvalue(), text="a red picture", limit=3)
    assert len(combined.hits) == 3  # the normalised weighted sum of both queries


def test_scenes_are_searched_as_scenes(scanned) -> None:
    store, settings, outcomes, _ = scanned
    shots = outcomes["shots"]
    result = _search(store, settings, like=(shots.scan_id, 8), kind="scenes", limit=3)
    top = result.hits[0]  # frame 8 (4.0 s) is in the green shot, 3-6 s
    assert (top.scan_id, top.scene) == (shots.scan_id, 1) and top.score > 0.999
    assert (top.time, top.end) == (pytest.approx(3.0, abs=0.05), pytest.approx(6.0, abs=0.05))
    assert 6 <= top.frame < 12  # its keyframe
    assert {h.kind for h in result.hits} == {"scenes"}


def test_a_scan_batch_extends_the_persisted_hnsw_index_as_it_completes(
    tmp_path: Path, tiny_clip_dir: Path
) -> None:
    pytest.importorskip("usearch", reason="the HNSW back end needs usearch")
    from policy_engine.media.synthetic import write_color_segments

    video = write_color_segments(tmp_path / "v.mp4", [(2.0, (200, 30, 30)), (2.0, (30, 30, 200))])
    db, cache = f"sqlite:///{tmp_path / 'engine.sqlite'}", tmp_path / "cache"
    env = {"POLICY_ENGINE_SEARCH_BACKEND": "hnsw", "POLICY_ENGINE_SEARCH_CACHE": str(cache)}
    scanned = runner.invoke(
        app, ["--db", db, "scan", str(video), "--model", str(tiny_clip_dir), "--device", "cpu",
              "--reports", str(tmp_path / "reports"), "--json"], env=env,
    )  # fmt: skip
    assert scanned.exit_code == 0, scanned.output
    (frames_state,) = cache.glob("frames-*.usearch.json")
    assert json.loads(frames_state.read_text())["rows"] == 8  # 4 s at 2 fps, already indexed
    assert list(cache.glob("scenes-*.usearch"))


def test_readiness_names_the_search_back_end_and_why_pgvector_is_unavailable(
    store: Store, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from policy_engine.service.app import create_app
    from policy_engine.store.vectors import PgVectors

    settings = replace(Settings(), db=store.url, search_backend="pgvector")
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz").json()
    why = PgVectors(store).unavailable()
    assert ready["status"] == "ready"
    assert ready["search"] == ("pgvector" if why is None else f"pgvector unavailable: {why}")


def test_the_verdict_filter_keeps_assets_with_that_verdict_in_force(scanned) -> None:
    from policy_engine.policy.evaluate import combine

    store, settings, outcomes, _ = scanned
    levels = {}
    for outcome in outcomes.values():
        decisions = store.current_decisions([outcome.asset_id]).values()
        levels[outcome.asset_id] = combine([d.ruled() for d in decisions])["schedule"]
    for level in set(levels.values()):
        hits = _search(store, settings, text=QUERY, verdict=level, limit=10).hits
        assert len(hits) == 10 and {levels[h.asset_id] for h in hits} == {level}
    assert _search(store, settings, text=QUERY, verdict="no-such-level").hits == []

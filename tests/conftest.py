"""Shared fixtures: offline Hugging Face, a tiny CLIP checkpoint, generated videos, and
the real clips in ../shared/media and IRIS's reference clips in ../shared/pse/iris
(skipped with a reason when absent; POLICY_ENGINE_SHARED points elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Never let a test reach the Hugging Face hub: set before transformers is imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
# Reference data beside the project's root (../shared), or where POLICY_ENGINE_SHARED says
# (a git worktree elsewhere, a CI cache).
SHARED = Path(os.environ.get("POLICY_ENGINE_SHARED") or REPO_ROOT.parent / "shared")
SHARED_MEDIA = SHARED / "media"
SHARED_PSE_IRIS = SHARED / "pse" / "iris"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Weight-hash cache and HF cache in a temp dir, never the user's home."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setattr("policy_engine.models.checkpoint._HASH_CACHE", cache / "policy_engine")
    monkeypatch.setenv("HF_HOME", str(cache / "hf"))


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from policy_engine.models.tiny import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture(scope="session")
def colour_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 s at 25 fps: 3 s red, 4 s green, 3 s blue (320x180)."""
    from policy_engine.media.synthetic import write_color_segments

    path = tmp_path_factory.mktemp("videos") / "colours.mp4"
    return write_color_segments(
        path, [(3.0, (220, 20, 20)), (4.0, (20, 200, 20)), (3.0, (20, 20, 220))], size=(320, 180)
    )


@pytest.fixture(scope="session")
def shared_media() -> Path:
    if not SHARED_MEDIA.is_dir():
        pytest.skip(f"real clips not present at {SHARED_MEDIA} (see ../shared/media/README.md)")
    return SHARED_MEDIA


@pytest.fixture(scope="session")
def pse_iris() -> Path:
    """EA IRIS's test clips and its expected per-frame results (../shared/pse/iris)."""
    if not (SHARED_PSE_IRIS / "expected").is_dir():
        pytest.skip(
            f"IRIS reference clips absent at {SHARED_PSE_IRIS} (see ../shared/pse/README.md; "
            "set POLICY_ENGINE_SHARED to the shared folder)"
        )
    return SHARED_PSE_IRIS


# -- databases ------------------------------------------------------------------------------
# The storage suite runs against SQLite and PostgreSQL. PostgreSQL comes from
# POLICY_ENGINE_TEST_POSTGRES_URL, by default the local server, so that `make test` and a
# bare `pytest` test the same thing (set it to "" to skip them); each test gets a schema of
# its own, dropped afterwards, so runs can share one server.
POSTGRES_ENV = "POLICY_ENGINE_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
os.environ.setdefault(POSTGRES_ENV, DEFAULT_POSTGRES_URL)


def _postgres_admin_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(
            f"PostgreSQL tests need {POSTGRES_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test)"
        )
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path):
    """A fresh, empty database URL of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'engine.sqlite'}"
        return
    yield from _postgres_schema(request)


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest):
    yield from _postgres_schema(request)


@pytest.fixture
def another_postgres_url(request: pytest.FixtureRequest):
    """A second fresh database (schema), to compare two runs side by side."""
    yield from _postgres_schema(request)


def _postgres_schema(request: pytest.FixtureRequest):
    import uuid

    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from policy_engine.store.database import make_engine

    admin = make_engine(_postgres_admin_url())
    schema = f"pe_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {os.environ[POSTGRES_ENV]}: {exc.orig}")
    separator = "&" if "?" in os.environ[POSTGRES_ENV] else "?"
    try:
        yield f"{os.environ[POSTGRES_ENV]}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def store(db_url: str):
    from policy_engine.store import Store

    opened = Store.open(db_url)
    yield opened
    opened.close()


@pytest.fixture
def schedule_once(tiny_clip_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``policy-engine schedule --once`` over a folder whose files settle at once, with the
    tiny model and the shipped rules: ``schedule_once(db, folder, *more_flags)``."""
    from typer.testing import CliRunner

    from policy_engine.cli import app
    from policy_engine.config import SHIPPED_RULES

    for name, value in {
        "SETTLE_SECONDS": "0.1",
        "QUIET_SECONDS": "0",
        "LOG_FORMAT": "json",
    }.items():
        monkeypatch.setenv(f"POLICY_ENGINE_{name}", value)

    def run(db: str, folder: Path, *flags: str):
        return CliRunner().invoke(
            app,
            ["--db", db, "schedule", "--once", "--ingest", str(folder),
             "--model", str(tiny_clip_dir), "--device", "cpu", "--rules", str(SHIPPED_RULES),
             "--reports", str(tmp_path / "reports"), *flags],
        )  # fmt: skip

    return run

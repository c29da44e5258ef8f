"""The design's layering rule: pure analysis and policy code imports no heavy library."""

import subprocess
import sys
from pathlib import Path

PURE = [
    "policy_engine.analysis.scoring",
    "policy_engine.analysis.coverage",
    "policy_engine.analysis.ask",
    "policy_engine.analysis.photosensitivity",
    "policy_engine.analysis.scenes",
    "policy_engine.analysis.windows",
    "policy_engine.analysis.second_opinions",
    "policy_engine.accounts",
    "policy_engine.policy.loader",
    "policy_engine.policy.evaluate",
    "policy_engine.policy.territory",
    "policy_engine.policy.ruletests",
    "policy_engine.policy.explain",
    "policy_engine.policy.defaults",
    "policy_engine.policy.overrides",
    "policy_engine.media.timecode",
    "policy_engine.media.framing",
    "policy_engine.config",
    "policy_engine.logsetup",
    "policy_engine.workers.executor",
]
HEAVY = ["torch", "av", "transformers", "sqlalchemy", "jinja2", "PIL", "cv2", "ray"]


def test_pure_modules_import_no_heavy_libraries() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in PURE)
        + f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_only_the_store_speaks_sql() -> None:
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "policy_engine"
    speakers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "sqlalchemy" in path.read_text() and path.parts[-2] != "store"
    )
    assert speakers == []


def test_commands_that_need_no_model_load_no_model_or_video_library(tmp_path) -> None:
    """The command line's start-up: `rules`, `db status`, `history`, `config show` and
    `ingest status` answer from files and the database; importing torch, transformers,
    PyAV or OpenCV for them cost over a second a command (the search command's defaults
    came from the pipeline, the queue's timing from the ingest worker's module)."""
    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from policy_engine.cli import app\n"
        "for args in (['rules', 'validate', 'policy_engine/rules'], ['db', 'status'],\n"
        "             ['history'], ['config', 'show'], ['ingest', 'status'], ['--help']):\n"
        f"    result = CliRunner().invoke(app, ['--db', {db!r}, *args])\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "print(sorted(m for m in ['torch', 'transformers', 'av', 'cv2', 'scenedetect', 'ray']"
        " if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    assert result.stdout.strip() == "[]"

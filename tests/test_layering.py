"""The design's layering rule: pure analysis and policy code imports no heavy library."""

import subprocess
import sys

PURE = [
    "policy_engine.analysis.scoring",
    "policy_engine.analysis.coverage",
    "policy_engine.analysis.ask",
    "policy_engine.analysis.photosensitivity",
    "policy_engine.analysis.scenes",
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
]
HEAVY = ["torch", "av", "transformers", "sqlalchemy", "jinja2", "PIL", "cv2"]


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

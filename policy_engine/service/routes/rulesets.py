"""Rule sets: those in force, their recorded versions, and a dry run of an edit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from policy_engine.service.deps import Editor, Reader, utc
from policy_engine.service.problems import Problem
from policy_engine.service.resources import resources

router = APIRouter(prefix="/api/v1/rulesets", tags=["rule sets"])


class DiffRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=60_000, description="An edited rule file (YAML).")
    since: datetime | None = Field(default=None, description="Only scans finished since.")


@router.get("")
def rulesets(request: Request, caller: Reader) -> list[dict[str, Any]]:
    """The rule sets in force: for each rule file, its version and since when."""
    return resources(request).store().rulesets_in_force()  # type: ignore[no-any-return]


@router.get("/{name}/versions")
def ruleset_versions(name: str, request: Request, caller: Reader) -> list[dict[str, Any]]:
    """Every recorded text of a rule set with its hash, the newest first."""
    versions = resources(request).store().ruleset_versions(name)
    if not versions:
        raise Problem(404, "no-such-ruleset", f"no rule set {name!r} is on record")
    return versions  # type: ignore[no-any-return]


@router.post("/diff")
def ruleset_diff(edit: DiffRequest, request: Request, caller: Editor) -> dict[str, Any]:
    """Dry run of an edited rule file (as `policy-engine rules diff`): which stored
    assets would change verdict, and why. Writes nothing. A file that does not load is
    422 with every problem and its line and column."""
    from policy_engine.pipeline.review import reevaluate, reevaluation_summary
    from policy_engine.policy.loader import RuleSetError, parse_ruleset

    try:
        ruleset = parse_ruleset(edit.text, "edited.yaml")
    except RuleSetError as exc:
        raise Problem(
            422, "invalid-rules", f"the rule file does not load: {exc.problems[0]}",
            errors=[{"line": p.line, "column": p.column, "message": p.message}
                    for p in exc.problems],
        ) from None  # fmt: skip
    engine = resources(request)
    result, _ = reevaluate(
        engine.store(), [ruleset], engine.models(), reports_dir=None,
        since=utc(edit.since), dry_run=True,
    )  # fmt: skip
    return reevaluation_summary(result)

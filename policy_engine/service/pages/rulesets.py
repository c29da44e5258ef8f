"""Rule sets, for editors: the versions of each set with their text and hash, a diff
between two versions, and a dry run of an edited text (pasted or read from a file) that
shows which stored assets would change verdict and why, before anyone saves it to the
rules folder. Nothing here writes."""

from __future__ import annotations

import difflib
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from policy_engine.service.deps import PRINTABLE
from policy_engine.service.pages.common import Editor, Form, PageError, checked_form, render
from policy_engine.service.resources import resources

router = APIRouter(include_in_schema=False)
MAX_TEXT = 60_000  # as POST /api/v1/rulesets/diff


@router.get("/rulesets")
def rulesets(request: Request, who: Editor) -> HTMLResponse:
    in_force = resources(request).store().rulesets_in_force()
    return render(request, "rulesets.html", who, in_force=in_force)


def _versions(request: Request, name: str) -> list[dict[str, Any]]:
    versions = resources(request).store().ruleset_versions(name)
    if not versions:
        raise PageError(404, "No such rule set", f"no rule set {name!r} is on record")
    return versions  # type: ignore[no-any-return]


@router.get("/rulesets/dry-run")
def dry_run_form(
    request: Request, who: Editor, start: Annotated[str, Query(max_length=200)] = ""
) -> HTMLResponse:
    """The form; ``start``: a rule set whose latest text to begin editing from."""
    text = _versions(request, start)[0]["text"] if start else ""
    return render(request, "dry_run.html", who, text=text, result=None, problems=[])


@router.post("/rulesets/dry-run")
def dry_run(request: Request, who: Editor, form: Form) -> HTMLResponse:
    from policy_engine.pipeline.review import reevaluate, reevaluation_summary
    from policy_engine.policy.loader import RuleSetError, parse_ruleset

    checked_form(who, form)
    text = form.get("text", "").replace("\r\n", "\n")
    if not text.strip() or len(text) > MAX_TEXT:
        raise PageError(422, "No rule text", f"paste a rule file of at most {MAX_TEXT} characters")
    try:
        ruleset = parse_ruleset(text, "edited.yaml")
    except RuleSetError as exc:
        return render(request, "dry_run.html", who, 422, text=text, result=None,
                      problems=exc.problems)  # fmt: skip
    engine = resources(request)
    result, _ = reevaluate(
        engine.store(), [ruleset], engine.models(), reports_dir=None, dry_run=True
    )
    return render(request, "dry_run.html", who, text=text, problems=[],
                  result=reevaluation_summary(result))  # fmt: skip


@router.get("/rulesets/{name}")
def versions(name: str, request: Request, who: Editor) -> HTMLResponse:
    return render(request, "ruleset.html", who, name=name, versions=_versions(request, name))


@router.get("/rulesets/{name}/diff")
def diff(
    name: str,
    request: Request,
    who: Editor,
    old: Annotated[str, Query(max_length=80, pattern=PRINTABLE)],
    new: Annotated[str, Query(max_length=80, pattern=PRINTABLE)],
) -> HTMLResponse:
    by_hash = {v["sha256"]: v for v in _versions(request, name)}
    if old not in by_hash or new not in by_hash:
        raise PageError(404, "No such version", f"rule set {name!r} has no such version")
    before, after = by_hash[old], by_hash[new]
    lines = list(difflib.unified_diff(
        before["text"].splitlines(), after["text"].splitlines(),
        f"{name} v{before['version']} ({old[:19]})", f"{name} v{after['version']} ({new[:19]})",
        lineterm="",
    ))  # fmt: skip
    return render(request, "ruleset_diff.html", who, name=name, before=before, after=after,
                  lines=lines)  # fmt: skip

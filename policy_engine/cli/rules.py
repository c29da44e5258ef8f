"""`rules …`: editors' tools for rule files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from policy_engine.cli.common import (
    err,
    escape,
    fail,
    out,
    rules_app,
)
from policy_engine.config import load_settings
from policy_engine.errors import (
    ConfigError,
    PolicyEngineError,
)

RulePaths = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Rule files or folders. \\[default: the configured rules, else the shipped ones]"
    ),
]


def _rule_paths(paths: list[Path] | None) -> list[Path]:
    if paths:
        return list(paths)
    settings = load_settings()
    if note := settings.rules_note():
        err.print(note, highlight=False, markup=False, soft_wrap=True)
    return [Path(settings.rules)]


@rules_app.command("validate")
def rules_validate(paths: RulePaths = None) -> None:
    """Load rule files and report every error (file:line:column); exit 2 on any."""
    from policy_engine.policy.consistency import measurement_conflicts
    from policy_engine.policy.loader import load_catalogue, rule_files

    try:
        files = rule_files(_rule_paths(paths))
        if not files:
            raise ConfigError(f"no rule files (*.yaml) in {', '.join(map(str, paths or []))}")
        rulesets, problems = load_catalogue(files)
    except PolicyEngineError as exc:
        raise fail(exc) from None
    for ruleset in rulesets:
        out.print(
            f"ok  {ruleset.path}: {ruleset.name} v{ruleset.version}, {len(ruleset.all_categories)}"
            f" categories, {len(ruleset.rules)} rules, {len(ruleset.tests)} tests,"
            f" {ruleset.sha256[:19]}…",
            highlight=False,
        )
    for conflict in measurement_conflicts(rulesets):
        err.print(f"[yellow]warning[/] {escape(conflict)}", highlight=False, soft_wrap=True)
    for problem in problems:
        err.print(f"[red]error[/] {problem}", highlight=False, soft_wrap=True)
    if problems:
        err.print(f"{len(problems)} problem(s); the rule sets above them are unaffected.")
        raise typer.Exit(2)


@rules_app.command("test")
def rules_test(paths: RulePaths = None) -> None:
    """Run each rule file's test cases (coverage numbers in, expected decision out)."""
    from policy_engine.policy.loader import load_catalogue
    from policy_engine.policy.ruletests import run_tests

    rulesets, problems = load_catalogue(_rule_paths(paths))
    for problem in problems:
        err.print(f"[red]error[/] {problem}", highlight=False, soft_wrap=True)
    passed = failed = 0
    for ruleset in rulesets:
        if not ruleset.tests:
            out.print(f"[yellow]no tests[/] {ruleset.name} ({ruleset.path})", highlight=False)
        for outcome in run_tests(ruleset):
            if outcome.passed:
                passed += 1
                out.print(f"[green]pass[/] {ruleset.name}: {outcome.name}", highlight=False)
                continue
            failed += 1
            out.print(
                f"[red]FAIL[/] {ruleset.name}: {outcome.name} ({outcome.source})", highlight=False
            )
            for failure in outcome.failures:
                out.print(f"       {failure}", highlight=False)
    # A file that does not load runs none of its tests: it counts, or "0 failed" would
    # read as all clear.
    broken = len({p.path for p in problems})
    tally = f"{passed} passed, {failed} failed"
    if broken:
        tally += f", {broken} error(s): rule file(s) that did not load, their tests not run"
    out.print(tally, highlight=False)
    if failed or problems:
        raise typer.Exit(1 if failed else 2)


@rules_app.command("explain")
def rules_explain(path: Annotated[Path, typer.Argument(help="A rule file.")]) -> None:
    """A readable summary of what a rule set does."""
    from policy_engine.policy.explain import explain
    from policy_engine.policy.loader import load_ruleset

    try:
        out.print(explain(load_ruleset(path)), highlight=False, markup=False)
    except PolicyEngineError as exc:
        raise fail(exc) from None


@rules_app.command("slot")
def rules_slot(
    path: Annotated[Path, typer.Argument(help="The rule file whose levels and territories apply.")],
    level: Annotated[str, typer.Argument(help="Schedule level, e.g. post-watershed.")],
    when: Annotated[
        str, typer.Argument(help="Planned start: 2026-11-21T20:30 (local) or with offset.")
    ],
    territory: Annotated[
        list[str] | None, typer.Option("--territory", "-t", help="Only these territories.")
    ] = None,
) -> None:
    """Is a planned slot permitted? Exit 0 if it is in every territory asked, else 1."""
    from datetime import datetime

    from policy_engine.policy.loader import load_ruleset
    from policy_engine.policy.territory import slot_permitted

    try:
        ruleset = load_ruleset(path)
        try:
            start = datetime.fromisoformat(when)
        except ValueError:
            raise ConfigError(f"{when!r} is not a date-time; write 2026-11-21T20:30") from None
        if level not in ruleset.levels:
            raise ConfigError(f"unknown level {level!r}; levels: {' < '.join(ruleset.levels)}")
        chosen = [t for t in ruleset.territories if not territory or t.name in territory]
        if not chosen:
            names = ", ".join(t.name for t in ruleset.territories)
            raise ConfigError(
                f"no territory {', '.join(territory or [])} in {path}; it has {names}"
            )
    except PolicyEngineError as exc:
        raise fail(exc) from None
    allowed = True
    for t in chosen:
        ok = slot_permitted(level, ruleset.levels, t, start)
        allowed &= ok
        verdict = "[green]permitted[/]" if ok else "[red]not permitted[/]"
        out.print(f"{t.name} ({t.timezone}): {level} at {when}: {verdict}", highlight=False)
    if not allowed:
        raise typer.Exit(1)

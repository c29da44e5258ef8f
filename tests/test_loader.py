"""Loading rule files: strictness, error wording with line and column, hostile YAML."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from policy_engine.policy import model as m
from policy_engine.policy.loader import (
    RuleSetError,
    load_catalogue,
    load_ruleset,
    parse_ruleset,
)

GOOD = """\
ruleset: uk-test
version: 3
description: a test set
categories:
  violence: {prompts: [people fighting, a person being shot]}
  computer: {prompts: [a laptop screen]}
  background: {prompts: [something else], null: true}
rules:
  - id: violence-after-watershed
    reference: Ofcom Broadcasting Code 1.11
    when: {category: violence, coverage_above: 5%}
    then: {schedule: post-watershed, review: required}
  - id: technology-tag
    when: {category: computer, coverage_above: 0.1}
    then: {tag: Technology}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(RuleSetError) as caught:
        parse_ruleset(text, "r.yaml")
    return [str(p) for p in caught.value.problems]


def test_good_rule_set() -> None:
    rs = parse_ruleset(GOOD, "r.yaml")
    assert (rs.name, rs.version) == ("uk-test", "3")
    assert [c.name for c in rs.categories] == ["violence", "computer", "background"]
    assert rs.categories[2].null and not rs.categories[0].null
    first, second = rs.rules
    assert first.when == m.Clause("violence", m.SHARE_ABOVE, 0.05, line=11)
    assert first.then == m.Outcome(schedule="post-watershed", review=True)
    assert second.when.threshold == pytest.approx(0.1)  # 0.1 and 10% mean the same
    assert second.then.tags == ("Technology",)
    assert rs.levels == m.DEFAULT_LEVELS and [t.name for t in rs.territories] == ["UK", "US"]


def test_hash_is_of_the_exact_text() -> None:
    import hashlib

    rs = parse_ruleset(GOOD)
    assert rs.text == GOOD
    assert rs.sha256 == "sha256:" + hashlib.sha256(GOOD.encode()).hexdigest()
    assert parse_ruleset(GOOD + "# a comment\n").sha256 != rs.sha256


def test_unknown_key_with_suggestion_line_and_column() -> None:
    text = GOOD.replace("    reference:", "    referense:")
    assert problems(text) == [
        "r.yaml:10:5: unknown key 'referense' in a rule (did you mean 'reference'?);"
        " allowed: id, description, reference, when, then"
    ]


def test_misspelt_operator() -> None:
    text = GOOD.replace("coverage_above: 5%", "coverage_abvoe: 5%")
    found = problems(text)
    assert found[0].startswith("r.yaml:11:32: unknown key 'coverage_abvoe'")
    assert "did you mean 'coverage_above'?" in found[0]


def test_rule_naming_an_undefined_category() -> None:
    text = GOOD.replace("category: violence,", "category: violense,")
    (message,) = problems(text)
    assert message.startswith("r.yaml:11:22: rule 'violence-after-watershed' names category")
    assert (
        "did you mean 'violence'?" in message
        and "defined: background, computer, violence" in message
    )


def test_duplicate_rule_ids() -> None:
    text = GOOD.replace("id: technology-tag", "id: violence-after-watershed")
    (message,) = problems(text)
    assert message == (
        "r.yaml:13:9: rule id 'violence-after-watershed' is used twice (first on line 9)"
    )


def test_empty_prompt_list() -> None:
    text = GOOD.replace("[a laptop screen]", "[]")
    (message,) = problems(text)
    assert message.startswith("r.yaml:6:23: category 'computer' has an empty prompt list")


@pytest.mark.parametrize(
    ("threshold", "wording"),
    [
        ("5", "did you mean 5%?"),
        ("150%", "at most 100%"),
        ("-1%", "not a share"),
        ("lots", "not a share"),
    ],
)
def test_thresholds_out_of_range(threshold: str, wording: str) -> None:
    (message,) = problems(GOOD.replace("coverage_above: 5%", f"coverage_above: {threshold}"))
    assert message.startswith("r.yaml:11:48:") and wording in message


def test_schedule_level_typo() -> None:
    (message,) = problems(GOOD.replace("schedule: post-watershed", "schedule: post-watershd"))
    assert "did you mean 'post-watershed'?" in message
    assert "unrestricted < post-watershed < not-for-broadcast" in message


def test_all_errors_are_reported_at_once() -> None:
    text = (
        GOOD.replace("referense", "x")
        .replace("    reference:", "    referense:")
        .replace("category: computer,", "category: computr,")
        .replace("[a laptop screen]", "[]")
        .replace("version: 3", "version: 3\nauthor: me")
    )
    found = problems(text)
    assert len(found) == 4
    assert [f.split(":")[1] for f in found] == ["3", "7", "11", "15"]


def test_conditions_and_combinators() -> None:
    text = GOOD.replace(
        "when: {category: computer, coverage_above: 0.1}",
        "when:\n      any:\n        - {category: computer, seconds_above: 3s}\n"
        "        - all:\n            - {category: computer, longest_run_above: '00:00:02'}\n"
        "            - not: {category: violence, first_seen_before: 1.5 s}\n",
    )
    rule = parse_ruleset(text).rules[1]
    assert isinstance(rule.when, m.AnyOf)
    seconds, both = rule.when.parts
    assert (seconds.metric, seconds.threshold) == (m.SECONDS_ABOVE, 3.0)
    assert isinstance(both, m.AllOf) and isinstance(both.parts[1], m.NotOf)
    assert both.parts[0].threshold == 2.0 and both.parts[1].part.threshold == 1.5


@pytest.mark.parametrize(
    ("when", "wording"),
    [
        ("{category: computer}", "exactly one of"),
        (
            "{category: computer, coverage_above: 5%, seconds_above: 2s}",
            "found coverage_above, seconds_above",
        ),
        ("{all: []}", "'all' needs at least one condition"),
        ("{all: [], any: []}", "must stand alone"),
        ("[computer]", "'when' must be a mapping"),
        ("{category: computer, seconds_above: soon}", "not a duration"),
    ],
)
def test_malformed_conditions(when: str, wording: str) -> None:
    text = GOOD.replace("when: {category: computer, coverage_above: 0.1}", f"when: {when}")
    assert any(wording in p for p in problems(text))


def test_custom_levels_and_territories() -> None:
    text = GOOD + (
        "schedule_levels: [U, PG, post-watershed, not-for-broadcast]\n"
        "territories:\n  IE: {timezone: Europe/Dublin, windows: {post-watershed: '21:00-06:00', PG: '19:00-06:00'}}\n"
    )
    rs = parse_ruleset(text)
    assert rs.levels[1] == "PG" and rs.territories[0].windows["PG"] == (19 * 60, 6 * 60)
    bad = GOOD + "territories:\n  XX: {timezone: Mars/Olympus, windows: {late: '21:00-21:00'}}\n"
    found = problems(bad)
    assert any("unknown time zone 'Mars/Olympus'" in p for p in found)
    assert any("unknown key 'late'" in p for p in found)


def test_every_category_null_is_an_error() -> None:
    text = "ruleset: x\ncategories:\n  a: {prompts: [p], null: true}\nrules: []\n"
    assert any("at least one must be something to look for" in p for p in problems(text))


def test_missing_sections_and_empty_file() -> None:
    assert problems("") == [
        "r.yaml: the file is empty; a rule set needs 'ruleset', 'categories' and 'rules'"
    ]
    found = problems("ruleset: x\n")
    assert "'categories'" in found[0] and "'rules'" in found[1]
    assert problems("- a list\n")[0].endswith("the rule set must be a mapping (key: value)")


def test_duplicate_yaml_keys_are_errors() -> None:
    text = GOOD.replace("version: 3", "version: 3\nversion: 4")
    assert problems(text) == ["r.yaml:3:1: key 'version' given twice (first on line 2)"]


def test_yaml_syntax_error_position() -> None:
    (message,) = problems("ruleset: x\ncategories: [a\n")
    assert message.startswith("r.yaml:3:1: not valid YAML")


# -- hostile input ----------------------------------------------------------------------


def test_python_object_tags_are_rejected_not_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"ruleset: !!python/object/apply:os.system ['touch {marker}']\ncategories: {{}}\nrules: []\n"
    (message,) = problems(text)
    assert "python/object/apply" in message and "not allowed" in message
    assert not marker.exists()


def test_billion_laughs_is_rejected_quickly() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    start = time.perf_counter()
    (message,) = problems("\n".join(lines) + "\n")
    assert time.perf_counter() - start < 1.0
    assert "alias bomb" in message


def test_deep_nesting_is_a_file_line_error_not_a_crash(tmp_path: Path) -> None:
    deep = GOOD.replace("description: a test set", "description: " + "[" * 500 + "]" * 500)
    (message,) = problems(deep)
    assert message.startswith("r.yaml:3:") and "nested more than 64 levels" in message
    path = tmp_path / "deep.yaml"
    path.write_text(deep)
    rulesets, found = load_catalogue([path])
    assert rulesets == [] and [p.line for p in found] == [3]


def test_nesting_a_rule_file_needs_is_fine() -> None:
    text = GOOD.replace("description: a test set", "description: " + "[" * 40 + "]" * 40)
    with pytest.raises(RuleSetError, match="description must be a single value"):
        parse_ruleset(text, "r.yaml")  # an ordinary schema error, not a depth error


def test_no_exception_of_any_kind_escapes_the_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(GOOD)

    def exhausted(*args: object) -> None:
        raise MemoryError("out of memory")

    monkeypatch.setattr("policy_engine.policy.loader._Parser.ruleset", exhausted)
    rulesets, found = load_catalogue([path])
    assert rulesets == []
    assert [str(p) for p in found] == [
        f"{path}: could not be loaded (MemoryError: out of memory); simplify the file,"
        " and report it if it is an ordinary rule file"
    ]


def test_a_few_aliases_are_fine() -> None:
    text = GOOD.replace("[a laptop screen]", "&screens [a laptop screen]").replace(
        "[something else]", "*screens"
    )
    assert parse_ruleset(text).categories[2].prompts == ("a laptop screen",)


def test_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("w") as handle:
        handle.write("ruleset: x\ndescription: '")
        handle.write("x" * 50_000_000)
        handle.write("'\n")
    start = time.perf_counter()
    with pytest.raises(RuleSetError, match="limited to 1,000,000 bytes"):
        load_ruleset(path)
    assert time.perf_counter() - start < 1.0


def test_binary_and_missing_files(tmp_path: Path) -> None:
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(RuleSetError, match="not UTF-8"):
        load_ruleset(binary)
    with pytest.raises(RuleSetError, match="not found"):
        load_ruleset(tmp_path / "missing.yaml")


# -- files and catalogues ---------------------------------------------------------------


def test_sidecar_tests_and_catalogue(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "a.tests.yaml").write_text(
        "tests:\n  - name: tagged\n    coverage: {computer: 12%}\n    expect: {tags: [Technology]}\n"
    )
    (tmp_path / "broken.yaml").write_text("ruleset: broken\ncategories: {}\nrules: []\n")
    (tmp_path / "same-name.yaml").write_text(GOOD)
    rulesets, found = load_catalogue([tmp_path])
    assert [r.name for r in rulesets] == ["uk-test"]
    assert rulesets[0].tests[0].name == "tagged"
    assert rulesets[0].tests[0].source.endswith("a.tests.yaml:2")
    messages = [str(p) for p in found]
    assert any("broken.yaml" in p and "categories must be a mapping" in p for p in messages)
    assert any("already used by" in p for p in messages)


def test_a_broken_rule_gets_one_error_not_a_follow_on_in_the_tests() -> None:
    text = GOOD.replace("coverage_above: 0.1}", "coverage_above: lots}") + (
        "tests:\n  - name: t\n    coverage: {computer: 20%}\n"
        "    expect: {fired: [technology-tag], near_misses: [no-such-rule]}\n"
    )
    found = problems(text)
    assert len(found) == 2, found
    assert "technology-tag" in found[0] and "coverage_above" in found[0]
    assert "no rule 'no-such-rule'" in found[1]  # a rule that really is missing still is


def test_test_cases_are_checked_against_the_rule_set() -> None:
    text = GOOD + (
        "tests:\n"
        "  - name: bad\n"
        "    coverage: {computers: 5%}\n"
        "    expect: {schedule: late, fired: [no-such-rule], colour: red}\n"
    )
    found = problems(text)
    assert any("unknown category 'computers' (did you mean 'computer'?)" in p for p in found)
    assert any("schedule 'late' is not a level" in p for p in found)
    assert any("no rule 'no-such-rule'" in p for p in found)
    assert any("unknown key 'colour'" in p for p in found)

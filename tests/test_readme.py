"""The rule-set example in the README must load and pass its own test case."""

import re
from pathlib import Path

from policy_engine.policy.loader import parse_ruleset
from policy_engine.policy.ruletests import run_tests

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_rule_set_example_is_valid() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no yaml example"
    ruleset = parse_ruleset(blocks[0], "README.md")
    assert [r.id for r in ruleset.rules] == ["violence-after-watershed", "sustained"]
    outcomes = run_tests(ruleset)
    assert outcomes and all(o.passed for o in outcomes), [o.failures for o in outcomes]

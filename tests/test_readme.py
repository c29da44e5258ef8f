"""The rule-set example in the README must load and pass its own test case."""

import re
from pathlib import Path

from policy_engine.policy.loader import parse_ruleset
from policy_engine.policy.ruletests import run_tests

README = Path(__file__).resolve().parent.parent / "README.md"


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_rule_set_example_is_valid() -> None:
    blocks = [b for b in yaml_blocks() if "violence-after-watershed" in b]
    assert blocks, "README has no rule set example"
    ruleset = parse_ruleset(blocks[0], "README.md")
    assert [r.id for r in ruleset.rules] == ["violence-after-watershed", "sustained"]
    outcomes = run_tests(ruleset)
    assert outcomes and all(o.passed for o in outcomes), [o.failures for o in outcomes]


def test_readme_settings_example_loads_with_every_value_from_the_file(tmp_path: Path) -> None:
    from policy_engine.config import load_settings

    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "README should show one settings file"
    config = tmp_path / "policy-engine.toml"
    config.write_text(blocks[0])
    settings = load_settings(config_file=config, env={})
    assert settings.ingest == ("/srv/ingest/trailers", "/srv/ingest/promos")
    assert settings.poll == 900 and settings.timezone == "Europe/London"
    from_file = {name for name, source in settings.sources.items() if source.startswith("file")}
    assert len(from_file) >= 20


def test_readme_detector_example_is_valid() -> None:
    [block] = [b for b in yaml_blocks() if "detector:" in b]
    ruleset = parse_ruleset(block, str(README))
    assert [c.name for c in ruleset.detectors] == ["nudity", "knives"]
    knives = ruleset.category("knives").detector
    assert knives is not None and knives.model_path == str(README.parent / "models/knife.onnx")

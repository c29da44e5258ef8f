from pathlib import Path

import pytest

from policy_engine.config import load_settings
from policy_engine.errors import ConfigError


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    config = tmp_path / "pe.toml"
    config.write_text('model = "/models/clip"\nfps = 1\ndevice = "cuda"\n')
    env = {"POLICY_ENGINE_DEVICE": "cpu", "POLICY_ENGINE_FPS": "3"}
    s = load_settings({"fps": 4.0, "dtype": None}, config_file=config, env=env)
    assert (s.model, s.device, s.fps, s.dtype) == ("/models/clip", "cpu", 4.0, "auto")
    assert s.source_of("model") == f"file {config}"
    assert s.source_of("device") == "env POLICY_ENGINE_DEVICE"
    assert s.source_of("fps") == "flag" and s.source_of("dtype") == "default"


def test_config_file_from_environment_and_section(tmp_path: Path) -> None:
    config = tmp_path / "pe.toml"
    config.write_text("[policy_engine]\nbatch_size = 16\n")
    s = load_settings(env={"POLICY_ENGINE_CONFIG": str(config)})
    assert s.batch_size == 16


@pytest.mark.parametrize(
    ("text", "message"),
    [('modle = "x"\n', "unknown setting"), ("fps = [\n", "pe.toml"), ('fps = "fast"\n', "fps")],
)
def test_bad_config_files(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "pe.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(config_file=config, env={})


@pytest.mark.parametrize(
    ("name", "text"), [("pe.toml", 'modle = "x"\n'), ("pe.yaml", "modle: x\n")]
)
def test_a_settings_typo_gets_a_suggestion(tmp_path: Path, name: str, text: str) -> None:
    config = tmp_path / name
    config.write_text(text)
    with pytest.raises(
        ConfigError, match=r"unknown setting\(s\) 'modle' \(did you mean 'model'\?\)"
    ):
        load_settings(config_file=config, env={})


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("pe.toml", "fps = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        (
            "pe.yaml",
            "fps: " + "[" * 500 + "]" * 500 + "\n",
            r"pe.yaml:1:\d+: .*nested more than 64",
        ),
    ],
)
def test_a_deeply_nested_settings_file_is_a_config_error(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    config = tmp_path / name
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(config_file=config, env={})


def test_bad_environment_value() -> None:
    with pytest.raises(ConfigError, match="POLICY_ENGINE_BATCH_SIZE"):
        load_settings(env={"POLICY_ENGINE_BATCH_SIZE": "lots"})

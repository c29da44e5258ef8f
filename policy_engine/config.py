"""Settings, in order of precedence: defaults < config file < environment < flags.

The config file is TOML: ``--config FILE``, else ``$POLICY_ENGINE_CONFIG``, else
``./policy-engine.toml`` if present. Environment variables are ``POLICY_ENGINE_<NAME>``
(e.g. ``POLICY_ENGINE_MODEL``, ``POLICY_ENGINE_DB``). Each value remembers where it
came from, so a user can see why a setting has the value it has.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from policy_engine.errors import ConfigError
from policy_engine.models.checkpoint import DEFAULT_MODEL

ENV_PREFIX = "POLICY_ENGINE_"
DEFAULT_CONFIG_FILE = "policy-engine.toml"
DEFAULT_DB_URL = "sqlite:///policy-engine.sqlite"  # a file in the working folder


@dataclass(frozen=True)
class Settings:
    model: str = DEFAULT_MODEL
    device: str = "auto"
    dtype: str = "auto"
    fps: float = 2.0
    sampling: str = "fps"  # fps | all | keyframes
    framing: str = "letterbox"  # letterbox | tiles | center | squash
    batch_size: int = 32
    interval: float = 10.0  # seconds per dominant-label interval
    rules: str = "rules"  # rule file or folder of rule files
    db: str = DEFAULT_DB_URL  # SQLAlchemy URL: SQLite file or postgresql://…
    reports: str = "reports"  # folder the HTML reports are written to
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def source_of(self, name: str) -> str:
        return self.sources.get(name, "default")


_CONVERTERS = {f.name: f.type for f in fields(Settings) if f.name != "sources"}


def _convert(name: str, value: Any, origin: str) -> Any:
    kind = _CONVERTERS[name]
    try:
        if kind in ("float", float):
            return float(value)
        if kind in ("int", int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{origin}: {name} = {value!r} is not a valid {kind}") from exc


def _config_file(explicit: str | Path | None, env: Mapping[str, str]) -> Path | None:
    if explicit:
        return Path(explicit)
    if env.get(ENV_PREFIX + "CONFIG"):
        return Path(env[ENV_PREFIX + "CONFIG"])
    local = Path(DEFAULT_CONFIG_FILE)
    return local if local.is_file() else None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    section = data.get("policy_engine", data)
    unknown = sorted(set(section) - set(_CONVERTERS))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)};"
            f" known: {', '.join(sorted(_CONVERTERS))}"
        )
    return section


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Effective settings; ``flags`` with value None are treated as not given."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = _config_file(config_file, env)
    if path is not None:
        for name, value in _read_file(path).items():
            values[name] = _convert(name, value, f"config file {path}")
            sources[name] = f"file {path}"
    for name in _CONVERTERS:
        variable = ENV_PREFIX + name.upper()
        if env.get(variable):
            values[name] = _convert(name, env[variable], f"environment {variable}")
            sources[name] = f"env {variable}"
    for name, value in (flags or {}).items():
        if value is not None and name in _CONVERTERS:
            values[name] = _convert(name, value, f"--{name.replace('_', '-')}")
            sources[name] = "flag"
    return replace(Settings(), **values, sources=sources)

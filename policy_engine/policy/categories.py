"""Reading the ``categories`` section of a rule-set file (safe YAML, precise errors).

The full rule-set schema (rules, thresholds, outcomes) builds on this section; here only
the categories are read, so ``analyze --rules FILE`` can score a file's prompt sets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from policy_engine.analysis.scoring import Category
from policy_engine.errors import ConfigError

_CATEGORY_KEYS = {"prompts", "null", "description"}


class _LineLoader(yaml.SafeLoader):
    """Safe loader that remembers where each mapping started (for error messages)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    raw = yaml.SafeLoader.construct_mapping(loader, node, deep=True)
    # YAML reads a bare `null:` key as None (and `yes:` as True): keys are names here.
    mapping = {("null" if key is None else str(key)): value for key, value in raw.items()}
    mapping["__line__"] = node.start_mark.line + 1
    mapping["__column__"] = node.start_mark.column + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _where(path: Path, node: Any) -> str:
    if isinstance(node, dict) and "__line__" in node:
        return f"{path}:{node['__line__']}:{node['__column__']}"
    return str(path)


def load_categories(path: str | Path) -> list[Category]:
    """Categories of a rule-set file; every problem found is reported at once."""
    path = Path(path)
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)  # noqa: S506
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: rule file not found") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("categories"), dict):
        raise ConfigError(f"{_where(path, document)}: a rule set needs a 'categories:' mapping")
    section = document["categories"]
    errors: list[str] = []
    categories: list[Category] = []
    for name, body in section.items():
        if name.startswith("__"):
            continue
        where = _where(path, body if isinstance(body, dict) else section)
        if not isinstance(body, dict):
            errors.append(f"{where}: category {name!r} must be a mapping with 'prompts:'")
            continue
        unknown = sorted(k for k in body if not k.startswith("__") and k not in _CATEGORY_KEYS)
        if unknown:
            errors.append(
                f"{where}: category {name!r}: unknown key(s) {', '.join(unknown)};"
                f" allowed: {', '.join(sorted(_CATEGORY_KEYS))}"
            )
        prompts = body.get("prompts")
        if (
            not isinstance(prompts, list)
            or not prompts
            or not all(isinstance(p, str) and p.strip() for p in prompts)
        ):
            errors.append(f"{where}: category {name!r}: 'prompts' must be a non-empty list of text")
            continue
        categories.append(
            Category(str(name), tuple(p.strip() for p in prompts), null=bool(body.get("null")))
        )
    if not categories and not errors:
        errors.append(f"{_where(path, section)}: 'categories' is empty")
    if errors:
        raise ConfigError("\n".join(errors))
    return categories

"""Reading untrusted YAML: composed nodes (with line and column) instead of Python objects.

Rule files are edited by hand and arrive from outside, so:

* only the plain YAML types are allowed (mapping, list, text, number, bool, null): a tag
  such as ``!!python/object`` is an error, never constructed;
* aliases are allowed (editors share prompt lists with anchors), but the document's size
  once aliases are expanded is bounded, so an alias bomb ("billion laughs") is rejected in
  linear time instead of exhausting memory;
* files above a size limit are refused before they are parsed;
* nesting is limited (``MAX_DEPTH`` levels): PyYAML composes recursively, so a 1 KB file
  of ``[[[[…]]]]`` would otherwise end in a RecursionError instead of a file:line error;
* a key given twice in one mapping is an error (YAML would silently keep the last).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_FILE_BYTES = 1_000_000
MAX_EXPANDED_NODES = 200_000
MAX_DEPTH = 64  # far deeper than any rule file, far shallower than Python's recursion limit
_PLAIN_TAGS = {
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "map", "seq")
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file, at a place in it."""

    path: str
    line: int | None
    column: int | None
    message: str

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class YamlRejected(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def where(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _reject(path: str, node: Node, message: str) -> YamlRejected:
    return YamlRejected(Problem(path, *where(node), message))


def read_text(path: Path) -> str:
    """The file's text, refusing huge files before reading them."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise YamlRejected(
            Problem(
                str(path),
                None,
                None,
                f"file is {size:,} bytes; rule files are limited to {MAX_FILE_BYTES:,} bytes",
            )
        )
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise YamlRejected(
            Problem(str(path), None, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        ) from exc


class _DepthLimitedLoader(yaml.SafeLoader):
    """The safe loader, refusing documents nested more than ``MAX_DEPTH`` levels deep."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # type: ignore[override]
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"nested more than {MAX_DEPTH} levels deep; a rule file never needs that",
                self.peek_event().start_mark,
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


def compose(text: str, path: str) -> Node | None:
    """The document's node tree, checked for tags, size and duplicate keys."""
    if len(text.encode("utf-8", errors="ignore")) > MAX_FILE_BYTES:
        raise YamlRejected(Problem(path, None, None, "document too large for a rule file"))
    try:
        node = yaml.compose(text, Loader=_DepthLimitedLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise YamlRejected(Problem(path, line, column, f"not valid YAML: {exc.problem}")) from exc
    except yaml.YAMLError as exc:
        raise YamlRejected(Problem(path, None, None, f"not valid YAML: {exc}")) from exc
    if node is not None:
        _check(node, path)
    return node


def _check(root: Node, path: str) -> None:
    """Tags and expanded size, each node visited once (aliases share node objects)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if node.tag not in _PLAIN_TAGS:
            raise _reject(
                path,
                node,
                f"the YAML tag {node.tag!r} is not allowed in a rule file; use plain"
                " mappings, lists, text and numbers",
            )
        children = _children(node)
        if not children_done:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        sizes[id(node)] = 1 + sum(sizes.get(id(child), 1) for child in children)
        if sizes[id(node)] > MAX_EXPANDED_NODES:
            raise _reject(
                path,
                node,
                f"the document expands to more than {MAX_EXPANDED_NODES:,} values through"
                " aliases (*name); that is not a rule file (alias bomb?)",
            )
    _check_duplicate_keys(root, path)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_duplicate_keys(root: Node, path: str) -> None:
    seen_nodes: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, MappingNode):
            keys: dict[str, Node] = {}
            for key, _ in node.value:
                text = str(key.value) if isinstance(key, ScalarNode) else repr(key)
                if text in keys:
                    first, _ = where(keys[text])
                    raise _reject(path, key, f"key {text!r} given twice (first on line {first})")
                keys[text] = key
        stack.extend(_children(node))


_SCALARS = yaml.SafeLoader("")


def scalar(node: ScalarNode) -> Any:
    """The Python value of a plain scalar (str, int, float, bool or None)."""
    return _SCALARS.construct_object(node)


def key_text(node: Node) -> str:
    """Mapping keys are names: YAML's bare ``null:`` or ``yes:`` keys stay names."""
    return str(node.value) if isinstance(node, ScalarNode) else ""


def to_python(node: Node) -> Any:
    """Plain Python values (dict, list, scalars) of a checked document."""
    if isinstance(node, MappingNode):
        return {key_text(k): to_python(v) for k, v in node.value}
    if isinstance(node, SequenceNode):
        return [to_python(item) for item in node.value]
    return scalar(node)  # type: ignore[arg-type]

"""Content hashes, written ``sha256:<hex>`` everywhere (assets, weights, rule sets)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

_CHUNK = 8 * 1024 * 1024
PREFIX = "sha256:"


def update_from_file(digest: Any, path: Path) -> None:
    """Feed a file's bytes to ``digest`` in chunks (trailers and weights run to GBs)."""
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    update_from_file(digest, Path(path))
    return PREFIX + digest.hexdigest()


def text_sha256(text: str) -> str:
    return PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()


def text_matches(text: str, digest: str) -> bool:
    """Whether ``text`` is the text ``digest`` names (a stored rule set checked against
    the hash its decisions cite: False means it was edited after they were made)."""
    return text_sha256(text) == digest

"""Prompt embeddings kept on disk, and a text tower loaded only when a prompt is new.

A nightly job asks the same few dozen prompts every night: their embeddings depend only
on the weights, the device and the dtype, so they are kept in the user's cache (one small
JSON file per model, device and dtype) and a process whose prompts are all known never
imports transformers or loads the text tower. With the image tower's OpenVINO conversion
cached too (openvino_tower.py), such a process reaches its first frame in about a second.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

KEPT_PROMPTS = 4096  # per model, device and dtype: the newest are kept


class PromptStore:
    """Unit prompt embeddings of one model on one device in one dtype."""

    def __init__(self, root: Path, weights_sha256: str, device: str, dtype: str) -> None:
        digest = weights_sha256.removeprefix("sha256:")[:24]
        self.path = root / "prompts" / f"{digest}-{device}-{dtype}.json"

    def load(self) -> dict[str, np.ndarray]:
        """What is kept (nothing, where the file is missing or damaged)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {str(p): np.asarray(v, dtype=np.float32) for p, v in data.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            return {}

    def save(self, embeddings: dict[str, np.ndarray]) -> None:
        """Keep these beside what is there (best effort: a cache is worth no failure)."""
        if not embeddings:
            return
        kept = {p: v.tolist() for p, v in self.load().items()}
        kept.update({p: np.asarray(v, dtype=np.float32).tolist() for p, v in embeddings.items()})
        kept = dict(list(kept.items())[-KEPT_PROMPTS:])
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(kept), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("prompt embeddings could not be kept in %s: %s", self.path, exc)
            tmp.unlink(missing_ok=True)


class Encoder(Protocol):
    embed_dim: int

    def embed_texts(self, prompts: list[str], *, keep: bool = True) -> np.ndarray: ...


class DeferredTextEncoder:
    """Prompt embeddings from the store; the text tower (``load()``) only for a prompt
    the store does not have, loaded once, its answers kept."""

    def __init__(self, store: PromptStore, embed_dim: int, load: Callable[[], Encoder]) -> None:
        self.store = store
        self.embed_dim = embed_dim
        self._load = load
        self._encoder: Encoder | None = None
        self._known = store.load()
        self._lock = threading.Lock()  # the service's threads share one encoder

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def embed_texts(self, prompts: list[str], *, keep: bool = True) -> np.ndarray:
        """``keep``: store new prompts for later processes (rule sets' prompts); a
        search or question typed by a user is embedded but not written down."""
        with self._lock:
            missing = [p for p in dict.fromkeys(prompts) if p not in self._known]
            if missing:
                if self._encoder is None:
                    self._encoder = self._load()
                fresh = dict(zip(missing, self._encoder.embed_texts(missing), strict=True))
                self._known.update(fresh)
                if keep:
                    self.store.save(fresh)
            if not prompts:
                return np.zeros((0, self.embed_dim), dtype=np.float32)
            return np.stack([self._known[p] for p in prompts])

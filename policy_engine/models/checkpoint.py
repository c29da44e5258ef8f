"""Finding a CLIP checkpoint on disk and fingerprinting its weights.

A model is named either by a local directory (any CLIP checkpoint saved with
``save_pretrained``) or by a Hugging Face hub id such as ``openai/clip-vit-base-patch32``,
which is fetched once into the local Hugging Face cache. Either way the model is then
loaded from a local directory with ``from_pretrained``: one code path for production
weights and for the tiny test checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from policy_engine.errors import ModelError, ModelNotAvailableError
from policy_engine.hashing import PREFIX, update_from_file

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
_HUB_FILES = ["*.json", "*.txt"]
_HASH_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "policy_engine"


@dataclass(frozen=True)
class Checkpoint:
    name: str  # what was asked for: a hub id or a path
    path: Path  # local directory that from_pretrained reads
    revision: str | None  # hub commit, when it came from the hub cache

    def weight_files(self) -> list[Path]:
        files = sorted({f for pattern in _WEIGHT_PATTERNS for f in self.path.glob(pattern)})
        safetensors = [f for f in files if f.suffix == ".safetensors"]
        return safetensors or files  # from_pretrained prefers safetensors too


def resolve_checkpoint(ref: str) -> Checkpoint:
    """A local directory for ``ref``; downloads a hub id only if it is not cached."""
    local = Path(ref).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelError(
                f"{local} is a folder but not a model checkpoint (no config.json). Point"
                " --model at a folder written by CLIPModel.save_pretrained, or at a hub id."
            )
        return Checkpoint(name=ref, path=local.resolve(), revision=None)
    if local.exists() or ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise ModelError(f"--model {ref!r}: no such checkpoint folder")
    return _from_hub(ref)


def _from_hub(repo_id: str) -> Checkpoint:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(repo_id, allow_patterns=[*_HUB_FILES, "*.safetensors"]))
        if not Checkpoint(repo_id, path, None).weight_files():  # older repos: .bin only
            path = Path(snapshot_download(repo_id, allow_patterns=[*_HUB_FILES, "*.bin"]))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
        raise ModelNotAvailableError(_not_available_message(repo_id, exc)) from exc
    return Checkpoint(name=repo_id, path=path, revision=path.name)


def _not_available_message(repo_id: str, exc: BaseException) -> str:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return (
        f"model {repo_id!r} is not in the local Hugging Face cache and could not be"
        f" downloaded ({reason}).\n"
        "  To provide it: on a machine with internet access run\n"
        f'    python -c "from transformers import CLIPModel, CLIPProcessor as P;'
        f" m='{repo_id}'; CLIPModel.from_pretrained(m).save_pretrained('clip');"
        f" P.from_pretrained(m).save_pretrained('clip')\"\n"
        "  copy the 'clip' folder here and pass --model /path/to/clip (or set"
        " POLICY_ENGINE_MODEL).\n"
        "  To try the engine offline without real weights: policy-engine model make-tiny DIR,"
        " then --model DIR."
    )


def weights_sha256(checkpoint: Checkpoint) -> str:
    """SHA-256 over the weight files (names and bytes, in name order), cached on disk
    by (path, size, mtime) so that a nightly run does not re-read 600 MB each time."""
    files = checkpoint.weight_files()
    if not files:
        raise ModelError(
            f"{checkpoint.path} holds no weights (no *.safetensors or pytorch_model*.bin)"
        )
    return files_sha256(files)


def files_sha256(files: list[Path]) -> str:
    """SHA-256 over files (names and bytes, in the order given), cached like
    weights_sha256's."""
    key = "|".join(f"{f.resolve()}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    cache = _load_hash_cache()
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        update_from_file(digest, f)
    value = PREFIX + digest.hexdigest()
    cache[key] = value
    _store_hash_cache(cache)
    return value


def cache_root() -> Path:
    """This user's cache of derived files: weight hashes, converted models."""
    return _HASH_CACHE


def _hash_cache_file() -> Path:
    return _HASH_CACHE / "weight-hashes.json"


def _load_hash_cache() -> dict[str, str]:
    try:
        data = json.loads(_hash_cache_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _store_hash_cache(cache: dict[str, str]) -> None:
    try:  # a read-only home must not stop a scan: the hash is just recomputed next time
        _HASH_CACHE.mkdir(parents=True, exist_ok=True)
        tmp = _hash_cache_file().with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(list(cache.items())[-256:]), indent=0))
        tmp.replace(_hash_cache_file())
    except OSError:
        pass

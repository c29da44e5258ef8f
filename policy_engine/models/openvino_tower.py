"""The image tower on OpenVINO, Intel's inference runtime, where it beats torch on the CPU.

Measured in ``make bench`` (ViT-B/32, this 2-core AVX-512 machine): OpenVINO bf16 runs the
image tower 15-35% faster than torch bf16, and fp32 about twice as fast as torch fp32,
with embeddings within cosine 0.9999 of torch fp32. The text tower stays on torch: it
runs once per prompt.

The torch tower is converted once per weights, image size and OpenVINO version and kept
on disk (``<cache>/openvino/<key>/``), written to a temporary folder and renamed into
place, so that a crash never leaves half a model behind for the next process; a cached
model that does not load (a truncated file, a disk error) is converted again.

``openvino`` is imported here only, lazily: a machine without it runs torch.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from policy_engine.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

RUNTIME_CHOICES = ("auto", "torch", "openvino")
# What a cached conversion depends on beyond weights, size and OpenVINO: how it is made
# here (bump on a change to the traced module or meta.json) and the transformers that traced it.
CACHE_FORMAT = 1
_STALE_STAGING_S = 3600  # a half-written conversion this old is a dead process's: removed
_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}  # dtype -> INFERENCE_PRECISION_HINT


@functools.cache
def openvino_installed() -> bool:
    """Whether openvino imports (not only whether it is there: a broken install is not)."""
    if importlib.util.find_spec("openvino") is None:
        return False
    try:
        importlib.import_module("openvino")
    except Exception as exc:  # noqa: BLE001 - any failure to import means: not usable
        log.warning("openvino is installed but does not import (%s): torch runs the tower", exc)
        return False
    return True


def resolve_runtime(asked: str, device_used: str, dtype: str) -> str:
    """``torch`` or ``openvino``. ``auto``: OpenVINO for the CPU where it is installed
    and runs the dtype (fp32, bf16), else torch; accelerators keep torch."""
    asked = (asked or "auto").lower()
    if asked not in RUNTIME_CHOICES:
        raise ConfigError(f"unknown runtime {asked!r}; choose one of: {', '.join(RUNTIME_CHOICES)}")
    if asked == "torch":
        return "torch"
    usable = device_used == "cpu" and dtype in _PRECISIONS and openvino_installed()
    if asked == "auto":
        return "openvino" if usable else "torch"
    if device_used != "cpu":
        raise ConfigError(
            f"runtime openvino runs the image tower on the CPU, but the device is"
            f" {device_used}; use --runtime torch (or auto) there, or --device cpu"
        )
    if dtype not in _PRECISIONS:
        raise ConfigError(f"runtime openvino runs fp32 or bf16, not {dtype}; pick --dtype bf16")
    if not openvino_installed():
        raise ModelError(
            "runtime openvino asked for, but the openvino package is not installed:"
            " pip install openvino (or use --runtime torch)"
        )
    return "openvino"


def openvino_version() -> str:
    import openvino

    return str(openvino.__version__).split("-")[0]


def cache_folder(root: Path, weights_sha256: str, image_size: int) -> Path:
    """Where the converted tower of these weights lives, per OpenVINO and transformers
    version and cache format."""
    from importlib.metadata import version

    digest = weights_sha256.removeprefix("sha256:")[:24]
    made = f"ov{openvino_version()}-tf{version('transformers')}-f{CACHE_FORMAT}"
    return root / "openvino" / f"{digest}-{image_size}px-{made}"


class OpenVinoImageTower:
    """(N, 3, S, S) normalised float32 pixels -> (N, D) float32 features."""

    def __init__(self, compiled: Any, folder: Path, precision: str) -> None:
        self._compiled = compiled
        self.folder = folder
        self.precision = precision
        self.version = openvino_version()
        # a compiled model's __call__ reuses one infer request: one caller at a time (the
        # service's threads share the embedder)
        self._lock = threading.Lock()

    def execution(self) -> dict[str, Any]:
        """The threads and policies it runs with, as compiled (recorded with each scan)."""
        found: dict[str, Any] = {}
        for name in ("INFERENCE_NUM_THREADS", "PERFORMANCE_HINT", "ENABLE_CPU_PINNING",
                     "NUM_STREAMS", "INFERENCE_PRECISION_HINT"):  # fmt: skip
            try:
                found[name.lower()] = str(self._compiled.get_property(name))
            except Exception:  # noqa: BLE001 - a property this version does not report
                continue
        return found

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        with self._lock:
            return np.asarray(self._compiled([pixels])[0], dtype=np.float32)

    @classmethod
    def cached(
        cls, *, image_size: int, weights_sha256: str, dtype: str, cache_root: Path
    ) -> tuple[OpenVinoImageTower, dict[str, Any]] | None:
        """The cached conversion and what was recorded with it (logit scale, embedding
        size), without torch or transformers; None where there is none or it is damaged
        (then it is removed, to be converted again)."""
        import openvino

        folder = cache_folder(cache_root, weights_sha256, image_size)
        if not (folder / "tower.xml").is_file():
            return None
        core = openvino.Core()
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            float(meta["logit_scale"])
            model = core.read_model(folder / "tower.xml")
            if model.outputs[0].get_partial_shape()[-1].get_length() != int(meta["embed_dim"]):
                raise ValueError("its output size is not the one recorded with it")
        except Exception as exc:  # noqa: BLE001 - any damage to the cache: convert again
            log.warning("the converted model in %s does not load (%s): converting", folder, exc)
            shutil.rmtree(folder, ignore_errors=True)
            return None
        return cls(_compile(core, model, dtype), folder, _PRECISIONS[dtype]), meta

    @classmethod
    def load(
        cls,
        tower: Any,
        *,
        image_size: int,
        weights_sha256: str,
        dtype: str,
        cache_root: Path,
        meta: dict[str, Any],
    ) -> OpenVinoImageTower:
        """The cached conversion of ``tower`` (a torch module), converted first where
        there is none or the cached one does not load; ``meta`` is kept beside it. A cache
        that cannot be written (a full disk, a read-only home) costs the conversion each
        time, no more."""
        import openvino

        found = cls.cached(
            image_size=image_size, weights_sha256=weights_sha256, dtype=dtype,
            cache_root=cache_root,
        )  # fmt: skip
        if found is not None:
            return found[0]
        folder = cache_folder(cache_root, weights_sha256, image_size)
        model = _convert(tower, image_size)
        _keep(model, folder, meta)
        return cls(_compile(openvino.Core(), model, dtype), folder, _PRECISIONS[dtype])


def _compile(core: Any, model: Any, dtype: str) -> Any:
    try:
        return core.compile_model(model, "CPU", _config(dtype))
    except Exception as exc:  # a CPU or memory limit, not a damaged cache: say what to do
        raise ModelError(
            f"OpenVINO could not compile the image tower in {dtype} on this CPU ({exc});"
            " use --runtime torch, or another --dtype"
        ) from exc


def _config(dtype: str) -> dict[str, Any]:
    """How the tower is compiled. Latency (one stream, every core on one batch), and no
    pinning of its threads to cores: the decoder thread shares the two cores, and a 2 fps
    scan of 720p took 2.85 s unpinned against 2.94 s pinned (3 rounds each, medians).
    A process that its scheduler gave fewer cores says so in OMP_NUM_THREADS (Ray sets it
    to each actor's CPUs): OpenVINO, which does not read it, is held to it too, or two
    actors on two cores would each run two threads."""
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": _PRECISIONS[dtype],
        "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False,
    }
    threads = os.environ.get("OMP_NUM_THREADS", "").strip()
    if threads.isdigit() and int(threads) > 0:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def _convert(tower: Any, image_size: int) -> Any:
    """The torch tower as an OpenVINO model taking any batch size."""
    import openvino
    import torch

    example = torch.zeros((1, 3, image_size, image_size), dtype=torch.float32)
    try:
        # the converter traces the module (torch.jit.trace, deprecated in torch but what it
        # uses), which warns about Python-level shape checks: the input size is fixed here
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            return openvino.convert_model(
                tower.float().eval(), example_input=example,
                input=[(-1, 3, image_size, image_size)],
            )  # fmt: skip
    except Exception as exc:
        raise ModelError(
            f"could not convert the image tower for OpenVINO: {exc}; use --runtime torch"
        ) from exc


def _keep(model: Any, folder: Path, meta: dict[str, Any]) -> None:
    """Save the conversion and ``meta`` into ``folder`` whole (a temporary folder renamed
    into place), or not at all."""
    import openvino

    staging = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        _sweep(folder)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        # full-precision weights: the precision is chosen when compiling
        openvino.save_model(model, staging / "tower.xml", compress_to_fp16=False)
        (staging / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        os.replace(staging, folder)
    except Exception as exc:  # noqa: BLE001 - a cache is worth a warning, not a failed run
        if not (folder / "tower.xml").is_file():  # (else another process put one there)
            log.warning("the converted model could not be kept in %s: %s", folder, exc)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _sweep(folder: Path) -> None:
    """Remove what a killed conversion left: an old staging folder of this key, and the
    key's folder itself where it holds no model (a rename could never replace it)."""
    now = time.time()
    for staging in folder.parent.glob(f".{folder.name}.*"):
        try:
            if now - staging.stat().st_mtime > _STALE_STAGING_S:
                shutil.rmtree(staging, ignore_errors=True)
        except OSError:
            continue
    if folder.is_dir() and not (folder / "tower.xml").is_file():
        shutil.rmtree(folder, ignore_errors=True)

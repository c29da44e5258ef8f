"""Models loaded only when needed: the configured checkpoint's identity without loading
it, the full embedder for new scans, and text towers for re-scoring stored embeddings.

A batch where every file was scanned before never loads the image tower; re-evaluation
loads at most a text tower, and only when a prompt changed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from policy_engine.errors import ModelError
from policy_engine.models.checkpoint import Checkpoint, resolve_checkpoint, weights_sha256

if TYPE_CHECKING:
    from policy_engine.analysis.detections import DetectorSpec


class PromptEncoder(Protocol):
    def embed_texts(self, prompts: list[str], *, keep: bool = True) -> np.ndarray: ...


@dataclass(frozen=True)
class CheckpointIdentity:
    name: str
    path: str
    revision: str | None
    weights_sha256: str


class ModelProvider:
    """The configured model (name or folder), its device and dtype, loaded lazily. Safe
    to share between threads (the service's): what is loaded is loaded once, by the
    first thread that needs it, while the others wait for it."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 32,
        while_loading: Callable[[str], AbstractContextManager[object]] | None = None,
        runtime: str = "auto",
        xclip_model: str = "microsoft/xclip-base-patch32",
    ) -> None:
        """``while_loading(what)`` is entered around each real load (reading the
        checkpoint, loading the image model): a terminal shows it, the ingest marks it so
        that a death then does not count against the file in hand."""
        self.model = model
        self._while_loading = while_loading or (lambda what: nullcontext())
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.runtime = runtime  # of the image tower: auto | torch | openvino
        self._runtime_family: str | None = None
        self._checkpoint: Checkpoint | None = None
        self._identity: CheckpointIdentity | None = None
        self._embedder = None
        self._text_encoders: dict[str, PromptEncoder] = {}
        self._detectors: dict[str, Any] = {}  # by model name: models.detector.OnnxDetector
        self.xclip_model = xclip_model
        self._xclip: Any = None  # models.xclip.XClipScorer, loaded when first needed
        self._xclip_weights: str | None = None
        # One load at a time: concurrent first requests would each load the same model
        # (and importing transformers from two threads at once can fail outright).
        self._loading = threading.RLock()

    @classmethod
    def from_settings(
        cls,
        settings: Any,
        *,
        while_loading: Callable[[str], AbstractContextManager[object]] | None = None,
    ) -> ModelProvider:
        """The model the engine's settings name (model, device, dtype, runtime, batch)."""
        return cls(
            settings.model,
            device=settings.device,
            dtype=settings.dtype,
            runtime=settings.runtime,
            batch_size=settings.batch_size,
            while_loading=while_loading,
            xclip_model=getattr(settings, "xclip_model", "microsoft/xclip-base-patch32"),
        )

    def checkpoint(self) -> CheckpointIdentity:
        """Name, folder and weights hash of the configured model (reads files, loads no
        weights into memory; the hash is cached on disk)."""
        if self._identity is None:
            with self._loading:
                if self._identity is None:
                    self._identity = self._read_identity()
        return self._identity

    def _read_identity(self) -> CheckpointIdentity:
        with self._while_loading(f"reading model {self.model} …"):
            self._checkpoint = resolve_checkpoint(self.model)
            return CheckpointIdentity(
                name=self._checkpoint.name,
                path=str(self._checkpoint.path),
                revision=self._checkpoint.revision,
                weights_sha256=weights_sha256(self._checkpoint),
            )

    @property
    def embedder_loaded(self) -> bool:
        return self._embedder is not None

    def embedder(self):  # type: ignore[no-untyped-def]  # -> ClipEmbedder (imports torch)
        if self._embedder is None:
            from policy_engine.models.clip import ClipEmbedder

            with self._loading:
                if self._embedder is None:
                    with self._while_loading(f"loading model {self.model} …"):
                        self._embedder = ClipEmbedder.load(
                            self.model, device=self.device, dtype=self.dtype,
                            batch_size=self.batch_size, runtime=self.runtime,
                        )  # fmt: skip
        return self._embedder

    def detectors(self, specs: Sequence[DetectorSpec]) -> dict[str, Any]:
        """The detectors the specs name, by model name, each loaded once (NudeNet's from
        its wheel, any other from its .onnx file); a missing one raises ModelError saying
        how to get it."""
        with self._loading:
            for spec in specs:
                if spec.model not in self._detectors:
                    with self._while_loading(f"loading detector {spec.model} …"):
                        self._detectors[spec.model] = _load_detector(spec)
        return {s.model: self._detectors[s.model] for s in specs}

    def xclip_weights(self) -> str:
        """The configured X-CLIP checkpoint's weights hash, without loading it (read once);
        a missing checkpoint raises ModelError saying how to provide one."""
        if self._xclip is not None:
            return str(self._xclip.identity.weights_sha256)
        if self._xclip_weights is None:
            with self._while_loading(f"reading X-CLIP model {self.xclip_model} …"):
                self._xclip_weights = weights_sha256(self._xclip_checkpoint())
        return self._xclip_weights

    def _xclip_checkpoint(self) -> Checkpoint:
        try:
            return resolve_checkpoint(self.xclip_model)
        except ModelError as exc:
            raise ModelError(
                f"the X-CLIP model for categories with 'model: xclip' is not available"
                f" ({self.xclip_model}): set xclip_model (settings file or"
                " POLICY_ENGINE_XCLIP_MODEL) to a folder written by"
                " XCLIPModel.save_pretrained and XCLIPProcessor.save_pretrained, or to a hub"
                " id already in the local cache; or take the X-CLIP categories out of the"
                f" rule sets. ({exc})"
            ) from exc

    def xclip(self) -> Any:  # -> models.xclip.XClipScorer (imports torch)
        """The configured X-CLIP checkpoint, loaded once."""
        if self._xclip is None:
            from policy_engine.models.device import select_device
            from policy_engine.models.runtime import make_runtime
            from policy_engine.models.xclip import XClipScorer

            with self._loading:
                if self._xclip is None:
                    with self._while_loading(f"loading X-CLIP model {self.xclip_model} …"):
                        self._xclip = XClipScorer(
                            self._xclip_checkpoint(),
                            make_runtime(select_device(self.device), self.dtype),
                        )
        return self._xclip

    def runtime_family(self) -> str:
        """``torch`` or ``openvino``: what would run the image tower, without loading it
        (a stored scan made by the other is not reused as if it were the same)."""
        if self._embedder is not None:
            return self._embedder.identity.runtime.split()[0]
        from policy_engine.models.openvino_tower import openvino_installed

        if self.runtime.lower() == "torch" or not openvino_installed():
            return "torch"  # (an explicit openvino that is missing fails when loading)
        if self._runtime_family is None:
            from policy_engine.models.device import select_device
            from policy_engine.models.openvino_tower import resolve_runtime
            from policy_engine.models.runtime import resolve_dtype

            used = select_device(self.device).used
            self._runtime_family = resolve_runtime(
                self.runtime, used, resolve_dtype(self.dtype, used)
            )
        return self._runtime_family

    def prompt_encoder(self, weights: str, model_name: str, model_path: str) -> PromptEncoder:
        """A text encoder with exactly these weights: the loaded embedder, else the
        configured checkpoint's text tower, else the one at the path the scan recorded."""
        if weights in self._text_encoders:
            return self._text_encoders[weights]
        with self._loading:
            return self._load_prompt_encoder(weights, model_name, model_path)

    def _load_prompt_encoder(self, weights: str, model_name: str, model_path: str) -> PromptEncoder:
        if weights in self._text_encoders:  # loaded by another thread while this one waited
            return self._text_encoders[weights]
        if self._embedder is not None and self._embedder.identity.weights_sha256 == weights:
            return self._embedder
        candidates = [self.model]
        if model_path not in candidates and Path(model_path).is_dir():
            candidates.append(model_path)
        for candidate in candidates:
            try:
                found = resolve_checkpoint(candidate)
            except ModelError:
                continue
            if weights_sha256(found) == weights:
                from policy_engine.models.clip import load_text_encoder

                encoder = load_text_encoder(
                    str(found.path),
                    device=self.device,
                    dtype=self.dtype,
                    batch_size=self.batch_size,
                )
                self._text_encoders[weights] = encoder
                return encoder
        raise ModelError(
            f"stored frames were embedded by {model_name} (weights {weights[:19]}…), which is"
            f" neither the configured model ({self.model}) nor still at {model_path}; new"
            " prompts cannot be scored against them. Give that checkpoint with --model, or"
            " rescan with `policy-engine scan --force`."
        )


def _load_detector(spec: DetectorSpec) -> Any:
    from policy_engine.analysis.detections import NUDENET
    from policy_engine.models.detector import OnnxDetector, load_nudenet

    if spec.model == NUDENET:
        return load_nudenet()
    return OnnxDetector.load(
        spec.model_path or spec.model, spec.model_classes or None, name=spec.model
    )

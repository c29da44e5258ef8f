"""X-CLIP: zero-shot scores for windows of video (actions that exist only over time).

transformers' ``XCLIPModel`` (production checkpoint ``microsoft/xclip-base-patch32``, a hub
id or a local folder like CLIP's). Unlike CLIP, its text embeddings depend on the video: a
prompt generator conditions each prompt on the window's frames. So the text side cannot be
cached whole as CLIP's is; what is cached is the text encoder's output per prompt, and each
window runs only the conditioning (a small cross-attention) on it. The result equals
``XCLIPModel.forward``'s ``logits_per_video`` (tested).

Each window must hold exactly the number of frames the checkpoint was made for
(``vision_config.num_frames``: 8 for the base checkpoints); ``fit_frames`` resamples any
other count uniformly (microsoft/VideoX#93: a wrong count fails or silently misreads).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from policy_engine.models.checkpoint import Checkpoint, resolve_checkpoint
from policy_engine.models.clip import ModelIdentity, model_identity, quiet_transformers
from policy_engine.models.device import select_device
from policy_engine.models.runtime import Runtime, make_runtime


@dataclass(frozen=True)
class XClipIdentity(ModelIdentity):
    frames: int = 8  # frames per window the checkpoint's cross-frame layers are sized for


def fit_frames(frames: Sequence[Any], count: int) -> list[Any]:
    """Exactly `count` of `frames`, picked uniformly (repeats where there are fewer)."""
    if not frames:
        raise ValueError("a window needs at least one frame")
    picks = np.floor((np.arange(count) + 0.5) * len(frames) / count).astype(int)
    return [frames[i] for i in picks]


class XClipScorer:
    """One X-CLIP checkpoint on one device: logits of prompts against windows of frames."""

    def __init__(self, checkpoint: Checkpoint, runtime: Runtime) -> None:
        from transformers import XCLIPModel, XCLIPProcessor

        quiet_transformers()
        model = XCLIPModel.from_pretrained(checkpoint.path)
        self.processor = XCLIPProcessor.from_pretrained(checkpoint.path)
        self.runtime = runtime
        self.model: Any = runtime.place(model.eval())  # transformers types its parts loosely
        config: Any = model.config
        self.frames_per_window = int(config.vision_config.num_frames)
        common = model_identity(
            checkpoint, runtime, int(config.vision_config.image_size), int(config.projection_dim)
        )
        self.identity = XClipIdentity(**common.as_dict(), frames=self.frames_per_window)
        self._text: dict[str, torch.Tensor] = {}  # the text encoder's output per prompt

    @classmethod
    def load(cls, model: str, *, device: str = "auto", dtype: str = "auto") -> XClipScorer:
        """``model``: a hub id (from the local cache when offline) or a checkpoint folder;
        a missing one raises ModelError saying how to provide it."""
        return cls(resolve_checkpoint(model), make_runtime(select_device(device), dtype))

    def pixels(self, windows: Sequence[Sequence[np.ndarray]]) -> torch.Tensor:
        """The model's input (W, T, 3, S, S) from windows of uint8 RGB pictures (any
        count each: fitted to T), through the checkpoint's own image processor."""
        fitted = [fit_frames(list(w), self.frames_per_window) for w in windows]
        flat = [picture for window in fitted for picture in window]
        values = self.processor.image_processor(flat, return_tensors="pt")["pixel_values"]
        return values.reshape(len(fitted), self.frames_per_window, *values.shape[-3:])

    def text_features(self, prompts: Sequence[str]) -> torch.Tensor:
        """(P, D) projected text embeddings before conditioning, each prompt encoded once."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text]
        if missing:
            tokens = self.processor.tokenizer(
                missing, padding=True, truncation=True, return_tensors="pt"
            ).to(self.runtime.torch_device)
            with torch.inference_mode(), self.runtime.autocast():
                output = self.model.text_model(
                    input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
                )
                features = self.model.text_projection(output.pooler_output)
            for prompt, row in zip(missing, features.float(), strict=True):
                self._text[prompt] = row
        return torch.stack([self._text[p] for p in prompts])

    def logits(self, pixel_values: torch.Tensor, prompts: Sequence[str]) -> np.ndarray:
        """(W, P) logits of each prompt for each window: XCLIPModel.forward's video side
        and its conditioning of the cached text features."""
        windows, frames = pixel_values.shape[:2]
        if frames != self.frames_per_window:
            raise ValueError(
                f"windows of {frames} frames: this checkpoint takes {self.frames_per_window}"
                " (use pixels(), which fits each window)"
            )
        model = self.model
        text = self.text_features(prompts)
        with torch.inference_mode(), self.runtime.autocast():
            flat = pixel_values.to(self.runtime.torch_device).flatten(0, 1)
            vision = model.vision_model(pixel_values=flat)
            frame_embeds = model.visual_projection(vision.pooler_output)
            video = model.mit(frame_embeds.view(windows, frames, -1)).pooler_output
            patches = model.prompts_visual_layernorm(vision.last_hidden_state[:, 1:, :])
            patches = patches @ model.prompts_visual_projection
            patches = patches.view(windows, frames, -1, video.shape[-1]).mean(dim=1)
            text = text.to(video.dtype).unsqueeze(0).expand(windows, -1, -1)
            text = text + model.prompts_generator(text, patches)
            video = video / video.norm(p=2, dim=-1, keepdim=True)
            text = text / text.norm(p=2, dim=-1, keepdim=True)
            logits = torch.einsum("bd,bkd->bk", video, model.logit_scale.exp() * text)
        self.runtime.step()
        return logits.float().cpu().numpy()

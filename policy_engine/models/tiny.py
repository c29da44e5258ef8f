"""A tiny CLIP checkpoint, written to disk, for offline tests, demos and CI.

Random weights (its labels mean nothing) but a real checkpoint: config, safetensors
weights, a real byte-level BPE tokenizer built locally, and a preprocessor config, all
loaded back through the same ``from_pretrained`` path as ``openai/clip-vit-base-patch32``.
Nothing here touches the network.
"""

from __future__ import annotations

import json
from pathlib import Path

# A handful of merges so the tokenizer really is BPE, not just bytes.
_MERGES = ("t h", "th e", "i n", "e r", "a n", "o n", "r e", "p e", "o p", "l e")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character map."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def _vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    symbols = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in [*symbols, *(s + "</w>" for s in symbols)]:
        vocab[token] = len(vocab)
    merges: list[str] = []
    for merge in _MERGES:
        left, right = merge.split()
        for suffix in ("", "</w>"):
            merges.append(f"{left} {right}{suffix}")
            vocab.setdefault(left + right + suffix, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def make_tiny_clip(
    directory: str | Path,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    projection_dim: int = 16,
    layers: int = 2,
    seed: int = 0,
) -> Path:
    """Write a tiny CLIP checkpoint to ``directory`` and return its path."""
    import torch
    from transformers import CLIPConfig, CLIPModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    directory = Path(directory)
    vocab = _write_tokenizer(directory)
    config = CLIPConfig(
        text_config=_text_config(vocab, hidden_size, layers),
        vision_config=_vision_config(hidden_size, layers, image_size, patch_size),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "CLIPImageProcessor",
                "crop_size": {"height": image_size, "width": image_size},
                "size": {"shortest_edge": image_size},
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711],
                "do_center_crop": True,
                "do_normalize": True,
                "do_resize": True,
                "resample": 3,
            },
            indent=2,
        )
    )
    return directory


def make_tiny_xclip(
    directory: str | Path,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    projection_dim: int = 16,
    layers: int = 2,
    frames: int = 8,
    seed: int = 0,
) -> Path:
    """Write a tiny X-CLIP checkpoint to ``directory`` (the layout of
    ``microsoft/xclip-base-patch32``: CLIP's tokenizer, VideoMAE's image processor) and
    return its path. ``frames`` is what its cross-frame layers are sized for."""
    import torch
    from transformers import XCLIPConfig, XCLIPModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    directory = Path(directory)
    vocab = _write_tokenizer(directory)
    config = XCLIPConfig(
        text_config=_text_config(vocab, hidden_size, layers),
        vision_config={
            **_vision_config(hidden_size, layers, image_size, patch_size),
            "num_frames": frames,
            "mit_hidden_size": projection_dim,
            "mit_intermediate_size": projection_dim * 2,
            "mit_num_hidden_layers": 1,
            "mit_num_attention_heads": 2,
        },
        projection_dim=projection_dim,
        prompt_layers=1,
        prompt_num_attention_heads=2,
    )
    torch.manual_seed(seed)
    XCLIPModel(config).save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "VideoMAEImageProcessor",
                "processor_class": "XCLIPProcessor",
                "crop_size": {"height": image_size, "width": image_size},
                "size": {"shortest_edge": image_size},
                "image_mean": [0.485, 0.456, 0.406],
                "image_std": [0.229, 0.224, 0.225],
                "do_center_crop": True,
                "do_normalize": True,
                "do_resize": True,
                "resample": 2,
            },
            indent=2,
        )
    )
    return directory


def _write_tokenizer(directory: Path) -> dict[str, int]:
    """CLIP's byte-level BPE tokenizer, built locally, saved into ``directory``."""
    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = _vocab_and_merges()
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77})
    )
    CLIPTokenizer.from_pretrained(directory).save_pretrained(directory)
    return vocab


def _text_config(vocab: dict[str, int], hidden_size: int, layers: int) -> dict[str, int]:
    return {
        "vocab_size": len(vocab),
        "hidden_size": hidden_size,
        "intermediate_size": hidden_size * 2,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
        "max_position_embeddings": 77,
        "pad_token_id": vocab["<|endoftext|>"],
        "bos_token_id": vocab["<|startoftext|>"],
        "eos_token_id": vocab["<|endoftext|>"],
    }


def _vision_config(
    hidden_size: int, layers: int, image_size: int, patch_size: int
) -> dict[str, int]:
    return {
        "hidden_size": hidden_size,
        "intermediate_size": hidden_size * 2,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
        "image_size": image_size,
        "patch_size": patch_size,
    }

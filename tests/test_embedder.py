"""The CLIP embedder on a tiny checkpoint loaded through from_pretrained (offline)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from policy_engine.errors import DeviceUnavailableError, ModelError, ModelNotAvailableError
from policy_engine.models.checkpoint import resolve_checkpoint, weights_sha256
from policy_engine.models.clip import ClipEmbedder
from policy_engine.models.device import DeviceProbes


@pytest.fixture(scope="module")
def embedder(tiny_clip_dir: Path) -> ClipEmbedder:
    # the torch tower: these tests look inside it (test_openvino.py: the other runtime)
    return ClipEmbedder.load(
        str(tiny_clip_dir), device="cpu", dtype="fp32", batch_size=4, runtime="torch"
    )


def test_identity_records_what_an_audit_needs(embedder: ClipEmbedder, tiny_clip_dir: Path) -> None:
    ident = embedder.identity
    assert ident.path == str(tiny_clip_dir.resolve())
    assert ident.weights_sha256.startswith("sha256:") and len(ident.weights_sha256) == 71
    assert (ident.device_asked, ident.device_used, ident.dtype) == ("cpu", "cpu", "fp32")
    assert (ident.image_size, ident.embed_dim) == (32, 16)


def test_image_embeddings_are_unit_vectors_and_batching_is_invisible(
    embedder: ClipEmbedder,
) -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (9, 32, 32, 3), dtype=np.uint8)
    batched = embedder.embed_images(pixels)
    single = np.concatenate([embedder.embed_images(pixels[i : i + 1]) for i in range(9)])
    assert batched.shape == (9, 16) and batched.dtype == np.float32
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert np.allclose(batched, single, atol=1e-5)


def test_fused_normalisation_matches_the_reference_formula(embedder: ClipEmbedder) -> None:
    pixels = np.random.default_rng(2).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    mean = np.array(embedder.image_input.mean).reshape(1, 3, 1, 1)
    std = np.array(embedder.image_input.std).reshape(1, 3, 1, 1)
    reference = (pixels.transpose(0, 3, 1, 2) / 255.0 - mean) / std
    with torch.inference_mode():
        expected = embedder.image_tower(torch.from_numpy(reference).float())
    expected = (expected / expected.norm(dim=-1, keepdim=True)).numpy()
    assert np.allclose(embedder.embed_images(pixels), expected, atol=1e-5)


def test_text_embeddings_cached_per_prompt(embedder: ClipEmbedder, monkeypatch) -> None:
    first = embedder.embed_texts(["people fighting", "a laptop screen"])
    calls: list[list[str]] = []
    original = embedder.text._encode
    monkeypatch.setattr(embedder.text, "_encode", lambda p: calls.append(p) or original(p))
    again = embedder.embed_texts(["a laptop screen", "people fighting", "a new prompt"])
    assert calls == [["a new prompt"]]  # only the unseen prompt went through the model
    assert np.allclose(again[0], first[1]) and np.allclose(again[1], first[0])
    assert np.allclose(np.linalg.norm(again, axis=1), 1.0, atol=1e-5)
    assert embedder.embed_texts([]).shape == (0, 16)


def test_bf16_on_cpu_is_recorded_and_close_to_fp32(tiny_clip_dir: Path) -> None:
    fp32 = ClipEmbedder.load(str(tiny_clip_dir), device="cpu", dtype="fp32", runtime="torch")
    bf16 = ClipEmbedder.load(str(tiny_clip_dir), device="cpu", dtype="bf16", runtime="torch")
    assert bf16.identity.dtype == "bf16"
    assert next(bf16.image_tower.parameters()).dtype == torch.bfloat16
    pixels = np.random.default_rng(3).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    cosine = (fp32.embed_images(pixels) * bf16.embed_images(pixels)).sum(axis=1)
    assert (cosine > 0.99).all()


def test_absent_accelerator_asked_by_name_fails(tiny_clip_dir: Path) -> None:
    with pytest.raises(DeviceUnavailableError):
        ClipEmbedder.load(
            str(tiny_clip_dir), device="cuda", probes=DeviceProbes(cuda=lambda: False)
        )


def test_hub_id_not_cached_offline_says_how_to_provide_it() -> None:
    with pytest.raises(ModelNotAvailableError) as caught:
        resolve_checkpoint("openai/clip-vit-base-patch32")
    message = str(caught.value)
    assert "--model /path/to/clip" in message and "make-tiny" in message


def test_bad_local_paths(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no config.json"):
        resolve_checkpoint(str(tmp_path))
    with pytest.raises(ModelError, match="no such checkpoint folder"):
        resolve_checkpoint(str(tmp_path / "missing"))


def test_weights_hash_tracks_content(tiny_clip_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_clip_dir, copy)
    original = weights_sha256(resolve_checkpoint(str(tiny_clip_dir)))
    assert weights_sha256(resolve_checkpoint(str(copy))) == original  # same bytes, same hash
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert weights_sha256(resolve_checkpoint(str(copy))) != original


def test_text_encoder_alone_matches_the_full_model_and_loads_no_image_tower(
    tiny_clip_dir: Path, embedder: ClipEmbedder
) -> None:
    from policy_engine.models.clip import load_text_encoder

    encoder = load_text_encoder(str(tiny_clip_dir), device="cpu", dtype="fp32")
    names = [n for n, _ in encoder.tower.named_parameters()]
    assert names and not any("vision" in n or "visual" in n for n in names)
    prompts = ["people fighting", "a laptop screen"]
    assert np.allclose(encoder.embed_texts(prompts), embedder.embed_texts(prompts), atol=1e-6)
    assert encoder.identity.weights_sha256 == embedder.identity.weights_sha256
    assert encoder.identity.embed_dim == embedder.identity.embed_dim == 16

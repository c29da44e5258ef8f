"""Device choice and the HPU path's logic, with fake accelerators (no Gaudi here)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from policy_engine.errors import ConfigError, DeviceUnavailableError
from policy_engine.models import device as device_mod
from policy_engine.models.checkpoint import resolve_checkpoint
from policy_engine.models.clip import ClipEmbedder
from policy_engine.models.device import DeviceChoice, DeviceProbes, select_device
from policy_engine.models.runtime import HpuRuntime, make_runtime, resolve_dtype


def probes(hpu: bool = False, cuda: bool = False, mps: bool = False) -> DeviceProbes:
    return DeviceProbes(hpu=lambda: hpu, cuda=lambda: cuda, mps=lambda: mps)


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        ({"hpu": True, "cuda": True}, "hpu"),
        ({"cuda": True, "mps": True}, "cuda"),
        ({"mps": True}, "mps"),
        ({}, "cpu"),
    ],
)
def test_auto_prefers_hpu_then_cuda_then_mps_then_cpu(present: dict, expected: str) -> None:
    choice = select_device("auto", probes(**present))
    assert (choice.asked, choice.used) == ("auto", expected)


@pytest.mark.parametrize("kind", ["hpu", "cuda", "mps"])
def test_named_device_absent_is_an_error_not_a_cpu_fallback(kind: str) -> None:
    with pytest.raises(DeviceUnavailableError, match=f"{kind}.*not available.*--device"):
        select_device(kind, probes())


def test_named_device_present_and_unknown_name() -> None:
    assert select_device("CUDA", probes(cuda=True)).used == "cuda"
    with pytest.raises(ConfigError, match="auto, hpu, cuda, mps, cpu"):
        select_device("tpu", probes())


def test_real_probes_on_this_machine_without_habana() -> None:
    # habana_frameworks is not installable here: the lazy import must say "absent".
    assert device_mod.import_habana() is None
    assert device_mod._hpu_present() is False


def test_dtype_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_dtype("auto", "hpu") == "bf16"
    assert resolve_dtype("auto", "mps") == "fp16"
    monkeypatch.setattr("policy_engine.models.runtime.cpu_has_native_bf16", lambda: True)
    assert resolve_dtype("auto", "cpu") == "bf16"
    monkeypatch.setattr("policy_engine.models.runtime.cpu_has_native_bf16", lambda: False)
    assert resolve_dtype("auto", "cpu") == "fp32"
    assert resolve_dtype("fp32", "cpu") == "fp32"
    with pytest.raises(ConfigError):
        resolve_dtype("fp16", "hpu")
    with pytest.raises(ConfigError):
        resolve_dtype("int4", "cpu")


class FakeHabana:
    """A stand-in for habana_frameworks.torch that records what the engine asks of it."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.module = types.ModuleType("habana_frameworks.torch")
        core = types.ModuleType("habana_frameworks.torch.core")
        hpu = types.ModuleType("habana_frameworks.torch.hpu")
        core.mark_step = lambda: self.calls.append("mark_step")  # type: ignore[attr-defined]
        hpu.is_available = lambda: True  # type: ignore[attr-defined]

        def wrap_in_hpu_graph(module: torch.nn.Module) -> torch.nn.Module:
            self.calls.append(f"wrap:{type(module).__name__}")
            return module

        hpu.wrap_in_hpu_graph = wrap_in_hpu_graph  # type: ignore[attr-defined]
        self.module.core = core  # type: ignore[attr-defined]
        self.module.hpu = hpu  # type: ignore[attr-defined]


@pytest.fixture
def fake_habana(monkeypatch: pytest.MonkeyPatch) -> FakeHabana:
    fake = FakeHabana()
    package = types.ModuleType("habana_frameworks")
    package.torch = fake.module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "habana_frameworks", package)
    monkeypatch.setitem(sys.modules, "habana_frameworks.torch", fake.module)
    monkeypatch.setitem(sys.modules, "habana_frameworks.torch.core", fake.module.core)
    monkeypatch.setitem(sys.modules, "habana_frameworks.torch.hpu", fake.module.hpu)
    return fake


def test_fake_gaudi_is_detected_and_chosen_by_auto(fake_habana: FakeHabana) -> None:
    assert device_mod.import_habana() is fake_habana.module
    assert select_device("auto").used == "hpu"
    runtime = make_runtime(DeviceChoice("auto", "hpu"))
    assert isinstance(runtime, HpuRuntime) and runtime.dtype_name == "bf16"


def _hpu_embedder(fake: FakeHabana, tiny_clip_dir, batch_size: int, shapes: list) -> ClipEmbedder:
    runtime = HpuRuntime(
        DeviceChoice("hpu", "hpu"), "bf16", fake.module, graph_mode=True, torch_device="cpu"
    )
    embedder = ClipEmbedder(resolve_checkpoint(str(tiny_clip_dir)), runtime, batch_size=batch_size)
    for tower in (embedder.image_tower, embedder.text_tower):
        tower.register_forward_pre_hook(lambda _m, args: shapes.append(tuple(args[0].shape)))
    return embedder


def test_hpu_static_batches_mark_step_and_graphs(fake_habana: FakeHabana, tiny_clip_dir) -> None:
    shapes: list[tuple[int, ...]] = []
    embedder = _hpu_embedder(fake_habana, tiny_clip_dir, batch_size=4, shapes=shapes)
    assert fake_habana.calls == ["wrap:_ImageTower", "wrap:_TextTower"]
    assert embedder.identity.device_used == "hpu" and embedder.identity.dtype == "bf16"
    # weights stay fp32 on Gaudi: bf16 comes from autocast
    assert next(embedder.image_tower.parameters()).dtype == torch.float32

    fake_habana.calls.clear()
    pixels = np.random.default_rng(0).integers(0, 255, (10, 32, 32, 3), dtype=np.uint8)
    vectors = embedder.embed_images(pixels)
    assert vectors.shape == (10, 16)  # the padding rows are dropped
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    # 10 images at batch 4: three batches, the last padded from 2 to 4 -> one shape only
    assert shapes == [(4, 3, 32, 32)] * 3
    assert fake_habana.calls == ["mark_step"] * 3

    shapes.clear()
    embedder.embed_texts(["a cat", "people fighting in the street at night"])
    assert shapes == [(2, 77)]  # prompts padded to the full context: one text graph


def test_hpu_padding_does_not_change_results(fake_habana: FakeHabana, tiny_clip_dir) -> None:
    embedder = _hpu_embedder(fake_habana, tiny_clip_dir, batch_size=8, shapes=[])
    pixels = np.random.default_rng(1).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    padded = embedder.embed_images(pixels)
    one_by_one = np.concatenate([embedder.embed_images(pixels[i : i + 1]) for i in range(3)])
    assert np.allclose(padded, one_by_one, atol=2e-2)  # bf16 autocast tolerance

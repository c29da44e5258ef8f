"""How a model runs on the chosen device: weight dtype, autocast, graph boundaries.

One class per device family keeps the device-specific rules in one place:

* CPU: weights in the chosen dtype (bf16 weights run the image tower several times
  faster than fp32 on CPUs with native bf16: see README), eager.
* CUDA / MPS: half-precision weights by default.
* HPU (Intel Gaudi): fp32 weights with bf16 autocast, lazy mode with ``mark_step()`` after
  each batch, optionally HPU graphs, and *static shapes*: every batch is padded to the same
  size (and every prompt to the same token length) so graphs are compiled once.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import torch

from policy_engine.errors import ConfigError
from policy_engine.models.device import DeviceChoice, cpu_has_native_bf16, import_habana

DTYPE_CHOICES = ("auto", "fp32", "bf16", "fp16")
_TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_dtype(asked: str, device_used: str) -> str:
    """The dtype to run in. ``auto``: bf16 on HPU, fp16/bf16 on GPUs, and on the CPU bf16
    only where the CPU computes it natively (else fp32, since emulated bf16 is slower)."""
    asked = (asked or "auto").lower()
    if asked not in DTYPE_CHOICES:
        raise ConfigError(f"unknown dtype {asked!r}; choose one of: {', '.join(DTYPE_CHOICES)}")
    if asked != "auto":
        if device_used == "hpu" and asked == "fp16":
            raise ConfigError("fp16 is not supported on HPU; use bf16 or fp32")
        return asked
    if device_used == "hpu":
        return "bf16"
    if device_used == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device_used == "mps":
        return "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


class Runtime:
    """Default runtime: weights cast to the dtype and moved to the device, eager."""

    static_shapes = False

    def __init__(self, device: DeviceChoice, dtype: str) -> None:
        self.device = device
        self.dtype_name = dtype
        self.dtype = _TORCH_DTYPES[dtype]

    @property
    def torch_device(self) -> str:
        return self.device.torch_device

    @property
    def weight_dtype(self) -> torch.dtype:
        return self.dtype

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(device=self.torch_device, dtype=self.weight_dtype).eval()

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def step(self) -> None:
        """Called after each batch (graph boundary on lazy devices)."""


class HpuRuntime(Runtime):
    """Intel Gaudi: lazy mode + mark_step, bf16 autocast, static shapes, HPU graphs."""

    static_shapes = True

    def __init__(
        self,
        device: DeviceChoice,
        dtype: str,
        habana: ModuleType,
        *,
        graph_mode: bool = True,
        torch_device: str = "hpu",
    ) -> None:
        super().__init__(device, dtype)
        self._habana = habana
        self._core = _submodule(habana, "core")
        self._hpu = _submodule(habana, "hpu")
        self.graph_mode = graph_mode
        self._torch_device = torch_device  # "hpu"; tests with a fake stack use "cpu"

    @property
    def torch_device(self) -> str:
        return self._torch_device

    @property
    def weight_dtype(self) -> torch.dtype:
        return torch.float32  # bf16 comes from autocast, as Gaudi's mixed precision expects

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self.torch_device).eval()
        if self.graph_mode:
            model = self._hpu.wrap_in_hpu_graph(model)
        return model

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is torch.float32:
            return contextlib.nullcontext()
        device_type = self.torch_device.split(":")[0]
        return torch.autocast(device_type=device_type, dtype=self.dtype)

    def step(self) -> None:
        self._core.mark_step()


def _submodule(package: ModuleType, name: str) -> ModuleType:
    existing = getattr(package, name, None)
    if isinstance(existing, ModuleType):
        return existing
    return importlib.import_module(f"{package.__name__}.{name}")


def make_runtime(device: DeviceChoice, dtype: str = "auto", *, graph_mode: bool = True) -> Runtime:
    resolved = resolve_dtype(dtype, device.used)
    if device.used == "hpu":
        habana = import_habana()
        if habana is None:  # select_device said present; the import broke since
            raise ConfigError("habana_frameworks.torch could not be imported")
        return HpuRuntime(device, resolved, habana, graph_mode=graph_mode)
    return Runtime(device, resolved)


def padded_batches(count: int, batch_size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of each batch over ``count`` items."""
    for start in range(0, count, batch_size):
        yield start, min(start + batch_size, count)

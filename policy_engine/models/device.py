"""Which accelerator to run on: Intel Gaudi HPU, else CUDA, else MPS, else CPU.

``habana_frameworks`` ships with the Gaudi software stack, not with pip, so it is
imported lazily and only here. Probes are injectable so the choice logic is testable on a
machine without any accelerator.
"""

from __future__ import annotations

import importlib
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from policy_engine.errors import ConfigError, DeviceUnavailableError

DEVICE_CHOICES = ("auto", "hpu", "cuda", "mps", "cpu")
_AUTO_ORDER = ("hpu", "cuda", "mps", "cpu")


def import_habana() -> ModuleType | None:
    """``habana_frameworks.torch`` if the Gaudi stack is installed, else None."""
    try:
        return importlib.import_module("habana_frameworks.torch")
    except Exception:  # ImportError, or a broken driver install raising at import
        return None


def _hpu_present() -> bool:
    habana = import_habana()
    if habana is None:
        return False
    try:
        hpu = importlib.import_module("habana_frameworks.torch.hpu")
        return bool(hpu.is_available())
    except Exception:
        return False


def _cuda_present() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _mps_present() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


@dataclass(frozen=True)
class DeviceProbes:
    """How presence is detected; tests substitute fakes."""

    hpu: Callable[[], bool] = _hpu_present
    cuda: Callable[[], bool] = _cuda_present
    mps: Callable[[], bool] = _mps_present

    def present(self, kind: str) -> bool:
        return True if kind == "cpu" else getattr(self, kind)()


@dataclass(frozen=True)
class DeviceChoice:
    asked: str  # what the user asked for, e.g. "auto"
    used: str  # what we really run on: "hpu" | "cuda" | "mps" | "cpu"

    @property
    def torch_device(self) -> str:
        return self.used


def select_device(asked: str = "auto", probes: DeviceProbes | None = None) -> DeviceChoice:
    """Resolve ``auto`` to the best device present; a named device that is absent is an
    error, never a silent fall back to the CPU."""
    asked = (asked or "auto").lower()
    if asked not in DEVICE_CHOICES:
        raise ConfigError(f"unknown device {asked!r}; choose one of: {', '.join(DEVICE_CHOICES)}")
    probes = probes or DeviceProbes()
    if asked == "auto":
        used = next(kind for kind in _AUTO_ORDER if probes.present(kind))
        return DeviceChoice(asked=asked, used=used)
    if not probes.present(asked):
        raise DeviceUnavailableError(_absent_message(asked))
    return DeviceChoice(asked=asked, used=asked)


def _absent_message(kind: str) -> str:
    hints = {
        "hpu": "the Intel Gaudi software stack (habana_frameworks.torch) is not installed or"
        " sees no HPU",
        "cuda": "PyTorch sees no CUDA GPU (CPU-only build, or no driver/GPU)",
        "mps": "PyTorch sees no Apple Metal (MPS) device",
    }
    return (
        f"device {kind!r} was asked for but is not available: {hints[kind]}."
        " Use --device auto to run on the best device present, or --device cpu."
    )


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 is
    several times faster than fp32 for the image tower (see README, measured)."""
    if platform.system() != "Linux":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))

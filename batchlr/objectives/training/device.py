"""Choosing the torch device by name, naming it, and giving its memory back."""

from __future__ import annotations

import gc
import platform
from pathlib import Path

import torch

from batchlr.errors import SettingError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; other names must be usable here.

    Raises:
        SettingError: for ``device`` when ``name`` is no device, or one this machine lacks.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise SettingError(
            "device", name, "not a device; use auto, cpu, cuda, cuda:N or mps"
        ) from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingError("device", name, "no CUDA GPU is visible; use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SettingError(
                "device", name, f"only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise SettingError("device", name, "MPS is not available; use cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise SettingError("device", name, "batchlr runs on cpu, cuda or mps")
    return device


def device_name(device: torch.device) -> str:
    """``device`` with the hardware behind it, as measurements should name it: the GPU's
    model (``NVIDIA H100 80GB HBM3 (cuda:0)``), or the CPU's (``cpu: AMD EPYC 9654``)."""
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        return f"{torch.cuda.get_device_name(index)} (cuda:{index})"
    if device.type == "cpu":
        return f"cpu: {_cpu_model()}"
    return str(device)


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def release_memory(device: torch.device) -> None:
    """Hand the memory of tensors no longer referenced back to the GPU driver.

    PyTorch's caching allocator keeps freed CUDA blocks for reuse by this process; emptying
    it lets another process (or a retry with a smaller batch) have them.
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()

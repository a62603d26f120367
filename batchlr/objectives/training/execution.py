"""How a process trains on its device: the precision of the forward pass, the memory format,
whether the folds of a trial train as one fused model, and compilation.

None of it changes what a trial trains, only how fast: fused and separate folds give the same
results to float tolerance, and a lower precision keeps parameters and optimizer state in
float32. The precision is a study setting (:class:`~batchlr.objectives.settings.TrainingSettings`);
``auto`` resolves here, per device, so that each worker of a study uses what its device does best.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import torch

from batchlr.errors import BatchlrError
from batchlr.objectives.settings import FUSE_CHOICES, FuseChoice, Precision
from batchlr.rules import one_of, require

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it (Ampere and
    newer), or a CPU with AVX-512 BF16 or AMX tiles. Elsewhere bf16 is emulated and slower."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)  # Ampere: bf16 tensor cores
    if device.type == "cpu":
        # Private functions of torch.cpu: a torch without them is taken to lack the instructions.
        checks = (
            getattr(torch.cpu, name, lambda: False)
            for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        )
        return any(check() for check in checks)
    return False


def resolve_precision(name: Precision, device: torch.device) -> Precision:
    """``fp32``, ``bf16`` or ``fp16`` for precision ``name`` on ``device``.

    Raises:
        SettingError: for bf16 or fp16 on a device torch cannot autocast on.
    """
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    require(
        name == "fp32" or torch.amp.is_autocast_available(device.type),
        "precision",
        name,
        f"torch cannot autocast on {device.type}; use fp32",
    )
    return name


def check_compile(device: torch.device) -> None:
    """Compile a tiny function on ``device`` once per process, so that ``--compile`` without a
    working compiler fails here, before a study is created, and not in its first trial.

    Raises:
        BatchlrError: when torch.compile fails, with the first line of its error.
    """
    failure = _compile_failure(device)
    if failure:
        raise BatchlrError(
            f"--compile: torch.compile does not work on {device} ({failure}); it needs a working C++ compiler "
            "(e.g. apt install g++, or set CXX to one): install one, or leave --compile off"
        )


@functools.cache
def _compile_failure(device: torch.device) -> str | None:
    """The first line of torch.compile's error on a tiny function on ``device``, or None when it works."""
    try:
        torch.compile(lambda tensor: tensor * 2 + 1)(torch.ones(4, device=device))
    # inductor's errors have no common base but Exception; any means compile fails here
    except Exception as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return lines[0][:300] if lines else type(error).__name__
    return None


@dataclasses.dataclass(frozen=True)
class Execution:
    """How this process trains: ``precision`` resolved (fp32, bf16 or fp16), ``fuse_folds``,
    ``compile`` (torch.compile of the forward pass) and ``channels_last`` (models and
    batches in NHWC, which the convolutions of both the CPU's oneDNN and cuDNN's tensor
    cores run faster)."""

    device: torch.device
    precision: Precision = "fp32"
    fuse_folds: bool = False
    compile: bool = False
    channels_last: bool = False

    @classmethod
    def on(
        cls,
        device: torch.device,
        precision: Precision = "auto",
        fuse_folds: FuseChoice = "auto",
        compile: bool = False,
        builtin_model: bool = True,
    ) -> Execution:
        """The execution for ``device`` and the options as given.

        channels_last goes with the built-in and torchvision models only: a user's model may
        ``view`` an activation, which fails on an NHWC tensor. Fused folds keep NCHW, which
        vmap's grouped convolutions expect.
        """
        fuse = one_of("fuse_folds", fuse_folds, FUSE_CHOICES)
        fused = fuse == "on" or (fuse == "auto" and device.type == "cuda")
        if compile:
            check_compile(device)
        return cls(
            device,
            resolve_precision(precision, device),
            fused,
            compile,
            builtin_model and not fused and device.type != "mps",
        )

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """The context of forward passes and losses: autocast to the precision, or nothing for fp32."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision])

    def scaler(self) -> torch.amp.GradScaler:
        """fp16 gradients underflow without loss scaling; bf16 has float32's range and needs none.

        The scaler reads back whether a step's gradients overflowed: one device sync per step
        under fp16 only. One scaler serves the one optimizer of all folds, so a step on which
        any fold's fp16 gradients overflow is skipped for every fold (fused and separate folds
        alike); bf16 and fp32 keep the folds wholly apart.
        """
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def describe(self) -> str:
        """E.g. ``bf16, channels_last`` or ``fp32, folds fused, compiled``."""
        parts: list[str] = [self.precision]
        if self.channels_last:
            parts.append("channels_last")
        if self.fuse_folds:
            parts.append("folds fused")
        if self.compile:
            parts.append("compiled")
        return ", ".join(parts)

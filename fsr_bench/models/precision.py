"""Inference precision and memory format: one place that decides how a super-resolver runs.

Every inference path (``fsr-bench sr``, validation during training, and ``run`` once it takes the
options) goes through :func:`prepare` + :func:`infer`, so "bf16" means the same thing everywhere:

* weights stay fp32 (no ``model.half()``): ``torch.autocast`` runs convolutions, linears and
  attention in the low-precision dtype and keeps reductions (LayerNorm, softmax statistics) in fp32;
* the output is returned as a contiguous fp32 tensor, so metrics and image writers never see bf16;
* ``channels_last`` stores activations NHWC, the layout oneDNN's fast CPU convolutions (and cuDNN's
  tensor-core kernels) want; in fp32 it changes only the summation order, not the function.

``auto`` picks the fastest mode this hardware runs natively: bf16 on a CPU with AVX512-BF16 or
AMX-BF16 instructions, or on a CUDA GPU with bf16 support; fp32 otherwise. A CPU without those
instructions *can* run bf16 (oneDNN emulates it with fp32 FMAs), but it is slower than fp32 there,
so ``auto`` does not choose it. fp16 on the CPU is refused: no x86 CPU this project targets has a
fast fp16 convolution path, and fp16's 5-bit exponent gains nothing over bf16 there.

Record :func:`describe` in every result's conventions: a benchmark number is only comparable to
another one computed in the same precision and layout.
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import nn

from fsr_bench.errors import FsrBenchError

__all__ = [
    "Precision",
    "PrecisionError",
    "autocast",
    "cpu_bf16_flags",
    "describe",
    "infer",
    "prepare",
    "resolve_precision",
]

Precision = Literal["fp32", "bf16", "fp16", "auto"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

# CPU feature flags (Linux /proc/cpuinfo names) that mean native bf16 arithmetic.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


class PrecisionError(FsrBenchError, ValueError):
    """A precision that is unknown or that this device cannot run; the message says what to use."""


@functools.lru_cache(maxsize=1)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The native-bf16 instruction-set flags this CPU reports (empty if none or not on Linux).

    ``torch.backends.cpu.get_cpu_capability()`` only says "AVX512" for both a bf16-capable Zen 4
    and an older Skylake, and ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` is true wherever
    oneDNN can *emulate* bf16, so the kernel's own flag list is the reliable source.
    """
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return tuple(f for f in BF16_CPU_FLAGS if f in flags)
    return ()


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``auto`` -> the concrete precision for ``device``; validates the others (raises PrecisionError)."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    dev = torch.device(device)
    if precision == "auto":
        if dev.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        if dev.type == "cpu":
            return "bf16" if cpu_bf16_flags() else "fp32"
        return "fp32"
    if precision == "fp32":
        return precision
    if dev.type == "cpu" and precision == "fp16":
        raise PrecisionError(
            "precision fp16 is not supported on the CPU (no fast fp16 convolutions); use bf16"
            + (" (this CPU has native bf16)" if cpu_bf16_flags() else "") + " or fp32"
        )
    if dev.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise PrecisionError("precision bf16 needs a GPU with bfloat16 support; use fp16 or fp32")
    if dev.type not in ("cpu", "cuda"):
        raise PrecisionError(f"precision {precision} is only supported on cpu and cuda, not {dev.type}; use fp32")
    return precision


def autocast(device: torch.device | str, precision: str):
    """The autocast context for a *resolved* precision (a no-op context for fp32)."""
    dev = torch.device(device)
    dtype = _DTYPES[resolve_precision(precision, dev)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=dtype)


def prepare(model: nn.Module, device: torch.device | str, channels_last: bool) -> nn.Module:
    """Move ``model`` to ``device`` in eval mode and, if asked, channels-last (weights stay fp32)."""
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def infer(model: nn.Module, lr: torch.Tensor, precision: str, channels_last: bool) -> torch.Tensor:
    """``model(lr)`` without gradients under ``precision`` autocast; a contiguous fp32 output.

    ``lr`` must already be on the model's device; ``precision`` may be ``auto`` (resolved for that
    device). Call :func:`prepare` first so that weights and inputs share the memory format.
    """
    if channels_last:
        lr = lr.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(lr.device, precision):
        out = model(lr)
    return out.float().contiguous()


def describe(precision: str, channels_last: bool, device: torch.device | str = "cpu") -> str:
    """The convention string a result records, e.g. ``"bf16 autocast, channels-last"``."""
    p = resolve_precision(precision, device)
    layout = "channels-last" if channels_last else "NCHW"
    return f"fp32, {layout}" if p == "fp32" else f"{p} autocast (fp32 weights), {layout}"

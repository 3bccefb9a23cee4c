"""The one device resolver of the runner, the trainer and ``fsr-bench sr``."""
from __future__ import annotations

from fsr_bench.errors import FsrBenchError

__all__ = ["DeviceError", "resolve_device"]


class DeviceError(FsrBenchError, ValueError):
    """A device that is not valid here; the message says which option to change."""


def resolve_device(name: str, *, option: str = "--device") -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` / ``cuda:N`` need one.

    ``option`` names the setting in the error message (``--set run.device``, ``--device``).
    """
    import torch

    name = str(name).strip()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name != "cuda" and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise DeviceError(f"{option}={name!r}: a device is auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise DeviceError(f"{option}={name!r} but torch sees no CUDA device; use {option}=cpu")
    return name


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an allocator failure (CPU or accelerator): the caller turns it into an error naming
    the way out (tiles, a smaller input) instead of a traceback."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text
                                              or "DefaultCPUAllocator" in text or "can't allocate memory" in text)

"""Processes started by ``torchrun``: who this one is, its device, and the few collectives the
trainer and the sharded runners share.

``torchrun`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; without it this is one process and every
helper here is a plain call (no process group, no communication). Every process resolves its
device with the toolkit's one resolver (:mod:`fsr_bench.devices`); with several processes ``cuda``
means this process's GPU, ``cuda:LOCAL_RANK``.

:class:`Ranks` is what a sharded evaluation needs (``fsr_bench.run``): contiguous blocks of whole
batches per process (:meth:`Ranks.block`), results gathered on rank 0 (:meth:`Ranks.gather`), and
:meth:`Ranks.step`, which runs one phase everywhere (or on rank 0 alone) and makes every process
raise when any of them failed, so that no process waits forever in a collective for a peer that
died. This module sits beside :mod:`fsr_bench.devices` at the bottom of the import graph: ``train``
and ``run`` import it, it imports neither.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

import torch

from fsr_bench.errors import FsrBenchError

__all__ = ["SINGLE", "PeerError", "Ranks", "dist_env", "process_group", "resolve_device"]

T = TypeVar("T")


class PeerError(FsrBenchError):
    """Another process of this multi-process run failed; the message is that process's error."""


def dist_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment (1 process without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, local, world


def resolve_device(name: str, local_rank: int, world: int, option: str = "--device") -> torch.device:
    """The one resolver (:mod:`fsr_bench.devices`); ``cuda`` is this process's GPU (several: LOCAL_RANK)."""
    from fsr_bench import devices

    resolved = devices.resolve_device(name, option=option)
    if resolved.startswith("cuda") and (world > 1 or resolved == "cuda"):  # several processes: this one's GPU
        if world > 1 and local_rank >= torch.cuda.device_count():
            raise devices.DeviceError(
                f"{option}={name!r}: this is process {local_rank} on its node but torch sees "
                f"{torch.cuda.device_count()} GPU(s); start at most that many (torchrun --nproc_per_node) or use "
                f"{option}=cpu")
        resolved = f"cuda:{local_rank if world > 1 else torch.cuda.current_device()}"
    return torch.device(resolved)


@dataclass(frozen=True)
class Ranks:
    """This process's place among ``world`` processes; ``Ranks()`` is a single process."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def block(self, n: int) -> range:
        """This process's contiguous share of ``n`` units (batches): ``ceil(n / world)`` each, in
        rank order, so rank 0 always holds unit 0 (a model's FLOPs are counted on the first batch
        as in one process) and the concatenation over ranks is the single-process order."""
        per = -(-n // self.world) if n else 0
        lo = min(n, self.rank * per)
        return range(lo, min(n, lo + per))

    def step(self, fn: Callable[[], T], *, main_only: bool = False, share: bool = False) -> T | None:
        """Run ``fn`` on every process (``main_only``: on rank 0; the others get None), then agree:
        if it raised anywhere, it raises everywhere — the failing process its own error, the others
        :class:`PeerError` naming the process and its message. ``share``: every process returns rank
        0's value (it must pickle)."""
        value: Any = None
        error: BaseException | None = None
        if self.is_main or not main_only:
            try:
                value = fn()
            except Exception as exc:  # re-raised below, after the others know
                if self.world == 1:
                    raise
                error = exc
        if self.world == 1:
            return value
        import torch.distributed as dist

        status: list[Any] = [None] * self.world
        mine = (None if error is None else f"{type(error).__name__}: {error}", value if share and self.is_main else None)
        dist.all_gather_object(status, mine)
        if error is not None:
            raise error
        failed = [(r, msg) for r, (msg, _) in enumerate(status) if msg is not None]
        if failed:
            r, msg = failed[0]
            raise PeerError(f"process {r} of {self.world} failed: {msg}")
        return status[0][1] if share else value

    def gather(self, obj: Any) -> list[Any] | None:
        """Every process's ``obj`` (picklable), in rank order, on rank 0; None on the others."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out


SINGLE = Ranks()


@contextlib.contextmanager
def process_group(device: str, option: str = "--device") -> Iterator[Ranks]:
    """The process group of a torchrun launch (gloo on CPU, NCCL on CUDA), created if none exists
    and destroyed on exit if created here; one process without torchrun (no group)."""
    rank, local, world = dist_env()
    if world == 1:
        yield SINGLE
        return
    import torch.distributed as dist

    owned = False
    if not dist.is_initialized():
        dev = resolve_device(device, local, world, option)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)  # NCCL's object collectives use the current device
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        owned = True
    try:
        yield Ranks(rank, world)
    finally:
        if owned and dist.is_initialized():
            dist.destroy_process_group()

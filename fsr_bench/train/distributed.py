"""Distributed training setup: the process's rank and world from torchrun, and its device.

``torchrun`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; without it this is one process. Every
process resolves its device with the toolkit's one resolver (:mod:`fsr_bench.devices`); under DDP
``cuda`` means this process's GPU, ``cuda:LOCAL_RANK``.
"""
from __future__ import annotations

import os

import torch

__all__ = ["dist_env", "resolve_device"]


def dist_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment (1 process without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, local, world


def resolve_device(name: str, local_rank: int, world: int) -> torch.device:
    """The one resolver (:mod:`fsr_bench.devices`); ``cuda`` is this process's GPU (DDP: LOCAL_RANK)."""
    from fsr_bench import devices

    resolved = devices.resolve_device(name, option="--device")
    if resolved.startswith("cuda") and (world > 1 or resolved == "cuda"):  # under DDP: this process's GPU
        resolved = f"cuda:{local_rank if world > 1 else torch.cuda.current_device()}"
    return torch.device(resolved)

"""Distributed training setup: the process's rank and world from torchrun, and its device.

The implementation is shared with the sharded evaluation runners and lives in
:mod:`fsr_bench.distributed` (below both ``train`` and ``run`` in the import graph); this module
keeps the trainer's import path.
"""
from __future__ import annotations

from fsr_bench.distributed import dist_env, resolve_device

__all__ = ["dist_env", "resolve_device"]

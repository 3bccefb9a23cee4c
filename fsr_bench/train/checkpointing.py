"""What a checkpoint needs beyond weights for an exact resume: every RNG state, as plain tensors.

States are stored as tensors and ints so ``torch.load(weights_only=True)`` reads them back (no
pickle); checkpoints themselves are serialised by :func:`fsr_bench.models.checkpoint.checkpoint_bytes`
and written to last.pt / best.pt together by :func:`fsr_bench.atomic.write_together` (fsync, then rename).
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["plain", "rng_state", "set_rng_state"]


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's RNG states as tensors/ints (loadable with weights_only=True)."""
    legacy = np.random.get_state()  # the global RandomState: always MT19937's legacy tuple
    if not isinstance(legacy, tuple):
        raise TypeError(f"numpy's global RNG state is {type(legacy).__name__}, not MT19937's tuple")
    kind, keys, pos, has_gauss, cached = legacy
    version, pstate, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(pstate, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def plain(x: Any) -> Any:
    """Tuples -> lists recursively (configs compare equal after a YAML/JSON round trip)."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x

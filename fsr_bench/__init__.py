"""fsr-bench: does this face super-resolver make low-resolution surveillance faces recognisable?

Public API (heavy modules load lazily so ``fsr-bench --help`` stays instant)::

    from fsr_bench import create_model, list_models, register_model
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "create_model": "fsr_bench.models",
    "list_models": "fsr_bench.models",
    "register_model": "fsr_bench.models",
    "SuperResolver": "fsr_bench.models",
    "ModelInfo": "fsr_bench.models",
    "save_checkpoint": "fsr_bench.models.checkpoint",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fsr_bench' has no attribute {name!r}")


__all__ = sorted(_LAZY) + ["__version__"]

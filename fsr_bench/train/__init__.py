"""Training: ``fsr-bench train`` (see :mod:`fsr_bench.train.trainer` for what a run writes).

* :mod:`fsr_bench.train.config` — the typed YAML config (``load_config``), precedence
  ``--set`` > YAML > defaults (the TANet paper's recipe);
* :mod:`fsr_bench.train.data` — reproducible training pairs and the resumable distributed sampler;
* :mod:`fsr_bench.train.losses` — L1 (+ a model's own ``training_loss`` terms);
* :mod:`fsr_bench.train.trainer` — the loop: exact resume, AMP, DDP via torchrun, validation.

Heavy modules (torch) load on first use, so importing this package is cheap.
"""
from __future__ import annotations

_LAZY = {
    "ConfigError": "fsr_bench.train.config",
    "TrainConfig": "fsr_bench.train.config",
    "load_config": "fsr_bench.train.config",
    "TrainError": "fsr_bench.train.trainer",
    "Trainer": "fsr_bench.train.trainer",
    "train": "fsr_bench.train.trainer",
    "dry_run": "fsr_bench.train.trainer",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fsr_bench.train' has no attribute {name!r}")


__all__ = sorted(_LAZY)

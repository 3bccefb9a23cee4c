"""Running protocols: one runner per protocol kind, chosen by the protocol's ``kind``.

``run_protocol(protocol, out_dir)`` looks the kind up in :data:`RUNNERS` (the registry idiom of
models and recognisers; a plug-in kind registers its runner with ``RUNNERS.register("kind")``) and
returns the :class:`fsr_bench.results.RunResult` it wrote to ``OUT/results.json``.

* :mod:`~fsr_bench.run.common` — device, model loading, checkpoint hashes, FLOPs;
* :mod:`~fsr_bench.run.reconstruction` — build → infer → score (``metrics.ReconstructionMetrics``);
* :mod:`~fsr_bench.run.recognition` — gallery → rows → detection → embeddings → scores;
* :mod:`~fsr_bench.run.face_size_sweep` — recognition at several LR face sizes (one recognition run each);
* :mod:`~fsr_bench.run.caches` — the recognition face and SR caches.
"""
from __future__ import annotations

from typing import Any, Callable

from fsr_bench.registry import Registry

__all__ = ["RUNNERS", "run_protocol"]

RUNNERS: Registry[Callable[..., Any]] = Registry("protocol runner", "fsr_bench.runners")


@RUNNERS.register("reconstruction")
def _reconstruction(protocol, out_dir, **kwargs):
    from fsr_bench.run.reconstruction import run_reconstruction

    return run_reconstruction(protocol, out_dir, **kwargs)


@RUNNERS.register("recognition")
def _recognition(protocol, out_dir, **kwargs):  # the face stack (MTCNN, recognisers) loads only here
    from fsr_bench.run.recognition import run_recognition

    return run_recognition(protocol, out_dir, **kwargs)


@RUNNERS.register("face_size_sweep")
def _face_size_sweep(protocol, out_dir, **kwargs):
    from fsr_bench.run.face_size_sweep import run_face_size_sweep

    return run_face_size_sweep(protocol, out_dir, **kwargs)


def run_protocol(protocol, out_dir, *, force: bool = False, **kwargs):
    """Run ``protocol`` with its kind's runner; returns the written :class:`~fsr_bench.results.RunResult`.

    The output folder is claimed first (:func:`fsr_bench.run.outdir.claim`: lock, owner check,
    stale temp files swept); ``protocol.yaml`` is written only when the run succeeded. An OSError
    while writing (read-only, full disk, a file in the way) becomes one message naming the path.
    """
    from pathlib import Path

    from fsr_bench.run.outdir import claim, finish, os_error

    runner = RUNNERS.get(protocol.kind).builder
    with claim(out_dir, protocol, force=force) as out:
        try:
            result = runner(protocol, out, force=force, **kwargs)
            finish(out, protocol)
        except OSError as exc:
            raise os_error(exc, Path(out_dir)) from None
    return result

"""Running protocols: one runner per protocol kind, chosen by the protocol's ``kind``.

``run_protocol(protocol, out_dir)`` looks the kind up in :data:`RUNNERS` (the registry idiom of
models and recognisers; a plug-in kind registers its runner with ``RUNNERS.register("kind")``) and
returns the :class:`fsr_bench.results.RunResult` it wrote to ``OUT/results.json``.

* :mod:`~fsr_bench.run.common` — device, model loading, checkpoint hashes, FLOPs;
* :mod:`~fsr_bench.run.reconstruction` — build → infer → score (``metrics.ReconstructionMetrics``);
* :mod:`~fsr_bench.run.recognition` — gallery → rows → detection → embeddings → scores;
* :mod:`~fsr_bench.run.face_size_sweep` — recognition at several LR face sizes (one recognition run each);
* :mod:`~fsr_bench.run.footage` — labelled footage through ``sr --faces`` per row, one watchlist;
* :mod:`~fsr_bench.run.caches` — the recognition face and SR caches.
"""
from __future__ import annotations

from typing import Any, Callable

from fsr_bench.registry import Registry

__all__ = ["RUNNERS", "SHARDED_KINDS", "run_protocol"]

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


@RUNNERS.register("footage")
def _footage(protocol, out_dir, **kwargs):
    from fsr_bench.run.footage import run_footage

    return run_footage(protocol, out_dir, **kwargs)


#: kinds whose runner shards its work across the processes of a torchrun launch (``ranks=``)
SHARDED_KINDS = ("reconstruction", "recognition")


def run_protocol(protocol, out_dir, *, force: bool = False, **kwargs):
    """Run ``protocol`` with its kind's runner; returns the written :class:`~fsr_bench.results.RunResult`.

    Every row is checked first (:func:`fsr_bench.run.preflight.check_protocol`: names, weights, scales,
    recognisers, data paths; one error lists every problem), then the output folder is claimed (:func:`fsr_bench.run.outdir.claim`: lock, owner check,
    stale temp files swept); ``protocol.yaml`` is written only when the run succeeded. An OSError
    while writing (read-only, full disk, a file in the way) becomes one message naming the path.

    Under ``torchrun --nproc_per_node=N`` the runner shards its images (probes, gallery) across the
    N processes and gathers the results on rank 0, which alone claims and writes the output folder
    (the others read the caches, never write); every process returns the result, rank 0's is the
    one written. The other processes log nothing.
    """
    import contextlib
    from pathlib import Path

    from fsr_bench.distributed import process_group
    from fsr_bench.protocol import ProtocolError
    from fsr_bench.run.outdir import claim, finish, os_error
    from fsr_bench.run.preflight import check_protocol

    runner = RUNNERS.get(protocol.kind).builder
    protocol = check_protocol(protocol)  # every row before any row runs (and before OUT is claimed)
    with process_group(protocol.run.device, option="--set run.device") as ranks:
        if ranks.world == 1:
            with claim(out_dir, protocol, force=force) as out:
                try:
                    result = runner(protocol, out, force=force, **kwargs)
                    finish(out, protocol)
                except OSError as exc:
                    raise os_error(exc, Path(out_dir)) from None
            return result
        if protocol.kind not in SHARDED_KINDS:
            raise ProtocolError(f"kind {protocol.kind!r}: its runner does not shard across processes; run it "
                                f"without torchrun (sharded kinds: {', '.join(SHARDED_KINDS)})")
        if not ranks.is_main:
            kwargs = {**kwargs, "progress": False, "log": lambda msg: None}
        with contextlib.ExitStack() as stack:
            claimed = ranks.step(lambda: stack.enter_context(claim(out_dir, protocol, force=force)), main_only=True)
            folder = claimed or Path(out_dir)  # the others never write there
            try:
                result = runner(protocol, folder, force=force, ranks=ranks, **kwargs)
                ranks.step(lambda: finish(folder, protocol), main_only=True)
            except OSError as exc:
                raise os_error(exc, Path(out_dir)) from None
    return result

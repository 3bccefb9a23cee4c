"""What every runner shares: the device, the model on it, checkpoint hashes, FLOPs, the output folder.

:func:`load_model` is the one place where a protocol's model is built, checked and put on the
device (a precision or memory-format option belongs there, nowhere else).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from fsr_bench import atomic, devices
from fsr_bench.naming import safe_filename
from fsr_bench.protocol import ModelSpec, ProtocolError

if TYPE_CHECKING:
    from fsr_bench.models.base import SuperResolver

__all__ = ["Log", "checkpoint_sha", "count_gflops", "load_model", "ranks_provenance", "read_json",
           "resolve_device",
           "safe_filename"]

Log = Callable[[str], None]


def resolve_device(device: str) -> str:
    """``run.device`` resolved by the one resolver (:func:`fsr_bench.devices.resolve_device`); in a
    torchrun launch of several processes ``cuda`` is this process's GPU (``cuda:LOCAL_RANK``)."""
    from fsr_bench.distributed import dist_env
    from fsr_bench.distributed import resolve_device as per_process

    _, local, world = dist_env()
    if world == 1:
        return devices.resolve_device(device, option="--set run.device")
    return str(per_process(device, local, world, option="--set run.device"))


def ranks_provenance(ranks: Any) -> dict[str, Any]:
    """What a result records of the processes that computed it (``provenance``; never part of a
    work key: a sharded run computes the numbers of one process)."""
    if ranks.world == 1:
        return {"world_size": 1}
    return {"world_size": ranks.world,
            "sharding": f"{ranks.world} processes (torchrun); each ran a contiguous block of whole batches of the "
                        "single-process batch order, rank 0 gathered the results and wrote this folder"}


def load_model(spec: ModelSpec, device: str, scale: int | None = None, scale_hint: str = "",
               channels_last: bool = False) -> "SuperResolver":
    """Build a protocol's model on ``device`` in eval mode; a learned model without weights is
    refused (never benchmarked), and so is one whose scale is not ``scale``."""
    from fsr_bench.models import RegistryError, create_model
    from fsr_bench.models.checkpoint import CheckpointError
    from fsr_bench.models.precision import prepare
    from fsr_bench.weights import WeightsError

    try:
        model = create_model(spec.name, checkpoint=spec.checkpoint, pretrained=spec.pretrained, **spec.overrides)
    except (CheckpointError, RegistryError, WeightsError, TypeError, ValueError) as exc:
        raise ProtocolError(f"model {spec.display!r}: {exc}") from exc
    if spec.checkpoint is None and not spec.pretrained and model.num_parameters() > 0:
        raise ProtocolError(
            f"model {spec.display!r} ({spec.name}) has {model.num_parameters():,} learned parameters "
            "but no checkpoint; random weights are never benchmarked. Set its `checkpoint:` "
            "(train one with `fsr-bench train`) or remove it from the protocol."
        )
    if scale is not None and model.scale != scale:
        raise ProtocolError(f"model {spec.display!r} ({spec.name}) is x{model.scale} but {scale_hint or f'the protocol is x{scale}'}")
    return prepare(model, device, channels_last)  # type: ignore[return-value]  # the same module, moved


def inference_convention(run: Any, device: str) -> str:
    """How models ran ("fp32, NCHW", "bf16 autocast, channels-last"): part of every result's conventions
    (and so of the work keys: a change of precision never reuses results computed in another)."""
    from fsr_bench.models.precision import describe, resolve_precision

    try:
        precision = resolve_precision(run.precision, device)
    except ValueError as exc:
        raise ProtocolError(f"run.precision: {exc}") from None
    return describe(precision, run.channels_last, device)


def checkpoint_sha(spec: ModelSpec) -> str | None:
    if spec.pretrained:
        from fsr_bench.models.pretrained import get_pretrained

        return get_pretrained(spec.name).weights.sha256  # verified against the file on every load
    if spec.checkpoint is None:
        return None
    try:
        return atomic.sha256_file(spec.checkpoint)
    except OSError as exc:  # missing file, a folder, unreadable: name the key, not a traceback
        raise ProtocolError(f"model {spec.display!r}: cannot read checkpoint {spec.checkpoint!r} ({exc})") from None


def training_of(spec: ModelSpec, evaluated: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The training budget of a row's weights, for its results row: a shipped model's from its model
    card, a checkpoint's from what ``fsr-bench train`` recorded in it (None when nothing recorded it).

    With ``evaluated`` (:func:`evaluated_split` of the protocol), ``selected_on_evaluated_data`` says
    whether the weights were selected on the very images this run scores (reports mark such rows);
    absent when either split is unknown.
    """
    record = _training_record(spec)
    if record is not None and evaluated is not None:
        from fsr_bench.data.folders import same_split

        same = same_split(record.get("validation"), evaluated)
        if same is not None:
            record["selected_on_evaluated_data"] = same
    return record


def _training_record(spec: ModelSpec) -> dict[str, Any] | None:
    if spec.pretrained:
        from fsr_bench.models.pretrained import get_pretrained

        summary = get_pretrained(spec.name).summary
        budget = dict(summary.get("budget") or {})
        if "best_step" in budget:  # the cards' name for it (shipped weights are a best.pt): one name in results
            budget["selected_step"] = budget.pop("best_step")
        split = (summary.get("selection") or {}).get("split")
        if "validation" not in budget and isinstance(split, dict):  # the card's selection split, as the trainer records it
            from fsr_bench.data.folders import split_identity

            budget["validation"] = {**split_identity({**split, "list_file": None}),
                                    "list_file": split.get("list_file"),
                                    "list_sha256": summary["selection"].get("list_sha256")}
        return budget or None
    if spec.checkpoint is None:
        return None
    from fsr_bench.models.checkpoint import training_record

    return training_record(spec.checkpoint)


def evaluated_split(protocol: Any) -> dict[str, Any] | None:
    """The images a protocol scores, as :func:`fsr_bench.data.folders.split_identity` names them (the
    reconstruction ``data.dataset`` block, a recognition set's ``data`` block); None for data without a root."""
    from fsr_bench.data.folders import split_identity

    data: Any = getattr(protocol, "data", None)
    block = getattr(data, "dataset", None)
    if not isinstance(block, dict):
        block = data.model_dump(mode="json") if hasattr(data, "model_dump") else None
    return split_identity(block) if isinstance(block, dict) and block.get("root") else None


def count_gflops(model: "SuperResolver", lr: torch.Tensor) -> float | None:
    """Forward GFLOPs per image of ``lr``'s size (:func:`fsr_bench.models.count_gflops`), or None
    for a model with an op FlopCounterMode cannot trace: that must not cost the benchmark."""
    from fsr_bench.models import count_gflops as count

    try:
        return count(model, (int(lr.shape[-2]), int(lr.shape[-1])))
    except Exception:
        return None


def read_json(path: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None

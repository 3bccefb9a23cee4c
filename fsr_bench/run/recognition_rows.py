"""The rows of a recognition or verification run (references and SR models) and how a row's probes
are super-resolved: shared by :mod:`fsr_bench.run.recognition` and :mod:`fsr_bench.run.verification`.

A row says what it gives the detector (``input``): the LR probe as is (``"lr"``, the "LR image"
reference), the HR probe (``"hr"``, the "HR probes" upper bound) or a model's SR output of the LR
probe (``"sr"``), so the runners never test labels to know what to read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from fsr_bench.models.precision import infer, resolve_precision
from fsr_bench.protocol import ModelSpec
from fsr_bench.run.caches import SRStore, content_key
from fsr_bench.run.common import checkpoint_sha, load_model, training_of

__all__ = ["Row", "build_model", "model_row", "super_resolve", "trained_with"]


def trained_with(spec: ModelSpec) -> list[str]:
    """Recognisers whose features trained this checkpoint (its train_config's ``loss.identity.recogniser``
    and ``loss.identity_net``); empty without a checkpoint or identity loss."""
    from fsr_bench.models.checkpoint import read_checkpoint

    if not spec.checkpoint:
        return []
    loss = (read_checkpoint(spec.checkpoint).get("train_config") or {}).get("loss") or {}
    names = []
    identity = loss.get("identity")
    if isinstance(identity, dict):
        names.append(str(identity.get("recogniser") or "mobilefacenet"))
    if loss.get("identity_net"):
        names.append(str(loss["identity_net"]))
    return sorted(set(names))


@dataclass
class Row:
    label: str
    name: str
    role: str = "model"  # fsr_bench.results.Role
    input: Literal["lr", "hr", "sr"] = "sr"  # what the detector is given (module docstring)
    spec: ModelSpec | None = None
    scale: int | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    training: dict[str, Any] | None = None  # what the weights cost (run.common.training_of)
    sr_store: SRStore | None = None
    trained_with: list[str] = field(default_factory=list)
    variant: str | None = None
    work: dict[str, Any] = field(default_factory=dict)


def super_resolve(row: Row, lrs: list[torch.Tensor | None], state: dict[str, Any], device: str
                   ) -> list[torch.Tensor | None]:
    """SR of a batch through the row's cache; the model is built on the first cache miss only."""
    from fsr_bench.data.io import to_uint8

    store = row.sr_store
    assert store is not None and row.spec is not None
    keys = [None if lr is None else content_key(lr) for lr in lrs]
    missing: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
    for k, lr in zip(keys, lrs):
        if k is not None and lr is not None and not store.holds(k, lr):
            missing.setdefault((int(lr.shape[-2]), int(lr.shape[-1])), {})[k] = lr
    for group in missing.values():
        if state.get("model") is None:
            state["model"] = build_model(row.spec, device, state["scale"], state["run"].channels_last)
            store.scale = state["model"].scale
        ks = list(group)
        run = state["run"]
        sr = infer(state["model"], torch.stack([group[k] for k in ks]).to(device),
                   resolve_precision(run.precision, device), run.channels_last).clamp(0, 1)
        for k, out in zip(ks, to_uint8(sr).cpu()):
            store.put(k, out.clone())
        row.work["sr_computed"] += len(ks)
    row.work["sr_reused"] += sum(1 for k in keys if k is not None) - sum(len(g) for g in missing.values())
    return [None if k is None else store.outputs[k].float() / 255.0 for k in keys]


def build_model(spec: ModelSpec, device: str, scale: int, channels_last: bool = False):
    return load_model(spec, device, scale, f"this protocol's probes are made for x{scale}; use the _x{scale} "
                      "variant of the model (or change the data block's scale)", channels_last=channels_last)


def model_row(spec: ModelSpec, sr_dir: Path, scale: int, device: str, force: bool, inference: str,
              evaluated: dict[str, Any] | None = None) -> Row:
    sha = checkpoint_sha(spec)
    store = SRStore(sr_dir, spec, sha, fresh=force, inference=inference, scale=scale)
    if store.scale is None:  # never run: build it now so a bad model fails before the long work
        model = build_model(spec, device, scale)
        store.scale, store.variant = model.scale, getattr(model, "variant", None)
        del model
    return Row(label=spec.display, name=spec.name, role="model", spec=spec, scale=store.scale, checkpoint=spec.checkpoint,
                checkpoint_sha256=sha, training=training_of(spec, evaluated), sr_store=store, trained_with=trained_with(spec),
                variant=store.variant)

"""Checkpoints that rebuild their own architecture.

A checkpoint is a plain dict saved with ``torch.save`` and read back with ``weights_only=True``
(no pickled code runs on load)::

    {"format": "fsr-bench", "version": 1, "model": "tanet_x4", "config": {...},
     "state_dict": {...}, "meta": {...}}   # trainer adds optimizer / scheduler / rng / epoch

``create_model(checkpoint=path)`` reads ``model`` and ``config`` and rebuilds the exact architecture,
then loads with strict keys. A bare ``state_dict`` (e.g. an upstream release) is accepted when the
model name is given; the model's ``convert_state_dict`` maps foreign keys.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from fsr_bench.atomic import sha256_file, write_bytes  # noqa: F401  (sha256_file re-exported)
from fsr_bench.errors import FsrBenchError

FORMAT = "fsr-bench"
VERSION = 1


class CheckpointError(FsrBenchError, RuntimeError):
    pass


def save_checkpoint(model, path: str | os.PathLike, **extra: Any) -> Path:
    """Save ``model`` (a registered SuperResolver) with its name and config, atomically."""
    write_bytes(path, checkpoint_bytes(model, **extra))
    return Path(path)


def checkpoint_bytes(model, **extra: Any) -> bytes:
    """What :func:`save_checkpoint` writes, in memory (a caller writing it to several files at once)."""
    if not getattr(model, "name", ""):
        raise CheckpointError(
            "the model has no registered name; build it with fsr_bench.create_model(...) so its "
            "checkpoint can rebuild the architecture"
        )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": model.name,
        "config": model.config_dict(),
        "state_dict": state,
        **extra,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint dict safely; a bare state_dict comes back as ``{"state_dict": ...}``."""
    path = Path(path)
    if path.is_dir():  # a training run folder, most likely: name the files it holds
        inside = sorted(p.name for p in path.glob("*.pt")) or ["no .pt file"]
        raise CheckpointError(f"checkpoint {path} is a folder, not a file (it holds: {', '.join(inside)}); "
                              f"pass a checkpoint file, e.g. {path / 'best.pt'}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return {"state_dict": load_file(str(path))}
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""  # torch's is a page long
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(exc).__name__}: {reason} fsr-bench loads with "
            "weights_only=True; re-save foreign checkpoints as a plain state_dict of tensors."
        ) from exc
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return obj
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"state_dict": obj}
    if isinstance(obj, dict):  # common upstream wrappers: {"state_dict": ...}, {"model": ...}
        for key in ("state_dict", "model", "params", "net", "generator"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(
                isinstance(v, torch.Tensor) for v in inner.values()
            ):
                return {"state_dict": inner}
    raise CheckpointError(
        f"{path} is neither an fsr-bench checkpoint nor a state_dict of tensors "
        f"(top-level keys: {sorted(obj)[:10] if isinstance(obj, dict) else type(obj).__name__})"
    )


def training_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """What the weights in ``path`` cost, as ``fsr-bench train`` recorded it; None for any other file.

    ``steps``/``epochs``/``train_minutes`` are the whole run's: a ``best.pt`` picked at step k of an
    n-step run cost n steps, which the run's ``summary.json`` beside it says (only when its
    ``best.step`` is this checkpoint's step: a copied checkpoint keeps what it records itself);
    ``selected_step`` is where the weights were picked, ``validation`` the split they were picked on
    (:func:`fsr_bench.data.folders.split_identity`: list file + sha256; for checkpoints written before the
    trainer recorded it, read from the training config's ``data.val``, None without one). Results rows carry
    this, so a leaderboard built from committed results files needs no checkpoint.
    """
    obj = read_checkpoint(path)
    if "step" not in obj:  # a bare state_dict, an upstream release, a safetensors file
        return None
    cfg = obj.get("train_config") or {}
    record: dict[str, Any] = {
        "steps": obj.get("step"), "epochs": obj.get("epoch"),
        "train_minutes": round(float(obj.get("elapsed_s") or 0.0) / 60, 1),
        "device": (obj.get("meta") or {}).get("device"), "precision": cfg.get("precision"),
        "channels_last": cfg.get("channels_last"), "cpu_threads": cfg.get("cpu_threads"),
        "selected_step": obj.get("step"),
    }
    validation = obj.get("validation") or _validation_of(cfg)
    if validation is not None:
        record["validation"] = validation
    try:
        summary = json.loads((Path(path).parent / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return record
    if isinstance(summary, dict) and (summary.get("best") or {}).get("step") == obj.get("step"):
        record.update(steps=summary.get("steps"), epochs=summary.get("epochs"),
                      train_minutes=round(float(summary.get("elapsed_s") or 0.0) / 60, 1))
    return record


def _validation_of(train_config: dict[str, Any]) -> dict[str, Any] | None:
    from fsr_bench.data.folders import DatasetConfigError, split_identity

    data = train_config.get("data") or {}
    if not isinstance(data.get("val"), dict):
        return None
    try:
        return split_identity(data["val"], data.get("data_root"))
    except DatasetConfigError:  # ${FSR_BENCH_DATA} unset here: the split is unknown, not an error
        return None


def load_state_dict_strict(model, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Strict load with an error that says what is missing, unexpected or mis-shaped."""
    state_dict = model.convert_state_dict(dict(state_dict))
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shape = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:5]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:5]})")
        if shape:
            parts.append(f"{len(shape)} shape mismatches (e.g. {shape[:3]})")
        raise CheckpointError(
            f"checkpoint {source} does not fit model {model.name or type(model).__name__}: "
            + "; ".join(parts)
            + ". Is it a checkpoint of another model or config?"
        )
    model.load_state_dict(state_dict, strict=True)

"""Super-resolver registry: ``register_model``, ``create_model``, ``list_models``.

A builder is a function ``name(**overrides) -> SuperResolver`` decorated with ``@register_model``.
Built-in models live in ``fsr_bench.models``; the paper's baselines in the top-level ``baselines``
package register through the entry-point group ``fsr_bench.models`` exactly as a third-party
plug-in would (see ``pyproject.toml``)::

    [project.entry-points."fsr_bench.models"]
    my_model = "my_package.my_model"      # importing the module runs its @register_model
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from fsr_bench.registry import Registry, RegistryError

if TYPE_CHECKING:  # torch loads only when a model is built: `fsr-bench list models` must not pay for it
    from fsr_bench.models.base import ModelInfo, SuperResolver

ENTRY_POINT_GROUP = "fsr_bench.models"

MODELS: Registry[Callable[..., SuperResolver]] = Registry(
    kind="model",
    entry_point_group=ENTRY_POINT_GROUP,
    builtin_modules=("fsr_bench.models.interpolate", "fsr_bench.models.tanet"),
    listing="fsr-bench list models",
)


def register_model(
    fn: Callable[..., SuperResolver] | None = None,
    *,
    name: str | None = None,
    tiny: dict[str, Any] | None = None,
    checkpoint_defaults: dict[str, Any] | None = None,
):
    """Register a builder: bare ``@register_model`` or ``@register_model(tiny={...})``.

    ``tiny``: config overrides giving a small instance of the same architecture (e.g. fewer
    blocks) that the registry-wide tests use, so any registered model is tested for free.
    ``checkpoint_defaults``: values for config fields a checkpoint's saved config lacks (a field
    added later whose default changes the function: old checkpoints keep computing what they did).
    """
    if name is not None and "." in name:  # "." joins a model name and a pretrained tag (timm's MODEL.TAG)
        raise RegistryError(f"model name {name!r}: '.' is reserved for pretrained ids (MODEL.TAG); use '_'")
    if fn is not None:
        return MODELS.register(name, tiny, checkpoint_defaults)(fn)
    return MODELS.register(name, tiny, checkpoint_defaults)


def __getattr__(name: str) -> Any:
    if name in ("ModelInfo", "SuperResolver"):
        from fsr_bench.models import base

        return getattr(base, name)
    raise AttributeError(f"module 'fsr_bench.models' has no attribute {name!r}")


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (e.g. ``"tanet*"``)."""
    return MODELS.names(pattern)


def create_model(
    name: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    pretrained: bool = False,
    **overrides: Any,
) -> SuperResolver:
    """Build a registered model, optionally loading weights.

    * ``create_model("tanet_x4")`` – architecture with its registered defaults, random init;
    * ``create_model(checkpoint="best.pt")`` – rebuild the exact architecture the checkpoint
      records (model name + config), then load its weights with strict keys;
    * ``create_model("srfbn_x4", checkpoint="upstream.pth")`` – a bare state_dict (e.g. upstream
      release), mapped by the model's ``convert_state_dict``;
    * ``create_model("tanet_s_x4", pretrained=True)`` – the registered pretrained weights (shipped
      with fsr-bench or downloaded once, SHA-256 verified; see ``fsr_bench.models.pretrained``);
      ``create_model("srfbn_s_x8.compute20", pretrained=True)`` – one of several weights of a model,
      by its pretrained id ``MODEL.TAG`` (timm's convention).

    ``overrides`` are config fields (e.g. ``num_blocks=2``) applied over the defaults, or over the
    checkpoint's config.
    """
    from fsr_bench.models.checkpoint import CheckpointError, load_state_dict_strict, read_checkpoint

    if pretrained:
        if checkpoint is not None:
            raise CheckpointError("give either a checkpoint or pretrained=True, not both")
        if name is None:
            raise CheckpointError("pretrained=True needs a model name (see `fsr-bench list models --pretrained`)")
        return _create_pretrained(name, overrides)
    ckpt = read_checkpoint(checkpoint) if checkpoint is not None else None
    ckpt_name = ckpt.get("model") if ckpt else None
    if name is None:
        if ckpt_name is None:
            raise CheckpointError(
                "create_model needs a model name, or a checkpoint saved by fsr-bench that records one"
                + (f" ({checkpoint} is a bare state_dict: pass the model name too)" if ckpt else "")
            )
        name = ckpt_name
    elif ckpt_name is not None and ckpt_name != name:
        raise CheckpointError(
            f"checkpoint {checkpoint} was saved for model {ckpt_name!r}, not {name!r}; "
            f"name the model {ckpt_name!r} (or give no model name: the checkpoint names it)"
        )
    if "." in name:
        raise CheckpointError(
            f"{name!r} is a pretrained id (MODEL.TAG): load it with pretrained=True (`pretrained: true` in a "
            f"protocol row, --pretrained on the command line), or name the model {name.partition('.')[0]!r}")
    entry = MODELS.get(name)
    config = dict(ckpt.get("config") or {}) if ckpt else {}
    if config and entry.checkpoint_defaults:
        config = {**entry.checkpoint_defaults, **config}
    config.update(overrides)
    try:
        model = entry.builder(**config)
    except TypeError as exc:
        raise TypeError(f"cannot build {name!r} with config {config}: {exc}") from exc
    from fsr_bench.models.base import SuperResolver

    if not isinstance(model, SuperResolver):
        raise TypeError(f"builder {name!r} returned {type(model).__name__}, not a SuperResolver")
    if "scale" in config and model.scale != int(config["scale"]):
        raise ValueError(f"{name!r} built a x{model.scale} model although scale={config['scale']} was asked")
    model.name = name
    if ckpt is not None and checkpoint is not None:  # both or neither
        load_state_dict_strict(model, ckpt["state_dict"], source=str(checkpoint))
        model.checkpoint_path = str(Path(checkpoint).resolve())
    return model


def _create_pretrained(name: str, overrides: dict[str, Any]) -> "SuperResolver":
    from fsr_bench.models.checkpoint import load_state_dict_strict
    from fsr_bench.models.pretrained import get_pretrained, load_state_dict, weights_path

    entry = get_pretrained(name)  # a model name, or a pretrained id MODEL.TAG
    model = MODELS.get(entry.model).builder(**{**entry.config, **overrides})
    model.name = entry.model
    load_state_dict_strict(model, load_state_dict(entry), source=f"pretrained {entry.weights.filename}")
    model.checkpoint_path = str(weights_path(entry))
    model.pretrained = entry
    return model


def count_gflops(model: "SuperResolver", lr_size: tuple[int, int]) -> float:
    """Forward GFLOPs for one image (torch FlopCounterMode; 1 multiply-add = 2 FLOPs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, *lr_size, device=device))
    return counter.get_total_flops() / 1e9


def model_summary(name: str, flops: bool = False) -> dict[str, Any]:
    """One row of ``fsr-bench list models``: name, scale, parameters, paper.

    Built on the ``meta`` device (shapes only, no memory, no init cost) so listing 100M-parameter
    models is instant; falls back to the CPU for a model whose constructor needs real tensors.
    """
    import torch

    try:
        with torch.device("meta"):
            model = create_model(name)
    except Exception:
        model = create_model(name)
    row: dict[str, Any] = {
        "name": name,
        "scale": model.scale,
        "params": model.num_parameters(),
        "paper": model.info.paper,
        "input": model.info.input_convention,
        "source": MODELS.get(name).source,
    }
    if flops:  # at the paper's FFHQ sizes: 256x256 HR (64x64 LR at x4, 32x32 at x8)
        side = 256 // model.scale
        try:
            row["gflops"] = count_gflops(model.eval(), (side, side))
        except Exception:  # an op the meta device cannot run: count on the CPU instead
            row["gflops"] = count_gflops(create_model(name).eval(), (side, side))
        row["lr_size"] = (side, side)
    return row


__all__ = [
    "MODELS",
    "ModelInfo",
    "RegistryError",
    "SuperResolver",
    "create_model",
    "list_models",
    "model_summary",
    "register_model",
]

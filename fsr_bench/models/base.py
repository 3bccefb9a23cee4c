"""The one interface every super-resolver in fsr-bench implements.

Contract (the same for TANet, every baseline and every plug-in):

* input ``lr``: RGB, float, values in [0, 1], shape ``(N, 3, h, w)`` for **any** ``h, w >= 1``;
* output: RGB float, shape ``(N, 3, scale*h, scale*w)``, nominally in [0, 1] (not clamped, so that
  training sees gradients everywhere; evaluation clamps and quantises, see ``fsr_bench.metrics``);
* a model whose architecture needs sizes that are multiples of ``size_multiple`` (patch tokens,
  strided convolutions) gets its input reflect-padded here and its output cropped back here, so no
  caller ever has to know;
* each model converts to its own native input convention *inside* ``forward_native`` (e.g. SPARNet's
  bicubic pre-upsampling to [-1, 1]); outside, every model takes the same LR tensor.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from fsr_bench.models.pretrained import Pretrained


@dataclass(frozen=True)
class ModelInfo:
    """What a person needs to know to cite and compare a model."""

    paper: str  # "Wang et al., TANet, arXiv:2109.08174"
    input_convention: str = "native LR, RGB [0,1]"  # what the network itself sees
    repo: str = ""  # upstream code, if any
    notes: str = ""  # deviations from the paper, assumptions


def check_scale(requested: int, registered: int) -> int:
    """Builders accept ``scale`` (checkpoint configs carry it) but a ``_x4`` model stays ×4."""
    if int(requested) != registered:
        raise ValueError(
            f"this variant is registered for x{registered}; got scale={requested}. Use the _x{requested}"
            " variant of the model instead"
        )
    return registered


class SuperResolver(nn.Module):
    """Base class: pads to ``size_multiple``, calls ``forward_native``, crops back.

    Subclasses set ``self.scale``, ``self.config`` (a dataclass of JSON-serialisable fields that
    rebuilds the architecture) and class attribute ``info``; and implement ``forward_native``.
    ``name`` is filled in by :func:`fsr_bench.models.create_model` with the registered name.
    """

    info: ModelInfo = ModelInfo(paper="")  # a class attribute; a model may refine it per instance (TANet)
    size_multiple: int = 1
    name: str = ""
    # set by create_model only when weights are loaded (annotations alone: absent otherwise)
    checkpoint_path: str
    pretrained: Pretrained

    def __init__(self, scale: int, config: Any = None):
        super().__init__()
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        self.scale = int(scale)
        self.config = config

    # -- the interface --------------------------------------------------------------------------
    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        if lr.ndim != 4 or lr.shape[1] != 3:
            raise ValueError(
                f"{type(self).__name__} expects an RGB batch (N, 3, h, w) in [0, 1]; got shape"
                f" {tuple(lr.shape)}"
            )
        h, w = lr.shape[-2:]
        m = self.size_multiple
        pad_h, pad_w = (-h) % m, (-w) % m
        if pad_h or pad_w:
            # reflect keeps image statistics at the border; it needs pad < size, else replicate
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            lr = F.pad(lr, (0, pad_w, 0, pad_h), mode=mode)
        sr = self.forward_native(lr)  # (N, 3, s*(h+pad_h), s*(w+pad_w))
        return sr[..., : h * self.scale, : w * self.scale]

    def forward_native(self, lr: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- checkpoints ----------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        """The architecture's config as plain JSON types (what a checkpoint stores)."""
        if self.config is None:
            return {}
        if dataclasses.is_dataclass(self.config) and not isinstance(self.config, type):
            return dataclasses.asdict(self.config)
        return dict(self.config)

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map a foreign (e.g. upstream-released) state_dict to this module's keys.

        The default is the identity; baselines whose upstream checkpoints use other names
        override it (documented key mapping, tested on a checkpoint saved in the upstream layout).
        """
        return state_dict

    # -- metadata -------------------------------------------------------------------------------
    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"

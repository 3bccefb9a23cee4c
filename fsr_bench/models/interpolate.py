"""Interpolation floors: no weights, the lower bound every learned model must beat.

``bicubic_x{4,8}`` upsample with the cubic convolution kernel a = -0.5 (Keys 1981), the kernel of
MATLAB ``imresize``, through the MATLAB-compatible resize in ``fsr_bench.data.resize`` (shared with
the degradations; mirrored borders as current MATLAB). PyTorch's own ``bicubic`` uses a = -0.75 and
differs measurably; it stays selectable as ``kernel="torch_bicubic"`` for comparison.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fsr_bench.models import register_model
from fsr_bench.models.base import ModelInfo, SuperResolver, check_scale


@dataclass
class InterpolateConfig:
    scale: int = 4
    kernel: str = "matlab_bicubic"  # matlab_bicubic (a=-0.5) | torch_bicubic (a=-0.75) | bilinear | nearest


class Interpolate(SuperResolver):
    info = ModelInfo(
        paper="Keys, Cubic convolution interpolation for digital image processing, 1981",
        input_convention="native LR, RGB [0,1]",
        notes="no parameters; MATLAB-compatible cubic kernel a=-0.5 by default",
    )

    def __init__(self, config: InterpolateConfig):
        super().__init__(config.scale, config)
        if config.kernel not in ("matlab_bicubic", "torch_bicubic", "bilinear", "nearest"):
            raise ValueError(f"unknown interpolation kernel {config.kernel!r}")

    def forward_native(self, lr: torch.Tensor) -> torch.Tensor:
        k = self.config.kernel
        if k == "matlab_bicubic":
            from fsr_bench.data.resize import imresize

            return imresize(lr, scale=self.scale)
        size = (lr.shape[-2] * self.scale, lr.shape[-1] * self.scale)
        mode = {"torch_bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest"}[k]
        kw = {} if mode == "nearest" else {"align_corners": False}
        return torch.nn.functional.interpolate(lr, size=size, mode=mode, **kw)


def _interp(scale: int, /, **overrides) -> Interpolate:
    overrides["scale"] = check_scale(overrides.get("scale", scale), scale)
    cfg = InterpolateConfig(**overrides)
    return Interpolate(cfg)


@register_model
def bicubic_x4(**overrides) -> Interpolate:
    return _interp(4, **overrides)


@register_model
def bicubic_x8(**overrides) -> Interpolate:
    return _interp(8, **overrides)

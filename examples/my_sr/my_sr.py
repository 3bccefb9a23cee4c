"""An example third-party super-resolver for fsr-bench (README: "Benchmark your own model").

Replace the network with yours; keep the three things fsr-bench needs: a ``SuperResolver`` subclass
(RGB [0, 1] in, ``scale`` x larger out), a dataclass config that rebuilds it (checkpoints store it), and
``@register_model`` builders whose names end in the scale (``my_sr_x8``). The entry point in
``pyproject.toml`` makes ``fsr-bench`` import this module, so the names appear in ``fsr-bench list
models`` and every protocol, training config and leaderboard can use them.

The network: bicubic upsampling plus a learned residual (conv -> ReLU -> conv -> pixel shuffle), the
idea of VDSR (Kim et al., CVPR 2016) in its smallest form.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from fsr_bench.models import register_model
from fsr_bench.models.base import ModelInfo, SuperResolver, check_scale


@dataclass
class MySRConfig:
    scale: int = 8
    channels: int = 32  # feature channels of the residual branch


class MySR(SuperResolver):
    info = ModelInfo(paper="example plug-in (bicubic + learned residual, after VDSR)",
                     notes="a template for your own model")

    def __init__(self, config: MySRConfig):
        super().__init__(config.scale, config)
        c, s = config.channels, config.scale
        self.body = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(c, 3 * s * s, 3, padding=1), nn.PixelShuffle(s))

    def forward_native(self, lr: Tensor) -> Tensor:
        up = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return up + self.body(lr)


def _my_sr(scale: int, /, **overrides) -> MySR:
    overrides["scale"] = check_scale(overrides.get("scale", scale), scale)  # checkpoints repeat it
    return MySR(MySRConfig(**overrides))


@register_model(tiny={"channels": 4})
def my_sr_x4(**overrides) -> MySR:
    """The example plug-in, x4."""
    return _my_sr(4, **overrides)


@register_model(tiny={"channels": 4})
def my_sr_x8(**overrides) -> MySR:
    """The example plug-in, x8."""
    return _my_sr(8, **overrides)

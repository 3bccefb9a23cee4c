"""EDSR-family building blocks shared by the NLSN and IPT baselines (and free for others).

Both upstream repositories are built on EDSR-PyTorch (Lim et al., "Enhanced Deep Residual Networks
for Single Image Super-Resolution", CVPRW 2017, github.com/sanghyun-son/EDSR-PyTorch) and ship the
same ``model/common.py`` blocks; we rewrite them here with the *same sub-module layout* so that
upstream ``state_dict`` keys map onto ours by prefix stripping only:

* HarukiYqM/Non-Local-Sparse-Attention ``src/model/common.py``
* huawei-noah/Pretrained-IPT ``model/common.py``

One intentional difference: upstream ``MeanShift`` is a frozen ``nn.Conv2d`` whose weight/bias are
saved in every checkpoint (``sub_mean.weight`` …). Ours keeps them as *non-persistent buffers*
(they are a pure function of ``rgb_range``, which the config records) and
:func:`pop_mean_shift` checks and drops the upstream copies when converting a checkpoint, so an
upstream file trained with another ``rgb_range`` is an error instead of a silent shift.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fsr_bench.models.checkpoint import CheckpointError

# DIV2K RGB mean used by EDSR, NLSN and IPT (std 1): the mean shift both repositories apply
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def default_conv(in_ch: int, out_ch: int, kernel_size: int, bias: bool = True) -> nn.Conv2d:
    """'same'-padded convolution (EDSR ``default_conv``)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=bias)


class MeanShift(nn.Module):
    """``x + sign * rgb_range * mean`` per channel (EDSR ``MeanShift`` with std = 1).

    Kept as a 1x1 convolution with fixed weight/bias buffers so the arithmetic is exactly
    upstream's. ``persistent``: whether the buffers are in the state dict — False for the EDSR
    family (see module docstring), True where upstream's checkpoints carry them under the names
    ``weight``/``bias`` (SRFBN, SISN/CutBlur), so those load by name.
    """

    def __init__(self, rgb_range: float, sign: int = -1, rgb_mean=DIV2K_RGB_MEAN, persistent: bool = False):
        super().__init__()
        self.register_buffer("weight", torch.eye(3).view(3, 3, 1, 1), persistent=persistent)
        bias = sign * float(rgb_range) * torch.tensor(rgb_mean, dtype=torch.float32)
        self.register_buffer("bias", bias, persistent=persistent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype))  # (N, 3, H, W)


class ResBlock(nn.Module):
    """conv → act → conv, scaled by ``res_scale``, plus identity (EDSR ``ResBlock``, no BN).

    ``self.body`` is an ``nn.Sequential`` (conv, act, conv) as upstream, so keys are
    ``body.0.weight`` / ``body.2.weight``.
    """

    def __init__(self, n_feats: int, kernel_size: int = 3, res_scale: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(
            default_conv(n_feats, n_feats, kernel_size),
            nn.ReLU(inplace=True),
            default_conv(n_feats, n_feats, kernel_size),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * self.res_scale + x  # (N, C, H, W)


class Upsampler(nn.Sequential):
    """EDSR upsampler: log2(scale) × [conv3x3 C→4C, PixelShuffle(2)] for 2^n, or one ×3 stage.

    Layout (and hence keys ``0.weight``, ``2.weight``, ``4.weight``) as upstream with
    ``bn=False, act=False``. ×8 therefore has three stages: a ×4 checkpoint fills the first two.
    """

    def __init__(self, scale: int, n_feats: int):
        layers: list[nn.Module] = []
        if scale >= 2 and scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [default_conv(n_feats, 4 * n_feats, 3), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [default_conv(n_feats, 9 * n_feats, 3), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"the EDSR upsampler supports scales 2^n and 3, got {scale}")
        super().__init__(*layers)


# ----------------------------------------------------------------------------------------------
# Upstream checkpoint helpers
# ----------------------------------------------------------------------------------------------
def strip_prefixes(state_dict: dict, prefixes=("module.", "model.")) -> dict:
    """Drop wrapper prefixes (``nn.DataParallel``'s ``module.``, a ``Model`` wrapper's ``model.``).

    A prefix is removed only when *every* key carries it, repeatedly (``module.model.`` …).
    """
    changed = True
    while changed and state_dict:
        changed = False
        for p in prefixes:
            if all(k.startswith(p) for k in state_dict):
                state_dict = {k[len(p):]: v for k, v in state_dict.items()}
                changed = True
    return state_dict


def pop_mean_shift(state_dict: dict, model: nn.Module, names=("sub_mean", "add_mean")) -> dict:
    """Remove upstream's saved MeanShift weight/bias after checking they equal ours.

    A mismatch means the checkpoint was trained with another ``rgb_range`` (1 vs 255): building
    the model with the checkpoint's ``rgb_range`` is the fix, and the error says so.
    """
    for name in names:
        ours: MeanShift = getattr(model, name)
        for attr in ("weight", "bias"):
            key = f"{name}.{attr}"
            if key not in state_dict:
                continue
            theirs = state_dict.pop(key).float().reshape(getattr(ours, attr).shape)
            if not torch.allclose(theirs, getattr(ours, attr).float().cpu(), atol=1e-4):
                implied = (theirs.abs().max() / max(DIV2K_RGB_MEAN)).item() if attr == "bias" else None
                raise CheckpointError(
                    f"checkpoint {key} = {theirs.flatten().tolist()} does not match this model's "
                    f"mean shift {getattr(ours, attr).flatten().tolist()}"
                    + (f": it was trained with rgb_range ≈ {implied:.0f}; build the model with "
                       f"rgb_range={implied:.0f}" if implied is not None else "")
                )
    return state_dict

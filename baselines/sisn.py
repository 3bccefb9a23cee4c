"""SISN: Face Hallucination via Split-Attention in Split-Attention Network.

Paper: T. Lu, Y. Wang, Y. Zhang, Y. Wang, W. Liu, Z. Wang, J. Jiang, "Face Hallucination via
Split-Attention in Split-Attention Network", ACM MM 2021 (arXiv:2010.11575).
Code:  https://github.com/mdswyz/SISN-Face-Hallucination (``model/sisn.py``,
``model/utils/isab.py``, ``model/utils/ISA.py``, ``option.py``, ``solver.py``); its
``ops.DownBlock`` and ``Upsampler`` / ``MeanShift`` / ``default_conv`` come from CutBlur
(clovaai/cutblur ``model/ops.py``) and EDSR-PyTorch (``src/model/common.py``), which it builds on.

Architecture::

    x = nearest_upsample(255 * lr, scale)   # solver.py: F.interpolate 'nearest'
    x = head(sub_mean(x))                   # space-to-depth(scale), Conv3x3(3s² -> C)
    x = x + body(x)                         # G × ESAG, Conv3x3(C -> C)
    sr = add_mean(tail(x)) / 255            # log2(s) × [Conv3x3(C -> 4C), PixelShuffle(2)],
                                            # Conv3x3(C -> 3)

* ESAG (external-internal split attention group): ``body(x) + IA(x)`` where ``body`` = B × ISAB
  then Conv3x3 (the "internal" path) and ``IA`` is one more ISAB applied to the group's input
  (the "external" path).
* ISAB (internal-feature split attention block; a ResNeSt bottleneck with stride 1):
  ``relu(x + bn3(conv3(ISA(relu(bn1(conv1(x)))))))`` with 1×1 convs without bias.
* ISA (split attention, radix r): a grouped 3×3 conv (groups = r, no bias) produces r splits of C
  channels, BatchNorm + ReLU; the splits are summed, global-average-pooled, squeezed by a 1×1 conv
  to ``max(C·r / 4, 32)`` channels (+ BatchNorm + ReLU), expanded by a 1×1 conv to r·C logits, and a
  softmax *across the r splits* (per channel) weights the splits' sum.

Defaults (``option.py`` ``make_template``): 10 groups × 10 blocks, 64 channels, radix 4
(``Internal_feature_Split_Attention_Block(radix=4)``); L1 loss, Adam(2e-4, betas (0.9, 0.999),
eps 1e-8), lr halved every 50k steps; RGB PSNR with a ``6 + scale`` border crop. ``option.py``
also sets ``reduction = 16``, but the network never uses it (``Net`` reads it into an unused local);
the split attention's squeeze is set by ``ISA``'s own ``reduction_factor=4`` (with floor 32),
which here is ``attn_reduction``. PyTorch default initialisation (upstream has no init code).

Parameters at the default config: 8,073,795 (×4), 8,304,451 (×8; wider head conv, one more
upsampling stage). Upstream's ``print("# params:", …)`` counts 450,584 more (×4: 8,524,379;
×8: 8,755,035): each of the 110 ISABs builds a 1×1 ``skip`` conv (4,096 weights) that ``forward``
never uses (``inplanes == planes``), not built here, plus the 24 frozen mean-shift weights
(buffers here). We found no parameter count published for SISN to compare against.

The space-to-depth input stage: nearest upsampling by s followed by space-to-depth by s gives
back the LR pixels, each repeated s² times along channels (CutBlur's channel order: index
``(i·s + j)·3 + c`` for offset (i, j) within the s×s cell). It is computed literally as upstream
does (it lets CutBlur-style HR-size inputs through the same head); it loses no information and
adds none, and any LR size works (``size_multiple`` = 1).

Differences from upstream, and why:

* Input/output: fsr-bench feeds RGB in [0, 1]; upstream works on [0, 255] (``rgb_range`` 255,
  mean shift by 255·DIV2K mean), so the model scales by ``rgb_range`` inside and divides its
  output by it; the nearest pre-upsampling (upstream: in the solver) is inside the model.
* The unused ``skip`` convs are not built (they would receive no gradient);
  ``sub_mean``/``add_mean`` are buffers, not frozen ``Conv2d`` parameters (same keys).

Upstream checkpoint key mapping (:meth:`SISN.convert_state_dict`): module names equal upstream
names (``head.1.weight``, ``body.3.body.7.conv2.conv1x1_2.bias``, ``body.3.IA.bn3.running_var``,
``tail.0.2.weight``, …). Upstream saves the ``nn.DataParallel`` state_dict, so: strip ``module.``;
drop the unused ``*.skip.weight``; fill ``num_batches_tracked`` = 0 where a checkpoint lacks it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from baselines.common import MeanShift  # persistent buffers: upstream checkpoints carry them
from fsr_bench.models import register_model
from fsr_bench.models.base import ModelInfo, SuperResolver, check_scale



@dataclass
class SISNConfig:
    scale: int = 4  # 2 | 3 | 4 | 8
    num_groups: int = 10  # ESAGs
    num_blocks: int = 10  # ISABs per ESAG (plus one ISAB on the external path)
    num_channels: int = 64  # C
    radix: int = 4  # splits per split-attention conv
    attn_reduction: int = 4  # ISA squeeze: max(C * radix // attn_reduction, attn_min_channels)
    attn_min_channels: int = 32
    rgb_range: float = 255.0  # range the network works in (upstream: 255)


# -- blocks ----------------------------------------------------------------------------------------
class SpaceToDepth(nn.Module):
    """CutBlur's ``DownBlock``: (N, C, H, W) → (N, s²·C, H/s, W/s), channel ``(i·s + j)·C + c``.

    (``F.pixel_unshuffle`` orders channels ``c·s² + i·s + j`` instead: the head conv's weights
    would not match upstream's.)
    """

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        s = self.scale
        x = x.view(n, c, h // s, s, w // s, s).permute(0, 3, 5, 1, 2, 4)  # (N, s, s, C, H/s, W/s)
        return x.reshape(n, s * s * c, h // s, w // s)


class RSoftmax(nn.Module):
    """Softmax across the radix splits (per channel); sigmoid when radix = 1."""

    def __init__(self, radix: int):
        super().__init__()
        self.radix = radix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.radix > 1:  # cardinality 1: logits are laid out (radix, C)
            return F.softmax(x.view(n, self.radix, -1), dim=1).reshape(n, -1)  # (N, r*C)
        return torch.sigmoid(x).reshape(n, -1)


class SplitAttention(nn.Module):
    """ISA: grouped conv → r splits → GAP of their sum → 1×1 squeeze/expand → r-softmax weights."""

    def __init__(self, channels: int, radix: int = 4, reduction: int = 4, min_channels: int = 32):
        super().__init__()
        inter = max(channels * radix // reduction, min_channels)
        self.radix = radix
        self.conv = nn.Conv2d(channels, channels * radix, 3, 1, 1, groups=radix, bias=False)
        self.bn0 = nn.BatchNorm2d(channels * radix)
        self.conv1x1_1 = nn.Conv2d(channels, inter, 1)
        self.bn1 = nn.BatchNorm2d(inter)
        self.conv1x1_2 = nn.Conv2d(inter, channels * radix, 1)
        self.rsoftmax = RSoftmax(radix)

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        """``out`` (N, C, h, w); with ``return_weights`` also the weights (N, r, C), summing to
        1 over r (for r > 1)."""
        n = x.shape[0]
        x = F.relu(self.bn0(self.conv(x)))  # (N, r*C, h, w)
        splits = x.view(n, self.radix, -1, *x.shape[2:])  # (N, r, C, h, w)
        gap = F.adaptive_avg_pool2d(splits.sum(1), 1)  # (N, C, 1, 1)
        gap = F.relu(self.bn1(self.conv1x1_1(gap)))  # (N, inter, 1, 1)
        weights = self.rsoftmax(self.conv1x1_2(gap)).view(n, self.radix, -1)  # (N, r, C)
        out = (weights[..., None, None] * splits).sum(1)  # (N, C, h, w)
        return (out, weights) if return_weights else out


class ISAB(nn.Module):
    """Internal-feature split attention block: 1×1 → ISA → 1×1 bottleneck, identity residual."""

    def __init__(self, channels: int, radix: int = 4, reduction: int = 4, min_channels: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = SplitAttention(channels, radix, reduction, min_channels)
        self.conv3 = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # (N, C, h, w)
        out = self.bn3(self.conv3(self.conv2(out)))  # (N, C, h, w)
        return F.relu(out + x)


class ESAG(nn.Module):
    """External-internal split attention group: ``body(x) + IA(x)``."""

    def __init__(self, channels: int, num_blocks: int, **isa):
        super().__init__()
        self.body = nn.Sequential(*(ISAB(channels, **isa) for _ in range(num_blocks)),
                                  nn.Conv2d(channels, channels, 3, 1, 1))
        self.IA = ISAB(channels, **isa)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.IA(x)  # (N, C, h, w)


def upsampler(channels: int, scale: int) -> nn.Sequential:
    """EDSR's ``Upsampler``: log2(s) × [Conv3x3(C -> 4C), PixelShuffle(2)], or one ×3 stage."""
    layers: list[nn.Module] = []
    if scale & (scale - 1) == 0:
        for _ in range(int(math.log2(scale))):
            layers += [nn.Conv2d(channels, 4 * channels, 3, 1, 1), nn.PixelShuffle(2)]
    elif scale == 3:
        layers += [nn.Conv2d(channels, 9 * channels, 3, 1, 1), nn.PixelShuffle(3)]
    else:
        raise ValueError(f"SISN supports scales 2, 3, 4, 8; got {scale}")
    return nn.Sequential(*layers)


# -- model -----------------------------------------------------------------------------------------
class SISN(SuperResolver):
    info = ModelInfo(
        paper="Lu et al., Face Hallucination via Split-Attention in Split-Attention Network "
        "(SISN), ACM MM 2021",
        input_convention="LR nearest-upsampled to HR size then space-to-depth, RGB [0,255] minus "
        "the DIV2K mean (inside the model)",
        repo="https://github.com/mdswyz/SISN-Face-Hallucination",
        notes="unused upstream 'skip' 1x1 convs not built; mean shift as buffers",
    )

    def __init__(self, config: SISNConfig):
        super().__init__(config.scale, config)
        c = config
        isa = {"radix": c.radix, "reduction": c.attn_reduction, "min_channels": c.attn_min_channels}
        self.sub_mean = MeanShift(c.rgb_range, sign=-1, persistent=True)
        self.head = nn.Sequential(SpaceToDepth(c.scale),
                                  nn.Conv2d(3 * c.scale**2, c.num_channels, 3, 1, 1))
        self.body = nn.Sequential(*(ESAG(c.num_channels, c.num_blocks, **isa)
                                    for _ in range(c.num_groups)),
                                  nn.Conv2d(c.num_channels, c.num_channels, 3, 1, 1))
        self.tail = nn.Sequential(upsampler(c.num_channels, c.scale),
                                  nn.Conv2d(c.num_channels, 3, 3, 1, 1))
        self.add_mean = MeanShift(c.rgb_range, sign=1, persistent=True)

    def embed(self, lr: torch.Tensor) -> torch.Tensor:
        """The input stage before the head conv: (N, 3, h, w) → (N, 3·s², h, w)."""
        x = F.interpolate(lr * self.config.rgb_range, scale_factor=self.scale, mode="nearest")
        return self.head[0](self.sub_mean(x))  # (N, 3*s*s, h, w)

    def forward_native(self, lr: torch.Tensor) -> torch.Tensor:
        x = self.head[1](self.embed(lr))  # (N, C, h, w)
        x = x + self.body(x)  # (N, C, h, w)
        sr = self.add_mean(self.tail(x))  # (N, 3, s*h, s*w), [0, 255]
        return sr / self.config.rgb_range

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Upstream → ours: strip ``module.``, drop unused ``*.skip.weight``, add missing
        ``num_batches_tracked`` (= 0)."""
        sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
        sd = {k: v for k, v in sd.items() if not k.endswith(".skip.weight")}
        for key, value in self.state_dict().items():
            if key.endswith("num_batches_tracked") and key not in sd:
                sd[key] = torch.zeros_like(value)
        return sd


# -- registered builders ------------------------------------------------------------------------
_TINY = {"num_groups": 2, "num_blocks": 2, "num_channels": 8}


def _sisn(scale: int, /, **overrides) -> SISN:
    overrides["scale"] = check_scale(overrides.get("scale", scale), scale)  # checkpoints repeat it
    return SISN(SISNConfig(**overrides))


@register_model(tiny=_TINY)
def sisn_x4(**overrides) -> SISN:
    """SISN ×4 (10 ESAGs × 10 ISABs, 64 channels, radix 4): 8.07 M parameters."""
    return _sisn(4, **overrides)


@register_model(tiny=_TINY)
def sisn_x8(**overrides) -> SISN:
    """SISN ×8 (10 ESAGs × 10 ISABs, 64 channels, radix 4): 8.30 M parameters."""
    return _sisn(8, **overrides)


# The reduced size that trains on a CPU budget (fsr-bench's equal-budget leaderboard):
# G = 4 ESAGs (upstream 10) of 4 ISABs (10), 32 channels (64).
_S = dict(num_groups=4, num_blocks=4, num_channels=32)


@register_model(tiny=_TINY)
def sisn_s_x4(**overrides) -> SISN:
    """SISN-S ×4 (reduced; see _S)."""
    return _sisn(4, **{**_S, **overrides})


@register_model(tiny=_TINY)
def sisn_s_x8(**overrides) -> SISN:
    """SISN-S ×8 (reduced; see _S)."""
    return _sisn(8, **{**_S, **overrides})

"""SRFBN: Feedback Network for Image Super-Resolution.

Paper: Z. Li, J. Yang, Z. Liu, X. Yang, G. Jeon, W. Wu, "Feedback Network for Image
Super-Resolution", CVPR 2019 (arXiv:1903.09814).
Code:  https://github.com/Paper99/SRFBN_CVPR19 (``networks/srfbn_arch.py``, ``networks/blocks.py``,
``networks/__init__.py``, ``options/train/train_SRFBN.json``).

Architecture (every fact below is from the upstream files just named)::

    x = sub_mean(255 * lr)                      # DIV2K RGB mean, [0, 255] range
    base = bilinear_upsample(x, scale)          # global residual (F.interpolate, bilinear)
    f_in = feat_in(conv_in(x))                  # Conv3x3(3 -> 4m) + PReLU, Conv1x1(4m -> m) + PReLU
    h_0 = f_in                                  # step 1's "last hidden" is f_in itself
    for t in 1..T:                              # weights shared across steps
        h_t = FB(f_in, h_{t-1})                 # feedback block: the hidden state feeds back
        sr_t = add_mean(base + conv_out(out(h_t)))  # Deconv(m -> m) + PReLU, Conv3x3(m -> 3)

The feedback block (FB) concatenates ``[f_in, h_{t-1}]``, compresses it with a 1×1 conv, then runs
``G`` groups of up-projection (deconv, LR → HR) and down-projection (strided conv, HR → LR) with
dense connections: group ``g > 0`` first fuses all previous LR (resp. HR) maps with a 1×1 conv
(``uptranBlocks`` / ``downtranBlocks``). The LR outputs of all groups are fused by ``compress_out``
into ``h_t``. Projection (de)conv kernel / stride / padding per scale: ×2 6/2/2, ×3 7/3/2,
×4 8/4/2, ×8 12/8/2 — for these the output size is exactly ``scale × input`` for any input size,
so no ``size_multiple`` is needed. Every conv has a bias; every activation is a single-parameter
``PReLU(init=0.2)``; there is no normalisation. Defaults (``train_SRFBN.json``): m = 64, T = 4,
G = 6 (SRFBN-S: 32 / 4 / 3); L1 loss on every step's output with curriculum weights
``[1, 1, 1, 1]`` (for BI degradation the curriculum is off: every step has the same HR target);
Adam lr 1e-4 halved at epochs 200/400/600/800; Kaiming-normal (fan-in) init of the conv and deconv
weights with zero biases (``init_weights(net, 'kaiming')``).

Parameters at the default config: 3,631,454 (×4) — upstream's README lists SRFBN at 3,631K;
upstream's count also includes the 24 frozen mean-shift weights (buffers here), 3,631,478.
×8: 7,891,294 (12×12 projection kernels). SRFBN-S (m=32, G=3) ×4: 483,122 (README: 483K).

Differences from upstream, and why:

* Input/output: fsr-bench feeds RGB in [0, 1]; the network multiplies by ``rgb_range`` (255, as
  upstream trains and tests on [0, 255]) before the mean shift and divides its outputs by it, so
  upstream weights work unchanged and outputs are in [0, 1].
* The feedback hidden state is passed explicitly between steps instead of living in the module
  (upstream's ``last_hidden`` / ``should_reset`` attributes); the computation is identical and
  the module is stateless, so it is safe with DataParallel, ``torch.compile`` and concurrent calls.
* ``sub_mean`` / ``add_mean`` are buffers, not frozen ``Conv2d`` parameters (same state_dict
  keys ``sub_mean.weight`` …), so every *parameter* of the model is trainable.
* ``forward`` returns the last step (as upstream's test path ``SR[-1]``);
  :meth:`SRFBN.forward_steps` returns all T steps for the paper's per-step loss.

Upstream checkpoint key mapping (:meth:`SRFBN.convert_state_dict`): module names here equal
upstream names (``conv_in.0.weight``, ``block.upBlocks.3.1.weight``, …); upstream saves the
``nn.DataParallel`` wrapper's state_dict inside ``{"state_dict": …}``, so the only mapping is
stripping the leading ``module.`` prefix (the wrapper dict is unpacked by the checkpoint reader).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from baselines.common import MeanShift  # persistent buffers: upstream checkpoints carry them
from fsr_bench.models import register_model
from fsr_bench.models.base import ModelInfo, SuperResolver, check_scale

# (kernel, stride, padding) of every projection (de)convolution, per scale (upstream srfbn_arch.py)
PROJECTION = {2: (6, 2, 2), 3: (7, 3, 2), 4: (8, 4, 2), 8: (12, 8, 2)}


@dataclass
class SRFBNConfig:
    scale: int = 4  # 2 | 3 | 4 | 8
    num_features: int = 64  # m: base number of filters (SRFBN-S: 32)
    num_steps: int = 4  # T: feedback iterations, one output each (SRFBN-S: 4)
    num_groups: int = 6  # G: up/down projection groups in the feedback block (SRFBN-S: 3)
    rgb_range: float = 255.0  # range the network works in (upstream: 255)
    prelu_init: float = 0.2  # upstream activation(): nn.PReLU(num_parameters=1, init=0.2)


# -- blocks ----------------------------------------------------------------------------------------
def conv_block(cin: int, cout: int, kernel: int, stride: int = 1, padding: int | None = None,
               act: float | None = 0.2) -> nn.Sequential:
    """Upstream ``ConvBlock(norm_type=None)``: ``0`` = Conv2d (bias), ``1`` = PReLU (if ``act``)."""
    padding = (kernel - 1) // 2 if padding is None else padding  # upstream get_valid_padding
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, padding)]
    if act is not None:
        layers.append(nn.PReLU(num_parameters=1, init=act))
    return nn.Sequential(*layers)


def deconv_block(cin: int, cout: int, kernel: int, stride: int, padding: int,
                 act: float = 0.2) -> nn.Sequential:
    """Upstream ``DeconvBlock(norm_type=None)``: ``0`` = ConvTranspose2d (bias), ``1`` = PReLU."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, kernel, stride, padding),
                         nn.PReLU(num_parameters=1, init=act))


class FeedbackBlock(nn.Module):
    """FB: ``[f_in, h_{t-1}]`` → 1×1 → G dense up/down projection groups → 1×1 → ``h_t``."""

    def __init__(self, m: int, num_groups: int, scale: int, prelu_init: float = 0.2):
        super().__init__()
        k, s, p = PROJECTION[scale]
        a = prelu_init
        self.num_groups = num_groups
        self.compress_in = conv_block(2 * m, m, 1, act=a)
        self.upBlocks = nn.ModuleList(deconv_block(m, m, k, s, p, act=a) for _ in range(num_groups))
        self.downBlocks = nn.ModuleList(
            conv_block(m, m, k, s, p, act=a) for _ in range(num_groups)  # valid_padding=False
        )
        # group g > 0 first fuses the (g + 1) maps produced so far
        self.uptranBlocks = nn.ModuleList(
            conv_block(m * (g + 1), m, 1, act=a) for g in range(1, num_groups)
        )
        self.downtranBlocks = nn.ModuleList(
            conv_block(m * (g + 1), m, 1, act=a) for g in range(1, num_groups)
        )
        self.compress_out = conv_block(num_groups * m, m, 1, act=a)

    def forward(self, f_in: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        x = self.compress_in(torch.cat((f_in, hidden), 1))  # (N, m, h, w)
        lr_feats, hr_feats = [x], []
        for g in range(self.num_groups):
            ld_l = torch.cat(lr_feats, 1)  # (N, m*(g+1), h, w)
            if g > 0:
                ld_l = self.uptranBlocks[g - 1](ld_l)  # (N, m, h, w)
            hr_feats.append(self.upBlocks[g](ld_l))  # (N, m, s*h, s*w)
            ld_h = torch.cat(hr_feats, 1)  # (N, m*(g+1), s*h, s*w)
            if g > 0:
                ld_h = self.downtranBlocks[g - 1](ld_h)  # (N, m, s*h, s*w)
            lr_feats.append(self.downBlocks[g](ld_h))  # (N, m, h, w)
        return self.compress_out(torch.cat(lr_feats[1:], 1))  # (N, m, h, w), input x left out


# -- model -----------------------------------------------------------------------------------------
class SRFBN(SuperResolver):
    info = ModelInfo(
        paper="Li et al., Feedback Network for Image Super-Resolution (SRFBN), CVPR 2019",
        input_convention="native LR, RGB scaled to [0,255] minus the DIV2K mean (inside the model)",
        repo="https://github.com/Paper99/SRFBN_CVPR19",
        notes="T feedback steps, one SR output each (forward returns the last; forward_steps all); "
        "global bilinear residual; stateless hidden-state passing; mean shift as buffers",
    )

    def __init__(self, config: SRFBNConfig):
        super().__init__(config.scale, config)
        if config.scale not in PROJECTION:
            raise ValueError(f"SRFBN supports scales {sorted(PROJECTION)}, got {config.scale}")
        if config.num_steps < 1 or config.num_groups < 1:
            raise ValueError("SRFBN needs num_steps >= 1 and num_groups >= 1")
        m, a = config.num_features, config.prelu_init
        k, s, p = PROJECTION[config.scale]
        self.sub_mean = MeanShift(config.rgb_range, sign=-1, persistent=True)
        self.conv_in = conv_block(3, 4 * m, 3, act=a)  # LR feature extraction: Conv(3, 4m)
        self.feat_in = conv_block(4 * m, m, 1, act=a)  # ... and Conv(1, m)
        self.block = FeedbackBlock(m, config.num_groups, config.scale, a)
        self.out = deconv_block(m, m, k, s, p, act=a)  # reconstruction: Deconv(k, m) ...
        self.conv_out = conv_block(m, 3, 3, act=None)  # ... and Conv(3, 3), no activation
        self.add_mean = MeanShift(config.rgb_range, sign=1, persistent=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Upstream ``init_weights(net, 'kaiming')``: (de)conv weights Kaiming-normal, biases 0."""
        for mod in self.modules():
            if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(mod.weight, a=0, mode="fan_in")
                nn.init.zeros_(mod.bias)

    def _steps(self, lr: torch.Tensor, all_steps: bool) -> list[torch.Tensor]:
        r = self.config.rgb_range
        x = self.sub_mean(lr * r)  # (N, 3, h, w), [0, 255] minus mean
        base = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        f_in = self.feat_in(self.conv_in(x))  # (N, m, h, w)
        hidden = f_in  # upstream: last_hidden is a copy of the first input
        outs = []
        for t in range(self.config.num_steps):
            hidden = self.block(f_in, hidden)  # (N, m, h, w): h_t, fed back into step t+1
            if all_steps or t == self.config.num_steps - 1:
                sr = base + self.conv_out(self.out(hidden))  # (N, 3, s*h, s*w)
                outs.append(self.add_mean(sr) / r)  # back to RGB [0, 1]
        return outs

    def forward_steps(self, lr: torch.Tensor) -> list[torch.Tensor]:
        """All T step outputs ``[(N, 3, s*h, s*w)] * T`` in [0, 1], for the per-step loss.

        Any LR size works directly (SRFBN needs no padding: ``size_multiple`` = 1).
        """
        return self._steps(lr, all_steps=True)

    def forward_native(self, lr: torch.Tensor) -> torch.Tensor:
        return self._steps(lr, all_steps=False)[-1]  # (N, 3, s*h, s*w)

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Upstream layout → ours: strip the ``module.`` prefix of ``nn.DataParallel``."""
        return {k.removeprefix("module."): v for k, v in state_dict.items()}


# -- registered builders ------------------------------------------------------------------------
_TINY = {"num_features": 8, "num_steps": 2, "num_groups": 2}


def _srfbn(scale: int, /, **overrides) -> SRFBN:
    overrides["scale"] = check_scale(overrides.get("scale", scale), scale)  # checkpoints repeat it
    return SRFBN(SRFBNConfig(**overrides))


@register_model(tiny=_TINY)
def srfbn_x4(**overrides) -> SRFBN:
    """SRFBN ×4 (m=64, T=4, G=6): 3.63 M parameters."""
    return _srfbn(4, **overrides)


@register_model(tiny=_TINY)
def srfbn_x8(**overrides) -> SRFBN:
    """SRFBN ×8 (m=64, T=4, G=6, 12×12 projections): 7.89 M parameters."""
    return _srfbn(8, **overrides)


# The reduced size that trains on a CPU budget (fsr-bench's equal-budget leaderboard):
# SRFBN-S, upstream's own small variant (m=32, T=4, G=3).
_S = dict(num_features=32, num_steps=4, num_groups=3)


@register_model(tiny=_TINY)
def srfbn_s_x4(**overrides) -> SRFBN:
    """SRFBN-S ×4 (reduced; see _S)."""
    return _srfbn(4, **{**_S, **overrides})


@register_model(tiny=_TINY)
def srfbn_s_x8(**overrides) -> SRFBN:
    """SRFBN-S ×8 (reduced; see _S)."""
    return _srfbn(8, **{**_S, **overrides})

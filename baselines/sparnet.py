"""SPARNet: Learning Spatial Attention for Face Super-Resolution.

Paper: C. Chen, D. Gong, H. Wang, Z. Li, K.-Y. K. Wong, "Learning Spatial Attention for Face
Super-Resolution", IEEE TIP 2020 (arXiv:2012.01211).
Code:  https://github.com/chaofengc/Face-SPARNet (``models/sparnet.py``, ``models/blocks.py``,
``models/networks.py``, ``options/base_options.py``, ``data/celeba_dataset.py``).

SPARNet works at HR resolution: the LR face is bicubic-upsampled to the HR size and mapped to
[-1, 1] (``transforms.Normalize((0.5,) * 3, (0.5,) * 3)``); the network is an encoder / body /
decoder of pre-activation residual blocks, each ending in a Face Attention Unit (FAU): a small
hourglass whose sigmoid output (a 1-channel spatial map for ``att_name='spar'``, a C-channel map
for ``'spar3d'``) multiplies the residual branch before it is added to the shortcut::

    encoder:  ConvLayer(3 -> n_ch) + down_steps × FAU(scale='down')   # in_size -> min_feat_size
    body:     (res_depth + 3 - down_steps) × FAU                     # at min_feat_size
    decoder:  up_steps × FAU(scale='up')                             # nearest ×2 then conv
    out_conv: ConvLayer(n_ch -> 3), no activation (no tanh)          # output in [-1, 1] nominally

with ``down_steps = up_steps = log2(in_size / min_feat_size)`` (3 for 128 → 16),
``n_ch = clip(max_ch // (down_steps + 1))``, channels doubling / halving per stage clipped to
[min_ch, max_ch], and hourglass depth ``log2(64 / bottleneck_size)`` for the first encoder block,
one less per further down stage, one more per up stage. A ``ConvLayer`` is reflection pad → conv
(stride 2 for 'down'; nearest ×2 before it for 'up'; bias only without normalisation) → norm →
activation. FAU: ``shortcut(x) + att(conv2(conv1(act(norm(x)))))``; the shortcut is identity, or
a biased 3×3 ``ConvLayer`` when the size or channels change. Defaults (``base_options.py``):
min_ch 32, max_ch 128, in_size 128, min_feat_size 16, res_depth 10, bottleneck_size 4,
BatchNorm, LeakyReLU(0.2), hourglass width 64, att 'spar'. Training: L1 loss, Adam
(beta1, 0.99), weights N(0, 0.02) for convs, N(1, 0.02) for BatchNorm scales
(``init_weights(net, 'normal', 0.02)``).

Parameters at the default config: 10,518,867 (identical for ×4 and ×8 — the network runs at HR
size; the scale only sets the pre-upsampling). Upstream's README: "SPARNet (Released) 10.52 M"
(the paper's own model: 9.86 M).

Sizes. Upstream assumes 128×128 HR (16×16 LR at ×8). The network is fully convolutional, so here
it runs at any size with its depth fixed by ``in_size`` (set ``in_size=256`` for a 4-stage
encoder at FFHQ-256; parameters change). Every stride-2 stage and hourglass level halves the map:
the deepest hourglass bottleneck is ``HR / total_stride`` with ``total_stride = 128 /
bottleneck_size = 32`` at the default config. ``size_multiple`` is therefore set so that the
pre-upsampled HR size divides by ``total_stride`` (LR multiple of 4 at ×8, of 8 at ×4; e.g.
CelebA 27×22 at ×8 is reflect-padded to 28×24 → 224×192 and the output cropped back to
216×176), and inputs whose HR size is below ``2 × total_stride`` are additionally
edge-padded (the bottleneck needs 2 pixels for its reflection padding).

Differences from upstream, and why:

* Pre-upsampling uses fsr-bench's MATLAB-compatible bicubic (``fsr_bench.data.resize.imresize``,
  a = -0.5), the benchmark's one bicubic; upstream data loaders use PIL ``Image.BICUBIC``, which for
  upsampling is the same a = -0.5 cubic kernel (the two differ only in border handling).
* The pre-upsampling and the [-1, 1] ↔ [0, 1] mapping happen inside the model
  (fsr-bench contract: every model takes the LR in [0, 1]).
* :meth:`SPARNet.forward_with_attention` returns the FAU attention maps (upstream stores the last
  one on each module as ``att_map``); the modules keep no state.
* Upstream's hourglass width 64 (``HourGlassBlock(c_mid=64)``, not configurable upstream) is the
  config field ``att_channels`` so that tests can build a small instance.

Upstream checkpoint key mapping (:meth:`SPARNet.convert_state_dict`): module names equal upstream
names (``encoder.1.att_func.b2_plus_1.conv2d.weight``,
``res_layers.0.conv1.norm.norm.running_mean``, …). Upstream saves ``net.module.state_dict()``
(no prefix); a leading ``module.`` is stripped anyway, and ``num_batches_tracked`` entries missing
from a pre-0.4.1 checkpoint are filled with 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fsr_bench.models import register_model
from fsr_bench.models.base import ModelInfo, SuperResolver, check_scale


@dataclass
class SPARNetConfig:
    scale: int = 8  # LR -> HR factor of the bicubic pre-upsampling (the network itself is 1:1)
    in_size: int = 128  # HR size the architecture is designed for (upstream in_size = out_size)
    min_feat_size: int = 16  # encoder downsamples in_size -> min_feat_size
    min_ch: int = 32  # channel clip, lower bound
    max_ch: int = 128  # channel clip, upper bound
    res_depth: int = 10  # body has res_depth + 3 - down_steps FAUs
    bottleneck_size: int = 4  # hourglass bottleneck, relative to a 64×64 first-stage map
    att_channels: int = 64  # hourglass width (upstream c_mid = 64)
    att_name: str = "spar"  # 'spar': 1-channel spatial attention | 'spar3d': per-channel 3-D
    norm_type: str = "bn"  # bn | in | gn | none
    relu_type: str = "leakyrelu"  # leakyrelu (slope 0.2) | relu | prelu | none


# -- blocks ----------------------------------------------------------------------------------------
class NormLayer(nn.Module):
    """``.norm``: BatchNorm2d | affine InstanceNorm2d | GroupNorm(32) | identity (no parameters)."""

    def __init__(self, channels: int, norm_type: str = "bn"):
        super().__init__()
        norm_type = norm_type.lower()
        if norm_type == "bn":
            self.norm = nn.BatchNorm2d(channels)
        elif norm_type == "in":
            self.norm = nn.InstanceNorm2d(channels, affine=True)
        elif norm_type == "gn":
            self.norm = nn.GroupNorm(32, channels, affine=True)
        elif norm_type == "none":
            self.norm = nn.Identity()
        else:
            raise ValueError(f"unknown norm_type {norm_type!r} (bn | in | gn | none)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class ReluLayer(nn.Module):
    """``.func``: LeakyReLU(0.2) | ReLU | PReLU(channels) | identity."""

    def __init__(self, channels: int, relu_type: str = "leakyrelu"):
        super().__init__()
        relu_type = relu_type.lower()
        if relu_type == "leakyrelu":
            self.func = nn.LeakyReLU(0.2)
        elif relu_type == "relu":
            self.func = nn.ReLU()
        elif relu_type == "prelu":
            self.func = nn.PReLU(channels)
        elif relu_type == "none":
            self.func = nn.Identity()
        else:
            raise ValueError(f"unknown relu_type {relu_type!r} (leakyrelu | relu | prelu | none)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.func(x)


class ConvLayer(nn.Module):
    """[nearest ×2 if 'up'] → reflection pad → conv (stride 2 if 'down') → norm → activation."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, scale: str = "none",
                 norm_type: str = "none", relu_type: str = "none"):
        super().__init__()
        self.up = scale == "up"
        self.pad = kernel // 2
        self.conv2d = nn.Conv2d(cin, cout, kernel, 2 if scale == "down" else 1,
                                bias=norm_type == "none")  # a norm's shift replaces the bias
        self.norm = NormLayer(cout, norm_type)
        self.relu = ReluLayer(cout, relu_type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")  # (N, cin, 2h, 2w)
        if self.pad:
            x = F.pad(x, (self.pad,) * 4, mode="reflect")
        return self.relu(self.norm(self.conv2d(x)))  # (N, cout, h', w')


class HourGlassBlock(nn.Module):
    """The FAU's attention branch: a ``depth``-level hourglass, then conv + sigmoid.

    Level ``l`` (from ``depth`` down to 1): ``up = b1_l(x)``, ``low = b2_l(x)`` (stride 2), recurse
    (``b2_plus_1`` at the bottom), ``b3_l`` (nearest ×2 + conv); returns ``up + b3_l(low)``.
    """

    def __init__(self, depth: int, c_in: int, c_out: int, c_mid: int = 64,
                 norm_type: str = "bn", relu_type: str = "leakyrelu"):
        super().__init__()
        self.depth = depth
        kw = {"norm_type": norm_type, "relu_type": relu_type}
        for level in range(depth, 0, -1):
            c1 = c_in if level == depth else c_mid
            self.add_module(f"b1_{level}", ConvLayer(c1, c_mid, **kw))
            self.add_module(f"b2_{level}", ConvLayer(c1, c_mid, scale="down", **kw))
            self.add_module(f"b3_{level}", ConvLayer(c_mid, c_mid, scale="up", **kw))
        if depth:
            self.add_module("b2_plus_1", ConvLayer(c_mid, c_mid, **kw))
            self.out_block = nn.Sequential(ConvLayer(c_mid, c_out), nn.Sigmoid())

    def _hourglass(self, level: int, x: torch.Tensor) -> torch.Tensor:
        up1 = self._modules[f"b1_{level}"](x)  # (N, c_mid, h, w)
        low1 = self._modules[f"b2_{level}"](x)  # (N, c_mid, h/2, w/2)
        if level > 1:
            low2 = self._hourglass(level - 1, low1)
        else:
            low2 = self._modules["b2_plus_1"](low1)
        up2 = self._modules[f"b3_{level}"](low2)  # (N, c_mid, h, w)
        if up2.shape[2:] != up1.shape[2:]:  # odd sizes (not reached with size_multiple padding)
            up2 = F.interpolate(up2, up1.shape[2:])
        return up1 + up2

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(x * attention, attention)``: attention (N, c_out, h, w) in (0, 1); None if depth 0."""
        if self.depth == 0:
            return x, None
        att = self.out_block(self._hourglass(self.depth, x))  # (N, c_out, h, w)
        return x * att, att


class ResidualBlock(nn.Module):
    """FAU: pre-activation residual block whose residual is gated by the hourglass attention."""

    def __init__(self, c_in: int, c_out: int, scale: str = "none", hg_depth: int = 2,
                 att_name: str = "spar", att_channels: int = 64,
                 norm_type: str = "bn", relu_type: str = "leakyrelu"):
        super().__init__()
        kw = {"norm_type": norm_type, "relu_type": relu_type}
        if scale == "none" and c_in == c_out:
            self.shortcut_func = nn.Identity()
        else:
            self.shortcut_func = ConvLayer(c_in, c_out, 3, scale)  # biased, no norm / activation
        self.preact_func = nn.Sequential(NormLayer(c_in, norm_type), ReluLayer(c_in, relu_type))
        scales = {"down": ("none", "down"), "up": ("up", "none"), "none": ("none", "none")}[scale]
        self.conv1 = ConvLayer(c_in, c_out, 3, scales[0], **kw)
        self.conv2 = ConvLayer(c_out, c_out, 3, scales[1], norm_type=norm_type, relu_type="none")
        att_name = att_name.lower()
        if att_name not in ("spar", "spar3d"):
            raise ValueError(f"unknown att_name {att_name!r} (spar | spar3d)")
        c_att = 1 if att_name == "spar" else c_out
        self.att_func = HourGlassBlock(hg_depth, c_out, c_att, att_channels, **kw)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        identity = self.shortcut_func(x)  # (N, c_out, h', w')
        out = self.conv2(self.conv1(self.preact_func(x)))  # (N, c_out, h', w')
        out, att = self.att_func(out)  # att: (N, 1 or c_out, h', w')
        return identity + out, att


def _pad_to_multiple(x: torch.Tensor, m: int) -> torch.Tensor:
    """Bottom/right pad to a multiple of ``m`` exactly as :meth:`SuperResolver.forward` does."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")
    return x


# -- model -----------------------------------------------------------------------------------------
class SPARNet(SuperResolver):
    info = ModelInfo(
        paper="Chen et al., Learning Spatial Attention for Face Super-Resolution (SPARNet), "
        "IEEE TIP 2020",
        input_convention="LR bicubic-upsampled to HR size (MATLAB kernel), RGB in [-1,1] "
        "(inside the model)",
        repo="https://github.com/chaofengc/Face-SPARNet",
        notes="depth fixed by in_size (upstream 128); runs at any size via size_multiple padding "
        "to the total stride; MATLAB bicubic pre-upsampling instead of PIL",
    )

    def __init__(self, config: SPARNetConfig):
        super().__init__(config.scale, config)
        c = config
        ratio = c.in_size // c.min_feat_size
        if c.in_size % c.min_feat_size or ratio & (ratio - 1) or 64 % c.bottleneck_size:
            raise ValueError(
                "SPARNet needs in_size / min_feat_size and 64 / bottleneck_size to be powers of "
                f"two, got {c.in_size}/{c.min_feat_size}, 64/{c.bottleneck_size}"
            )
        kw = {"att_name": c.att_name, "att_channels": c.att_channels,
              "norm_type": c.norm_type, "relu_type": c.relu_type}

        def clip(ch: int) -> int:
            return max(c.min_ch, min(ch, c.max_ch))

        down_steps = up_steps = int(math.log2(ratio))
        n_ch = clip(c.max_ch // (down_steps + 1))
        hg_depth = int(math.log2(64 // c.bottleneck_size))
        strides = []  # per FAU: (stride of its output map, hourglass depth)

        encoder: list[nn.Module] = [ConvLayer(3, n_ch, 3)]
        for i in range(down_steps):
            encoder.append(ResidualBlock(clip(n_ch), clip(n_ch * 2), "down", hg_depth, **kw))
            strides.append((2 ** (i + 1), hg_depth))
            n_ch, hg_depth = n_ch * 2, hg_depth - 1
        hg_depth += 1
        self.encoder = nn.Sequential(*encoder)

        num_res = c.res_depth + 3 - down_steps
        self.res_layers = nn.Sequential(
            *(ResidualBlock(clip(n_ch), clip(n_ch), "none", hg_depth, **kw) for _ in range(num_res))
        )
        strides += [(2 ** down_steps, hg_depth)] * num_res

        decoder = []
        for i in range(up_steps):
            hg_depth += 1
            decoder.append(ResidualBlock(clip(n_ch), clip(n_ch // 2), "up", hg_depth, **kw))
            strides.append((2 ** (down_steps - i - 1), hg_depth))
            n_ch //= 2
        self.decoder = nn.Sequential(*decoder)
        self.out_conv = ConvLayer(clip(n_ch), 3, 3)

        # every map is HR / total_stride at its smallest (an hourglass bottleneck or the body)
        self.total_stride = max([2 ** down_steps] + [s * 2 ** max(d, 0) for s, d in strides])
        self.size_multiple = self.total_stride // math.gcd(self.total_stride, self.scale)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Upstream ``init_weights(net, 'normal', 0.02)``."""
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.normal_(mod.weight, 0.0, 0.02)
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.BatchNorm2d):
                nn.init.normal_(mod.weight, 1.0, 0.02)
                nn.init.zeros_(mod.bias)

    # -- forward ---------------------------------------------------------------------------------
    def _run(self, lr: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """LR (N, 3, h, w) in [0, 1], h, w multiples of ``size_multiple`` → (SR in [0, 1], maps)."""
        from fsr_bench.data.resize import imresize

        h, w = lr.shape[-2:]
        # the deepest bottleneck needs >= 2 pixels (reflection padding): edge-pad tiny inputs
        min_lr = -(-2 * self.total_stride // self.scale)
        min_lr += (-min_lr) % self.size_multiple
        ph, pw = max(min_lr - h, 0), max(min_lr - w, 0)
        if ph or pw:
            lr = F.pad(lr, (0, pw, 0, ph), mode="replicate")
        x = imresize(lr, scale=self.scale) * 2 - 1  # (N, 3, s*h, s*w) in [-1, 1]
        maps = []
        out = self.encoder[0](x)  # (N, n_ch, s*h, s*w)
        for block in [*self.encoder[1:], *self.res_layers, *self.decoder]:
            out, att = block(out)  # att: (N, 1, h_b, w_b), the block's output size
            if att is not None:
                maps.append(att)
        sr = (self.out_conv(out) + 1) / 2  # (N, 3, s*h, s*w), back to [0, 1]
        return sr[..., : h * self.scale, : w * self.scale], maps

    def forward_native(self, lr: torch.Tensor) -> torch.Tensor:
        return self._run(lr)[0]  # (N, 3, s*h, s*w)

    def forward_with_attention(self, lr: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(sr, maps)``: the output of :meth:`forward` and every FAU's attention map, in order
        (encoder, body, decoder), each (N, 1, H_b, W_b) in (0, 1) ((N, C_b, …) for 'spar3d') at
        its block's output size for the *padded* input (see ``size_multiple``)."""
        h, w = lr.shape[-2:]
        sr, maps = self._run(_pad_to_multiple(lr, self.size_multiple))
        return sr[..., : h * self.scale, : w * self.scale], maps

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Upstream → ours: strip ``module.``; add ``num_batches_tracked`` = 0 where absent."""
        sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
        for key, value in self.state_dict().items():
            if key.endswith("num_batches_tracked") and key not in sd:
                sd[key] = torch.zeros_like(value)
        return sd


# -- registered builders ------------------------------------------------------------------------
_TINY = {"min_ch": 4, "max_ch": 8, "res_depth": 1, "att_channels": 4}


def _sparnet(scale: int, /, **overrides) -> SPARNet:
    overrides["scale"] = check_scale(overrides.get("scale", scale), scale)  # checkpoints repeat it
    return SPARNet(SPARNetConfig(**overrides))


@register_model(tiny=_TINY)
def sparnet_x4(**overrides) -> SPARNet:
    """SPARNet ×4: bicubic ×4 pre-upsampling, upstream 128-design network (10.52 M parameters)."""
    return _sparnet(4, **overrides)


@register_model(tiny=_TINY)
def sparnet_x8(**overrides) -> SPARNet:
    """SPARNet ×8 (upstream: 16 → 128), 10.52 M parameters."""
    return _sparnet(8, **overrides)


# The reduced size that trains on a CPU budget (fsr-bench's equal-budget leaderboard):
# channels 16-32 (upstream 32-128), 4 residual FAUs (10), hourglass width 16 (64).
_S = dict(min_ch=16, max_ch=32, res_depth=4, att_channels=16)


@register_model(tiny=_TINY)
def sparnet_s_x4(**overrides) -> SPARNet:
    """SPARNet-S ×4 (reduced; see _S)."""
    return _sparnet(4, **{**_S, **overrides})


@register_model(tiny=_TINY)
def sparnet_s_x8(**overrides) -> SPARNet:
    """SPARNet-S ×8 (reduced; see _S)."""
    return _sparnet(8, **{**_S, **overrides})

"""TANet: Transformer-CNN Aggregation Network for face super-resolution.

Wang, Lu, Zhang, Jiang, Wang, Wang, Ma, "TANet: A new Paradigm for Global Face Super-resolution via
Transformer-CNN Aggregation Network", arXiv:2109.08174 (2021). No public code exists; this file is
written from the paper's equations 1–17, section by section::

    F_shallow = Conv3x3(I_LR)                                          (1)
    F_global  = Transformer(F_shallow),  F_local = SMFN(F_shallow)     (2)
    F_gl      = Conv1x1(Cat(Conv1x1(F_global), Conv3x3(F_local)))      (3–6)  GLAM
    I_SR      = Conv3x3(Upscale(F_gl + F_shallow))                     (7–8)
    Transformer block n:  F_w = MHSA(F^{n-1});  F^n = MLP(F_w + F^{n-1}) + F_w + F^{n-1}   (9–11)
    SMFM g:  F_res = RB^I(...RB^1(F)),  w = sigmoid(Conv1x1(Conv1x1(F))),  F_cal = w * F,
             F_fused = Conv1x1(Cat(F_res, F_cal)),  F^g = F_res + F_fused + F          (12–16)

**Eq. 16 and why it is scaled by default** (``residual_scale``). Each residual block is
``x + body(x)``, so the chain's output F_res already contains the module input F; eq. 16 adds F a
second time (F^g = F + ΔF_res + F_fused + F). Each SMFM then multiplies its input by ≈ 2 at
initialisation, and ten of them compound (measured by ``benchmarks/tanet_residual_probe.py``:
per-module gain ≈ 2.2, F_local ≈ 10^3 × F_shallow at G = 10 for any init), so the paper-size
network starts with outputs orders of magnitude out of range and its first Adam steps *raise*
the loss. By default each SMFM therefore keeps its input once and adds learnable per-channel
scaled increments, in the style of EDSR's residual scaling (Lim et al. 2017)::

    F^g = F + a ⊙ ΔF_res + b ⊙ F_fused,    ΔF_res = F_res − F,   a = b = residual_scale (0.1) at init

``residual_scale=None`` is eq. 16 read literally (the ablation, and what checkpoints saved before
this option existed were trained with; they load with it, function unchanged).

What the paper leaves open, and what we chose (every choice is a config field):

* **Tokenisation** (``tokenizer``). The paper: "each patch is flattened to a vector of length
  Ht×Wt (4×4) in which each element has a C-dimensional embedding … a length-16 sequence of
  C-dimensional tokens". Read literally, attention runs over the 16 positions *inside* each 4×4
  window (``"window"``) — but then the path is not global, contradicting the paper's whole claim
  (global facial structure, long-distance relations). The default ``"patch"`` keeps attention
  **global over the whole face**: every 4×4 patch of the C-channel feature map is one token,
  linearly embedded from 16·C to C (the paper's "embedding aligned with the local path, C = 64"),
  attended over all patches, and projected back to 16·C and folded to the feature map.
* **Position encoding**: learnable (paper), stored on a base grid (``pos_grid``: the token grid
  at the paper's LR size, e.g. 64/4 = 16 at ×4 on 256² faces) and bilinearly resized for other
  LR sizes (CelebA 27×22 → padded 28×24 → 7×6 tokens), so any input size works.
* **N, heads, MLP width, norms**: N = 4 blocks, 4 heads (d = C/heads = 16). Our additions to
  eqs. 9–11, each a config field: an output projection after attention (``attn_proj``), biases on
  Q/K/V (``qkv_bias``; eq. 9 has bare matrices), pre-norm LayerNorm before attention and MLP
  (``norm="layernorm"``; the equations show none) and an MLP of two layers with hidden 2·C and GELU
  (``mlp_ratio``; the paper says only "two fully connected layers"). Attention is
  ``softmax(QKᵀ/√d)V`` via ``scaled_dot_product_attention`` (eq. 10). The ``tanet_literal_x*``
  variants drop every addition (window tokens, no projection, no biases, no norm, hidden C,
  eq. 16 unscaled) — the paper read literally, for ablations.
* **Residual block** (Fig. 3B): Conv3x3 → ReLU → Conv3x3 + identity, no BatchNorm (EDSR-style,
  as in SISN whose G = I = 10 the paper adopts).
* **Calibration path**: two 1×1 convolutions with nothing between them, then a sigmoid (eq. 13).
* **Upscaler**: log2(scale) stages of Conv3x3 (C→4C) + PixelShuffle(2) (``upsampler``;
  ``"deconv"`` is the alternative), then the 3×3 reconstruction conv (eq. 8).
* **Ablations** (paper Table 1): ``use_global=False`` / ``use_local=False`` remove a path; GLAM then
  concatenates only the remaining branch. Registered as ``tanet_no_global_x*`` / ``tanet_no_local_x*``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fsr_bench.models import register_model
from fsr_bench.models.base import ModelInfo, SuperResolver, check_scale


@dataclass
class TANetConfig:
    scale: int = 4
    channels: int = 64  # C: feature width of both paths and the token embedding (paper: 64)
    # local path (SMFN)
    use_local: bool = True
    num_modules: int = 10  # G: SMFMs (paper: 10)
    num_resblocks: int = 10  # I: residual blocks per SMFM (paper: 10)
    # SMFM output F + a*dF_res + b*F_fused with learnable per-channel a, b initialised to this;
    # None = eq. 16 literally (F_res + F_fused + F: the input counted twice, see module docstring)
    residual_scale: float | None = 0.1
    # global path (Transformer)
    use_global: bool = True
    tokenizer: str = "patch"  # "patch": global attention over 4x4-patch tokens; "window": inside each 4x4 window
    patch_size: int = 4  # Ht = Wt (paper: 4)
    num_blocks: int = 4  # N Transformer blocks (paper: open; see technical appendix)
    num_heads: int = 4  # d = C / heads
    mlp_ratio: float = 2.0  # MLP hidden = mlp_ratio * C
    norm: str = "layernorm"  # "layernorm" (pre-norm) | "none" (equations read literally)
    attn_proj: bool = True  # output projection after attention (ViT); eq. 10 has none
    qkv_bias: bool = True  # biases on W_Q, W_K, W_V; eq. 9 has bare matrices
    pos_grid: int = 16  # token grid side of the learnable position encoding at the paper's LR size
    # reconstruction
    upsampler: str = "pixelshuffle"  # "pixelshuffle" | "deconv"


# ----------------------------------------------------------------------------------------------
# Global representation path: resource-friendly Transformer (eqs. 9–11)
# ----------------------------------------------------------------------------------------------
class MultiHeadSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, proj: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"channels ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)  # W_Q, W_K, W_V (eq. 9)
        self.proj = nn.Linear(dim, dim) if proj else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape  # (B, L, C)
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, L, d)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(QK^T / sqrt(d)) V  (eq. 10)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class TransformerBlock(nn.Module):
    """F^n = MLP(F_w + F^{n-1}) + F_w + F^{n-1}, with F_w = MHSA(F^{n-1})  (eq. 11)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, norm: str,
                 qkv_bias: bool = True, attn_proj: bool = True):
        super().__init__()
        norms: dict[str, Callable[[], nn.Module]] = {"layernorm": lambda: nn.LayerNorm(dim), "none": nn.Identity}
        make_norm = norms[norm]
        self.norm1, self.norm2 = make_norm(), make_norm()
        self.attn = MultiHeadSelfAttention(dim, num_heads, qkv_bias=qkv_bias, proj=attn_proj)
        hidden = int(round(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weighted = self.attn(self.norm1(x))  # F_weighted
        skip = weighted + x
        return self.mlp(self.norm2(skip)) + skip


class GlobalPath(nn.Module):
    """Tokenise F_shallow, run N Transformer blocks, return a (B, C, H, W) global feature."""

    def __init__(self, cfg: TANetConfig):
        super().__init__()
        if cfg.tokenizer not in ("patch", "window"):
            raise ValueError(f"tokenizer must be 'patch' or 'window', got {cfg.tokenizer!r}")
        if cfg.norm not in ("layernorm", "none"):
            raise ValueError(f"norm must be 'layernorm' or 'none', got {cfg.norm!r}")
        c, p = cfg.channels, cfg.patch_size
        self.tokenizer, self.patch_size = cfg.tokenizer, p
        if cfg.tokenizer == "patch":
            self.embed = nn.Linear(c * p * p, c)  # patch (p*p*C) -> token (C)
            self.unembed = nn.Linear(c, c * p * p)
            self.pos = nn.Parameter(torch.zeros(1, c, cfg.pos_grid, cfg.pos_grid))
        else:
            self.pos = nn.Parameter(torch.zeros(1, p * p, c))  # one code per position in the window
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(
            *[
                TransformerBlock(c, cfg.num_heads, cfg.mlp_ratio, cfg.norm, cfg.qkv_bias, cfg.attn_proj)
                for _ in range(cfg.num_blocks)
            ]
        )

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        b, c, h, w = feat.shape  # h, w are multiples of patch_size (SuperResolver pads)
        p = self.patch_size
        gh, gw = h // p, w // p
        # (B, C, gh, p, gw, p) -> (B, gh, gw, p, p, C): patch-major layout shared by both readings
        patches = feat.view(b, c, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1)
        if self.tokenizer == "patch":
            tokens = self.embed(patches.reshape(b, gh * gw, p * p * c))  # (B, L=gh*gw, C)
            pos: torch.Tensor = self.pos
            if pos.shape[-2:] != (gh, gw):
                pos = F.interpolate(pos, size=(gh, gw), mode="bilinear", align_corners=False)
            tokens = tokens + pos.flatten(2).transpose(1, 2)
            tokens = self.blocks(tokens)
            patches = self.unembed(tokens).view(b, gh, gw, p, p, c)
        else:
            tokens = patches.reshape(b * gh * gw, p * p, c) + self.pos  # (B*windows, 16, C)
            patches = self.blocks(tokens).view(b, gh, gw, p, p, c)
        # reshape back to the feature map (GLAM's first step, eq. 3)
        return patches.permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)


# ----------------------------------------------------------------------------------------------
# Local representation path: SMFN (eqs. 12–17)
# ----------------------------------------------------------------------------------------------
class ResidualBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SMFM(nn.Module):
    """Self-calibrated multi-path fusion module (Fig. 3A); eq. 16 scaled unless ``residual_scale`` is None."""

    def __init__(self, c: int, num_resblocks: int, residual_scale: float | None = None):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualBlock(c) for _ in range(num_resblocks)])
        self.calibrate = nn.Sequential(nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1), nn.Sigmoid())  # eq. 13
        self.fuse = nn.Conv2d(2 * c, c, 1)  # eq. 15
        if residual_scale is None:
            self.res_scale = self.fused_scale = None
        else:  # per-channel, learnable: the network can grow each path back to eq. 16's weight
            self.res_scale = nn.Parameter(torch.full((1, c, 1, 1), float(residual_scale)))
            self.fused_scale = nn.Parameter(torch.full((1, c, 1, 1), float(residual_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.resblocks(x)  # F_res (eq. 12), contains x: every block is x + body(x)
        cal = self.calibrate(x) * x  # F_cal (eq. 14)
        fused = self.fuse(torch.cat([res, cal], dim=1))  # F_fused (eq. 15)
        if self.res_scale is None:
            return res + fused + x  # eq. 16 literally: x enters twice
        return x + self.res_scale * (res - x) + self.fused_scale * fused


# ----------------------------------------------------------------------------------------------
# Aggregation, upscaling, the model
# ----------------------------------------------------------------------------------------------
class GLAM(nn.Module):
    """Global-local aggregation module (eqs. 3–5); with one path removed, fuses the other alone."""

    def __init__(self, c: int, use_global: bool, use_local: bool):
        super().__init__()
        self.tune_global = nn.Conv2d(c, c, 1) if use_global else None  # eq. 3
        self.tune_local = nn.Conv2d(c, c, 3, padding=1) if use_local else None  # eq. 4
        self.fuse = nn.Conv2d(c * (int(use_global) + int(use_local)), c, 1)  # eq. 5

    def forward(self, f_global: torch.Tensor | None, f_local: torch.Tensor | None) -> torch.Tensor:
        parts = []
        if self.tune_global is not None:
            parts.append(self.tune_global(f_global))
        if self.tune_local is not None:
            parts.append(self.tune_local(f_local))
        return self.fuse(torch.cat(parts, dim=1))


def make_upsampler(kind: str, c: int, scale: int) -> nn.Module:
    if scale & (scale - 1) or scale < 2:
        raise ValueError(f"TANet's upscaler supports power-of-two scales (2, 4, 8, …), got {scale}")
    stages = int(math.log2(scale))
    if kind == "pixelshuffle":
        layers: list[nn.Module] = []
        for _ in range(stages):
            layers += [nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2)]
        return nn.Sequential(*layers)
    if kind == "deconv":
        layers = []
        for _ in range(stages):
            layers += [nn.ConvTranspose2d(c, c, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
        return nn.Sequential(*layers)
    raise ValueError(f"upsampler must be 'pixelshuffle' or 'deconv', got {kind!r}")


PAPER = "Wang et al., TANet: Transformer-CNN Aggregation Network for FSR, arXiv:2109.08174"


def describe_variant(cfg: TANetConfig) -> str:
    """The reading of the paper a TANet row used, for its label: "patch tokens", "window tokens", …"""
    if not cfg.use_global:
        parts = ["no global path"]
    else:
        parts = ["patch tokens" if cfg.tokenizer == "patch" else "window tokens"]
        literal = cfg.norm == "none" and not cfg.attn_proj and not cfg.qkv_bias and cfg.mlp_ratio == 1.0
        parts.append("literal eqs. 9-11" if literal else "pre-LN ViT blocks")
    if not cfg.use_local:
        parts.append("no local path")
    else:
        parts.append("eq. 16 literal" if cfg.residual_scale is None else f"residual scale {cfg.residual_scale:g}")
    return ", ".join(parts)


class TANet(SuperResolver):
    info = ModelInfo(
        paper=PAPER,
        input_convention="native LR, RGB [0,1]",
        repo="(no public code; implemented from the paper)",
        notes="see the module docstring for every assumption",
    )

    def __init__(self, cfg: TANetConfig):
        super().__init__(cfg.scale, cfg)
        if not (cfg.use_global or cfg.use_local):
            raise ValueError("TANet needs at least one of use_global / use_local")
        # per instance: a row's label must say which reading of the paper it is
        self.variant = describe_variant(cfg)
        self.info = ModelInfo(
            paper=PAPER,
            input_convention="native LR, RGB [0,1]",
            repo="(no public code; implemented from the paper)",
            notes=f"{self.variant}; additions to eqs. 9-11: "
            + (", ".join(a for a, on in [("output projection", cfg.attn_proj), ("QKV biases", cfg.qkv_bias),
                                          ("pre-LayerNorm", cfg.norm == "layernorm"),
                                          (f"MLP hidden {cfg.mlp_ratio:g}C + GELU", True)] if on))
            + "; see the module docstring",
        )
        c = cfg.channels
        self.size_multiple = cfg.patch_size if cfg.use_global else 1
        self.shallow = nn.Conv2d(3, c, 3, padding=1)  # eq. 1
        self.global_path = GlobalPath(cfg) if cfg.use_global else None
        self.local_path = (
            nn.Sequential(*[SMFM(c, cfg.num_resblocks, cfg.residual_scale) for _ in range(cfg.num_modules)])
            if cfg.use_local
            else None
        )
        self.glam = GLAM(c, cfg.use_global, cfg.use_local)
        self.upscale = make_upsampler(cfg.upsampler, c, cfg.scale)
        self.reconstruct = nn.Conv2d(c, 3, 3, padding=1)  # eq. 8

    def forward_native(self, lr: torch.Tensor) -> torch.Tensor:
        shallow = self.shallow(lr)  # (B, C, h, w)
        f_global = self.global_path(shallow) if self.global_path is not None else None
        f_local = self.local_path(shallow) if self.local_path is not None else None
        fused = self.glam(f_global, f_local)  # (B, C, h, w)
        return self.reconstruct(self.upscale(fused + shallow))  # (B, 3, s*h, s*w)


# ----------------------------------------------------------------------------------------------
# Registered variants
# ----------------------------------------------------------------------------------------------
_TINY = dict(channels=16, num_modules=2, num_resblocks=1, num_blocks=1, num_heads=2, pos_grid=4)
# Checkpoints saved before ``residual_scale`` existed were trained with eq. 16 unscaled.
_CKPT_DEFAULTS = {"residual_scale": None}
# The paper read literally wherever it is open (module docstring): an ablation, not the default.
LITERAL = dict(tokenizer="window", norm="none", attn_proj=False, qkv_bias=False, mlp_ratio=1.0, residual_scale=None)
# The reduced size that trains on a CPU budget (C = 32, G = I = 4, N = 2; ~0.46 M parameters at x4).
SMALL = dict(channels=32, num_modules=4, num_resblocks=4, num_blocks=2, num_heads=4)


def _tanet(scale: int, /, **overrides) -> TANet:
    # position grid at the paper's LR size on 256x256 FFHQ: 256 / scale / patch_size
    defaults = dict(pos_grid=256 // scale // overrides.get("patch_size", 4))
    overrides["scale"] = check_scale(overrides.get("scale", scale), scale)
    return TANet(TANetConfig(**{**defaults, **overrides}))


@register_model(tiny=_TINY, checkpoint_defaults=_CKPT_DEFAULTS)
def tanet_x4(**overrides) -> TANet:
    return _tanet(4, **overrides)


@register_model(tiny=_TINY, checkpoint_defaults=_CKPT_DEFAULTS)
def tanet_x8(**overrides) -> TANet:
    return _tanet(8, **overrides)


@register_model(tiny=_TINY, checkpoint_defaults=_CKPT_DEFAULTS)
def tanet_no_global_x4(**overrides) -> TANet:
    return _tanet(4, **{**overrides, "use_global": False})


@register_model(tiny=_TINY, checkpoint_defaults=_CKPT_DEFAULTS)
def tanet_no_global_x8(**overrides) -> TANet:
    return _tanet(8, **{**overrides, "use_global": False})


@register_model(tiny=_TINY, checkpoint_defaults=_CKPT_DEFAULTS)
def tanet_no_local_x4(**overrides) -> TANet:
    return _tanet(4, **{**overrides, "use_local": False})


@register_model(tiny=_TINY, checkpoint_defaults=_CKPT_DEFAULTS)
def tanet_no_local_x8(**overrides) -> TANet:
    return _tanet(8, **{**overrides, "use_local": False})


@register_model(tiny=_TINY)
def tanet_literal_x4(**overrides) -> TANet:
    return _tanet(4, **{**LITERAL, **overrides})


@register_model(tiny=_TINY)
def tanet_literal_x8(**overrides) -> TANet:
    return _tanet(8, **{**LITERAL, **overrides})


@register_model(tiny=_TINY)
def tanet_s_x4(**overrides) -> TANet:
    return _tanet(4, **{**SMALL, **overrides})


@register_model(tiny=_TINY)
def tanet_s_x8(**overrides) -> TANet:
    return _tanet(8, **{**SMALL, **overrides})

"""DIDnet: face super-resolution through a dual-identity constraint.

Cheng, Lu, Wang, Zhang, "Face Super-Resolution Through Dual-Identity Constraint", IEEE ICME 2021
(IEEE Xplore document 9428360). **No public code and no architecture details available to us**:
searches of code/issue/page indexes found only the citation (face-SR surveys list it as an
identity-/prior-based method). The TANet paper (arXiv:2109.08174, Tables 2–4) compares against it
at ×4/×8 on FFHQ and CelebA. Everything below is therefore a reconstruction; what is known and
what is assumed:

Known (only title, venue, and how surveys and TANet classify it)
  * a face-SR generator whose training adds an **identity constraint** (surveys list it among
    identity-preserving / prior-based FSR methods), i.e. a face-recognition network compares
    the SR output with the HR ground truth;
  * the constraint is "dual" (title): two identity terms — their exact form is unknown to us.

Assumed (every number is a config field; change it, not the code)
  * **Generator**: EDSR/RCAN-style residual network on the LR image: conv3x3(3→64) →
    16 residual blocks (conv-ReLU-conv + channel attention, reduction 16) → conv3x3 → global
    skip → PixelShuffle ×2 stages → conv3x3(64→3), plus a bicubic-upsampled copy of the LR added
    at the output (residual learning). ≈ 1.5 M parameters at ×4 (a modest CNN, consistent with
    DIDnet ranking below the ~10–44 M-parameter baselines in TANet's tables).
  * **Dual identity constraint**: two terms through a frozen face recogniser φ with ê = φ/‖φ‖,
      1. *identity consistency* ``1 − cos(ê(SR_i), ê(HR_i))`` — SR keeps the HR identity;
      2. *identity discrimination* (InfoNCE over the batch): SR_i must be closer to HR_i than to
         every other HR_j, ``CE(ê(SR)·ê(HR)ᵀ / τ, i)`` — SR does not drift to another identity.
         Label-free, so it works on FFHQ (no identity labels).
    Both are the shared identity loss every model can train with (``fsr_bench.train.identity``:
    faces aligned to the ArcFace template by the **HR** face's landmarks, frozen recogniser in eval
    mode, autocast- and DDP-safe), so DIDnet's recipe states them in its training config:
    ``loss: {identity: {recogniser: mobilefacenet, weight: 0.1, infonce_weight: 0.1, temperature: 0.1}}``
    (``protocols/train_didnet_s_identity_faces256_x{4,8}.yaml``). Weights 0.1 / 0.1 and τ = 0.1
    are assumptions. The generator itself is a plain super-resolver.

Checkpoints written while DIDnet carried its own identity hook record five training-only config
fields (``use_identity_loss``, ``identity_weight``, ``discrimination_weight``, ``temperature``,
``identity_size``); they never changed the generator, and the builders drop them so those
checkpoints still load.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from baselines.common import Upsampler, default_conv, strip_prefixes
from fsr_bench.models import register_model
from fsr_bench.models.base import ModelInfo, SuperResolver, check_scale


@dataclass
class DIDnetConfig:
    scale: int = 4
    n_feats: int = 64  # generator width (assumed)
    n_blocks: int = 16  # residual channel-attention blocks (assumed)
    reduction: int = 16  # channel-attention squeeze ratio (assumed, RCAN's)
    res_scale: float = 1.0  # residual scaling inside blocks (assumed)
    bicubic_skip: bool = True  # add bicubic(LR) to the output (assumed)


# ----------------------------------------------------------------------------------------------
# Generator (assumed layout, see module docstring)
# ----------------------------------------------------------------------------------------------
class ChannelAttention(nn.Module):
    def __init__(self, c: int, reduction: int):
        super().__init__()
        mid = max(c // reduction, 1)
        self.fc = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(c, mid, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, c, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x)  # (N, C, H, W)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, c: int, reduction: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(
            default_conv(c, c, 3),
            nn.ReLU(inplace=True),
            default_conv(c, c, 3),
            ChannelAttention(c, reduction),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * self.res_scale + x  # (N, C, H, W)


class DIDnet(SuperResolver):
    info = ModelInfo(
        paper="Cheng, Lu, Wang, Zhang, Face Super-Resolution Through Dual-Identity Constraint, ICME 2021",
        input_convention="native LR, RGB [0,1]",
        repo="(no public code; generator layout and loss details assumed, see baselines/didnet.py)",
        notes="residual channel-attention generator (assumed); its dual identity constraint (1-cos(SR,HR) + "
        "batch InfoNCE through a frozen recogniser) is the training config's loss.identity",
    )

    def __init__(self, cfg: DIDnetConfig):
        super().__init__(cfg.scale, cfg)
        c = cfg.n_feats
        self.head = default_conv(3, c, 3)
        self.body = nn.Sequential(
            *[ResidualAttentionBlock(c, cfg.reduction, cfg.res_scale) for _ in range(cfg.n_blocks)],
            default_conv(c, c, 3),
        )
        self.tail = nn.Sequential(Upsampler(cfg.scale, c), default_conv(c, 3, 3))

    # -- interface -------------------------------------------------------------------------------
    def forward_native(self, lr: torch.Tensor) -> torch.Tensor:
        x = self.head(lr)  # (N, C, h, w)
        x = self.body(x) + x  # (N, C, h, w)
        sr = self.tail(x)  # (N, 3, s*h, s*w)
        if self.config.bicubic_skip:
            sr = sr + F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return sr

    def convert_state_dict(self, state_dict):
        """No upstream release exists; only wrapper prefixes (``module.``, ``model.``) are stripped."""
        return strip_prefixes(state_dict)


# ----------------------------------------------------------------------------------------------
# Registered variants
# ----------------------------------------------------------------------------------------------
_TINY = dict(n_feats=8, n_blocks=2, reduction=4)


# training-only fields of checkpoints saved before the identity terms moved to loss.identity
_REMOVED = ("use_identity_loss", "identity_weight", "discrimination_weight", "temperature", "identity_size")


def _didnet(registered: int, **overrides) -> DIDnet:
    for key in _REMOVED:
        overrides.pop(key, None)
    overrides["scale"] = check_scale(overrides.get("scale", registered), registered)
    return DIDnet(DIDnetConfig(**overrides))


@register_model(tiny=_TINY)
def didnet_x4(**overrides) -> DIDnet:
    return _didnet(4, **overrides)


@register_model(tiny=_TINY)
def didnet_x8(**overrides) -> DIDnet:
    return _didnet(8, **overrides)


# The reduced size that trains on a CPU budget (fsr-bench's equal-budget leaderboard):
# 48 channels (assumed full size 64), 8 blocks (16).
_S = dict(n_feats=48, n_blocks=8)


@register_model(tiny=_TINY)
def didnet_s_x4(**overrides) -> DIDnet:
    """DIDnet-S ×4 (reduced; see _S)."""
    return _didnet(4, **{**_S, **overrides})


@register_model(tiny=_TINY)
def didnet_s_x8(**overrides) -> DIDnet:
    """DIDnet-S ×8 (reduced; see _S)."""
    return _didnet(8, **{**_S, **overrides})

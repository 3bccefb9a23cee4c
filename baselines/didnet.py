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
  * **Dual identity constraint** (:class:`DualIdentityLoss`), with φ a frozen face recogniser
    mapping aligned (N, 3, 112, 112) faces in [0, 1] to embeddings, ê = φ/‖φ‖:
      1. *identity consistency* ``1 − cos(ê(SR_i), ê(HR_i))`` — SR keeps the HR identity;
      2. *identity discrimination* (InfoNCE over the batch): SR_i must be closer to HR_i than to
         every other HR_j, ``CE(ê(SR)·ê(HR)ᵀ / τ, i)`` — SR does not drift to another identity.
         Label-free, so it works on FFHQ (no identity labels); 0 for a batch of one.
    Weights 0.1 / 0.1 and τ = 0.1 are assumptions, as is resizing the whole face crop to 112×112
    (bilinear, antialiased) before φ (pass ``preprocess`` to align differently).

Trainer hook (for the trainer author)
  * ``model.identity_net = net`` injects φ (any callable; an ``nn.Module`` is frozen, set to
    eval and moved to the SR tensor's device). It is **not** a sub-module: it never enters the
    model's ``state_dict``/checkpoints or ``parameters()``.
  * ``model.training_loss(sr, hr, lr) -> dict[str, Tensor]`` returns the **already weighted**
    extra terms ``{"identity": …, "identity_discrimination": …}``; add them to the pixel loss.
    With ``use_identity_loss=True`` (default, the paper's method) and no ``identity_net`` it
    raises; ``use_identity_loss=False`` returns ``{}`` (a plain-L1 DIDnet generator).
  * ``DIDnet.extra_losses = {"identity": DualIdentityLoss}`` names the loss class for configs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

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
    # dual identity constraint (training only; see DualIdentityLoss)
    use_identity_loss: bool = True  # the paper's method; False: pixel loss only
    identity_weight: float = 0.1  # weight of 1 - cos(SR, HR) (assumed)
    discrimination_weight: float = 0.1  # weight of the batch InfoNCE term (assumed)
    temperature: float = 0.1  # InfoNCE temperature (assumed)
    identity_size: int = 112  # recogniser input side (MobileFaceNet / ArcFace: 112)


# ----------------------------------------------------------------------------------------------
# Dual identity constraint
# ----------------------------------------------------------------------------------------------
class DualIdentityLoss(nn.Module):
    """Two identity terms from a frozen face recogniser ``embed`` (see module docstring).

    ``forward(sr, hr)`` → ``{"identity": 1 − cos mean, "identity_discrimination": InfoNCE}``
    (unweighted). ``embed`` maps (N, 3, size, size) RGB [0, 1] to (N, D) embeddings; ``preprocess``
    (default: bilinear antialiased resize of the whole crop to size×size) maps SR/HR to that.
    """

    def __init__(
        self,
        embed: Callable[[torch.Tensor], torch.Tensor],
        size: int = 112,
        temperature: float = 0.1,
        preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        super().__init__()
        if isinstance(embed, nn.Module):
            embed.eval().requires_grad_(False)  # a fixed metric: gradients flow to SR, not into φ
        object.__setattr__(self, "embed", embed)  # plain attribute: never saved with a model
        self.size, self.temperature = size, temperature
        self.preprocess = preprocess or self._resize

    def _resize(self, img: torch.Tensor) -> torch.Tensor:
        if img.shape[-2:] == (self.size, self.size):
            return img
        size = (self.size, self.size)
        return F.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=True)

    def embeddings(self, img: torch.Tensor) -> torch.Tensor:
        if isinstance(self.embed, nn.Module):
            p = next(self.embed.parameters(), None)
            if p is not None and p.device != img.device:
                self.embed.to(img.device)
        return F.normalize(self.embed(self.preprocess(img)).flatten(1).float(), dim=1)  # (N, D)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        e_sr = self.embeddings(sr)  # (N, D), differentiable w.r.t. sr
        with torch.no_grad():
            e_hr = self.embeddings(hr)  # (N, D), target
        identity = (1.0 - (e_sr * e_hr).sum(dim=1)).mean()  # 1 − cos
        if sr.shape[0] > 1:
            logits = e_sr @ e_hr.t() / self.temperature  # (N, N): row i should peak at column i
            target = torch.arange(sr.shape[0], device=sr.device)
            discrimination = F.cross_entropy(logits, target)
        else:
            discrimination = identity.new_zeros(())
        return {"identity": identity, "identity_discrimination": discrimination}


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
        notes="residual channel-attention generator (assumed); DualIdentityLoss = 1-cos(SR,HR) + "
        "batch InfoNCE via an injected face recogniser (model.identity_net); trainer calls training_loss",
    )
    extra_losses: ClassVar[dict[str, type]] = {"identity": DualIdentityLoss}

    def __init__(self, cfg: DIDnetConfig):
        super().__init__(cfg.scale, cfg)
        c = cfg.n_feats
        self.head = default_conv(3, c, 3)
        self.body = nn.Sequential(
            *[ResidualAttentionBlock(c, cfg.reduction, cfg.res_scale) for _ in range(cfg.n_blocks)],
            default_conv(c, c, 3),
        )
        self.tail = nn.Sequential(Upsampler(cfg.scale, c), default_conv(c, 3, 3))
        object.__setattr__(self, "_identity_loss", None)  # not a sub-module (see identity_net)

    # -- identity network injection ------------------------------------------------------------
    @property
    def identity_net(self):
        loss = self.__dict__.get("_identity_loss")
        return None if loss is None else loss.embed

    @identity_net.setter
    def identity_net(self, net) -> None:
        loss = None
        if net is not None:
            cfg = self.config
            loss = DualIdentityLoss(net, size=cfg.identity_size, temperature=cfg.temperature)
        object.__setattr__(self, "_identity_loss", loss)  # bypasses nn.Module registration

    def __setattr__(self, name, value):
        if name == "identity_net":  # nn.Module.__setattr__ would register a Module as a child
            type(self).identity_net.fset(self, value)
        else:
            super().__setattr__(name, value)

    # -- interface -------------------------------------------------------------------------------
    def forward_native(self, lr: torch.Tensor) -> torch.Tensor:
        x = self.head(lr)  # (N, C, h, w)
        x = self.body(x) + x  # (N, C, h, w)
        sr = self.tail(x)  # (N, 3, s*h, s*w)
        if self.config.bicubic_skip:
            sr = sr + F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return sr

    def training_loss(
        self, sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Extra, already weighted loss terms of the dual identity constraint (add to pixel loss)."""
        cfg = self.config
        if not cfg.use_identity_loss:
            return {}
        loss = self.__dict__.get("_identity_loss")
        if loss is None:
            raise RuntimeError(
                "DIDnet's dual identity constraint is enabled (use_identity_loss=True) but no face "
                "recogniser is set: assign model.identity_net = <callable mapping (N,3,112,112) RGB "
                "[0,1] to embeddings> (e.g. the MobileFaceNet from fsr_bench.face) before training, "
                "or build the model with use_identity_loss=False for a pixel-loss-only DIDnet"
            )
        terms = loss(sr, hr)
        return {
            "identity": cfg.identity_weight * terms["identity"],
            "identity_discrimination": cfg.discrimination_weight * terms["identity_discrimination"],
        }

    def convert_state_dict(self, state_dict):
        """No upstream release exists; only wrapper prefixes (``module.``, ``model.``) are stripped."""
        return strip_prefixes(state_dict)


# ----------------------------------------------------------------------------------------------
# Registered variants
# ----------------------------------------------------------------------------------------------
_TINY = dict(n_feats=8, n_blocks=2, reduction=4)


def _didnet(registered: int, **overrides) -> DIDnet:
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

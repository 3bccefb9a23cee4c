"""Training losses: the paper's L1, plus whatever extra terms a model defines for itself.

:class:`TrainStep` wraps a super-resolver into the module that DistributedDataParallel (and
``torch.compile``) sees: ``forward(lr, hr) -> (total, terms)``. Going through one ``forward`` keeps
DDP's gradient hooks correct even for models trained through a method other than ``forward``:

* a model with ``forward_steps(lr) -> list[sr]`` (SRFBN's feedback steps) gets the pixel loss
  averaged over the steps;
* a model with ``training_loss(sr, hr, lr) -> dict[str, Tensor]`` (a plug-in's own terms) gets
  its terms added, each times ``loss.weights[name]`` (default 1.0). The pixel term is called
  ``pixel`` and can be re-weighted the same way;
* any model gets ``identity`` and, optionally, ``identity_infonce`` (``loss.identity``: a frozen
  recogniser on SR vs HR faces aligned by the HR landmarks, :mod:`fsr_bench.train.identity`; DIDnet's
  dual identity constraint is these two terms) when the batch carries ``face_affine``.
"""
from __future__ import annotations

from typing import Any, Mapping, cast

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TrainStep", "pixel_loss"]


def pixel_loss(kind: str, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Mean pixel loss in float32 (autocast outputs are upcast before the reduction)."""
    sr, hr = sr.float(), hr.float()
    if kind == "l1":
        return F.l1_loss(sr, hr)
    if kind == "mse":
        return F.mse_loss(sr, hr)
    if kind == "charbonnier":
        return torch.sqrt((sr - hr).square() + 1e-6).mean()
    raise ValueError(f"unknown pixel loss {kind!r}; valid: l1, mse, charbonnier")


class TrainStep(nn.Module):
    """``forward(lr, hr) -> (total loss, {"total", "pixel", *extra terms} detached)``."""

    def __init__(self, model: nn.Module, pixel: str = "l1", weights: Mapping[str, float] | None = None,
                 identity: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.pixel = pixel
        self.weights = dict(weights or {})
        self.identity = identity  # IdentityLoss (frozen recogniser inside) or None
        if identity is not None:  # its configured term weights; loss.weights still overrides them
            for name, w in getattr(identity, "weights", {}).items():
                self.weights.setdefault(name, float(w))

    def _check_shape(self, sr: torch.Tensor, hr: torch.Tensor) -> None:
        if sr.shape != hr.shape:
            scale = getattr(self.model, "scale", "?")
            raise ValueError(
                f"model output {tuple(sr.shape)} does not match HR {tuple(hr.shape)}: model scale {scale}"
                " does not fit the data (check data.degradation.scale / the LR folder)"
            )

    def forward(self, lr: torch.Tensor, hr: torch.Tensor,
                face_affine: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model: Any = self.model  # optional hooks: forward_steps, training_loss
        if hasattr(model, "forward_steps"):
            outs = model.forward_steps(lr)
            for o in outs:
                self._check_shape(o, hr)
            pix = torch.stack([pixel_loss(self.pixel, o, hr) for o in outs]).mean()
            sr = outs[-1]
        else:
            sr = model(lr)
            self._check_shape(sr, hr)
            pix = pixel_loss(self.pixel, sr, hr)
        terms: dict[str, torch.Tensor] = {"pixel": pix}
        if hasattr(model, "training_loss"):
            extra = model.training_loss(sr, hr, lr)
            for name, value in extra.items():
                if name in terms or name == "total":
                    raise ValueError(f"{type(model).__name__}.training_loss returned reserved term name {name!r}")
                terms[name] = value.float()
        if self.identity is not None:
            if face_affine is None:
                raise ValueError("loss.identity needs the batch's face_affine (HR landmarks); the data has none")
            for name, value in self.identity(sr, hr, face_affine).items():
                if name in terms:
                    raise ValueError(f"loss.identity's term {name!r} collides with a term of the model's training_loss")
                terms[name] = value
        total = cast(torch.Tensor, sum(self.weights.get(n, 1.0) * v for n, v in terms.items()))  # never 0: "pixel"
        # the logged values are views of one new detached tensor: returning detached aliases of
        # `total` itself next to it makes torch.compile (2.14) hand back a loss without grad_fn
        logged = torch.stack([total, *terms.values()]).detach()
        return total, dict(zip(["total", *terms], logged.unbind(0)))

    def check_terms(self, terms: Mapping[str, torch.Tensor]) -> list[str]:
        """Names of the logged terms; an error when loss.weights names a term that does not exist."""
        unknown = sorted(set(self.weights) - set(terms))
        if unknown:
            raise ValueError(
                f"loss.weights names term(s) {unknown} that the model does not produce;"
                f" its terms are: {sorted(n for n in terms if n != 'total')}"
            )
        return list(terms)

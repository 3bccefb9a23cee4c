"""Paste a super-resolved face back into its frame with a feathered (linearly ramped) border.

The weight of the pasted face at a pixel is ``min(ramp_y, ramp_x)`` with, along an axis of ``n``
pixels, ``ramp(i) = clip(d(i) / feather, 0, 1)`` and ``d(i) = min(i + 0.5, n - i - 0.5)`` the
distance of pixel centre ``i`` from the nearer edge of the pasted square; ``feather`` is in output
pixels (0: a hard paste). So the face is taken whole in the interior and fades linearly into the
background over its outer ``feather`` pixels, and nothing outside the pasted square changes —
the same idea as facexlib / GFPGAN's paste-back, which erode and blur a mask instead of ramping it.
"""
from __future__ import annotations

import torch

__all__ = ["feather_mask", "paste_face"]


def _ramp(n: int, feather: float) -> torch.Tensor:
    if feather <= 0:
        return torch.ones(n)
    i = torch.arange(n, dtype=torch.float64)
    d = torch.minimum(i + 0.5, n - i - 0.5)
    return (d / feather).clamp(0, 1).float()


def feather_mask(h: int, w: int, feather: float) -> torch.Tensor:
    """``(h, w)`` blend weights in [0, 1] (see the module docstring)."""
    if h < 1 or w < 1:
        raise ValueError(f"mask size must be positive, got {h}x{w}")
    return torch.minimum(_ramp(h, feather)[:, None], _ramp(w, feather)[None, :])


def paste_face(frame: torch.Tensor, face: torch.Tensor, x0: int, y0: int, feather: float) -> torch.Tensor:
    """Blend ``face`` (3, h, w) into ``frame`` (3, H, W) with its top-left corner at (x0, y0), in place
    (and returned). The square must lie inside the frame: pasting is geometry the caller computed, so a
    square outside it is a bug, not something to clip quietly."""
    _, h, w = face.shape
    if x0 < 0 or y0 < 0 or y0 + h > frame.shape[-2] or x0 + w > frame.shape[-1]:
        raise ValueError(f"face {w}x{h} at ({x0}, {y0}) does not fit in the {frame.shape[-1]}x{frame.shape[-2]} frame")
    m = feather_mask(h, w, feather).to(frame.device, frame.dtype)
    region = frame[:, y0 : y0 + h, x0 : x0 + w]
    region.mul_(1 - m).add_(face.to(frame.device, frame.dtype) * m)
    return frame

"""Large inputs: a pixel budget that refuses with advice, and tile-by-tile super-resolution.

    check_input_size(model, h, w, max_pixels=DEFAULT_MAX_PIXELS, source="frame.png")  # raises
    sr = tiled_forward(model, lr, tile=256, overlap=16)                                 # any size

**Blending: cropped centre.** The LR image is cut into a grid of ``tile`` x ``tile`` *cores*; each
core is run with ``overlap`` LR pixels of real image context on every side that has one, and only
the core's part of the output is kept. No averaging: for a model whose receptive field reaches at
most ``overlap`` LR pixels (a convolution stack, the bicubic floor's 2-pixel kernel) every kept
pixel sees exactly the input it sees untiled, so the result equals the untiled output (up to
floating-point summation order); image borders stay image borders, so zero/mirror padding there is
unchanged. Feathered averaging would only blur two already-equal values for such models, and for
the others (below) it would mix two different functions rather than compute either.

**size_multiple.** Every tile's window starts and (inside the image) ends on a multiple of
``model.size_multiple``, so TANet's 4x4 patch grid (IPT's 3x3) stays aligned with the image's, no
window inside the image is padded, and a window that ends at the image's bottom/right edge is padded
exactly as the whole image would be.

**What tiling changes for TANet** (and any model with image-level context: IPT's and NLSN's
attention). TANet's global path attends over all patch tokens of *its input*; tiled, that input is a
tile window, so attention becomes **tile-level**: each output pixel is computed from the tokens of
its own window (core + overlap), not from the whole image, and the learnable position encoding is
resized to the window's token grid instead of the image's. The local (SMFN) path's receptive field is
also larger than a typical overlap (about 2·G·I + 4 LR pixels: 204 at paper size), so its output
changes near tile seams too. For a face crop no larger than ``tile`` nothing changes (one window, the
whole image); for a large frame, choose ``tile`` at least the size of the faces in it, so each face
is attended over as a whole in most windows.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

import torch

from fsr_bench.data.io import FsrBenchDataError
from fsr_bench.models.base import SuperResolver

# 4 megapixels of LR input: the 4000x3000 frame of issue 11 is refused (bicubic_x4 would need 9+ GB
# for it), while every face crop and a 1080p frame (2.1 Mpx) pass
DEFAULT_MAX_PIXELS = 4_000_000
# what tiled_forward assembles, in output pixels (float32 RGB, 12 bytes a pixel: 768 MB): tiles bound
# the model's memory, not this; 1080p at x4 (33 MP) fits, a 12 MP photo at x4 (192 MP, 2.3 GB) does not
MAX_ASSEMBLED_PIXELS = 64e6
DEFAULT_TILE = 256  # LR pixels; 4x the paper's 64x64 LR face at x4
# LR pixels of context on each inner side: covers the bicubic kernel and shallow convolution stacks;
# a paper-size TANet's local path reaches further (see the module docstring)
DEFAULT_OVERLAP = 16


class InputTooLargeError(FsrBenchDataError):
    """An input above the pixel budget; the message says how to process it anyway."""


def check_input_size(model: SuperResolver, h: int, w: int, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                     source: str = "") -> None:
    """Refuse an LR input of more than ``max_pixels`` pixels (``None``: no limit).

    The check exists because a whole-image forward's memory grows with the *output* (scale² · h · w
    pixels, times each model's feature width) and TANet's global attention with (h · w)²: without it,
    a camera frame runs out of memory or computes for minutes with nothing to show.
    """
    if max_pixels is None or h * w <= max_pixels:
        return
    name = model.name or type(model).__name__
    s = model.scale
    raise InputTooLargeError(
        f"{source + ': ' if source else ''}input {w}x{h} ({h * w / 1e6:.1f} Mpx) is above the pixel budget "
        f"of {max_pixels / 1e6:.1f} Mpx for {name} (x{s} -> {w * s}x{h * s} output). Super-resolve it "
        f"tile by tile with --tile {DEFAULT_TILE} (memory then depends on the tile, not the image), or "
        "raise --max-pixels if this machine has the memory"
    )


def _windows(length: int, tile: int, overlap: int, multiple: int) -> Iterator[tuple[int, int, int, int]]:
    """Along one axis: (window_start, window_end, core_start, core_end) for each tile.

    Cores partition [0, length); a window is its core plus ``overlap`` of context on each side,
    widened to multiples of ``multiple`` (so only a window at the image's edge is ever padded, as the
    whole image would be) and clipped to the image.
    """
    for core_start in range(0, length, tile):
        core_end = min(core_start + tile, length)
        start = max(0, core_start - overlap) // multiple * multiple
        end = min(length, -(-(core_end + overlap) // multiple) * multiple)
        yield start, end, core_start, core_end


def tiled_forward(model: SuperResolver, lr: torch.Tensor, tile: int = DEFAULT_TILE,
                  overlap: int = DEFAULT_OVERLAP, progress: bool = False,
                  forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """``model(lr)`` computed tile by tile (see the module docstring for what that changes).

    ``lr``: (N, 3, H, W) on any device; each tile moves to the model's device and its output back to
    ``lr``'s, so a frame larger than the accelerator's memory stays on the host. ``tile`` and
    ``overlap`` are in LR pixels. Runs without gradients (inference only). ``forward`` replaces
    ``model(tile)`` (e.g. ``fsr_bench.models.precision.infer`` in bf16).
    """
    if lr.ndim != 4 or lr.shape[1] != 3:
        raise ValueError(f"tiled_forward expects an RGB batch (N, 3, H, W); got shape {tuple(lr.shape)}")
    m = model.size_multiple
    if tile < m or tile % m:
        raise ValueError(f"tile ({tile}) must be a positive multiple of {model.name or type(model).__name__}'s "
                         f"size_multiple ({m})")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    n, _, h, w = lr.shape
    s = model.scale
    device = next((p.device for p in model.parameters()), lr.device)
    rows, cols = list(_windows(h, tile, overlap, m)), list(_windows(w, tile, overlap, m))
    out = None
    bar = None
    if progress:
        from fsr_bench.progress import progress_bar

        bar = progress_bar(total=len(rows) * len(cols), desc=f"tiles {model.name}", unit="tile")
    with torch.no_grad():
        for y0, y1, cy0, cy1 in rows:
            for x0, x1, cx0, cx1 in cols:
                sr = (forward or model)(lr[:, :, y0:y1, x0:x1].to(device))
                if out is None:  # allocated from the first tile: the model's output dtype
                    out = torch.empty(n, 3, h * s, w * s, dtype=sr.dtype, device=lr.device)
                core = sr[:, :, (cy0 - y0) * s : (cy1 - y0) * s, (cx0 - x0) * s : (cx1 - x0) * s]
                out[:, :, cy0 * s : cy1 * s, cx0 * s : cx1 * s] = core.to(lr.device)
                if bar is not None:
                    bar.update()
    if bar is not None:
        bar.close()
    if out is None:  # no tile ran
        raise ValueError(f"tiled_forward got an empty image: shape {tuple(lr.shape)}")
    return out

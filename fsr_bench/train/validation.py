"""Validation during training, scored exactly as the benchmark runner scores: the same
:class:`~fsr_bench.metrics.MetricConventions` (Y channel, border crop = scale, 8-bit outputs) and the
same rule for exact reconstructions (:meth:`fsr_bench.metrics.ReconstructionMetrics.compute`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from fsr_bench.models.base import SuperResolver

__all__ = ["collate_val", "score_pairs"]


@torch.no_grad()
def score_pairs(model: SuperResolver, pairs, device: torch.device, batch_size: int = 8, indices=None,
                workers: int = 0, channels_last: bool = False, precision: str = "fp32") -> torch.Tensor:
    """Sums ``[PSNR, SSIM, n, n_exact]`` (float64, on ``device``) of ``model`` on (LR, HR) ``pairs``.

    ``precision``/``channels_last``: how the model runs (``fsr_bench.models.precision``); training
    validates in its own training precision, so ``best.pt`` is chosen by what was trained.

    The benchmark's conventions: outputs clamped and rounded to 8 bits, Y channel (BT.601, MATLAB),
    border crop = scale, SSIM 11x11 Gaussian σ 1.5 (``fsr_bench.metrics.functional``), and its rule
    for exact reconstructions (``ReconstructionMetrics.compute``): their PSNR is inf, so they are
    counted in ``n_exact`` and left out of the PSNR sum. Used for validation during training and for
    scoring baselines (e.g. bicubic) on the same split. A non-finite model output makes the PSNR sum NaN.
    """
    from fsr_bench.metrics import MetricConventions
    from fsr_bench.models.precision import infer

    was_training = model.training
    model.eval()
    subset = pairs if indices is None else torch.utils.data.Subset(pairs, list(indices))
    loader = torch.utils.data.DataLoader(
        subset, batch_size=batch_size, num_workers=workers, collate_fn=collate_val,
        generator=torch.Generator(),  # leaves the global RNG untouched (exact resume)
    )
    conv = MetricConventions(crop_border=model.scale)  # the runner's defaults: Y, 8-bit, crop = scale
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    for batch in loader:
        lr = batch["lr"].to(device, non_blocking=True)
        hr = batch["hr"].to(device, non_blocking=True)
        sr = infer(model, lr, precision, channels_last)
        if not torch.isfinite(sr).all():
            sums[0] = float("nan")
            break
        p, s = conv.psnr(sr, hr), conv.ssim(sr, hr)
        exact = torch.isinf(p)
        sums += torch.stack([torch.where(exact, 0.0, p).sum(), s.sum(),
                             torch.tensor(float(len(p)), dtype=torch.float64, device=device),
                             exact.sum().to(torch.float64)])
    model.train(was_training)
    return sums


def collate_val(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "lr": torch.stack([it["lr"] for it in items]),
        "hr": torch.stack([it["hr"] for it in items]),
        "index": [it["index"] for it in items],
        "name": [it["name"] for it in items],
    }

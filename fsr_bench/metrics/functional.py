"""Pure PSNR / SSIM / MPS with every convention an explicit argument.

Why explicit: "cannot reproduce the paper's PSNR" is almost always a convention mismatch — Y vs
RGB, the Y formula, border crop, 8-bit rounding, SSIM window (field notes, "Metric conventions").
Defaults follow the field's MATLAB practice:

* **Quantisation** (``quantize=True``): inputs in [0, 1] are clamped and rounded to 8 bits with
  :func:`fsr_bench.data.io.to_uint8` first — exactly what saving the SR output as a PNG does, and
  what MATLAB evaluation scripts read back. ``quantize=False`` uses the float values as given.
* **Y channel** (``y_channel=True``): ITU-R BT.601 luma as MATLAB ``rgb2ycbcr``,
  ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` for RGB in [0, 1] (Y in [16, 235]). Y is kept in
  float (BasicSR's ``bgr2ycbcr(y_only=True)`` convention); MATLAB on a uint8 image would round Y
  to uint8 as well, which changes PSNR by ~0.01 dB.
* **Border crop** (``crop_border``): pixels removed from *each* side before scoring; the protocol
  decides (``scale`` for EDSR/SRFBN-style tables, 0 for SPARNet).
* **Arithmetic**: float64, values on the 0–255 scale, so ``data_range = 255``.
* **PSNR** per image ``10 log10(data_range² / MSE)``; identical images give ``inf`` (not an
  error, not a cap: the caller sees exactly what happened). Tables report the mean of per-image
  PSNR, not the PSNR of the pooled MSE.
* **SSIM**: Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to
  structural similarity", IEEE TIP 13(4), 2004, and the authors' ``ssim_index.m``: 11×11 Gaussian
  window σ = 1.5 (``fspecial('gaussian', 11, 1.5)``), K1 = 0.01, K2 = 0.03, L = 255, ``'valid'``
  filtering (no padding; the map is (H-10)×(W-10)), mean of the map. No automatic downsampling (that
  was added in the later ``ssim.m``). On RGB the per-channel SSIMs are averaged (BasicSR).
  Identical to ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255)``, which filters with padding and then discards
  the (win-1)/2 border — the same pixels.
* **MPS** = 0.5 · (SSIM + (1 − LPIPS)) (TANet paper eq. 18; El Helou et al. 2020).

Inputs are ``(3, H, W)`` (returns a 0-d tensor) or ``(N, 3, H, W)`` (returns shape ``(N,)``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from fsr_bench.data.io import to_uint8

__all__ = ["MetricConventions", "Y_FORMULA", "mps", "psnr", "rgb_to_y", "ssim"]

#: BT.601 "studio swing" luma coefficients of MATLAB ``rgb2ycbcr`` for RGB in [0, 1].
_Y_COEFFS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0
Y_FORMULA = "Y = 16 + 65.481 R + 128.553 G + 24.966 B (RGB in [0,1]; MATLAB rgb2ycbcr, float)"


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """RGB ``(..., 3, H, W)`` in [0, 1] → Y ``(..., 1, H, W)`` on the 0–255 scale, in [16, 235]."""
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"rgb_to_y expects (..., 3, H, W), got shape {tuple(x.shape)}")
    coeffs = torch.tensor(_Y_COEFFS, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return _Y_OFFSET + (x * coeffs).sum(dim=-3, keepdim=True)


def _prepare(
    sr: torch.Tensor, hr: torch.Tensor, crop_border: int, y_channel: bool, quantize: bool
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Validate, quantise, convert to Y (or RGB ×255), crop. Returns float64 (N, C, h, w) ×2."""
    if sr.shape != hr.shape:
        raise ValueError(
            f"SR and HR shapes differ: {tuple(sr.shape)} vs {tuple(hr.shape)}; SR must be exactly"
            " scale × LR and HR mod-cropped to a multiple of the scale"
        )
    if sr.ndim not in (3, 4):
        raise ValueError(f"expected (C, H, W) or (N, C, H, W), got shape {tuple(sr.shape)}")
    single = sr.ndim == 3
    c = int(crop_border)
    if c < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    h, w = sr.shape[-2:]
    if c and 2 * c >= min(h, w):
        raise ValueError(f"crop_border {c} removes the whole {h}x{w} image")
    pair = []
    for x in (sr, hr):
        x = x.unsqueeze(0) if single else x
        if c:  # every step below is per pixel: cropping first gives the same values on fewer pixels
            x = x[..., c:-c, c:-c]
        x = to_uint8(x).to(torch.float64).div_(255.0) if quantize else x.to(torch.float64)
        pair.append(rgb_to_y(x) if y_channel else x * 255.0)  # 0-255 scale
    a, b = pair
    return a, b, single


def psnr(
    sr: torch.Tensor,
    hr: torch.Tensor,
    crop_border: int = 0,
    y_channel: bool = True,
    data_range: float = 255.0,
    quantize: bool = True,
) -> torch.Tensor:
    """Per-image PSNR in dB (float64); ``inf`` for identical images. See module docstring."""
    a, b, single = _prepare(sr, hr, crop_border, y_channel, quantize)
    mse = (a - b).pow(2).mean(dim=(1, 2, 3))  # (N,)
    value = 10.0 * torch.log10(float(data_range) ** 2 / mse)  # mse == 0 -> inf
    return value[0] if single else value


def _gaussian_taps(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    """1-D normalised Gaussian; its outer product is ``fspecial('gaussian', size, sigma)``."""
    t = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2.0
    taps = torch.exp(-(t**2) / (2.0 * sigma**2))
    return taps / taps.sum()


def ssim(
    sr: torch.Tensor,
    hr: torch.Tensor,
    crop_border: int = 0,
    y_channel: bool = True,
    quantize: bool = True,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    data_range: float = 255.0,
) -> torch.Tensor:
    """Per-image mean SSIM (float64), Wang et al. 2004, 'valid' filtering. See module docstring."""
    a, b, single = _prepare(sr, hr, crop_border, y_channel, quantize)
    n, c, h, w = a.shape
    if min(h, w) < window_size:
        raise ValueError(
            f"SSIM needs images of at least {window_size}x{window_size} after cropping; got {h}x{w}"
        )
    taps = _gaussian_taps(window_size, sigma, a.device).tolist()
    ho, wo = h - window_size + 1, w - window_size + 1

    def filt(x: torch.Tensor) -> torch.Tensor:  # separable, no padding ('valid'): (N*C, h-10, w-10)
        # a weighted sum of shifted views, pass by pass: the float64 F.conv2d this replaces runs
        # through im2col on a CPU (oneDNN has no float64 kernels) and took ~12x longer
        x = x.reshape(n * c, h, w)
        rows = x[:, :ho] * taps[0]
        for k in range(1, window_size):
            rows.add_(x[:, k:k + ho], alpha=taps[k])
        out = rows[:, :, :wo] * taps[0]
        for k in range(1, window_size):
            out.add_(rows[:, :, k:k + wo], alpha=taps[k])
        return out

    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    value = ssim_map.reshape(n, -1).mean(dim=1)  # channels have equal size: mean of channel means
    return value[0] if single else value


def mps(ssim_value: Any, lpips_value: Any) -> Any:
    """Mean Perceptual Score, ``0.5 * (SSIM + (1 - LPIPS))`` (TANet eq. 18). Floats or tensors."""
    return 0.5 * (ssim_value + (1.0 - lpips_value))


@dataclass(frozen=True)
class MetricConventions:
    """Every choice that changes a PSNR/SSIM/LPIPS number, in one object stored with results.

    (The degradation's resize kernel is recorded by the degradation, not here.)
    """

    y_channel: bool = True  # BT.601 Y as MATLAB rgb2ycbcr; False = RGB
    crop_border: int = 0  # pixels removed from each side; protocols typically use the scale
    quantize: bool = True  # round SR/HR to 8 bits first, as saving a PNG does
    ssim_window: int = 11  # Gaussian window size (Wang et al. 2004)
    ssim_sigma: float = 1.5  # Gaussian window sigma
    data_range: float = 255.0  # peak value; images are scored on the 0-255 scale
    lpips_net: str = "alex"  # LPIPS trunk: alex | vgg | squeeze
    lpips_version: str = "0.1"  # LPIPS linear-layer version

    def describe(self) -> dict[str, Any]:
        """All fields plus the fixed formulas, for result provenance."""
        return {
            **dataclasses.asdict(self),
            "y_formula": Y_FORMULA if self.y_channel else "RGB",
            "ssim_definition": "Wang et al. 2004, gaussian window, K1=0.01, K2=0.03, 'valid'",
            "psnr_aggregation": "mean of per-image PSNR",
            "lpips_input_range": "[-1, 1]",
            "mps": "0.5 * (SSIM + (1 - LPIPS))",
        }

    def psnr(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return psnr(sr, hr, crop_border=self.crop_border, y_channel=self.y_channel,
                    data_range=self.data_range, quantize=self.quantize)

    def ssim(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return ssim(
            sr,
            hr,
            crop_border=self.crop_border,
            y_channel=self.y_channel,
            quantize=self.quantize,
            window_size=self.ssim_window,
            sigma=self.ssim_sigma,
            data_range=self.data_range,
        )

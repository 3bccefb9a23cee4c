"""Named, seeded HR → LR degradations, each recording its parameters for provenance.

Why dataclasses with ``describe()``: an LR image is only meaningful together with how it was made
(the field's "bicubic" hides several incompatible kernels, see ``fsr_bench.data.resize``). Every
result file therefore stores ``degradation.describe()``, and ``build_degradation(describe())``
rebuilds the same degradation.

* :class:`BicubicDown` — the field's standard: MATLAB ``imresize(hr, 1/scale, 'bicubic')``, then
  8-bit quantisation (the published LR sets are 8-bit PNGs).
* :class:`SurveillanceChain` — a synthetic surveillance camera: Gaussian blur → (motion blur) →
  (re-compression: down- and up-scaling) → bicubic downscale → Gaussian noise → JPEG, with per-image
  parameters drawn reproducibly from ``(seed, index)``.
  Its default ranges are fsr-bench's choice (in the spirit of real-world SR degradation models such
  as Wang et al., Real-ESRGAN, ICCVW 2021), not values from the TANet paper.

Every degradation takes ``hr`` as ``(3, H, W)`` or ``(N, 3, H, W)`` float in [0, 1] whose H and W
are multiples of ``scale`` (apply :func:`mod_crop` first — raising instead of cropping silently
keeps SR and HR aligned) and returns float32 LR of the same rank.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Any, ClassVar, Protocol, TypedDict, cast, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from typing_extensions import Required

from fsr_bench.data.io import FsrBenchDataError, to_uint8
from fsr_bench.data.resize import KERNELS, resize
from fsr_bench.registry import Registry

__all__ = [
    "BicubicDown",
    "Degradation",
    "DegradationConfigError",
    "SurveillanceChain",
    "build_degradation",
    "gaussian_blur",
    "mod_crop",
    "motion_blur",
    "motion_kernel",
    "mod_crop_size",
    "needs_mod_crop",
]


class DegradationConfigError(FsrBenchDataError):
    """A degradation config block that cannot be built (unknown type/key, bad value)."""


@runtime_checkable
class Degradation(Protocol):
    """What the runner needs from a degradation."""

    name: ClassVar[str]
    scale: int

    def describe(self) -> dict[str, Any]: ...

    def __call__(
        self, hr: torch.Tensor, index: int | Sequence[int] = 0, seed: int | None = None
    ) -> torch.Tensor: ...


# -- mod crop -------------------------------------------------------------------------------------
def mod_crop_size(height: int, width: int, scale: int) -> tuple[int, int]:
    """The largest ``(H', W')`` ≤ ``(height, width)`` that are multiples of ``scale``."""
    return height - height % scale, width - width % scale


def needs_mod_crop(hr: torch.Tensor | Sequence[int], scale: int) -> bool:
    """True if ``mod_crop`` would change this image (tensor) or ``(H, W)`` size."""
    h, w = (hr.shape[-2], hr.shape[-1]) if isinstance(hr, torch.Tensor) else (hr[0], hr[1])
    return mod_crop_size(int(h), int(w), scale) != (int(h), int(w))


def mod_crop(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop ``(..., H, W)`` to multiples of ``scale``, keeping the **top-left** corner.

    Top-left anchoring is the convention of the SR evaluation code the field copies
    (``modcrop.m`` in the SRCNN/VDSR MATLAB scripts: ``img(1:H - mod(H, s), 1:W - mod(W, s), :)``)
    and of BasicSR's ``mod_crop``. Use :func:`needs_mod_crop` to report whether it changed anything.
    """
    scale = _check_scale(scale)
    h, w = mod_crop_size(hr.shape[-2], hr.shape[-1], scale)
    if h == 0 or w == 0:
        raise ValueError(f"image of size {tuple(hr.shape[-2:])} is smaller than scale {scale}")
    return hr[..., :h, :w]


# -- helpers --------------------------------------------------------------------------------------
def _check_scale(scale: Any) -> int:
    # any real number type (NumPy's too) holding a whole value; nan and inf are not whole
    value = float(scale) if isinstance(scale, numbers.Real) and not isinstance(scale, bool) else math.nan
    if not value.is_integer() or value < 1:
        raise DegradationConfigError(
            f"scale must be a positive integer (e.g. 4 or 8), got {scale!r}"
        )
    return int(value)


def _check_kernel(kernel: str, kind: str) -> None:
    if kernel not in KERNELS:
        raise DegradationConfigError(
            f"unknown kernel {kernel!r} for degradation {kind!r}; valid: {', '.join(KERNELS)}"
        )


def _as_batch(hr: torch.Tensor, scale: int) -> tuple[torch.Tensor, bool]:
    """(3, H, W) or (N, 3, H, W) -> (N, 3, H, W), whether the input was a single image."""
    single = hr.ndim == 3
    batch = hr.unsqueeze(0) if single else hr
    if batch.ndim != 4 or batch.shape[1] != 3 or not batch.is_floating_point():
        raise ValueError(
            f"degradations expect float RGB (3, H, W) or (N, 3, H, W) in [0, 1]; got"
            f" {tuple(hr.shape)} {hr.dtype}"
        )
    if needs_mod_crop(batch, scale):
        raise ValueError(
            f"HR size {tuple(batch.shape[-2:])} is not a multiple of scale {scale}; apply"
            f" fsr_bench.data.degradations.mod_crop(hr, {scale}) first so that SR and HR align"
        )
    return batch, single


def _indices(index: int | Sequence[int], n: int) -> list[int]:
    """Per-image indices: ``index + i`` for an int, or an explicit sequence of length n."""
    if isinstance(index, (int, numbers.Integral)):  # NumPy integers too
        return [int(index) + i for i in range(n)]
    out = [int(i) for i in index]
    if len(out) != n:
        raise ValueError(f"got {len(out)} image indices for a batch of {n} images")
    return out


def _quantize(x: torch.Tensor) -> torch.Tensor:
    """The 8-bit round trip an LR image goes through when it is saved as PNG."""
    return to_uint8(x).to(torch.float32) / 255.0


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)``; radius ``ceil(3 sigma)``, reflected borders.

    ``sigma <= 0`` returns ``x`` unchanged. Replicated borders are used when the image is smaller
    than the radius (reflection needs ``pad < size``).
    """
    if sigma <= 0:
        return x
    radius = max(1, int(np.ceil(3.0 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-(t**2) / (2.0 * sigma**2))
    taps = (taps / taps.sum()).to(dtype=x.dtype, device=x.device)
    c = x.shape[1]
    mode = "reflect" if radius < min(x.shape[-2:]) else "replicate"
    x = F.pad(x, (radius, radius, radius, radius), mode=mode)
    x = F.conv2d(x, taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)  # along W
    return F.conv2d(x, taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)  # along H


def motion_kernel(length: float, angle_deg: float) -> torch.Tensor:
    """Linear motion-blur kernel (k, k), k odd: a segment of ``length`` px through the centre at
    ``angle_deg`` (0 = horizontal, counter-clockwise in image coordinates with y down), as densely
    sampled points splatted bilinearly onto the pixel grid, normalised to sum 1.

    A uniform linear motion during the exposure (the model of e.g. Kupyn et al., DeblurGAN, CVPR 2018,
    in its simplest, straight-line form). ``length <= 0`` is the identity kernel (1, 1).
    """
    if length <= 0:
        return torch.ones(1, 1, dtype=torch.float64)
    half = int(np.ceil(length / 2.0)) + 1
    k = 2 * half + 1
    t = np.linspace(-length / 2.0, length / 2.0, max(2, int(np.ceil(length * 8)) + 1))
    theta = np.deg2rad(angle_deg)
    xs, ys = half + t * np.cos(theta), half - t * np.sin(theta)
    kernel = np.zeros((k, k), dtype=np.float64)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(kernel, (y0 + dy, x0 + dx), w)
    return torch.from_numpy(kernel / kernel.sum())


def motion_blur(x: torch.Tensor, length: float, angle_deg: float) -> torch.Tensor:
    """Convolve ``(N, C, H, W)`` with :func:`motion_kernel` (reflected borders, replicated when smaller)."""
    kernel = motion_kernel(length, angle_deg)
    if kernel.numel() == 1:
        return x
    r = kernel.shape[-1] // 2
    c = x.shape[1]
    mode = "reflect" if r < min(x.shape[-2:]) else "replicate"
    x = F.pad(x, (r, r, r, r), mode=mode)
    # conv2d is a correlation: flip so the kernel is applied as a convolution
    weight = kernel.flip(0, 1).to(dtype=x.dtype, device=x.device).expand(c, 1, -1, -1)
    return F.conv2d(x, weight, groups=c)


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """In-memory JPEG round trip of one (3, H, W) image with Pillow (libjpeg), 4:2:0 chroma."""
    pixels = to_uint8(x).permute(1, 2, 0).contiguous().cpu().numpy()  # (H, W, 3) uint8
    buffer = BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=int(quality), subsampling=2)
    buffer.seek(0)
    with Image.open(buffer) as img:
        decoded = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(decoded.transpose(2, 0, 1).copy())


# -- degradations ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BicubicDown:
    """HR → LR by bicubic downscaling with ``kernel`` (default MATLAB's), then 8-bit rounding.

    Deterministic: ``index`` and ``seed`` are accepted for a uniform interface and ignored.
    ``quantize=False`` keeps the float LR (e.g. for a differentiable training pipeline).
    """

    name: ClassVar[str] = "bicubic"
    scale: int
    kernel: str = "matlab_bicubic"
    quantize: bool = True  # round LR to 8 bits, as the published LR PNGs are

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", _check_scale(self.scale))
        _check_kernel(self.kernel, self.name)

    def describe(self) -> dict[str, Any]:
        return {"type": self.name, **dataclasses.asdict(self)}

    def __call__(
        self, hr: torch.Tensor, index: int | Sequence[int] = 0, seed: int | None = None
    ) -> torch.Tensor:
        batch, single = _as_batch(hr, self.scale)
        h, w = batch.shape[-2] // self.scale, batch.shape[-1] // self.scale
        lr = resize(batch, (h, w), kernel=self.kernel)  # (N, 3, h, w)
        lr = _quantize(lr) if self.quantize else lr.to(torch.float32)
        return lr[0] if single else lr


Range = tuple[float, float]


class SampleParams(TypedDict, total=False):
    """What one image of a :class:`SurveillanceChain` gets (its per-image provenance); the motion and
    re-compression keys only when those optional steps are on."""

    blur_sigma: Required[float]
    noise_sigma: Required[float]
    jpeg_quality: Required[int | None]
    motion_length: float
    motion_angle: float
    recompress_scale: float


def _as_range(value: Any, key: str, low: float, high: float, integer: bool = False) -> Range | None:
    """Normalise ``x`` or ``[lo, hi]`` to a validated ``(lo, hi)`` tuple (YAML gives lists)."""
    if value is None:
        return None
    pair = (value, value) if isinstance(value, (int, float)) else tuple(value)
    if len(pair) != 2 or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair
    ):
        raise DegradationConfigError(f"{key} must be a number or a [low, high] pair, got {value!r}")
    lo, hi = (int(pair[0]), int(pair[1])) if integer else (float(pair[0]), float(pair[1]))
    if integer and (lo != pair[0] or hi != pair[1]):
        raise DegradationConfigError(f"{key} must be integers, got {value!r}")
    if not low <= lo <= hi <= high:
        raise DegradationConfigError(
            f"{key} must satisfy {low} <= low <= high <= {high}, got {value!r}"
        )
    return (lo, hi)


@dataclass(frozen=True)
class SurveillanceChain:
    """Blur → downscale → noise → JPEG, each image's parameters drawn from ``(seed, index)``.

    Parameters (each a fixed number or a ``(low, high)`` range sampled uniformly per image):

    * ``blur_sigma`` — Gaussian blur σ in **HR** pixels, applied before downscaling (optics and
      motion); 0 disables.
    * ``noise_sigma`` — additive Gaussian noise σ in **0–255 units** on the LR (sensor noise);
      0 disables.
    * ``jpeg_quality`` — Pillow JPEG quality 1–100 (integers, inclusive range), 4:2:0 chroma;
      ``None`` disables (the LR is still rounded to 8 bits).
    * ``motion_length`` — linear motion blur of this length in **HR** pixels after the Gaussian blur,
      at an angle drawn uniformly in [0°, 180°) per image (:func:`motion_kernel`); ``None`` (default)
      disables.
    * ``recompress_scale`` — an earlier resampling generation ("re-compression"): before the final
      downscale the HR image is shrunk by this factor (≥ 1) and enlarged back with the same kernel,
      so the chain is downscale → upscale → downscale; ``None`` (default) disables.

    The two optional steps default to off, and each has its own random stream, so chains written
    before they existed produce the same LR and the same ``describe()``.

    Reproducibility: step ``k`` of image ``index`` (blur σ, noise σ, JPEG quality, noise field)
    uses NumPy ``PCG64`` seeded with ``SeedSequence([seed, index, k])``, so changing one step's
    range never reshuffles another's draws, and an image's LR does not depend on its batch.
    Identical across runs given the same NumPy/Pillow(libjpeg) versions.
    """

    name: ClassVar[str] = "surveillance"
    scale: int
    blur_sigma: Range | float | None = (0.5, 2.0)
    noise_sigma: Range | float | None = (1.0, 10.0)
    jpeg_quality: Range | int | None = (30, 70)
    kernel: str = "matlab_bicubic"
    seed: int = 0
    motion_length: Range | float | None = None
    recompress_scale: Range | float | None = None

    # one independent random stream per step (see class docstring)
    _STEPS: ClassVar[dict[str, int]] = {"blur": 0, "noise": 1, "jpeg": 2, "noise_field": 3, "motion": 4,
                                        "motion_angle": 5, "recompress": 6}
    _OPTIONAL: ClassVar[tuple[str, ...]] = ("motion_length", "recompress_scale")

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", _check_scale(self.scale))
        object.__setattr__(self, "blur_sigma", _as_range(self.blur_sigma, "blur_sigma", 0.0, 50.0))
        object.__setattr__(
            self, "noise_sigma", _as_range(self.noise_sigma, "noise_sigma", 0.0, 255.0)
        )
        object.__setattr__(
            self, "jpeg_quality", _as_range(self.jpeg_quality, "jpeg_quality", 1, 100, integer=True)
        )
        object.__setattr__(
            self, "motion_length", _as_range(self.motion_length, "motion_length", 0.0, 100.0)
        )
        object.__setattr__(
            self, "recompress_scale", _as_range(self.recompress_scale, "recompress_scale", 1.0, 8.0)
        )
        _check_kernel(self.kernel, self.name)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise DegradationConfigError(f"seed must be a non-negative integer, got {self.seed!r}")

    def describe(self) -> dict[str, Any]:
        d = {"type": self.name, **dataclasses.asdict(self)}
        for key in ("blur_sigma", "noise_sigma", "jpeg_quality", *self._OPTIONAL):  # JSON/YAML lists
            d[key] = list(d[key]) if d[key] is not None else None
        for key in self._OPTIONAL:  # off: left out, as before the step existed
            if d[key] is None:
                del d[key]
        return d

    def _rng(self, seed: int, index: int, step: str) -> np.random.Generator:
        return np.random.Generator(
            np.random.PCG64(np.random.SeedSequence([seed, index, self._STEPS[step]]))
        )

    def sample_params(self, index: int, seed: int | None = None) -> SampleParams:
        """The blur σ, noise σ and JPEG quality image ``index`` gets (for per-image provenance)."""
        s = self.seed if seed is None else seed
        # __post_init__ made every field a (low, high) tuple or None (jpeg_quality: integers)
        blur_range, noise_range, jpeg_range = (cast("Range | None", v) for v in (
            self.blur_sigma, self.noise_sigma, self.jpeg_quality))
        motion_range, recompress_range = (cast("Range | None", v) for v in (self.motion_length, self.recompress_scale))
        blur = self._rng(s, index, "blur").uniform(*blur_range) if blur_range else 0.0
        noise = self._rng(s, index, "noise").uniform(*noise_range) if noise_range else 0.0
        quality = (
            int(self._rng(s, index, "jpeg").integers(int(jpeg_range[0]), int(jpeg_range[1]) + 1))
            if jpeg_range
            else None
        )
        p: SampleParams = {"blur_sigma": float(blur), "noise_sigma": float(noise), "jpeg_quality": quality}
        if motion_range:
            p["motion_length"] = float(self._rng(s, index, "motion").uniform(*motion_range))
            p["motion_angle"] = float(self._rng(s, index, "motion_angle").uniform(0.0, 180.0))
        if recompress_range:
            p["recompress_scale"] = float(self._rng(s, index, "recompress").uniform(*recompress_range))
        return p

    def _degrade_one(self, hr: torch.Tensor, index: int, seed: int) -> torch.Tensor:
        """(1, 3, H, W) -> (3, h, w) on hr's device."""
        p = self.sample_params(index, seed)
        x = gaussian_blur(hr.to(torch.float32), p["blur_sigma"])
        if p.get("motion_length"):
            x = motion_blur(x, p["motion_length"], p.get("motion_angle", 0.0))
        r = p.get("recompress_scale", 1.0)
        if r > 1.0:
            H, W = x.shape[-2:]
            small = (max(1, int(round(H / r))), max(1, int(round(W / r))))
            x = resize(resize(x, small, kernel=self.kernel), (H, W), kernel=self.kernel)
        h, w = hr.shape[-2] // self.scale, hr.shape[-1] // self.scale
        x = resize(x, (h, w), kernel=self.kernel)[0]  # (3, h, w)
        if p["noise_sigma"] > 0:
            # drawn on the CPU so that the LR is the same on every device
            rng = self._rng(seed, index, "noise_field")
            noise = rng.standard_normal(size=tuple(x.shape), dtype=np.float32) * (
                p["noise_sigma"] / 255.0
            )
            x = x + torch.from_numpy(noise).to(x.device)
        x = _jpeg(x, p["jpeg_quality"]) if p["jpeg_quality"] is not None else _quantize(x)
        return x.to(hr.device)

    def __call__(
        self, hr: torch.Tensor, index: int | Sequence[int] = 0, seed: int | None = None
    ) -> torch.Tensor:
        """Degrade ``hr``; image ``i`` of a batch uses ``index + i`` (or ``index[i]``)."""
        batch, single = _as_batch(hr, self.scale)
        s = self.seed if seed is None else int(seed)
        idx = _indices(index, batch.shape[0])
        lr = torch.stack([self._degrade_one(batch[i : i + 1], idx[i], s) for i in range(len(idx))])
        return lr[0] if single else lr


# -- config ---------------------------------------------------------------------------------------
#: ``type`` of a degradation block -> its dataclass (the registry idiom; plug-ins use the entry-point
#: group ``fsr_bench.degradations`` and ``DEGRADATIONS.register("name")`` on their class).
DEGRADATIONS: Registry[type] = Registry("degradation", "fsr_bench.degradations")
DEGRADATIONS.register("bicubic")(BicubicDown)
DEGRADATIONS.register("surveillance")(SurveillanceChain)


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def build_degradation(spec: Mapping[str, Any] | str | Degradation) -> Degradation:
    """Build a degradation from a config block ``{"type": ..., **kwargs}`` or a short string.

    Strings: ``"bicubic_x8"`` / ``"surveillance_x4"`` (type + scale), or a bare type name (which
    then lacks the required ``scale``). An existing degradation is returned unchanged. Unknown
    types or keys are errors listing the valid ones — a typo must not fall back to defaults.
    """
    if not isinstance(spec, (str, Mapping)) and isinstance(spec, Degradation):
        return spec
    if isinstance(spec, str):
        match = re.fullmatch(r"([a-z_]+?)(?:_x(\d+))?", spec.strip())
        if not match:
            raise DegradationConfigError(
                f"cannot parse degradation {spec!r}; write e.g. 'bicubic_x8' or a mapping"
                f" {{type: bicubic, scale: 8}}"
            )
        spec = {"type": match.group(1)} | ({"scale": int(match.group(2))} if match.group(2) else {})
    if not isinstance(spec, Mapping):
        raise DegradationConfigError(
            f"a degradation spec must be a mapping or a string, got {type(spec).__name__}"
        )
    kwargs = dict(spec)
    kind = kwargs.pop("type", None)
    if kind is None or kind not in DEGRADATIONS:
        what = "has no 'type'" if kind is None else f"has unknown type {kind!r}"
        raise DegradationConfigError(
            f"degradation spec {dict(spec)!r} {what}; valid types: {', '.join(DEGRADATIONS.names())}"
        )
    cls = DEGRADATIONS.get(kind).builder
    valid = _fields(cls)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise DegradationConfigError(
            f"unknown key(s) {', '.join(unknown)} for degradation {kind!r}; valid keys: type,"
            f" {', '.join(valid)}"
        )
    required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
    missing = [k for k in required if k not in kwargs]
    if missing:
        raise DegradationConfigError(
            f"degradation {kind!r} needs key(s) {', '.join(missing)}"
            f" (e.g. {{type: {kind}, scale: 8}})"
        )
    return cls(**kwargs)

"""Face-size sweep: the same probes degraded to several LR face sizes, so accuracy can be drawn
against face height and inter-eye distance — the number a camera planner needs ("from which face
size does super-resolution start, and stop, paying off?").

Pure arithmetic, no I/O: :func:`face_size_sweep` turns a list of LR face heights into one
:class:`FaceSizePoint` per size, whose :meth:`~FaceSizePoint.probe_degradation` is a
``probe_degradation`` block exactly as :mod:`fsr_bench.recognition_protocol` and
:func:`fsr_bench.data.identity_folders.build_probe_degradation` take it
(``{preset: null, crop: [H, W], lr_size: [h, w], degradation: {...}}``). A sweep protocol loops
over the points and runs every method at each.

Per size, for an LR face height ``h`` and the LR aspect ratio ``aspect_hw = (a_h, a_w)``
(the paper's 28:21 by default):

* ``lr_w = floor(h · a_w / a_h + 0.5)`` (round half up, as fsr-bench rounds everywhere);
* the source crop keeps **one height** ``crop_height`` for every size (the same face region) and
  takes ``crop_w = floor(crop_height · lr_w / h + 0.5)``, so the crop has the LR frame's aspect
  and no size is stretched (rounding ``lr_w`` changes the aspect slightly at small sizes);
* the HR face the LR is made from is ``(h · s, lr_w · s)`` for the SR factor ``s``, as in
  :class:`~fsr_bench.data.identity_folders.FaceProbeDegradation`; the LR is that downscaled ×s
  by the named degradation;
* inter-eye distance (IED, centre to centre) in LR pixels, by one of two bases:

  - ``measured``: the crop's IED in source pixels (``source_interocular_px``, e.g. the median
    MTCNN eye distance over the HR probes — LFW deep-funneled faces are aligned, so it varies
    little) times the horizontal scale ``lr_w / crop_w``;
  - ``template``: from the alignment template the recogniser uses — the ArcFace 112×112 template
    (Deng et al., CVPR 2019) puts the eyes ≈ 35.24 px apart, 31.5 % of its width — assuming the
    face fills ``face_width_fraction`` of the LR frame's width as it fills the template's width:
    ``IED = face_width_fraction · lr_w · IED_template / W_template``. An estimate; prefer measured.

  The SR output's IED is the LR IED × s. (IED is the face-size measure face-image standards
  use, e.g. ISO/IEC 19794-5 for portraits, so curves against it compare across datasets.)
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fsr_bench.data.io import FsrBenchDataError

__all__ = ["FaceSizePoint", "face_size_sweep", "round_half_up", "template_interocular_px"]


def round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def template_interocular_px(template: Any = None) -> tuple[float, float]:
    """(eye distance, template width) of a 5-point template; default the ArcFace 112×112 one."""
    if template is None:
        from fsr_bench.face.recogniser import ARCFACE_TEMPLATE_112  # numbers only; no model is built

        template, width = ARCFACE_TEMPLATE_112, 112.0
    else:
        template, width = template
    pts = np.asarray(template, dtype=np.float64)
    if pts.shape != (5, 2):
        raise FsrBenchDataError(f"an alignment template is 5 (x, y) points, got shape {pts.shape}")
    return float(np.linalg.norm(pts[1] - pts[0])), float(width)  # left eye, right eye first


@dataclass(frozen=True)
class FaceSizePoint:
    """One LR face size of a sweep (see module doc for every formula)."""

    lr_size: tuple[int, int]  # (h, w)
    crop: tuple[int, int] | None  # (H, W) source pixels; None = largest centre crop at the LR aspect
    scale: int
    degradation: dict[str, Any]
    interocular_lr_px: float
    interocular_basis: str  # "measured" | "template"

    @property
    def face_height_px(self) -> int:
        return self.lr_size[0]

    @property
    def hr_face_size(self) -> tuple[int, int]:
        return self.lr_size[0] * self.scale, self.lr_size[1] * self.scale

    @property
    def interocular_sr_px(self) -> float:
        return self.interocular_lr_px * self.scale

    @property
    def label(self) -> str:
        """``W×H`` as faces are usually quoted (the paper's "21×28")."""
        return f"{self.lr_size[1]}x{self.lr_size[0]}"

    def probe_degradation(self) -> dict[str, Any]:
        """The ``probe_degradation`` block for this size (no preset: everything explicit)."""
        return {"preset": None, "crop": list(self.crop) if self.crop else None,
                "lr_size": list(self.lr_size), "degradation": dict(self.degradation)}

    def describe(self) -> dict[str, Any]:
        return {"label": self.label, "lr_size": list(self.lr_size), "crop": list(self.crop) if self.crop else None,
                "hr_face_size": list(self.hr_face_size), "scale": self.scale,
                "interocular_lr_px": self.interocular_lr_px, "interocular_sr_px": self.interocular_sr_px,
                "interocular_basis": self.interocular_basis, "degradation": dict(self.degradation)}


def face_size_sweep(
    lr_heights: Sequence[int],
    *,
    aspect_hw: tuple[int, int] = (28, 21),
    scale: int = 8,
    crop_height: int | None = None,
    crop_width: int | None = None,
    degradation: Mapping[str, Any] | None = None,
    source_interocular_px: float | None = None,
    face_width_fraction: float = 1.0,
    template: Any = None,
) -> list[FaceSizePoint]:
    """One :class:`FaceSizePoint` per LR face height, in the order given.

    Args:
        lr_heights: LR face heights in pixels, e.g. ``[16, 20, 24, 28, 36, 42, 56]``.
        aspect_hw: LR frame aspect (H, W); the paper's 28:21.
        scale: SR factor; each LR is made from an HR face ``scale`` times its size.
        crop_height: source crop height shared by every size (e.g. 160 for LFW's tight face,
            224 for the wider one); ``None`` = the largest centre crop at the LR aspect.
        crop_width: with ``crop_height``, one crop width for every size too, so every size is
            made from exactly the same face region (its HR probes and calibration faces are then
            identical); the rounding of ``lr_w`` then stretches a size slightly instead. ``None`` =
            each size's width follows its rounded LR aspect.
        degradation: a :mod:`fsr_bench.data.degradations` block (``type`` + options); its
            ``scale`` is filled in, or must equal ``scale``. Default MATLAB bicubic.
        source_interocular_px: the crop's inter-eye distance in source pixels (measured basis;
            needs ``crop_height``). Without it the template basis is used.
        face_width_fraction: template basis only (see module doc).
        template: ``(points (5, 2), width)`` of another alignment template; default ArcFace 112.
    """
    heights = list(lr_heights)
    bad = [h for h in heights if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1]
    if not heights or bad:
        raise FsrBenchDataError(f"lr_heights must be positive integers (LR face heights in px); got {heights!r}")
    if len(set(heights)) != len(heights):
        raise FsrBenchDataError(f"lr_heights has repeated sizes: {heights!r}")
    ah, aw = aspect_hw
    if not (ah > 0 and aw > 0) or isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise FsrBenchDataError(f"need positive aspect_hw and an integer scale >= 1; got {aspect_hw!r}, {scale!r}")
    if crop_height is not None and (not isinstance(crop_height, int) or crop_height < 1):
        raise FsrBenchDataError(f"crop_height must be a positive integer or null, got {crop_height!r}")
    if crop_width is not None and (crop_height is None or not isinstance(crop_width, int) or crop_width < 1):
        raise FsrBenchDataError(f"crop_width must be a positive integer with crop_height, got {crop_width!r}")
    if source_interocular_px is not None and crop_height is None:
        raise FsrBenchDataError("source_interocular_px is in crop pixels: it needs crop_height")
    if not face_width_fraction > 0:
        raise FsrBenchDataError(f"face_width_fraction must be > 0, got {face_width_fraction!r}")
    deg = dict(degradation or {"type": "bicubic"})
    if "type" not in deg:
        raise FsrBenchDataError(f"degradation {deg!r} has no 'type' (e.g. bicubic, surveillance)")
    if deg.setdefault("scale", scale) != scale:
        raise FsrBenchDataError(f"degradation.scale {deg['scale']} differs from the sweep's scale {scale}")
    ied_t, width_t = template_interocular_px(template)

    points = []
    for h in heights:
        h = int(h)
        w = max(1, round_half_up(h * aw / ah))
        crop = None
        if crop_height is not None:
            crop = (crop_height, crop_width or max(1, round_half_up(crop_height * w / h)))
        if source_interocular_px is not None and crop is not None:  # crop: crop_height is set (checked above)
            ied, basis = float(source_interocular_px) * w / crop[1], "measured"
        else:
            ied, basis = face_width_fraction * w * ied_t / width_t, "template"
        points.append(FaceSizePoint((h, w), crop, scale, dict(deg), ied, basis))
    return points

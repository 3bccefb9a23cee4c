"""The ``kind: face_size_sweep`` protocol: recognition at several LR face sizes (issue 13 §3).

A recognition protocol on identity-folder data plus a ``sweep`` block. For each LR face height the
runner (:mod:`fsr_bench.run.face_size_sweep`) makes the same probes at that size
(:func:`fsr_bench.data.face_size_sweep.face_size_sweep` gives the ``probe_degradation`` block),
runs every row exactly as ``kind: recognition`` does and draws matching accuracy and TAR at the
calibrated FAR against LR face height and inter-eye distance, one curve per method.

Schema: every key of :mod:`fsr_bench.protocol.recognition` (``data.probe_degradation`` is replaced
per size; its ``crop`` is ignored — ``sweep.crop_height`` fixes the face region), and::

    sweep:
      lr_heights: [16, 21, 28, 37, 56]   # LR face heights (px); widths from aspect_hw
      aspect_hw: [28, 21]                # LR frame aspect (H, W), the paper's 21x28
      scale: 8                           # SR factor; every model runs at its own scale = this
      crop_height: 160                   # source face region height; its width = height at aspect_hw
                                         # (160x120): the same region at every size
      degradation: {type: bicubic}       # how the HR face becomes LR (scale filled in)
      source_interocular_px: measure     # crop's eye distance (px): a number, `measure` (median MTCNN
                                         # eye distance on the HR probes) or null (ArcFace-template basis)
      face_width_fraction: 1.0           # template basis only
      far: 1.0e-2                        # the calibrated FAR of the TAR curve (one of calibration.fars)

Convention for fixed-scale models: each model runs at its own (the sweep's) scale on every LR size,
so an h×w LR face becomes an (h·s)×(w·s) output, which is then detected and aligned to the
recogniser's crop like any probe — face size changes the information in the LR, never the model.
"""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import Field, model_validator

from fsr_bench.protocol.base import _Strict, register_protocol
from fsr_bench.protocol.recognition import RecognitionProtocol

__all__ = ["FaceSizeSweepProtocol", "SweepSpec"]


class SweepSpec(_Strict):
    lr_heights: Annotated[list[Annotated[int, Field(ge=4)]], Field(min_length=1)] = Field(
        default_factory=lambda: [16, 21, 28, 37, 56])
    aspect_hw: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] = (28, 21)
    scale: int = Field(8, ge=1)
    crop_height: int = Field(160, ge=8)
    degradation: dict[str, Any] = Field(default_factory=lambda: {"type": "bicubic"})
    source_interocular_px: Union[Annotated[float, Field(gt=0)], Literal["measure"], None] = "measure"
    face_width_fraction: float = Field(1.0, gt=0)
    far: float = Field(1e-2, gt=0, le=1)
    measure_probes: int = Field(64, ge=1)  # HR probes the `measure` median is taken over

    @model_validator(mode="after")
    def _distinct(self) -> "SweepSpec":
        if len(set(self.lr_heights)) != len(self.lr_heights):
            raise ValueError(f"lr_heights has repeated sizes: {self.lr_heights}")
        return self


@register_protocol
class FaceSizeSweepProtocol(RecognitionProtocol):
    #: what its result folders hold: one ``kind: recognition`` run per size (plus sweep.json)
    result_kind: ClassVar[str] = "recognition"

    kind: Literal["face_size_sweep"] = "face_size_sweep"  # type: ignore[assignment]
    sweep: SweepSpec = Field(default_factory=SweepSpec)

    @model_validator(mode="after")
    def _sweepable(self) -> "FaceSizeSweepProtocol":
        if self.data.type != "identity_folder":
            raise ValueError(f"data.type {self.data.type!r}: a face-size sweep degrades HR probes to each size, "
                             "so it needs identity_folder data (native LR sets such as TinyFace have one size)")
        if self.calibration is None:
            raise ValueError("calibration: a face-size sweep reports TAR at a calibrated FAR; add a calibration "
                             "block (fraction or list_file) on identities disjoint from the evaluation")
        if not any(abs(f - self.sweep.far) <= 1e-12 * f for f in self.calibration.fars):
            raise ValueError(f"sweep.far {self.sweep.far:g} is not one of calibration.fars "
                             f"{[float(f) for f in self.calibration.fars]}")
        return self

    def sr_scale(self) -> int | None:
        return self.sweep.scale

    def point_protocol(self, probe_degradation: dict[str, Any], label: str) -> RecognitionProtocol:
        """The ``kind: recognition`` protocol of one size (same rows, recognisers, calibration)."""
        doc = self.model_dump(mode="json", exclude={"sweep"})
        doc["kind"] = "recognition"
        doc["name"] = f"{self.name}-{label}"
        doc["data"]["probe_degradation"] = probe_degradation
        return RecognitionProtocol.model_validate(doc)

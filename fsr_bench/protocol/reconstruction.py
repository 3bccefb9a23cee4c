"""The ``kind: reconstruction`` protocol: how faithful is each super-resolver? (paper Tables 2-3)

Schema (unknown keys are errors)::

    kind: reconstruction
    name: quickstart
    data:
      dataset: {type: package_faces, hr_size: 128}      # see fsr_bench.data (DATASETS)
      degradation: {type: bicubic, scale: 4}            # see fsr_bench.data.degradations
    models: [{name: bicubic_x4, label: Bicubic}]
    metrics: {y_channel: true, crop_border: null, quantize: true, lpips: true,
              identity: {recogniser: mobilefacenet}}   # optional SR↔HR identity column
    run: {device: auto, batch_size: 8, num_samples: 4, seed: 0, limit: null, flops: true}
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from fsr_bench.protocol.base import BaseProtocol, ModelSpec, RunSpec, _Strict, register_protocol
from fsr_bench.protocol.recognition import DetectorSpec

__all__ = ["DataSpec", "IdentityMetricSpec", "MetricsSpec", "ReconstructionProtocol"]


class IdentityMetricSpec(_Strict):
    """SR↔HR identity similarity (fsr_bench.face.identity): cosine and angle per image, with the
    face detected and the alignment fitted on HR only."""

    recogniser: str = "mobilefacenet"  # any registered recogniser, or onnx:/path/model.onnx
    weights: str | None = None  # null = the recogniser's own resolution
    flip: bool = True
    detector: DetectorSpec = Field(default_factory=DetectorSpec)


class MetricsSpec(_Strict):
    y_channel: bool = True  # PSNR/SSIM on Y of ITU-R BT.601 (MATLAB rgb2ycbcr), else on RGB
    crop_border: int | None = None  # pixels cut from each border before scoring; None = the scale
    quantize: bool = True  # round SR to 8 bits before scoring, as if saved to PNG
    lpips: bool = True  # LPIPS (alex, v0.1) and MPS; unavailable offline -> marked, never invented
    lpips_net: Literal["alex", "vgg", "squeeze"] = "alex"
    lpips_version: Literal["0.1"] = "0.1"
    identity: IdentityMetricSpec | None = None  # null = no identity column


class DataSpec(_Strict):
    dataset: dict[str, Any]  # "type + kwargs" block, see fsr_bench.data.folders.DATASETS
    degradation: dict[str, Any]  # "type + kwargs" block, see fsr_bench.data.degradations


@register_protocol
class ReconstructionProtocol(BaseProtocol):
    kind: Literal["reconstruction"] = "reconstruction"
    data: DataSpec
    models: list[ModelSpec]
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    run: RunSpec = Field(default_factory=RunSpec)

    def sr_scale(self) -> int | None:
        scale = self.data.degradation.get("scale")
        return scale if isinstance(scale, int) else None

"""The ``kind: footage`` protocol: does SR help identify the people in **my** labelled footage?

Labelled clips or frames (a folder per identity) go through the ``fsr-bench sr --faces`` pipeline
(:mod:`fsr_bench.run.frames`: detect, track, crop, super-resolve) once per row — a "No SR" baseline
and every model — and every track and every face is answered against one watchlist
(:mod:`fsr_bench.run.watchlist`). The runner (:mod:`fsr_bench.run.footage`) writes one
identification table: per track and per face, rank-1, TAR and wrong-identity rate at every stated
or calibrated threshold.

Schema (unknown keys are errors, as for every protocol)::

    kind: footage
    name: my_footage
    data:
      root: footage/              # footage/<identity>/<clip.mp4 | frame.png | sub-folders of frames>
      list_file: null             # identities (folder names) to use, one per line; default all
    watchlist:
      root: watchlist/            # watchlist/<identity>/<image>: enrolment images (HR)
      recogniser: mobilefacenet   # any registered recogniser
      weights: null
    thresholds:
      stated: [0.4]               # cosine thresholds you state
      calibration_run: null       # a recognition run folder / results.json: every FAR it calibrated
                                  # for this recogniser becomes an operating point too
    faces: {detector: mtcnn, min_face: 20, upsample: 1.0, min_score: 0.0, margin: 0.25, stride: 1,
            track_iou: 0.3, batch_size: 16}
    models: [{name: bicubic_x4, label: Bicubic}]
    references: {no_sr: true}     # the "No SR" row: the native face crops, unchanged
    bootstrap: {n: 1000, seed: 0} # 95 % CIs, resampling identities
    run: {device: auto, precision: fp32, channels_last: false, report: true}

Every face found in ``data.root/<identity>/`` is taken to be ``<identity>`` (crop or cut the
footage so that only the labelled person is in view; any other face counts as an error). An
identity folder whose name is not on the watchlist holds unknown people: its tracks can only be
answered wrongly (accepted as someone) or rejected.
"""
from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from fsr_bench.protocol.base import BaseProtocol, ModelSpec, RunSpec, _Strict, register_protocol
from fsr_bench.protocol.recognition import BootstrapSpec

__all__ = ["NO_SR", "FacesSpec", "FootageData", "FootageProtocol", "FootageReferences", "ThresholdsSpec",
           "WatchlistSpec"]

NO_SR = "No SR"


class FootageData(_Strict):
    root: str  # root/<identity>/<clip or frame>; the folder name labels every face found in it
    list_file: str | None = None  # identities (folder names) to use, one per line; default all


class WatchlistSpec(_Strict):
    root: str  # root/<identity>/<image>: the enrolled identities (fsr_bench.run.watchlist)
    recogniser: str = "mobilefacenet"  # a registered recogniser (`fsr-bench list recognisers`)
    weights: str | None = None  # null = the recogniser's own resolution


class ThresholdsSpec(_Strict):
    """The operating points: thresholds you state and those a recognition run calibrated."""

    stated: list[Annotated[float, Field(ge=-1, le=1)]] = Field(default_factory=lambda: [0.4])  # cosine
    calibration_run: str | None = None  # recognition run folder or results.json with a calibration block

    @model_validator(mode="after")
    def _some(self) -> "ThresholdsSpec":
        if not self.stated and self.calibration_run is None:
            raise ValueError("state a threshold (stated: [0.4]) or name a calibration_run")
        return self


class FacesSpec(_Strict):
    """The ``sr --faces`` options (fsr_bench.run.frames.FrameOptions) every row runs with."""

    detector: str = "mtcnn"  # a registered detector (`fsr-bench list detectors`)
    detector_weights: str | None = None
    min_face: int = Field(20, ge=1)  # native pixels, the box's longer side
    upsample: float = Field(1.0, ge=1)  # frame scale before detection (finds smaller faces)
    min_score: float = Field(0.0, ge=0, le=1)
    margin: float = Field(0.25, ge=0, le=2)  # context per side, fraction of the box's longer side
    stride: int = Field(1, ge=1)  # videos: every N-th frame
    track_iou: float = Field(0.3, gt=0, le=1)  # IoU that continues a track
    batch_size: int = Field(16, ge=1)  # crops per forward


class FootageReferences(_Strict):
    no_sr: bool = True  # row "No SR": the native face crops given to the recogniser unchanged


@register_protocol
class FootageProtocol(BaseProtocol):
    reserved_labels: ClassVar[tuple[str, ...]] = (NO_SR,)
    requires_models: ClassVar[bool] = False  # the No-SR row alone is a valid run

    kind: Literal["footage"] = "footage"
    data: FootageData
    watchlist: WatchlistSpec
    thresholds: ThresholdsSpec = Field(default_factory=ThresholdsSpec)
    faces: FacesSpec = Field(default_factory=FacesSpec)
    models: list[ModelSpec] = Field(default_factory=list)
    references: FootageReferences = Field(default_factory=FootageReferences)
    bootstrap: BootstrapSpec = Field(default_factory=BootstrapSpec)  # 95 % CIs over identities; n: 0 = none
    run: RunSpec = Field(default_factory=RunSpec)

    @model_validator(mode="after")
    def _has_rows(self) -> "FootageProtocol":
        if not self.models and not self.references.no_sr:
            raise ValueError("nothing to run: list a model or keep references.no_sr")
        return self

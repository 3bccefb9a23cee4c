"""The ``kind: recognition`` protocol: does a super-resolver make LR faces more recognisable?

Pipeline per probe (the TANet paper's SCface experiment, Table 4): LR probe → super-resolver (×s)
→ MTCNN → 5-point similarity alignment → recogniser embedding → cosine similarity with the
subject's gallery embedding (gallery = HD enrolment image through the same detector/aligner/
recogniser, never super-resolved). Two reference rows need no model: "HR probes" (the probes' face
region at native resolution — the same framing the SR rows see — no degradation, no SR: the
ceiling) and "LR image" (the raw LR probe given to the detector, as the paper's first row, which
prints "-" there because MTCNN found no face in SCface's 21x28 crops).

Schema (unknown keys are errors, as for every protocol)::

    kind: recognition
    name: lfw_surveillance_x8
    data:                         # one dataset block, chosen by `type`
      type: identity_folder       # or: native_identity_folder (real LR probes), scface, tinyface, survface,
                                  #     survface_verification (1:1 pairs)
      ...                         # see IdentityFolderData / SCfaceData below
    models: [{name: bicubic_x8, label: Bicubic}]
    references: {hr_probes: true, lr_image: true}
    recognition:
      recogniser: mobilefacenet   # any registered recogniser, or onnx:/path/model.onnx
      weights: null               # null = the recogniser's own resolution (cache / shared / download)
      flip: true                  # embedding of image + mirror (the shared weights' measured protocol)
      threshold: 0.4              # the paper's matching threshold, similarity >= threshold
      detector: {min_face_size: 20, thresholds: [0.6, 0.7, 0.7], factor: 0.709,
                 selection: center, min_prob: 0.0, max_side: 1024, batch_size: 16}
      bootstrap: {n: 1000, seed: 0}   # 95 % CIs, resampling subjects
    calibration:                  # optional: thresholds at target FARs, set on disjoint subjects
      fraction: 0.5               # identity folders: seeded split of data's identities (or list_file:)
      # protocol: combined, group: dev   # SCface: bob's calibration group (evaluate data.subjects: eval)
      fars: [1e-2, 1e-3, 1e-4]
      fpirs: [0.01, 0.1, 0.3]     # open set (data.unmated_identities): DIR / TPIR20 at these FPIRs
    run: {device: auto, batch_size: 8, num_samples: 4, seed: 0, limit: null}

``recognition.recognisers: [mobilefacenet, dlib]`` scores every row with each recogniser (the
first fills the main columns, every one is under the row's ``by_recogniser``).

``run.seed`` seeds synthetic probe degradations; ``run.limit`` scores only the first N probes;
``run.flops`` does not apply to recognition runs.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from fsr_bench.protocol.base import BaseProtocol, ModelSpec, RunSpec, _Strict, register_protocol

__all__ = [
    "HR_PROBES",
    "LR_IMAGE",
    "REFERENCE_LABELS",
    "BootstrapSpec",
    "CalibrationSpec",
    "DetectorSpec",
    "FaceCropSpec",
    "IdentityFolderData",
    "NativeIdentityFolderData",
    "ProbeDegradationSpec",
    "RecognitionProtocol",
    "RecognitionSpec",
    "ReferencesSpec",
    "SCfaceData",
    "SurvFaceData",
    "SurvFaceVerificationData",
    "TinyFaceData",
]

HR_PROBES = "HR probes"
LR_IMAGE = "LR image"
REFERENCE_LABELS = (HR_PROBES, LR_IMAGE)

Size = tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]


# -- data ------------------------------------------------------------------------------------------
class FaceCropSpec(_Strict):
    """MTCNN face crop of full SCface surveillance frames (see fsr_bench.data.scface)."""

    enabled: bool = False
    min_face_size: int = Field(12, ge=8)  # px; far-distance SCface faces are tiny
    selection: Literal["largest", "probability", "center"] = "probability"
    enlarge: float = Field(1.3, gt=0)  # crop side = enlarge x face box, at the LR aspect ratio
    on_failure: Literal["error", "undetected"] = "error"


class SCfaceData(_Strict):
    """The official SCface layout (fsr_bench.data.scface)."""

    type: Literal["scface"]
    root: str  # folder holding mugshot_frontal_cropped_all/ and surveillance_cameras_distance_*/
    subjects: Union[Literal["all", "world", "dev", "eval"], list[Annotated[int, Field(ge=1, le=130)]]] = "all"
    distances: list[Literal[1, 2, 3]] = [1, 2, 3]  # 1 = 4.20 m (far)
    cameras: list[Annotated[int, Field(ge=1, le=7)]] = Field(default_factory=lambda: [1, 2, 3, 4, 5])  # 6-7 IR
    face_crop: FaceCropSpec = Field(default_factory=FaceCropSpec)
    lr_size: Size | None = (28, 21)  # (H, W) of the LR probe; null = native crop size
    scale: int = Field(8, ge=1)  # SR factor of the protocol; every model must have it


class ProbeDegradationSpec(_Strict):
    """How identity-folder probes become LR (fsr_bench.data.identity_folders)."""

    preset: Literal["tanet_21x28_x8"] | None = "tanet_21x28_x8"  # 21x28 LR face, x8 (the paper)
    crop: Size | None = None  # (H, W) centre crop = the face region; null = largest at LR aspect
    lr_size: Size | None = None  # (H, W); null = the preset's
    degradation: dict | None = None  # fsr_bench.data.degradations block; null = the preset's


class IdentityFolderData(_Strict):
    """Any ``root/<identity>/<image>`` set (fsr_bench.data.identity_folders)."""

    type: Literal["identity_folder"]
    root: str
    list_file: str | None = None  # identities to use, one per line
    gallery_list: str | None = None  # <identity>/<image> per line; default first image (sorted)
    max_identities: int | None = Field(None, ge=1)  # seeded draw
    max_probes_per_identity: int | None = Field(None, ge=1)  # seeded draw
    seed: int = 0  # seeds the two draws above
    name: str | None = None  # dataset name in reports; default the root's folder name
    unmated_identities: int | None = Field(None, ge=1)  # open set: this many identities are not enrolled
    single_image_distractors: bool = False  # enrol single-image identities as distractors
    probe_degradation: ProbeDegradationSpec = Field(default_factory=ProbeDegradationSpec)


class NativeIdentityFolderData(_Strict):
    """Real LR probes beside HR enrolment images, both ``root/<identity>/<image>``; no synthetic
    degradation and no "HR probes" row (fsr_bench.data.native_folders)."""

    type: Literal["native_identity_folder"]
    gallery_root: str  # HR enrolment images, gallery_root/<identity>/<image>
    probe_root: str  # real LR face images, probe_root/<identity>/<image>, read as stored
    scale: int = Field(4, ge=1)  # SR factor of the protocol; every model must have it
    lr_size: Size | None = None  # (H, W) every probe is resized to (MATLAB bicubic); null = as stored
    list_file: str | None = None  # identities (folder names) to use, one per line; default all
    gallery_list: str | None = None  # <identity>/<image> under gallery_root per line; default first image (sorted)
    max_identities: int | None = Field(None, ge=1)  # seeded draw of identities with probes
    max_probes_per_identity: int | None = Field(None, ge=1)  # seeded draw
    seed: int = 0  # seeds the two draws above
    distractors: bool = True  # enrol gallery identities that have no probe
    name: str | None = None  # dataset name in reports; default the probe root's folder name


class TinyFaceData(_Strict):
    """TinyFace's official Testing_Set layout (fsr_bench.data.tinyface; closed set, rank-1/5/20)."""

    type: Literal["tinyface"]
    root: str  # the folder holding Testing_Set/
    distractors: bool = True  # Gallery_Distractor in the gallery (the official protocol)
    max_distractors: int | None = Field(None, ge=1)  # seeded subset for development runs
    seed: int = 0
    lr_size: Size | None = None  # (H, W) the native probe is resized to; null = native
    scale: int = Field(4, ge=1)
    name: str | None = None


class SurvFaceData(_Strict):
    """QMUL-SurvFace's Face_Identification_Test_Set (fsr_bench.data.survface; open set, TPIR20@FPIR)."""

    type: Literal["survface"]
    root: str  # the folder holding Face_Identification_Test_Set/
    max_mated_probes: int | None = Field(None, ge=1)
    max_unmated_probes: int | None = Field(None, ge=1)
    seed: int = 0
    lr_size: Size | None = None
    scale: int = Field(4, ge=1)
    name: str | None = None


class SurvFaceVerificationData(_Strict):
    """QMUL-SurvFace's Face_Verification_Test_Set: 1:1 pairs, TAR@FAR (fsr_bench.run.verification)."""

    type: Literal["survface_verification"]
    root: str  # the folder holding Face_Verification_Test_Set/
    max_pairs: int | None = Field(None, ge=1)  # seeded draw of this many positive and negative pairs
    seed: int = 0
    lr_size: Size | None = None  # (H, W) both images are resized to; null = native
    scale: int = Field(4, ge=1)
    fars: list[Annotated[float, Field(gt=0, le=1)]] = Field(default_factory=lambda: [0.3, 0.1, 0.01, 0.001])
    name: str | None = None


DataSpec = Annotated[Union[SCfaceData, IdentityFolderData, NativeIdentityFolderData, TinyFaceData, SurvFaceData,
                           SurvFaceVerificationData],
                     Field(discriminator="type")]


# -- recognition settings --------------------------------------------------------------------------
class DetectorSpec(_Strict):
    """MTCNN + alignment settings (fsr_bench.face.detect.FaceAligner), used for every image."""

    min_face_size: int = Field(20, ge=1)  # px; facenet-pytorch's default
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # P-, R-, O-Net
    factor: float = Field(0.709, gt=0, lt=1)  # pyramid step
    selection: Literal["largest", "probability", "center"] = "center"  # inputs are face-centred
    min_prob: float = Field(0.0, ge=0, le=1)
    max_side: int | None = Field(1024, ge=32)  # larger images (HD mugshots) are downscaled first
    batch_size: int = Field(16, ge=1)


class BootstrapSpec(_Strict):
    n: int = Field(1000, ge=0)  # resamples of subjects; 0 = no confidence intervals
    seed: int = 0


class CalibrationSpec(_Strict):
    """Thresholds set once per recogniser on subjects disjoint from the evaluation subjects
    (HR-vs-HR: the calibration subjects' "HR probes" against their gallery), applied unchanged to
    every row (fsr_bench.metrics.operating_points).

    identity_folder data: ``list_file`` (calibration identities) or ``fraction`` (a seeded split of
    the data block's identities: fsr_bench.data.identity_folders.split_identities; the evaluation
    then uses the rest). SCface: ``group`` of bob's ``protocol`` (dev; evaluate on eval).
    """

    list_file: str | None = None
    fraction: float | None = Field(None, gt=0, lt=1)
    seed: int = 0
    protocol: Literal["combined", "close", "medium", "far"] = "combined"
    group: Literal["world", "dev", "eval"] | None = None
    max_identities: int | None = Field(None, ge=2)  # seeded draw (data.seed) of calibration identities
    max_probes_per_identity: int | None = Field(None, ge=1)
    fars: list[Annotated[float, Field(gt=0, le=1)]] = Field(default_factory=lambda: [1e-2, 1e-3, 1e-4])
    fpirs: list[Annotated[float, Field(gt=0, le=1)]] = Field(default_factory=lambda: [0.01, 0.1, 0.3])
    ranks: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [1, 20])


class RecognitionSpec(_Strict):
    recogniser: str = "mobilefacenet"
    recognisers: list[str] | None = None  # several: every metric per recogniser (first = main table)
    weights: str | None = None
    flip: bool = True
    threshold: float = Field(0.4, ge=-1, le=1)  # matched when similarity >= threshold (TANet)
    detector: DetectorSpec = Field(default_factory=DetectorSpec)
    bootstrap: BootstrapSpec = Field(default_factory=BootstrapSpec)

    @property
    def names(self) -> list[str]:
        """The recognisers to score with: ``recognisers`` when given, else ``[recogniser]``."""
        return list(self.recognisers) if self.recognisers else [self.recogniser]

    @model_validator(mode="after")
    def _unique(self) -> "RecognitionSpec":
        if self.recognisers is not None:
            if not self.recognisers:
                raise ValueError("recognisers: list at least one recogniser (or use recogniser:)")
            dup = sorted({r for r in self.recognisers if self.recognisers.count(r) > 1})
            if dup:
                raise ValueError(f"recognisers: {dup} listed twice")
            if self.weights is not None and len(self.recognisers) > 1:
                raise ValueError("recognition.weights applies to one recogniser; with several recognisers use "
                                 "onnx:<path> names or each recogniser's own weights resolution")
        return self


class ReferencesSpec(_Strict):
    hr_probes: bool = True  # row "HR probes": native-resolution face region, no degradation, no SR
    lr_image: bool = True  # row "LR image": the LR probe given to the detector without SR


# -- the protocol ----------------------------------------------------------------------------------
@register_protocol
class RecognitionProtocol(BaseProtocol):
    reserved_labels = REFERENCE_LABELS
    requires_models = False  # the reference rows alone are a valid run

    kind: Literal["recognition"] = "recognition"
    data: DataSpec
    models: list[ModelSpec] = Field(default_factory=list)
    references: ReferencesSpec = Field(default_factory=ReferencesSpec)
    recognition: RecognitionSpec = Field(default_factory=RecognitionSpec)
    calibration: CalibrationSpec | None = None
    run: RunSpec = Field(default_factory=RunSpec)

    def sr_scale(self) -> int | None:
        if self.data.type != "identity_folder":
            scale = getattr(self.data, "scale", None)  # every other built-in data type states it
            return scale if isinstance(scale, int) else None
        from fsr_bench.data.identity_folders import PROBE_PRESETS

        probe = self.data.probe_degradation  # type: ignore[union-attr]
        block = probe.degradation or (PROBE_PRESETS.get(probe.preset or "") or {}).get("degradation") or {}
        scale = block.get("scale")
        return scale if isinstance(scale, int) else None

    @model_validator(mode="after")
    def _calibration_fits_data(self) -> "RecognitionProtocol":
        cal = self.calibration
        if cal is None:
            return self
        if self.data.type in ("identity_folder", "native_identity_folder"):
            if (cal.list_file is None) == (cal.fraction is None):
                raise ValueError(f"calibration: give exactly one of list_file (calibration identities) or fraction "
                                 f"(a seeded split of data's identities) for {self.data.type} data")
            if cal.group is not None:
                raise ValueError("calibration.group applies to SCface data only")
        elif self.data.type != "scface":
            raise ValueError(f"calibration: not available for {self.data.type} data (identity_folder, "
                             "native_identity_folder: fraction or list_file; scface: group); leave the block out")
        elif self.data.type == "scface":
            if cal.group is None:
                raise ValueError("calibration.group: name bob's calibration group (dev) for SCface data")
            if cal.list_file is not None or cal.fraction is not None:
                raise ValueError("calibration.list_file/fraction apply to identity_folder data; SCface uses group")
            if self.data.subjects == cal.group:
                raise ValueError(f"calibration.group {cal.group!r} is also data.subjects: calibrate on other "
                                 "subjects than you evaluate (bob: calibrate on dev, report on eval)")
        return self

    @property
    def hr_probes_row(self) -> bool:
        """Whether the "HR probes" reference runs: asked for, and the data has HR probes (native LR
        probes have none; the runner records why the row is absent)."""
        return self.references.hr_probes and not isinstance(self.data, NativeIdentityFolderData)

    @model_validator(mode="after")
    def _has_rows(self) -> "RecognitionProtocol":
        if isinstance(self.data, NativeIdentityFolderData) and self.references.hr_probes \
                and "hr_probes" in self.references.model_fields_set:
            raise ValueError("references.hr_probes: native_identity_folder probes are natively low resolution and "
                             "have no HR version; leave the key out (the row is absent and the results say why)")
        if not self.models and not (self.hr_probes_row or self.references.lr_image):
            raise ValueError("nothing to run: list a model or enable a reference (references.hr_probes)")
        return self

"""Face detectors (a registry: ``mtcnn``, ``scrfd``, plug-ins) and detection → alignment.

Pipeline, the one used by the TANet paper's SCface experiment (MTCNN detector, MobileFaceNet
recogniser) and by insightface-style recognisers:

1. a registered :class:`Detector` finds every face with a box, a probability and five landmarks
   (left eye, right eye, nose tip, left and right mouth corner; "left" = image left). Built-ins:
   ``mtcnn`` — MTCNN (Zhang, Zhang, Li, Qiao, "Joint Face Detection and Alignment using Multitask
   Cascaded Convolutional Networks", IEEE SPL 2016) from ``facenet-pytorch`` 2.5.3 with the weights
   that package ships (timesler/facenet-pytorch); ``scrfd`` — insightface's SCRFD
   (:mod:`fsr_bench.face.scrfd`), given its ONNX file;
2. one detection per image is chosen (see :data:`SELECTIONS`);
3. the face is cropped the way the recogniser expects (:meth:`Recogniser.align`): by default the
   5-point similarity warp to the ArcFace template, 112×112 (:mod:`fsr_bench.face.align`,
   insightface's ``norm_crop``); dlib's recogniser uses its own 150×150 face chips instead.

An image where no face is found is reported as *undetected* (``detected[i] = False``, a zero crop,
NaN landmarks) — there is deliberately no centre-crop fallback: in a surveillance benchmark "the
detector failed on this super-resolved face" is itself a result (the paper prints "-" for it).

Tiny faces (MTCNN): its first stage slides a 12×12 window over an image pyramid whose largest level
is the image scaled by ``12 / min_face_size``; faces smaller than ``min_face_size`` pixels are never
proposed, and images whose shorter side is below ``min_face_size`` cannot be searched at all (they
are reported undetected). The default 20 is facenet-pytorch's. For super-resolved outputs the face
fills the image, so the default is fine; to detect in raw low-resolution probes lower it (≥ 12 — the
pyramid then upsamples) or upsample the images first, and expect more false positives and time.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np
import torch

from fsr_bench.face import create_detector, register_detector
from fsr_bench.face.align import ARCFACE_TEMPLATE_112, align_with_landmarks

if TYPE_CHECKING:
    from fsr_bench.face.recogniser import Recogniser

__all__ = [
    "SELECTIONS",
    "Detector",
    "Faces",
    "MTCNNDetector",
    "AlignedFaces",
    "FaceAligner",
    "align_with_landmarks",
    "mtcnn",
]

Selection = Literal["largest", "probability", "center"]
#: How one detection is chosen when the detector finds several faces in an image:
#: ``"largest"`` box area (the subject of a face crop is its biggest face; facenet-pytorch's default),
#: ``"probability"`` highest detector confidence, ``"center"`` box centre closest to the image centre
#: (the subject of a centred crop such as LFW or an SR output; foamliu's LFW evaluation does this).
SELECTIONS: tuple[str, ...] = ("largest", "probability", "center")


# -- the detector interface ------------------------------------------------------------------------
@dataclass
class Faces:
    """All faces one detector found in one image (k may be 0)."""

    boxes: np.ndarray  # (k, 4) float64 (x1, y1, x2, y2), input-image pixels
    probs: np.ndarray  # (k,) float64 detector confidence
    landmarks: np.ndarray  # (k, 5, 2) float64 (x, y), template order (see module docstring)

    @classmethod
    def none(cls) -> "Faces":
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


class Detector(abc.ABC):
    """A face detector with five landmarks per face, behind one contract.

    :meth:`detect` takes a batch of same-size images ``(b, 3, h, w)`` RGB [0, 1] and returns one
    :class:`Faces` per image. ``min_side``: images whose shorter side is smaller cannot be searched
    and are reported undetected without calling :meth:`detect`. ``name`` is the registered name,
    filled in by :func:`fsr_bench.face.create_detector`.
    """

    name: str = ""
    min_side: int = 1

    @abc.abstractmethod
    def detect(self, batch: torch.Tensor) -> list[Faces]:
        """``(b, 3, h, w)`` RGB [0, 1] → one :class:`Faces` per image."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """Settings recorded with every result (they change detection rates)."""


# -- MTCNN -----------------------------------------------------------------------------------------
class MTCNNDetector(Detector):
    """facenet-pytorch's MTCNN. Parameters mirror its ``MTCNN``: ``min_face_size`` (pixels; see the
    module note on tiny faces), ``thresholds`` (P-, R-, O-Net acceptance), ``factor`` (pyramid step).

    Speed on CPU: MTCNN's second and third stages crop and resize every candidate box separately —
    thousands of tiny tensor ops. On a busy machine OpenMP threads spin-wait on each of them;
    ``torch.set_num_threads(1)`` then makes detection several times faster (measured 6× on 2 shared
    cores). We do not change the global thread count behind the caller's back.
    """

    def __init__(
        self,
        min_face_size: int = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        device: str | torch.device = "cpu",
    ):
        from facenet_pytorch import MTCNN  # heavy import: only when a detector is built

        if min_face_size < 1:
            raise ValueError(f"min_face_size must be >= 1 pixel, got {min_face_size}")
        if len(thresholds) != 3:
            raise ValueError(f"thresholds needs three values (P-, R-, O-Net); got {thresholds}")
        self.min_face_size = self.min_side = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.device = torch.device(device)
        self.mtcnn = MTCNN(
            min_face_size=self.min_face_size,
            thresholds=list(self.thresholds),
            factor=self.factor,
            keep_all=True,
            select_largest=False,  # FaceAligner orders and chooses
            device=self.device,
        )

    def describe(self) -> dict[str, Any]:
        from importlib import metadata

        return {
            "detector": f"MTCNN (facenet-pytorch {metadata.version('facenet-pytorch')})",
            "min_face_size": self.min_face_size,
            "thresholds": list(self.thresholds),
            "factor": self.factor,
        }

    @torch.inference_mode()
    def detect(self, batch: torch.Tensor) -> list[Faces]:
        # facenet-pytorch expects (b, h, w, 3) with 0–255 values, as from uint8 images; quantise so
        # results equal those on the decoded JPEG/PNG bytes.
        x = (batch.float().clamp(0, 1) * 255).round().permute(0, 2, 3, 1).to(self.device)
        b_boxes, b_probs, b_points = self.mtcnn.detect(x, landmarks=True)
        out = []
        for box, prob, pts in zip(b_boxes, b_probs, b_points):
            if box is None:
                out.append(Faces.none())
            else:
                out.append(Faces(
                    np.asarray(box, dtype=np.float64).reshape(-1, 4),
                    np.asarray(prob, dtype=np.float64).reshape(-1),
                    np.asarray(pts, dtype=np.float64).reshape(-1, 5, 2),
                ))
        return out


@register_detector
def mtcnn(
    weights: str | None = None,
    device: str | torch.device = "cpu",
    min_face_size: int = 20,
    thresholds: Sequence[float] = (0.6, 0.7, 0.7),
    factor: float = 0.709,
) -> MTCNNDetector:
    """MTCNN with the weights inside the facenet-pytorch wheel (no download, no file to give)."""
    if weights is not None:
        raise ValueError(
            "the 'mtcnn' detector uses the weights shipped inside facenet-pytorch 2.5.3; "
            f"it takes no weights file (got {weights!r})"
        )
    return MTCNNDetector(min_face_size=min_face_size, thresholds=thresholds, factor=factor,
                         device=device)


# -- detection + alignment -------------------------------------------------------------------------
@dataclass
class AlignedFaces:
    """Result of :meth:`FaceAligner.align` for N input images (one row per image, in input order).

    Undetected rows have ``detected = False``, a zero crop and NaN landmarks/box/prob; score them as
    failures, never drop them silently.
    """

    faces: torch.Tensor  # (N, 3, h, w) RGB [0, 1], the recogniser's input size; zeros if undetected
    detected: torch.Tensor  # (N,) bool
    landmarks: torch.Tensor  # (N, 5, 2) float64, (x, y) in input-image pixels; NaN if not detected
    boxes: torch.Tensor  # (N, 4) float64 (x1, y1, x2, y2); NaN if not detected
    probs: torch.Tensor  # (N,) float64 detector probability of the chosen face; NaN if none
    num_faces: torch.Tensor  # (N,) int64: how many faces the detector found (before choosing one)

    def __len__(self) -> int:
        return int(self.detected.shape[0])

    @property
    def detection_rate(self) -> float:
        return float(self.detected.float().mean()) if len(self) else float("nan")


class FaceAligner:
    """A registered detector → one face per image → the recogniser's crop.

    ``detector``: a registered name (``"mtcnn"``, ``"scrfd"``, …; ``detector_options`` such as
    ``min_face_size=`` or ``weights=`` go to its builder) or a built :class:`Detector`.
    ``recogniser``: whose :meth:`~fsr_bench.face.recogniser.Recogniser.align` makes the crops (dlib's
    face chips, …); without one, crops are 112×112 ArcFace-template alignments, what MobileFaceNet
    and insightface ONNX models take. ``min_prob`` rejects chosen faces below that detector
    probability (0 keeps the detector's own thresholds). ``selection`` picks among several faces
    (see :data:`SELECTIONS`). ``batch_size`` bounds how many same-size images go through the
    detector at once (memory grows with it).
    """

    def __init__(
        self,
        detector: "str | Detector" = "mtcnn",
        *,
        recogniser: "Recogniser | None" = None,
        selection: Selection = "largest",
        min_prob: float = 0.0,
        batch_size: int = 32,
        device: str | torch.device = "cpu",
        **detector_options: Any,
    ):
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(detector, Detector):
            if detector_options:
                raise ValueError(
                    f"options {sorted(detector_options)} are for building a detector by name; "
                    "pass them to create_detector() instead of with a built detector"
                )
            self.detector = detector
        else:
            self.detector = create_detector(detector, device=str(device), **detector_options)
        self.recogniser = recogniser
        self.selection = selection
        self.min_prob = float(min_prob)
        self.batch_size = int(batch_size)
        self.output_size = tuple(recogniser.input_size) if recogniser is not None else (112, 112)

    def describe(self) -> dict:
        """Settings recorded with every result (they change detection rates and crops)."""
        if self.recogniser is not None:
            alignment, template = self.recogniser.alignment, self.recogniser.template
        else:
            from fsr_bench.face.recogniser import Recogniser

            alignment, template = Recogniser.alignment, ARCFACE_TEMPLATE_112
        return {
            "detector_name": self.detector.name,
            **self.detector.describe(),
            "selection": self.selection,
            "min_prob": self.min_prob,
            "alignment": alignment,
            "template": None if template is None else np.asarray(template).tolist(),
            "output_size": list(self.output_size),
        }

    # -- public ------------------------------------------------------------------------------------
    def align(self, images: torch.Tensor | Sequence[torch.Tensor]) -> AlignedFaces:
        """Detect and align one face per image.

        ``images``: ``(N, 3, H, W)`` or a sequence of ``(3, H_i, W_i)`` RGB [0, 1] tensors (sizes may
        differ: same-size images are batched through the detector together).
        """
        imgs = list(images) if not isinstance(images, torch.Tensor) else list(images.unbind(0))
        n = len(imgs)
        for i, im in enumerate(imgs):
            if im.ndim != 3 or im.shape[0] != 3:
                raise ValueError(f"image {i}: expected (3, H, W) RGB in [0, 1], got {tuple(im.shape)}")
        oh, ow = self.output_size
        faces = torch.zeros(n, 3, oh, ow)
        detected = torch.zeros(n, dtype=torch.bool)
        landmarks = torch.full((n, 5, 2), math.nan, dtype=torch.float64)
        boxes = torch.full((n, 4), math.nan, dtype=torch.float64)
        probs = torch.full((n,), math.nan, dtype=torch.float64)
        num_faces = torch.zeros(n, dtype=torch.int64)

        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(imgs):
            groups.setdefault((int(im.shape[1]), int(im.shape[2])), []).append(i)
        for (h, w), idx in groups.items():
            if min(h, w) < self.detector.min_side:
                continue  # the detector cannot search it; reported undetected
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                batch = torch.stack([imgs[i] for i in chunk])  # (b, 3, h, w)
                for i, found in zip(chunk, self.detector.detect(batch)):
                    num_faces[i] = len(found)
                    k = self._choose(found, h, w)
                    if k is None:
                        continue
                    detected[i] = True
                    boxes[i] = torch.from_numpy(found.boxes[k])
                    probs[i] = float(found.probs[k])
                    landmarks[i] = torch.from_numpy(found.landmarks[k])
        crop = self.recogniser.align if self.recogniser is not None else _arcface_crop
        for i in detected.nonzero().flatten().tolist():  # from the original image, not a pyramid level
            faces[i] = crop(imgs[i].float(), boxes[i].numpy(), landmarks[i].numpy()).cpu()
        return AlignedFaces(faces, detected, landmarks, boxes, probs, num_faces)

    __call__ = align

    # -- internals ---------------------------------------------------------------------------------
    def _choose(self, found: Faces, h: int, w: int) -> int | None:
        keep = np.flatnonzero(found.probs >= self.min_prob)
        if keep.size == 0:
            return None
        b = found.boxes[keep]
        if self.selection == "largest":
            score = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        elif self.selection == "probability":
            score = found.probs[keep]
        else:  # "center": smallest distance of the box centre from the image centre
            cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
            score = -np.hypot(cx - (w - 1) / 2, cy - (h - 1) / 2)
        return int(keep[int(np.argmax(score))])


def _arcface_crop(image: torch.Tensor, box: np.ndarray, landmarks5: np.ndarray) -> torch.Tensor:
    del box  # the ArcFace crop depends on the landmarks only
    return align_with_landmarks(image, landmarks5, size=112)[0]

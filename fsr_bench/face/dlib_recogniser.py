"""dlib's ResNet face recogniser (``dlib``), a second recogniser independent of MobileFaceNet.

Model: ``dlib_face_recognition_resnet_model_v1.dat`` — a 29-layer ResNet (a ResNet-34 with a few
layers removed and half the filters) trained by Davis King on ~3M faces of ~7.5k identities with a
pairwise hinge ("metric") loss; 128-d descriptors; 99.38 % on the standard LFW benchmark (King,
"High Quality Face Recognition with Deep Metric Learning", dlib blog, 2017; davisking/dlib,
``examples/dnn_face_recognition_ex.cpp``; davisking/dlib-models). The files come from the PyPI
package ``face_recognition_models`` (Adam Geitgey, ageitgey/face_recognition_models), which ships
them together with the 5-point shape predictor; the binary wheel ``dlib-bin`` runs them (CPU only).

Alignment — dlib's own, as ``face_recognition.face_encodings`` does it: the 5-point shape predictor
(``shape_predictor_5_face_landmarks.dat``: eye corners and nose base) is run inside the face box,
then ``dlib.get_face_chip(image, shape, size=150, padding=0.25)`` cuts the 150×150 chip the network
was trained on. The box is the *detector's* (MTCNN by default), not dlib's HOG detector's, so every
recogniser sees the same detections and detection rates: a comparison of recognisers then differs
only in the recognisers. Because the shape predictor was trained on dlib-detector boxes, which are
wider and sit lower than MTCNN's, each box edge is first shifted by a fixed fraction of the box size
(:data:`MTCNN_TO_DLIB_BOX`, the median over 398 LFW dev images — ``benchmarks/dlib_box_map.py``).
MTCNN's five landmarks are not used: they are different points (eye centres, nose tip, mouth).

Score convention. dlib's native rule is Euclidean distance < 0.6 between *raw* single-view
descriptors (:meth:`DlibRecogniser.descriptors`; :data:`DLIB_DISTANCE_THRESHOLD`). fsr-bench scores
every recogniser the same way: :meth:`embed` returns L2-normalised (flip-summed by default)
descriptors and the score is their cosine, a dot product. Raw descriptors are not unit length
(norm ≈ 1.4 on LFW), so 0.6 does not translate into one cosine threshold, and MobileFaceNet's 0.4
means nothing here (dlib's impostor cosines average 0.84): calibrate a threshold at a target FAR
for dlib (issue 13) rather than reusing either. The cosine loses nothing: on 1,000 + 1,000 LFW dev
pairs (``benchmarks/results/lfw_verification_dlib.json``) it gives 98.35 % 10-fold accuracy, the
native Euclidean score 98.00 %, and the fixed 0.6 rule 98.15 %.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from fsr_bench.face import register_recogniser
from fsr_bench.face.recogniser import Recogniser
from fsr_bench.weights import ChecksumMismatch, WeightsUnavailable, sha256_file

__all__ = [
    "DLIB_DISTANCE_THRESHOLD",
    "MTCNN_TO_DLIB_BOX",
    "PACKAGED_FILES",
    "DlibRecogniser",
    "dlib",
    "to_dlib_box",
]

#: dlib's own decision rule: same person when the Euclidean distance of raw descriptors is below it
DLIB_DISTANCE_THRESHOLD = 0.6

#: (x1, y1, x2, y2) shifts as fractions of the MTCNN box (width for x, height for y) that turn an
#: MTCNN box into the box dlib's frontal-face (HOG) detector gives the same face: the median over
#: 398 LFW dev images, benchmarks/results/dlib_box_map_cpu.json (benchmarks/dlib_box_map.py)
MTCNN_TO_DLIB_BOX = (-0.0923, 0.1217, 0.0346, -0.0335)

#: file name → SHA-256 of the files in face_recognition_models 0.3.0 (checked when loaded from it)
PACKAGED_FILES = {
    "dlib_face_recognition_resnet_model_v1.dat":
        "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    "shape_predictor_5_face_landmarks.dat":
        "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
}

_WHERE_FROM = (
    "Install them with `pip install face_recognition_models` (ageitgey/face_recognition_models), "
    "or download dlib_face_recognition_resnet_model_v1.dat.bz2 and "
    "shape_predictor_5_face_landmarks.dat.bz2 from http://dlib.net/files/, unpack them and pass "
    "weights=<resnet .dat> and shape_predictor=<5-point .dat>."
)


def _packaged(filename: str) -> Path:
    """A file of ``face_recognition_models``, found without importing the package (its
    ``__init__`` needs ``pkg_resources``, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailable(f"the 'dlib' recogniser needs {filename}. {_WHERE_FROM}")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / filename
    if not path.is_file():
        raise WeightsUnavailable(f"{path} is missing from face_recognition_models. {_WHERE_FROM}")
    sha = sha256_file(path)
    if sha != PACKAGED_FILES[filename]:
        raise ChecksumMismatch(
            f"{path}: SHA-256 {sha}, expected {PACKAGED_FILES[filename]} (face_recognition_models "
            "0.3.0). Another version ships other weights; pass the file explicitly to use it."
        )
    return path


def _explicit(path: str | os.PathLike, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsUnavailable(f"{what} {p} does not exist. {_WHERE_FROM}")
    return p


def to_dlib_box(box: np.ndarray, shift: tuple[float, float, float, float] = MTCNN_TO_DLIB_BOX):
    """``(x1, y1, x2, y2)`` detector box → the integer box dlib's shape predictor expects."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    if not (np.isfinite([x1, y1, x2, y2]).all() and w > 0 and h > 0):
        raise ValueError(f"not a valid face box (x1, y1, x2, y2): {box}")
    dx1, dy1, dx2, dy2 = shift
    return tuple(int(round(v)) for v in (x1 + dx1 * w, y1 + dy1 * h, x2 + dx2 * w, y2 + dy2 * h))


def _to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) RGB [0, 1] → contiguous (H, W, 3) uint8, the only colour image type dlib takes."""
    x = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    return np.ascontiguousarray(x.permute(1, 2, 0).numpy())


class DlibRecogniser(Recogniser):
    """dlib's ``face_recognition_model_v1`` on its own 150×150 face chips (see the module docstring).

    Input of :meth:`embed`: chips from :meth:`align` — ``(N, 3, 150, 150)`` RGB [0, 1]; they are
    quantised to 8 bits (dlib's network takes ``uint8`` images only). dlib-bin has no CUDA: it runs
    on the CPU whatever ``device`` says, which changes speed, never numbers.
    """

    input_size: ClassVar[tuple[int, int]] = (150, 150)
    template: ClassVar[np.ndarray | None] = None
    #: the native decision rule's threshold on :meth:`descriptors` (Euclidean distance)
    native_threshold: ClassVar[float] = DLIB_DISTANCE_THRESHOLD
    chip_padding: ClassVar[float] = 0.25
    alignment: ClassVar[str] = (
        "dlib 5-point shape predictor inside the detector box (shifted by MTCNN_TO_DLIB_BOX "
        f"{MTCNN_TO_DLIB_BOX}), dlib.get_face_chip size 150, padding 0.25"
    )

    def __init__(
        self,
        model_path: str | os.PathLike,
        shape_predictor_path: str | os.PathLike,
        flip: bool = True,
        batch_size: int = 32,
        device: str | torch.device = "cpu",
    ):
        import dlib

        self.requested_device = str(device)
        self.model_path, self.shape_predictor_path = Path(model_path), Path(shape_predictor_path)
        # dlib's own binary format (dlib::deserialize), not a pickle: no code runs on load
        self._net = dlib.face_recognition_model_v1(str(self.model_path))
        self._predictor = dlib.shape_predictor(str(self.shape_predictor_path))
        self.shape_predictor_sha256 = sha256_file(self.shape_predictor_path)
        super().__init__(
            embedding_dim=128,
            normalization="x in [0,1] RGB -> round(255*x) uint8 (dlib's input)",
            weights_path=str(self.model_path),
            weights_sha256=sha256_file(self.model_path),
            flip=flip,
            batch_size=batch_size,
            device="cpu",
        )

    def align(self, image: torch.Tensor, box: np.ndarray, landmarks5: np.ndarray) -> torch.Tensor:
        import dlib

        del landmarks5  # MTCNN's points are not dlib's: the shape predictor finds its own
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be (3, H, W) RGB in [0, 1]; got shape {tuple(image.shape)}")
        rgb = _to_uint8_hwc(image)
        shape = self._predictor(rgb, dlib.rectangle(*to_dlib_box(box)))
        chip = dlib.get_face_chip(rgb, shape, size=self.input_size[0], padding=self.chip_padding)
        return torch.from_numpy(np.ascontiguousarray(chip)).permute(2, 0, 1).float() / 255.0

    def reference_alignment(self, image: torch.Tensor, box: np.ndarray, landmarks5: np.ndarray):
        """dlib's chip placement (``chip_details``) from the shape predictor run on ``image``."""
        import dlib

        del landmarks5
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be (3, H, W) RGB in [0, 1]; got shape {tuple(image.shape)}")
        shape = self._predictor(_to_uint8_hwc(image), dlib.rectangle(*to_dlib_box(box)))
        return dlib.get_face_chip_details(shape, size=self.input_size[0], padding=self.chip_padding)

    def align_to(self, image: torch.Tensor, alignment) -> torch.Tensor:
        """The chip at a reference's placement: what ``get_face_chip`` cuts, with the points fixed."""
        import dlib

        chip = dlib.extract_image_chip(_to_uint8_hwc(image), alignment)
        return torch.from_numpy(np.ascontiguousarray(chip)).permute(2, 0, 1).float() / 255.0

    def forward_raw(self, aligned: torch.Tensor) -> torch.Tensor:
        chips = [_to_uint8_hwc(x) for x in aligned]
        if not chips:
            return torch.empty(0, 128)
        # num_jitters=0: one pass per chip, as face_recognition's default (num_jitters=1 there
        # means "no extra jittered copies")
        out = self._net.compute_face_descriptor(chips, 0)
        return torch.from_numpy(np.asarray([np.asarray(d) for d in out], dtype=np.float32))

    @torch.inference_mode()
    def descriptors(self, aligned: torch.Tensor) -> torch.Tensor:
        """Raw single-view descriptors (dlib's native space, for :data:`DLIB_DISTANCE_THRESHOLD`)."""
        self._check_input(aligned)
        return self.forward_raw(aligned)

    def describe(self) -> dict:
        info = super().describe()
        info.update(
            shape_predictor=self.shape_predictor_path.name,
            shape_predictor_sha256=self.shape_predictor_sha256,
            score="cosine of L2-normalised descriptors (dlib's native rule: Euclidean < 0.6 on "
            "raw single-view descriptors)",
        )
        return info


@register_recogniser
def dlib(
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    shape_predictor: str | os.PathLike | None = None,
    flip: bool = True,
    batch_size: int = 32,
) -> DlibRecogniser:
    """dlib ResNet (128-d); files from ``face_recognition_models`` unless given explicitly."""
    model = (_explicit(weights, "dlib recognition model") if weights is not None
             else _packaged("dlib_face_recognition_resnet_model_v1.dat"))
    predictor = (_explicit(shape_predictor, "dlib 5-point shape predictor")
                 if shape_predictor is not None else _packaged("shape_predictor_5_face_landmarks.dat"))
    return DlibRecogniser(model, predictor, flip=flip, batch_size=batch_size, device=device)

"""The one interface every face recogniser in fsr-bench implements.

Contract (PyTorch MobileFaceNet, ONNX models, plug-ins alike):

* alignment belongs to the recogniser: :meth:`Recogniser.align` turns one image plus its detection
  (box and five landmarks, from any registered detector) into the crop the network expects. The
  default is the ArcFace 5-point similarity crop (:mod:`fsr_bench.face.align`, insightface's
  ``norm_crop``); a recogniser with its own alignment (dlib's face chips) overrides it.
  :class:`fsr_bench.face.detect.FaceAligner` calls it when given ``recogniser=``;
* input of :meth:`Recogniser.embed`: such crops, RGB, float in [0, 1], shape
  ``(N, 3, *input_size)`` — the same convention as the rest of the package
  (``fsr_bench.data.io.read_image``); each recogniser converts to its own native normalisation
  inside :meth:`Recogniser.forward_raw`, so callers never need to know it;
* output: ``(N, D)`` float32 embeddings, L2-normalised, so cosine similarity is a dot product —
  the one score every consumer uses, whatever the recogniser's native score (dlib: Euclidean);
* flip augmentation (on by default): the embedding of the image plus that of its horizontal mirror,
  summed and then normalised. This is the protocol under which the shared MobileFaceNet weights were
  measured (``shared/weights/mobilefacenet/MODEL.md``: LFW 98.92 %) and is common practice in face
  verification (e.g. insightface's ``verification.py``). It costs twice the compute; pass
  ``flip=False`` to reproduce single-view numbers.
"""
from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from fsr_bench.face.align import ARCFACE_TEMPLATE_112, align_with_landmarks

__all__ = ["ARCFACE_TEMPLATE_112", "Recogniser", "RecogniserInputError"]



class RecogniserInputError(ValueError):
    """The aligned-face batch does not follow the recogniser contract."""


class Recogniser(abc.ABC):
    """Base class: validates input, batches, applies flip augmentation and L2 normalisation.

    Subclasses implement :meth:`forward_raw` (``(n, 3, 112, 112)`` RGB [0, 1] → ``(n, D)``
    unnormalised embeddings, no gradients needed) and set ``embedding_dim``, ``normalization`` and
    ``weights_path``. ``name`` is the registered name, filled in by
    :func:`fsr_bench.face.create_recogniser`.
    """

    input_size: ClassVar[tuple[int, int]] = (112, 112)  # (height, width)
    template: ClassVar[np.ndarray | None] = ARCFACE_TEMPLATE_112  # None: own alignment
    alignment: ClassVar[str] = (
        "5-point similarity to the ArcFace template (insightface face_align.norm_crop), bilinear"
    )

    def __init__(
        self,
        *,
        embedding_dim: int,
        normalization: str,
        weights_path: str | None,
        weights_sha256: str | None,
        flip: bool = True,
        batch_size: int = 64,
        device: str | torch.device = "cpu",
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.name = ""
        self.embedding_dim = int(embedding_dim)
        self.normalization = normalization  # human-readable, recorded by describe()
        self.weights_path = weights_path
        self.weights_sha256 = weights_sha256
        self.flip = bool(flip)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)

    # -- the interface ----------------------------------------------------------------------------
    def align(self, image: torch.Tensor, box: np.ndarray, landmarks5: np.ndarray) -> torch.Tensor:
        """One detected face → ``(3, *input_size)`` crop, RGB [0, 1].

        ``image`` ``(3, H, W)`` RGB [0, 1]; ``box`` ``(x1, y1, x2, y2)`` and ``landmarks5`` ``(5, 2)``
        in its pixel coordinates (the detector's; see :mod:`fsr_bench.face.detect`).
        """
        h, w = self.input_size
        if h != w:
            raise NotImplementedError(f"{type(self).__name__}: non-square input {self.input_size} "
                                      "needs its own align()")
        return align_with_landmarks(image, landmarks5, size=h)[0]

    def reference_alignment(self, image: torch.Tensor, box: np.ndarray, landmarks5: np.ndarray) -> Any:
        """The alignment of one detected face, fixed on ``image`` (the reference), for :meth:`align_to`.

        ``align(image, box, landmarks5)`` equals ``align_to(image, reference_alignment(image, box,
        landmarks5))``; applying one reference's alignment to *another* image of the same geometry
        (a super-resolved output of an HR face) crops the same pixels of both, so content of the
        other image cannot move its crop. The ArcFace warp is a function of the five landmarks
        alone, so they are the alignment here; a recogniser that fits points on the image itself
        (dlib's shape predictor) overrides both methods.
        """
        del image, box
        pts = np.array(landmarks5, dtype=np.float64)
        if pts.shape != (5, 2) or not np.isfinite(pts).all():
            raise ValueError(f"reference_alignment needs five finite (x, y) landmarks; got {pts.tolist()}")
        return pts

    def align_to(self, image: torch.Tensor, alignment: Any) -> torch.Tensor:
        """``image`` ``(3, H, W)`` cropped with an alignment from :meth:`reference_alignment`."""
        h, w = self.input_size
        if h != w:
            raise NotImplementedError(f"{type(self).__name__}: non-square input {self.input_size} "
                                      "needs its own align_to()")
        return align_with_landmarks(image, alignment, size=h)[0]

    @abc.abstractmethod
    def forward_raw(self, aligned: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` RGB [0, 1] on ``self.device`` → ``(n, D)`` unnormalised, float32."""

    @torch.inference_mode()
    def embed(self, aligned: torch.Tensor, flip: bool | None = None) -> torch.Tensor:
        """Embed aligned faces: ``(N, 3, *input_size)`` RGB [0, 1] → ``(N, D)`` L2-normalised, on CPU.

        ``flip`` overrides the instance default for this call. Results come back on the CPU
        because every consumer (scoring, caching) is NumPy-based.
        """
        self._check_input(aligned)
        use_flip = self.flip if flip is None else bool(flip)
        out = []
        for start in range(0, aligned.shape[0], self.batch_size):
            x = aligned[start : start + self.batch_size].to(self.device, torch.float32)
            e = self.forward_raw(x)  # (n, D)
            if use_flip:
                e = e + self.forward_raw(x.flip(-1))  # mirror along width
            out.append(F.normalize(e.float(), dim=1).cpu())
        if not out:
            return torch.empty(0, self.embedding_dim)
        return torch.cat(out)

    def describe(self) -> dict[str, Any]:
        """Provenance recorded next to every result that used this recogniser."""
        return {
            "name": self.name,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "weights_path": self.weights_path,
            "weights_sha256": self.weights_sha256,
            "input": f"RGB [0,1], {self.input_size[0]}x{self.input_size[1]}",
            "alignment": self.alignment,
            "template": None if self.template is None else self.template.tolist(),
            "score": "cosine of L2-normalised embeddings",
            "normalization": self.normalization,
            "embedding_dim": self.embedding_dim,
            "flip_augmentation": self.flip,
            "device": str(self.device),
        }

    # -- helpers ----------------------------------------------------------------------------------
    def _check_input(self, aligned: torch.Tensor) -> None:
        h, w = self.input_size
        if not isinstance(aligned, torch.Tensor):
            raise RecogniserInputError(
                f"{type(self).__name__}.embed expects a torch.Tensor (N, 3, {h}, {w}); got "
                f"{type(aligned).__name__}"
            )
        if aligned.ndim != 4 or tuple(aligned.shape[1:]) != (3, h, w):
            raise RecogniserInputError(
                f"{type(self).__name__}.embed expects aligned faces (N, 3, {h}, {w}); got shape "
                f"{tuple(aligned.shape)}. Align raw images first with "
                "fsr_bench.face.detect.FaceAligner(recogniser=...) (or its align())."
            )
        if not aligned.is_floating_point():
            raise RecogniserInputError(
                f"expected float values in [0, 1], got dtype {aligned.dtype}; convert with "
                "x.float() / 255"
            )
        if aligned.numel() and float(aligned.max()) > 1.5:
            raise RecogniserInputError(
                f"input values reach {float(aligned.max()):.1f}; the contract is RGB in [0, 1] "
                "(divide 0–255 images by 255)"
            )

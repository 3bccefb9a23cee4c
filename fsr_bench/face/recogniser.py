"""The one interface every face recogniser in fsr-bench implements.

Contract (PyTorch MobileFaceNet, ONNX models, plug-ins alike):

* input: faces already aligned to :data:`ARCFACE_TEMPLATE_112` (see :mod:`fsr_bench.face.detect`),
  RGB, float in [0, 1], shape ``(N, 3, 112, 112)`` — the same convention as the rest of the package
  (``fsr_bench.data.io.read_image``); each recogniser converts to its own native normalisation
  inside :meth:`Recogniser.forward_raw`, so callers never need to know it;
* output: ``(N, D)`` float32 embeddings, L2-normalised, so cosine similarity is a dot product;
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

__all__ = ["ARCFACE_TEMPLATE_112", "Recogniser", "RecogniserInputError"]

#: Five landmarks (x, y) in a 112×112 crop — left eye, right eye, nose tip, left mouth corner, right
#: mouth corner ("left" = image left). The ArcFace/insightface alignment template (Deng et al.,
#: "ArcFace", CVPR 2019; deepinsight/insightface); MobileFaceNet's weights expect it (MODEL.md).
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
ARCFACE_TEMPLATE_112.setflags(write=False)


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
    template: ClassVar[np.ndarray] = ARCFACE_TEMPLATE_112

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
    @abc.abstractmethod
    def forward_raw(self, aligned: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` RGB [0, 1] on ``self.device`` → ``(n, D)`` unnormalised, float32."""

    @torch.inference_mode()
    def embed(self, aligned: torch.Tensor, flip: bool | None = None) -> torch.Tensor:
        """Embed aligned faces: ``(N, 3, 112, 112)`` RGB [0, 1] → ``(N, D)`` L2-normalised, on CPU.

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
            "input": f"RGB [0,1], {self.input_size[0]}x{self.input_size[1]}, "
            "5-point similarity alignment to the ArcFace template",
            "template": self.template.tolist(),
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
                "fsr_bench.face.detect.FaceAligner (or align_with_landmarks)."
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

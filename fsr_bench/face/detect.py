"""Face detection (MTCNN) and 5-point alignment to a recogniser's template.

Pipeline, the one used by the TANet paper's SCface experiment (MTCNN detector, MobileFaceNet
recogniser) and by insightface-style recognisers:

1. MTCNN (Zhang, Zhang, Li, Qiao, "Joint Face Detection and Alignment using Multitask Cascaded
   Convolutional Networks", IEEE SPL 2016) from ``facenet-pytorch`` 2.5.3 with the weights that
   package ships (timesler/facenet-pytorch) finds every face with a box, a probability and five
   landmarks;
2. one detection per image is chosen (see :data:`SELECTIONS`);
3. a similarity transform (rotation, uniform scale, translation) fitted by least squares to map the
   five landmarks onto the template (Umeyama, "Least-squares estimation of transformation parameters
   between two point patterns", IEEE TPAMI 1991) warps the image to 112×112 with bilinear sampling.

An image where no face is found is reported as *undetected* (``detected[i] = False``, a zero crop,
NaN landmarks) — there is deliberately no centre-crop fallback: in a surveillance benchmark "the
detector failed on this super-resolved face" is itself a result (the paper prints "-" for it).

Tiny faces: MTCNN's first stage slides a 12×12 window over an image pyramid whose largest level is
the image scaled by ``12 / min_face_size``; faces smaller than ``min_face_size`` pixels are never
proposed, and images whose shorter side is below ``min_face_size`` cannot be searched at all (they
are reported undetected). The default 20 is facenet-pytorch's. For super-resolved outputs the face
fills the image, so the default is fine; to detect in raw low-resolution probes lower it (≥ 12 — the
pyramid then upsamples) or upsample the images first, and expect more false positives and time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fsr_bench.face.recogniser import ARCFACE_TEMPLATE_112

__all__ = [
    "SELECTIONS",
    "AlignedFaces",
    "FaceAligner",
    "estimate_similarity",
    "warp_affine",
    "align_with_landmarks",
]

Selection = Literal["largest", "probability", "center"]
#: How one detection is chosen when MTCNN finds several faces in an image:
#: ``"largest"`` box area (the subject of a face crop is its biggest face; facenet-pytorch's default),
#: ``"probability"`` highest detector confidence, ``"center"`` box centre closest to the image centre
#: (the subject of a centred crop such as LFW or an SR output; foamliu's LFW evaluation does this).
SELECTIONS: tuple[str, ...] = ("largest", "probability", "center")


# -- geometry ----------------------------------------------------------------------------------
def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform mapping ``src`` points onto ``dst`` (Umeyama 1991).

    ``src``, ``dst``: ``(K, 2)`` arrays of (x, y), K ≥ 2. Returns the ``(2, 3)`` matrix ``M`` with
    ``dst ≈ M[:, :2] @ src + M[:, 2]``; its 2×2 part is ``s·R`` with ``R`` a proper rotation (a
    reflection is never returned: a mirrored face would still "align" but is a different image).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need two (K, 2) point sets with K >= 2; got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("landmarks contain NaN or inf")
    mu_src, mu_dst = src.mean(0), dst.mean(0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    var_src = (src_c**2).sum() / len(src)
    if var_src <= 1e-12:
        raise ValueError("source landmarks are all at one point; no transform is defined")
    cov = dst_c.T @ src_c / len(src)  # (2, 2)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # best orthogonal fit is a reflection: flip one axis
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / var_src)
    t = mu_dst - scale * rot @ mu_src
    return np.hstack([scale * rot, t[:, None]])


def warp_affine(
    image: torch.Tensor, matrix: np.ndarray | torch.Tensor, output_size: tuple[int, int]
) -> torch.Tensor:
    """Bilinear warp with ``out(x, y) = image(M⁻¹·(x, y, 1))``, zero outside (cv2.warpAffine's rule).

    ``image``: ``(C, H, W)`` or ``(N, C, H, W)``; ``matrix``: ``(2, 3)`` or ``(N, 2, 3)`` mapping
    source pixel coordinates to output pixel coordinates, where pixel ``i`` has its centre at ``i``
    (the convention of MTCNN landmarks and of OpenCV). ``output_size``: ``(height, width)``.
    """
    squeeze = image.ndim == 3
    img = image[None] if squeeze else image
    if img.ndim != 4:
        raise ValueError(f"image must be (C, H, W) or (N, C, H, W); got {tuple(image.shape)}")
    n, _, h, w = img.shape
    m = torch.as_tensor(np.asarray(matrix), dtype=torch.float64)
    m = m.expand(n, 2, 3) if m.ndim == 2 else m
    if m.shape != (n, 2, 3):
        raise ValueError(f"matrix must be (2, 3) or ({n}, 2, 3); got {tuple(m.shape)}")
    # invert [A | t]: src = A⁻¹ (dst − t)
    a_inv = torch.linalg.inv(m[:, :, :2])  # (n, 2, 2)
    t_inv = -(a_inv @ m[:, :, 2:])  # (n, 2, 1)
    out_h, out_w = output_size
    ys, xs = torch.meshgrid(
        torch.arange(out_h, dtype=torch.float64), torch.arange(out_w, dtype=torch.float64),
        indexing="ij",
    )
    dst = torch.stack([xs.reshape(-1), ys.reshape(-1)])  # (2, out_h*out_w)
    src = a_inv @ dst + t_inv  # (n, 2, out_h*out_w), source pixel coordinates
    # pixel coordinate p → grid_sample's normalised coordinate with align_corners=False
    gx = (2 * src[:, 0] + 1) / w - 1
    gy = (2 * src[:, 1] + 1) / h - 1
    grid = torch.stack([gx, gy], dim=-1).reshape(n, out_h, out_w, 2).to(img.dtype)
    out = F.grid_sample(
        img, grid.to(img.device), mode="bilinear", padding_mode="zeros", align_corners=False
    )  # (n, C, out_h, out_w)
    return out[0] if squeeze else out


def align_with_landmarks(
    image: torch.Tensor,
    landmarks5: np.ndarray | torch.Tensor,
    template: np.ndarray = ARCFACE_TEMPLATE_112,
    output_size: tuple[int, int] = (112, 112),
) -> torch.Tensor:
    """Align faces whose five landmarks are already known (annotations, another detector).

    ``image`` ``(3, H, W)`` or ``(N, 3, H, W)`` RGB [0, 1]; ``landmarks5`` ``(5, 2)`` or
    ``(N, 5, 2)`` (x, y) in pixel coordinates, in the template's order (left eye, right eye, nose,
    left mouth corner, right mouth corner; "left" = image left). Returns ``(N, 3, *output_size)``.
    """
    img = image[None] if image.ndim == 3 else image
    pts = np.asarray(landmarks5.detach().cpu() if isinstance(landmarks5, torch.Tensor) else landmarks5)
    pts = pts[None] if pts.ndim == 2 else pts
    if pts.shape != (img.shape[0], 5, 2):
        raise ValueError(
            f"landmarks5 must be (5, 2) or (N, 5, 2) matching {img.shape[0]} image(s); got "
            f"{pts.shape}"
        )
    mats = np.stack([estimate_similarity(p, template) for p in pts])
    return warp_affine(img, mats, output_size)


# -- detection + alignment ---------------------------------------------------------------------
@dataclass
class AlignedFaces:
    """Result of :meth:`FaceAligner.align` for N input images (one row per image, in input order).

    Undetected rows have ``detected = False``, a zero crop and NaN landmarks/box/prob; score them as
    failures, never drop them silently.
    """

    faces: torch.Tensor  # (N, 3, 112, 112) RGB [0, 1]; zeros where not detected
    detected: torch.Tensor  # (N,) bool
    landmarks: torch.Tensor  # (N, 5, 2) float64, (x, y) in input-image pixels; NaN if not detected
    boxes: torch.Tensor  # (N, 4) float64 (x1, y1, x2, y2); NaN if not detected
    probs: torch.Tensor  # (N,) float64 detector probability of the chosen face; NaN if none
    num_faces: torch.Tensor  # (N,) int64: how many faces MTCNN found (before choosing one)

    def __len__(self) -> int:
        return int(self.detected.shape[0])

    @property
    def detection_rate(self) -> float:
        return float(self.detected.float().mean()) if len(self) else float("nan")


class FaceAligner:
    """MTCNN detection → one face per image → 5-point similarity alignment to ``template``.

    Parameters mirror facenet-pytorch's ``MTCNN``: ``min_face_size`` (pixels; see the module note on
    tiny faces), ``thresholds`` (P-, R-, O-Net acceptance), ``factor`` (pyramid step).
    ``min_prob`` rejects chosen faces below that O-Net probability (0 keeps MTCNN's own thresholds).
    ``selection`` picks among several faces (see :data:`SELECTIONS`). ``batch_size`` bounds how many
    same-size images go through MTCNN at once (memory grows with it).

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
        selection: Selection = "largest",
        min_prob: float = 0.0,
        template: np.ndarray = ARCFACE_TEMPLATE_112,
        output_size: tuple[int, int] = (112, 112),
        batch_size: int = 32,
        device: str | torch.device = "cpu",
    ):
        from facenet_pytorch import MTCNN  # heavy import: only when an aligner is built

        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        if min_face_size < 1:
            raise ValueError(f"min_face_size must be >= 1 pixel, got {min_face_size}")
        if len(thresholds) != 3:
            raise ValueError(f"thresholds needs three values (P-, R-, O-Net); got {thresholds}")
        self.min_face_size = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.selection = selection
        self.min_prob = float(min_prob)
        self.template = np.asarray(template, dtype=np.float64)
        self.output_size = tuple(output_size)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.mtcnn = MTCNN(
            min_face_size=self.min_face_size,
            thresholds=list(self.thresholds),
            factor=self.factor,
            keep_all=True,
            select_largest=False,  # we order and choose ourselves
            device=self.device,
        )

    def describe(self) -> dict:
        """Settings recorded with every result (they change detection rates)."""
        from importlib import metadata

        return {
            "detector": f"MTCNN (facenet-pytorch {metadata.version('facenet-pytorch')})",
            "min_face_size": self.min_face_size,
            "thresholds": list(self.thresholds),
            "factor": self.factor,
            "selection": self.selection,
            "min_prob": self.min_prob,
            "alignment": "5-point least-squares similarity (Umeyama), bilinear",
            "template": self.template.tolist(),
            "output_size": list(self.output_size),
        }

    # -- public ------------------------------------------------------------------------------------
    def align(self, images: torch.Tensor | Sequence[torch.Tensor]) -> AlignedFaces:
        """Detect and align one face per image.

        ``images``: ``(N, 3, H, W)`` or a sequence of ``(3, H_i, W_i)`` RGB [0, 1] tensors (sizes may
        differ: same-size images are batched through MTCNN together).
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
            if min(h, w) < self.min_face_size:
                continue  # MTCNN cannot search it (no pyramid level); reported undetected
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                batch = torch.stack([imgs[i] for i in chunk])  # (b, 3, h, w)
                for i, (box, prob, pts) in zip(chunk, self._detect(batch)):
                    if box is None:
                        continue
                    num_faces[i] = len(box)
                    k = self._choose(box, prob, h, w)
                    if k is None:
                        continue
                    detected[i] = True
                    boxes[i] = torch.from_numpy(box[k])
                    probs[i] = float(prob[k])
                    landmarks[i] = torch.from_numpy(pts[k])
        hit = detected.nonzero().flatten().tolist()
        for i in hit:  # warp from the original image (not from MTCNN's resampled pyramid)
            m = estimate_similarity(landmarks[i].numpy(), self.template)
            faces[i] = warp_affine(imgs[i].float(), m, self.output_size).clamp_(0, 1).cpu()
        return AlignedFaces(faces, detected, landmarks, boxes, probs, num_faces)

    __call__ = align

    # -- internals ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def _detect(self, batch: torch.Tensor) -> list[tuple[np.ndarray | None, ...]]:
        """MTCNN on ``(b, 3, h, w)`` [0, 1] → per image (boxes (k,4), probs (k,), points (k,5,2))."""
        # facenet-pytorch expects (b, h, w, 3) with 0–255 values, as from uint8 images; quantise so
        # results equal those on the decoded JPEG/PNG bytes.
        x = (batch.float().clamp(0, 1) * 255).round().permute(0, 2, 3, 1).to(self.device)
        b_boxes, b_probs, b_points = self.mtcnn.detect(x, landmarks=True)
        out = []
        for box, prob, pts in zip(b_boxes, b_probs, b_points):
            if box is None:
                out.append((None, None, None))
            else:
                out.append(
                    (
                        np.asarray(box, dtype=np.float64).reshape(-1, 4),
                        np.asarray(prob, dtype=np.float64).reshape(-1),
                        np.asarray(pts, dtype=np.float64).reshape(-1, 5, 2),
                    )
                )
        return out

    def _choose(self, box: np.ndarray, prob: np.ndarray, h: int, w: int) -> int | None:
        keep = np.flatnonzero(prob >= self.min_prob)
        if keep.size == 0:
            return None
        b = box[keep]
        if self.selection == "largest":
            score = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        elif self.selection == "probability":
            score = prob[keep]
        else:  # "center": smallest distance of the box centre from the image centre
            cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
            score = -np.hypot(cx - (w - 1) / 2, cy - (h - 1) / 2)
        return int(keep[int(np.argmax(score))])

"""5-point ArcFace alignment, done by insightface (``insightface.utils.face_align``).

``estimate_norm`` fits the least-squares similarity transform (rotation, uniform scale, translation;
scikit-image's ``SimilarityTransform``, i.e. Umeyama 1991) mapping five landmarks onto the ArcFace
template, and ``norm_crop`` warps with OpenCV's bilinear ``warpAffine`` (zeros outside). It is the
reference alignment of the ArcFace family (Deng et al., "ArcFace", CVPR 2019; deepinsight/insightface,
``python-package/insightface/utils/face_align.py``) and the one MobileFaceNet's weights were evaluated
with. ``tests/test_face_align.py`` shows it equals fsr-bench's former hand-written Umeyama +
``grid_sample`` path on real LFW faces (embeddings' cosine ≥ 0.9999).

Images stay float32 through the warp (OpenCV warps float images with float weights), so a
super-resolved output is not quantised to 8 bits before the recogniser sees it.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

__all__ = ["ARCFACE_TEMPLATE_112", "arcface_matrix", "align_with_landmarks"]

#: Five landmarks (x, y) in a 112×112 crop — left eye, right eye, nose tip, left mouth corner, right
#: mouth corner ("left" = image left). insightface's ``face_align.arcface_dst``, kept here as a
#: documented constant (tests check the two agree); MobileFaceNet's weights expect it (MODEL.md).
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

# insightface 2.1 calls SimilarityTransform.estimate, deprecated since scikit-image 0.26; the
# result is unchanged, the warning would only repeat on every face
_ESTIMATE_DEPRECATED = ".*estimate.*deprecated"


def _landmarks(landmarks5: np.ndarray | torch.Tensor) -> np.ndarray:
    pts = landmarks5.detach().cpu().numpy() if isinstance(landmarks5, torch.Tensor) else landmarks5
    pts = np.asarray(pts, dtype=np.float64)
    if pts.shape != (5, 2):
        raise ValueError(f"landmarks5 must be (5, 2) (x, y) points; got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("landmarks contain NaN or inf (an undetected face cannot be aligned)")
    if np.ptp(pts, axis=0).max() <= 1e-6:
        raise ValueError("the five landmarks are all at one point; no transform is defined")
    return pts


def arcface_matrix(landmarks5: np.ndarray | torch.Tensor, size: int = 112) -> np.ndarray:
    """``(2, 3)`` similarity mapping image pixels to a ``size``×``size`` ArcFace crop.

    ``size`` must be a multiple of 112 (the template is scaled) or of 128 (insightface's
    128-crop convention: scaled and shifted 8·size/128 px right).
    """
    from insightface.utils import face_align

    pts = _landmarks(landmarks5)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_ESTIMATE_DEPRECATED, category=FutureWarning)
        return np.asarray(face_align.estimate_norm(pts.astype(np.float32), image_size=size),
                          dtype=np.float64)


def align_with_landmarks(
    image: torch.Tensor, landmarks5: np.ndarray | torch.Tensor, size: int = 112
) -> torch.Tensor:
    """Align one face whose five landmarks are known (a detector's, annotations).

    ``image`` ``(3, H, W)`` RGB [0, 1]; ``landmarks5`` ``(5, 2)`` (x, y) pixel coordinates (pixel
    ``i`` has its centre at ``i``) in the template's order (left eye, right eye, nose, left mouth
    corner, right mouth corner; "left" = image left). Returns ``(1, 3, size, size)`` in [0, 1].
    """
    from insightface.utils import face_align

    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W) RGB in [0, 1]; got shape {tuple(image.shape)}")
    pts = _landmarks(landmarks5)
    hwc = np.ascontiguousarray(image.detach().float().cpu().permute(1, 2, 0).numpy())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_ESTIMATE_DEPRECATED, category=FutureWarning)
        out = face_align.norm_crop(hwc, pts.astype(np.float32), image_size=size)
    return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)[None].clamp_(0, 1)

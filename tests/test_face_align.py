"""insightface's ArcFace alignment (``estimate_norm`` / ``norm_crop``) against the previous path.

fsr-bench used to fit the 5-point similarity itself (Umeyama 1991, NumPy SVD) and warp with
``torch.nn.functional.grid_sample``; :mod:`fsr_bench.face.align` now calls insightface. The old
implementation is kept below, same behaviour, as the *reference*: the library path must give the
same transforms, the same crops up to interpolation rounding and the same embeddings on real LFW
development faces.

Tolerances (stated once, used below):
* transform matrix: 1e-4 absolute (skimage's and our least squares solve the same problem;
  the difference is float32 landmarks vs float64);
* crop pixels: mean |Δ| < 1e-5 and max |Δ| < 1e-3 on [0, 1] images (measured on these 12 faces:
  2.4e-7 and 1.1e-5 — cv2 warps float32 images with float bilinear weights, so only rounding
  differs);
* MobileFaceNet embeddings: cosine between the two paths' embeddings of one face >= 0.9999
  (measured 1.0000; the genuine/impostor gap on LFW is ~0.5 in cosine).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fsr_bench.data.io import read_image
from fsr_bench.face.recogniser import ARCFACE_TEMPLATE_112

LFW_PEOPLE = ("Colin_Powell", "Tony_Blair", "Gerhard_Schroeder", "Ariel_Sharon")  # lfw_dev.txt
PER_PERSON = 3

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- the previous hand-written path, kept as the reference --------------------------------------
def umeyama_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 3) least-squares similarity src → dst, never a reflection (Umeyama 1991)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    var = (sc**2).sum() / len(src)
    u, sig, vt = np.linalg.svd(dc.T @ sc / len(src))
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = (sig * d).sum() / var
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def grid_sample_warp(image: torch.Tensor, m: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """out(x, y) = image(M⁻¹ (x, y, 1)), bilinear, zeros outside; pixel i has its centre at i."""
    _, h, w = image.shape
    a = np.linalg.inv(m[:, :2])
    t = -a @ m[:, 2]
    ys, xs = np.meshgrid(np.arange(size[0]), np.arange(size[1]), indexing="ij")
    src = a @ np.stack([xs.ravel(), ys.ravel()]) + t[:, None]
    grid = np.stack([(2 * src[0] + 1) / w - 1, (2 * src[1] + 1) / h - 1], -1)
    grid = torch.from_numpy(grid.reshape(1, size[0], size[1], 2)).float()
    return F.grid_sample(image[None].float(), grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[0]


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lfw_detections(shared_dir):
    """Images and MTCNN landmarks of 12 LFW dev faces (one detection each, the centred face)."""
    from fsr_bench.face.detect import FaceAligner

    dev = set((shared_dir / "data/splits/lfw_dev.txt").read_text().split())
    assert set(LFW_PEOPLE) <= dev  # never the held-out identities
    paths = [p for person in LFW_PEOPLE
             for p in sorted((shared_dir / "data/lfw" / person).glob("*.jpg"))[:PER_PERSON]]
    images = [read_image(p) for p in paths]
    found = FaceAligner(selection="center").align(images)
    assert bool(found.detected.all())
    return images, found.landmarks.numpy()


@pytest.fixture(scope="module")
def mobilefacenet(shared_dir):
    from fsr_bench.face import create_recogniser

    return create_recogniser("mobilefacenet",
                             weights=shared_dir / "weights/mobilefacenet/mobilefacenet.pt")


# -- tests ---------------------------------------------------------------------------------------
def test_template_is_insightfaces_arcface_template():
    from insightface.utils import face_align

    np.testing.assert_allclose(ARCFACE_TEMPLATE_112, face_align.arcface_dst, atol=1e-4)


def test_insightface_transform_equals_umeyama(lfw_detections):
    from fsr_bench.face.align import arcface_matrix  # insightface's estimate_norm

    _, landmarks = lfw_detections
    for pts in landmarks:
        ours = umeyama_similarity(pts, ARCFACE_TEMPLATE_112)
        theirs = arcface_matrix(pts, size=112)
        np.testing.assert_allclose(theirs, ours, atol=1e-4)


def test_library_alignment_agrees_with_the_previous_path(lfw_detections, mobilefacenet):
    from fsr_bench.face.align import align_with_landmarks

    images, landmarks = lfw_detections
    ref = torch.stack([
        grid_sample_warp(im, umeyama_similarity(pts, ARCFACE_TEMPLATE_112), (112, 112)).clamp(0, 1)
        for im, pts in zip(images, landmarks)
    ])
    new = torch.cat([align_with_landmarks(im, pts) for im, pts in zip(images, landmarks)])
    assert new.shape == ref.shape == (len(images), 3, 112, 112)
    diff = (new - ref).abs()
    assert float(diff.mean()) < 1e-5 and float(diff.max()) < 1e-3, (float(diff.mean()), float(diff.max()))

    e_ref, e_new = mobilefacenet.embed(ref), mobilefacenet.embed(new)
    agreement = (e_ref * e_new).sum(1)
    assert float(agreement.min()) >= 0.9999, agreement
    # and the agreement is meaningful: the same face is far closer across paths than two people
    assert float(agreement.min()) > float((e_ref[0] * e_new[-1]).sum()) + 0.3

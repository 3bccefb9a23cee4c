"""Detection and alignment: exact geometry on synthetic data, MTCNN on real LFW dev faces."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fsr_bench.data.io import read_image
from fsr_bench.face.detect import (
    FaceAligner,
    align_with_landmarks,
    estimate_similarity,
    warp_affine,
)
from fsr_bench.face.recogniser import ARCFACE_TEMPLATE_112 as TEMPLATE

LFW_FILES = ("Colin_Powell/Colin_Powell_0001.jpg", "Tony_Blair/Tony_Blair_0001.jpg",
             "Gerhard_Schroeder/Gerhard_Schroeder_0001.jpg", "Ariel_Sharon/Ariel_Sharon_0001.jpg")


def similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array(
        [[scale * math.cos(a), -scale * math.sin(a), tx], [scale * math.sin(a), scale * math.cos(a), ty]]
    )


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    return FaceAligner()


@pytest.fixture(scope="module")
def lfw_images(shared_dir) -> list[torch.Tensor]:
    dev = set((shared_dir / "data/splits/lfw_dev.txt").read_text().split())
    assert all(f.split("/")[0] in dev for f in LFW_FILES)
    return [read_image(shared_dir / "data/lfw" / f) for f in LFW_FILES]


# -- geometry ----------------------------------------------------------------------------------
@pytest.mark.parametrize("scale,angle,tx,ty", [(1.0, 0.0, 0.0, 0.0), (0.37, 23.0, -12.5, 40.0),
                                               (2.5, -170.0, 3.0, -7.0)])
def test_similarity_recovers_a_known_transform_exactly(scale, angle, tx, ty):
    m = similarity(scale, angle, tx, ty)
    src = np.random.default_rng(0).uniform(0, 250, size=(5, 2))
    np.testing.assert_allclose(estimate_similarity(src, apply(m, src)), m, atol=1e-9)


def test_similarity_is_least_squares_and_never_a_reflection():
    rng = np.random.default_rng(1)
    m = similarity(0.5, 10.0, 20.0, 5.0)
    src = rng.uniform(0, 200, size=(5, 2))
    dst = apply(m, src) + rng.normal(0, 0.5, size=(5, 2))
    est = estimate_similarity(src, dst)
    np.testing.assert_allclose(est[:, :2], m[:, :2], atol=0.01)
    np.testing.assert_allclose(est[:, 2], m[:, 2], atol=1.0)
    residual = lambda mat: ((apply(mat, src) - dst) ** 2).sum()  # noqa: E731
    assert residual(est) <= residual(m)  # the fit beats even the true transform on noisy data
    mirrored = src * [-1, 1]  # a reflection maps best onto src; a similarity must not
    assert np.linalg.det(estimate_similarity(mirrored, src)[:, :2]) > 0
    with pytest.raises(ValueError, match="one point"):
        estimate_similarity(np.ones((5, 2)), TEMPLATE)


def test_warp_identity_and_integer_shift():
    img = torch.rand(3, 20, 30)
    torch.testing.assert_close(warp_affine(img, similarity(1, 0, 0, 0), (20, 30)), img)
    shifted = warp_affine(img, similarity(1, 0, 5, 2), (20, 30))  # out(x, y) = img(x-5, y-2)
    torch.testing.assert_close(shifted[:, 2:, 5:], img[:, :-2, :-5])
    assert float(shifted[:, :2].abs().max()) < 1e-5  # outside the source: zeros (float32 grid)


def test_align_with_landmarks_puts_points_on_the_template():
    # five bright dots at landmarks of a rotated, shrunk, shifted "face"; after alignment they
    # must land on the template's pixels
    m = similarity(1.8, -15.0, 30.0, 12.0)  # template → image
    pts = apply(m, TEMPLATE)
    img = torch.zeros(3, 260, 260)
    for x, y in np.round(pts).astype(int):
        img[:, y - 1 : y + 2, x - 1 : x + 2] = 1.0
    out = align_with_landmarks(img, np.round(pts))
    assert out.shape == (1, 3, 112, 112)
    for x, y in TEMPLATE:
        patch = out[0, 0, round(y) - 1 : round(y) + 2, round(x) - 1 : round(x) + 2]
        assert float(patch.max()) > 0.5, (x, y)
    assert float(out.sum()) < 3 * 5 * 9  # nothing else lit up
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        align_with_landmarks(img, np.zeros((4, 2)))


# -- MTCNN -------------------------------------------------------------------------------------
def test_mtcnn_detects_and_aligns_lfw_faces(aligner, lfw_images):
    res = aligner.align(lfw_images)
    assert res.faces.shape == (4, 3, 112, 112) and bool(res.detected.all())
    assert res.detection_rate == 1.0
    assert float(res.probs.min()) > 0.95
    for i in range(4):  # least-squares residual of the 5-point fit (turned heads move the nose)
        m = estimate_similarity(res.landmarks[i].numpy(), TEMPLATE)
        assert np.abs(apply(m, res.landmarks[i].numpy()) - TEMPLATE).max() < 10.0
    # end to end: detect again in the aligned crops (padded: MTCNN's landmarks are biased on tight
    # crops); the eyes sit near the template's eyes, and no landmark is off systematically
    pad = 56
    again = FaceAligner(min_face_size=40).align(
        torch.nn.functional.pad(res.faces, (pad,) * 4, value=0.5)
    )
    assert bool(again.detected.all())
    found = again.landmarks.numpy() - pad  # (4, 5, 2) in aligned-crop pixels
    assert np.abs(found[:, :2] - TEMPLATE[:2]).max() < 5.0
    assert np.abs((found - TEMPLATE).mean(axis=0)).max() < 2.0


def test_blank_and_tiny_images_are_reported_undetected(aligner, lfw_images):
    images = [torch.full((3, 250, 250), 0.5), lfw_images[0], torch.rand(3, 10, 12), lfw_images[1]]
    res = aligner.align(images)  # mixed sizes are grouped internally; order is preserved
    assert res.detected.tolist() == [False, True, False, True]
    assert res.num_faces.tolist()[0] == 0 and res.num_faces.tolist()[2] == 0
    assert float(res.faces[0].abs().max()) == 0.0  # no centre-crop fallback
    assert bool(torch.isnan(res.landmarks[0]).all()) and math.isnan(float(res.probs[2]))
    same = aligner.align([lfw_images[1]])
    torch.testing.assert_close(res.faces[3], same.faces[0])


def test_selection_largest_versus_center(lfw_images):
    # canvas 260×520: a big face at the left, a smaller one at the centre
    canvas = torch.full((3, 260, 520), 0.5)
    big = torch.nn.functional.interpolate(lfw_images[0][None], size=(180, 180), mode="area")[0]
    small = torch.nn.functional.interpolate(lfw_images[1][None], size=(120, 120), mode="area")[0]
    canvas[:, 40:220, 0:180] = big
    canvas[:, 70:190, 200:320] = small
    for selection, expected_cx in (("largest", 90), ("center", 260)):
        res = FaceAligner(selection=selection).align([canvas])
        assert int(res.num_faces[0]) >= 2
        box = res.boxes[0].numpy()
        assert abs((box[0] + box[2]) / 2 - expected_cx) < 20, selection
    with pytest.raises(ValueError, match="selection"):
        FaceAligner(selection="middle")  # type: ignore[arg-type]

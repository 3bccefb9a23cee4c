"""ROC / TAR@FAR / EER through scikit-learn equal the hand-written empirical ROC they replaced.

The reference below is the toolkit's former implementation, kept here as the independent written-out
formula (counts of scores ``>=`` each distinct threshold). Scores are real: MobileFaceNet cosines of
LFW development faces (centre crop, no detector), plus undetected probes at ``-inf``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fsr_bench.metrics.recognition import cosine_similarity_matrix, eer, roc, tar_at_far

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reference_roc(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    thr = np.unique(np.concatenate([genuine, impostor]))[::-1]
    tar = (genuine.size - np.searchsorted(np.sort(genuine), thr, side="left")) / genuine.size
    far = (impostor.size - np.searchsorted(np.sort(impostor), thr, side="left")) / impostor.size
    return np.r_[0.0, far], np.r_[0.0, tar], np.r_[np.inf, thr]


def reference_tar_at_far(genuine, impostor, target):
    far, tar, _ = reference_roc(genuine, impostor)
    return float(tar[far <= target].max())


def reference_eer(genuine, impostor):
    far, tar, _ = reference_roc(genuine, impostor)
    diff = (1.0 - tar) - far
    i = int(np.argmax(diff <= 0))
    if diff[i] == 0:
        return float(far[i])
    t = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(far[i - 1] + t * (far[i] - far[i - 1]))


@pytest.fixture(scope="module")
def real_scores(shared_dir):
    from fsr_bench.data.io import read_image
    from fsr_bench.data.resize import imresize
    from fsr_bench.face import create_recogniser

    people = sorted((shared_dir / "data" / "splits" / "lfw_dev.txt").read_text().split())[:12]
    faces, labels = [], []
    for person in people:
        for path in sorted((shared_dir / "data" / "lfw" / person).glob("*.jpg"))[:3]:
            crop = read_image(path)[:, 69:181, 69:181]  # the 112x112 centre of a 250x250 funneled face
            faces.append(imresize(crop, size=(112, 112)).clamp(0, 1))
            labels.append(person)
    rec = create_recogniser("mobilefacenet", weights=shared_dir / "weights" / "mobilefacenet" / "mobilefacenet.pt")
    emb = rec.embed(torch.stack(faces)).numpy()
    labels = np.array(labels)
    sims = cosine_similarity_matrix(emb, emb)
    upper = np.triu(np.ones_like(sims, dtype=bool), k=1)
    same = labels[:, None] == labels[None, :]
    genuine, impostor = sims[upper & same], sims[upper & ~same]
    assert genuine.size >= 12 and impostor.size >= 400 and genuine.mean() > impostor.mean() + 0.2
    return genuine, impostor


@pytest.mark.shared
@pytest.mark.parametrize("undetected", [0, 5], ids=["all-detected", "5-undetected"])
def test_sklearn_roc_equals_the_hand_written_one_on_real_scores(real_scores, undetected):
    genuine, impostor = real_scores
    genuine = np.r_[genuine, np.full(undetected, -np.inf)]
    impostor = np.r_[impostor, np.full(3 * undetected, -np.inf)]
    far, tar, thr = reference_roc(genuine, impostor)
    curve = roc(genuine, impostor)
    np.testing.assert_array_equal(curve.far, far)
    np.testing.assert_array_equal(curve.tar, tar)
    np.testing.assert_array_equal(curve.thresholds, thr)
    for target in (1e-3, 1e-2, 1e-1):
        assert tar_at_far(genuine, impostor, target) == reference_tar_at_far(genuine, impostor, target)
    assert eer(genuine, impostor) == pytest.approx(reference_eer(genuine, impostor), rel=0, abs=1e-15)

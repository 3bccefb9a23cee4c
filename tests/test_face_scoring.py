"""Recognition scores on hand-built cases whose answers are worked out in the comments."""
from __future__ import annotations

import numpy as np
import pytest

from fsr_bench.metrics.recognition import (
    average_similarity,
    bootstrap_ci,
    cmc,
    cosine_similarity_matrix,
    eer,
    matching_accuracy,
    roc,
    tar_at_far,
    verification_accuracy_10fold,
)


# -- cosine ------------------------------------------------------------------------------------
def test_cosine_similarity_matrix_normalises_rows():
    probes = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    gallery = np.array([[1.0, 1.0], [-5.0, 0.0]])
    s = cosine_similarity_matrix(probes, gallery)
    r = 1 / np.sqrt(2)
    np.testing.assert_allclose(s, [[r, -1.0], [r, 0.0], [1.0, -r]], atol=1e-12)


def test_cosine_similarity_rejects_zero_embeddings_and_bad_shapes():
    with pytest.raises(ValueError, match="all zeros"):
        cosine_similarity_matrix(np.zeros((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"\(P, D\)"):
        cosine_similarity_matrix(np.ones((1, 3)), np.ones((1, 4)))


# -- TANet metrics -----------------------------------------------------------------------------
def test_matching_accuracy_counts_undetected_as_not_matched():
    sims = np.array([0.5, 0.4, 0.39, 0.9, np.nan])
    detected = np.array([True, True, True, False, False])
    # matched: 0.5 and 0.4 (>= is inclusive); the undetected 0.9 does not count; denominator 5
    assert matching_accuracy(sims, detected, threshold=0.4) == pytest.approx(2 / 5)
    assert matching_accuracy(sims[:4], None, threshold=0.4) == pytest.approx(3 / 4)


def test_matching_accuracy_reproduces_the_papers_fraction():
    sims = np.r_[np.full(22, 0.45), np.full(100, 0.1), np.full(8, np.nan)]
    detected = np.r_[np.ones(122, bool), np.zeros(8, bool)]
    assert 100 * matching_accuracy(sims, detected) == pytest.approx(16.9231, abs=1e-4)  # 22/130


def test_average_similarity_over_detected_and_none_when_nothing_detected():
    sims = np.array([0.5, 0.4, 0.39, 0.9, np.nan])
    detected = np.array([True, True, True, False, False])
    assert average_similarity(sims, detected) == pytest.approx((0.5 + 0.4 + 0.39) / 3)
    assert average_similarity(sims, np.zeros(5, bool)) is None  # the paper's "-"
    with pytest.raises(ValueError, match="NaN"):
        average_similarity(sims, np.ones(5, bool))
    with pytest.raises(ValueError, match="boolean"):
        matching_accuracy(sims, [1, 1, 1, 0, 0])


# -- CMC ---------------------------------------------------------------------------------------
GALLERY = np.array(["a", "b", "c"])
PROBES = np.array(["a", "b", "c", "a"])
SIMS = np.array(
    [
        [0.9, 0.1, 0.2],  # a: own best → rank 1
        [0.8, 0.5, 0.3],  # b: a outranks → rank 2
        [0.7, 0.6, 0.1],  # c: a and b outrank → rank 3
        [0.5, 0.5, 0.1],  # a: tie with b → pessimistic rank 2
    ]
)


def test_cmc_known_ranks():
    np.testing.assert_allclose(cmc(SIMS, PROBES, GALLERY), [1 / 4, 3 / 4, 1.0])
    np.testing.assert_allclose(cmc(SIMS, PROBES, GALLERY, max_rank=2), [1 / 4, 3 / 4])


def test_cmc_undetected_probes_are_misses_in_the_denominator():
    detected = np.array([False, True, True, True])
    np.testing.assert_allclose(cmc(SIMS, PROBES, GALLERY, detected_mask=detected), [0, 2 / 4, 3 / 4])


def test_cmc_several_gallery_images_per_identity_rank_identities():
    sims = np.array([[0.1, 0.9, 0.5]])  # gallery a, a, b: best "a" image wins → rank 1
    np.testing.assert_allclose(cmc(sims, ["a"], ["a", "a", "b"]), [1.0, 1.0])


def test_cmc_open_set_probe_is_an_error():
    with pytest.raises(ValueError, match="not in the gallery"):
        cmc(np.ones((1, 2)), ["z"], ["a", "b"])


# -- ROC / TAR@FAR / EER -----------------------------------------------------------------------
GEN = np.array([0.9, 0.8, 0.7, 0.3])
IMP = np.array([0.1, 0.2, 0.35, 0.75])


def test_roc_exact_points():
    curve = roc(GEN, IMP)
    np.testing.assert_allclose(curve.thresholds[1:], [0.9, 0.8, 0.75, 0.7, 0.35, 0.3, 0.2, 0.1])
    np.testing.assert_allclose(curve.tar, [0, 0.25, 0.5, 0.5, 0.75, 0.75, 1, 1, 1])
    np.testing.assert_allclose(curve.far, [0, 0, 0, 0.25, 0.25, 0.5, 0.5, 0.75, 1])


def test_tar_at_far_takes_achievable_points():
    assert tar_at_far(GEN, IMP, 0.0) == 0.5
    assert tar_at_far(GEN, IMP, 0.25) == 0.75
    assert tar_at_far(GEN, IMP, 0.49) == 0.75
    assert tar_at_far(GEN, IMP, 0.5) == 1.0


def test_eer_exact_and_interpolated():
    assert eer(GEN, IMP) == pytest.approx(0.25)  # threshold 0.7: FAR = FRR = 1/4
    assert eer([0.8], [0.2]) == 0.0  # separable
    # FRR−FAR goes +0.5 (t=0.6) → −0.5 (t=0.5): halfway, FAR 0 → 1 gives 0.5
    assert eer([0.6, 0.4], [0.5]) == pytest.approx(0.5)


def test_roc_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        roc([0.5, np.nan], [0.1])


# -- bootstrap ---------------------------------------------------------------------------------
def test_bootstrap_is_deterministic_and_brackets_the_estimate():
    values = np.r_[np.ones(30), np.zeros(30)]
    a = bootstrap_ci(values, n=500, seed=7)
    b = bootstrap_ci(values, n=500, seed=7)
    c = bootstrap_ci(values, n=500, seed=8)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)
    assert a.estimate == 0.5 and a.low < 0.5 < a.high
    assert 0.3 < a.low and a.high < 0.7  # ±~0.13 for n=60 Bernoulli(0.5)


def test_bootstrap_constant_values_give_a_zero_width_interval():
    ci = bootstrap_ci(np.full(10, 0.3), n=50, seed=0)
    assert ci.low == pytest.approx(0.3) and ci.high == pytest.approx(0.3)


def test_bootstrap_with_a_metric_over_resampled_subjects():
    # subject i owns probe i of the CMC example; statistic = rank-1 over the drawn subjects' probes
    def rank1(idx: np.ndarray) -> float:
        return float(cmc(SIMS[idx], PROBES[idx], GALLERY, max_rank=1)[0])

    ci = bootstrap_ci(np.arange(4), rank1, n=200, seed=1)
    assert ci.estimate == pytest.approx(0.25)
    assert 0.0 <= ci.low <= 0.25 <= ci.high <= 1.0


# -- LFW 10-fold -------------------------------------------------------------------------------
def test_verification_10fold_separable():
    sims = np.tile([0.8, 0.1], 10)  # each fold: one genuine, one impostor
    same = np.tile([True, False], 10)
    res = verification_accuracy_10fold(sims, same)
    assert res.mean == 1.0 and res.std == 0.0
    assert np.all((res.thresholds > 0.1) & (res.thresholds < 0.8))


def test_verification_10fold_one_bad_fold():
    sims = np.tile([0.8, 0.1], 10)
    sims[1] = 0.9  # fold 0's impostor looks genuine
    same = np.tile([True, False], 10)
    res = verification_accuracy_10fold(sims, same)
    # fold 0 scores 1/2; the others choose a threshold in (0.1, 0.8) despite that outlier → 1
    np.testing.assert_allclose(res.fold_accuracies, [0.5] + [1.0] * 9)
    assert res.mean == pytest.approx(0.95)
    assert res.std == pytest.approx(0.15)  # population std: sqrt((0.45² + 9·0.05²) / 10)


def test_verification_undetected_pairs_as_minus_inf():
    sims = np.tile([0.8, 0.1], 10)
    sims[0] = -np.inf  # genuine pair with an undetected face: counts as rejected
    same = np.tile([True, False], 10)
    res = verification_accuracy_10fold(sims, same)
    assert res.fold_accuracies[0] == 0.5 and res.mean == pytest.approx(0.95)

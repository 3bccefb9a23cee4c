"""Operating points: every expected value is counted by hand in the comment beside it, brute-forced
with plain loops here, or taken from scikit-learn's ``roc_curve`` — never from the code under test."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from fsr_bench.metrics.operating_points import (
    Rate,
    apply_threshold,
    assert_disjoint_subjects,
    calibrate_thresholds,
    false_match_rate,
    open_set_identification,
    operating_point_metrics,
    rate_tag,
    relative_to,
    split_scores,
    with_ratios,
    wrong_identity_rate,
)

NAN = float("nan")


# -- brute-force references (loops over the definitions) -------------------------------------------
def brute_threshold(pos, neg, target):
    """Smallest observed score (or inf) whose share of negatives >= it is <= target."""
    for t in sorted(set(list(pos) + list(neg))) + [math.inf]:
        if sum(1 for x in neg if x >= t) <= target * len(neg) + 1e-9:
            return t
    raise AssertionError("unreachable: inf accepts nothing")


def brute_open_set(s, probe_ids, gallery_ids, target, rank):
    """FPIR and TPIR by loops: per probe, best score per identity, rank of the mate."""
    ids = sorted(set(gallery_ids))
    rows = []
    for i, pid in enumerate(probe_ids):
        if all(math.isnan(v) for v in s[i]):
            rows.append((pid in ids, None, None, None))
            continue
        per = {k: max(s[i][j] for j, g in enumerate(gallery_ids) if g == k) for k in ids}
        if pid in ids:
            r = 1 + sum(1 for k in ids if k != pid and per[k] >= per[pid])
            rows.append((True, per[pid], r, None))
        else:
            rows.append((False, None, None, max(per.values())))
    tops = [r[3] for r in rows if not r[0] and r[3] is not None]
    mates = [r[1] for r in rows if r[0] and r[1] is not None]
    n_unmated = sum(1 for r in rows if not r[0])
    n_mated = len(rows) - n_unmated
    for t in sorted(set(tops + mates)) + [math.inf]:
        if sum(1 for x in tops if x >= t) <= target * n_unmated + 1e-9:
            fpir = sum(1 for x in tops if x >= t) / n_unmated
            tpir = sum(1 for r in rows if r[0] and r[1] is not None and r[2] <= rank and r[1] >= t) / n_mated
            return fpir, tpir


# -- calibration -----------------------------------------------------------------------------------
def test_calibration_hand_example():
    impostor = np.arange(100) / 100  # 0.00 … 0.99
    genuine = np.array([0.985, 0.5, 0.995])
    cal = calibrate_thresholds(genuine, impostor, fars=[0.01, 0.05])
    p1, p5 = cal.points
    # FAR 1 %: at most 1 of 100 impostors may be >= t. 0.985 (a genuine score) leaves only 0.99 above;
    # 0.98 would leave two. TAR: 0.985 and 0.995 of 3 genuine.
    assert p1.threshold == 0.985 and p1.n_false_accepts == 1 and p1.far == 0.01
    assert p1.n_true_accepts == 2 and p1.tar == pytest.approx(2 / 3)
    # FAR 5 %: five impostors allowed: 0.95 … 0.99; 0.95 is the smallest observed score with that
    assert p5.threshold == 0.95 and p5.n_false_accepts == 5
    assert cal.threshold(0.05) == 0.95 and cal.n_impostor == 100 and cal.n_genuine == 3


def test_ties_count_as_accepted():
    # three impostors tie at 0.9: any threshold <= 0.9 accepts all three (>=). With FAR <= 2/10 the
    # smallest threshold is the next observed score above 0.9 — here the genuine 0.95.
    impostor = np.array([0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    cal = calibrate_thresholds([0.95, 0.2], impostor, fars=[0.2])
    assert cal.points[0].threshold == 0.95 and cal.points[0].n_false_accepts == 0
    # no score above the tie: nothing can be accepted without exceeding the target -> +inf
    cal = calibrate_thresholds([0.2], [0.9, 0.9, 0.1, 0.1, 0.1], fars=[0.2])
    assert cal.points[0].threshold == math.inf and cal.points[0].tar == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_calibration_matches_brute_force_and_sklearn_roc(seed):
    rng = np.random.default_rng(seed)
    # rounded scores create many ties between and within classes
    genuine = np.round(rng.normal(0.55, 0.15, size=rng.integers(20, 200)), 2)
    impostor = np.round(rng.normal(0.1, 0.12, size=rng.integers(1000, 3000)), 2)
    fars = (1e-2, 1e-3, 5e-2)
    cal = calibrate_thresholds(genuine, impostor, fars=fars)
    y = np.r_[np.ones(genuine.size), np.zeros(impostor.size)]
    fpr, tpr, thr = roc_curve(y, np.r_[genuine, impostor], drop_intermediate=False)
    for far, point in zip(fars, cal.points):
        assert point.threshold == brute_threshold(genuine, impostor, far)
        # sklearn's thresholds descend and FPR rises, so the admissible points are a prefix; its
        # last point is the smallest threshold meeting the target (the highest TPR there)
        last = np.flatnonzero(fpr <= far + 1e-12)[-1]
        assert point.tar == pytest.approx(tpr[last], abs=1e-12)
        assert point.far == pytest.approx(fpr[last], abs=1e-12)
        # sklearn's first threshold is +inf or max+1 depending on the version: compare real scores
        if point.threshold != math.inf and thr[last] <= max(genuine.max(), impostor.max()):
            assert point.threshold == thr[last]


def test_refuses_fars_below_one_over_impostor_count():
    genuine = np.linspace(0.3, 0.9, 10)
    with pytest.raises(ValueError, match=r"1000 impostor comparisons.*there are 999.*on_insufficient='skip'"):
        calibrate_thresholds(genuine, np.linspace(-0.5, 0.5, 999), fars=[1e-3])
    # exactly 1/FAR impostors is enough: one false accept allowed
    assert len(calibrate_thresholds(genuine, np.linspace(-0.5, 0.5, 1000), fars=[1e-3]).points) == 1
    cal = calibrate_thresholds(genuine, np.linspace(-0.5, 0.5, 999), fars=[1e-2, 1e-3, 1e-4],
                               on_insufficient="skip")
    assert [p.target_far for p in cal.points] == [1e-2]
    assert [s.target for s in cal.skipped] == [1e-3, 1e-4]
    assert "10000 impostor comparisons" in cal.skipped[1].reason
    with pytest.raises(KeyError, match="no threshold for FAR 0.001: FAR = 0.001 needs"):
        cal.threshold(1e-3)


def test_calibration_bad_input():
    with pytest.raises(ValueError, match="finite"):
        calibrate_thresholds([0.5, NAN], np.zeros(100), fars=[0.01])
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        calibrate_thresholds([0.5], np.zeros(100), fars=[0.0])
    with pytest.raises(ValueError, match="on_insufficient"):
        calibrate_thresholds([0.5], np.zeros(100), on_insufficient="ignore")
    with pytest.raises(ValueError, match="genuine and impostor"):
        calibrate_thresholds([], np.zeros(100))


# -- applying a threshold --------------------------------------------------------------------------
def test_apply_threshold_counts_undetected_as_failures():
    genuine = [0.9, 0.4, 0.39, NAN, 0.7]  # at t=0.4: 0.9, 0.4, 0.7 accepted; NaN is a failure
    impostor = [0.5, 0.1, NAN, NAN, 0.4, 0.0, 0.2, 0.3]  # 0.5 and 0.4 falsely accepted
    r = apply_threshold(genuine, impostor, 0.4)
    assert (r.n_true_accepts, r.n_genuine, r.n_genuine_undetected) == (3, 5, 1)
    assert (r.n_false_accepts, r.n_impostor, r.n_impostor_undetected) == (2, 8, 2)
    assert r.tar == 3 / 5 and r.frr == pytest.approx(2 / 5)
    assert r.far == 2 / 8
    assert r.fmr == 2 / 6  # over the 6 detected impostor comparisons
    assert r.fnmr == 1 / 4  # 0.39 of the 4 detected genuine comparisons
    # ISO/IEC 19795-1: FAR = FMR (1 - FTA), FRR = FTA + FNMR (1 - FTA)
    assert r.far == pytest.approx(r.fmr * (1 - 2 / 8))
    assert r.frr == pytest.approx(1 / 5 + r.fnmr * (1 - 1 / 5))


def test_calibrated_threshold_transfers_unchanged():
    rng = np.random.default_rng(3)
    cal = calibrate_thresholds(rng.normal(0.6, 0.1, 300), rng.normal(0.1, 0.1, 5000), fars=[1e-2])
    t = cal.threshold(1e-2)
    eval_imp = rng.normal(0.15, 0.1, 4000)  # an SR method that shifts impostors up
    r = apply_threshold(rng.normal(0.6, 0.1, 200), eval_imp, t)
    assert r.threshold == t
    assert r.n_false_accepts == int(np.sum(eval_imp >= t)) and r.far > 1e-2


# -- SR-induced false matches ----------------------------------------------------------------------
def test_split_scores():
    s = np.array([[0.9, 0.1, 0.2], [0.3, 0.8, 0.4]])
    g, im = split_scores(s, ["a", "b"], ["a", "b", "c"])
    assert sorted(g) == [0.8, 0.9] and sorted(im) == [0.1, 0.2, 0.3, 0.4]


def test_false_match_rate():
    scores = [0.5, 0.41, 0.4, 0.39, NAN]
    assert false_match_rate(scores, 0.4) == Rate(3, 5)  # 0.5, 0.41, 0.4 (ties accepted)
    assert false_match_rate(scores, 0.4, exclude_undetected=True) == Rate(3, 4)


def test_wrong_identity_rate_hand_example():
    gallery = ["a", "a", "b", "c"]  # two images of a
    s = np.array([
        [0.2, 0.9, 0.5, 0.1],  # a: own best 0.9 -> right identity at rank 1
        [0.3, 0.6, 0.55, 0.2],  # b: a scores 0.6 > 0.55 -> wrong, 0.6 >= 0.5
        [0.1, 0.2, 0.45, 0.3],  # c: b scores 0.45 > 0.3 -> wrong but 0.45 < 0.5
        [0.1, 0.2, 0.7, 0.7],  # c: b ties c at 0.7 -> pessimistic tie: wrong, >= 0.5
        [0.51, 0.0, 0.0, 0.0],  # z (not enrolled): top 0.51 >= 0.5 -> wrong
        [NAN, NAN, NAN, NAN],  # undetected: names nobody
    ])
    r = wrong_identity_rate(s, ["a", "b", "c", "c", "z", "a"], gallery, threshold=0.5)
    assert r == Rate(3, 6)


@pytest.mark.parametrize("seed", range(4))
def test_wrong_identity_rate_brute_force(seed):
    rng = np.random.default_rng(seed)
    gallery = list(rng.integers(0, 12, size=20))
    probes = list(rng.integers(0, 15, size=40))  # 12-14 are not enrolled
    s = np.round(rng.uniform(-0.2, 1, size=(40, 20)), 1)  # coarse: many ties
    s[rng.random(40) < 0.15] = NAN
    t = 0.6
    expected = 0
    for i, pid in enumerate(probes):
        if np.isnan(s[i]).all():
            continue
        per = {k: max(s[i][j] for j in range(20) if gallery[j] == k) for k in set(gallery)}
        own = per.get(pid, -math.inf)
        wrong = max(v for k, v in per.items() if k != pid)
        expected += wrong >= own and wrong >= t
    assert wrong_identity_rate(s, probes, gallery, t) == Rate(expected, 40)


def test_relative_to_references():
    rates = {"Bicubic": Rate(4, 100), "HR probes": Rate(0, 100), "TANet": Rate(6, 100), "X": Rate(0, 100)}
    rel = relative_to(rates, ["Bicubic", "HR probes"])
    assert rel["TANet"]["Bicubic"].value == pytest.approx(1.5)  # 6 % / 4 %
    assert rel["TANet"]["HR probes"].value == math.inf  # reference has none
    assert rel["X"]["HR probes"].value is None  # 0 / 0: nothing to compare
    assert rel["X"]["Bicubic"].value == 0.0
    assert rel["TANet"]["Bicubic"].rate == Rate(6, 100) and rel["TANet"]["Bicubic"].reference_rate == Rate(4, 100)
    with pytest.raises(KeyError, match="Bicubc"):
        relative_to(rates, ["Bicubc"])


def test_disjoint_subjects():
    assert_disjoint_subjects(["044", "045"], ["088", "089"])
    with pytest.raises(ValueError, match="share 1 subject"):
        assert_disjoint_subjects(["044", "088"], ["088", "089"])


# -- open-set identification -----------------------------------------------------------------------
def test_open_set_hand_example():
    gallery = ["a", "b", "c"]
    s = np.array([
        [0.9, 0.2, 0.1],  # a mated: rank 1, mate 0.9
        [0.7, 0.6, 0.1],  # b mated: rank 2 (a 0.7 above), mate 0.6
        [0.3, 0.2, 0.5],  # c mated: rank 1, mate 0.5
        [NAN, NAN, NAN],  # c mated, undetected: never identified
        [0.8, 0.1, 0.0],  # x unmated: top 0.8
        [0.1, 0.4, 0.2],  # y unmated: top 0.4
        [0.0, 0.0, 0.55],  # z unmated: top 0.55
        [NAN, NAN, NAN],  # w unmated, undetected: no alarm
    ])
    ids = ["a", "b", "c", "c", "x", "y", "z", "w"]
    r1 = open_set_identification(s, ids, gallery, fpirs=[0.25, 0.5, 1.0], rank=1)
    assert (r1.n_mated, r1.n_unmated, r1.n_mated_undetected, r1.n_unmated_undetected) == (4, 4, 1, 1)
    assert r1.n_closed_set_hits == 2  # a and c at rank 1
    p25, p50, p100 = r1.points
    # FPIR <= 1/4: one alarm allowed (0.8); smallest observed score leaving only 0.8 above: 0.6 (b's mate)
    assert p25.threshold == 0.6 and p25.n_false_alarms == 1 and p25.fpir == 0.25
    assert p25.n_identified == 1 and p25.tpir == 0.25  # a (0.9); c's 0.5 < 0.6; b is rank 2
    # FPIR <= 2/4: 0.8 and 0.55 may alarm, y's 0.4 may not; the smallest observed score above 0.4
    # is c's mate 0.5 -> a and c identified
    assert p50.threshold == 0.5 and p50.n_false_alarms == 2 and p50.n_identified == 2
    # FPIR <= 1: every score allowed; the smallest candidate is 0.4 -> a and c identified
    assert p100.threshold == 0.4 and p100.n_identified == 2 and p100.fpir == 0.75
    r2 = open_set_identification(s, ids, gallery, fpirs=[0.25], rank=2)
    assert r2.points[0].n_identified == 2  # b (rank 2, 0.6 >= 0.6) now counts


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("rank", [1, 3])
def test_open_set_brute_force(seed, rank):
    rng = np.random.default_rng(seed)
    gallery = list(rng.integers(0, 10, size=16)) + [100, 101, 102]  # distractor identities
    probes = list(rng.integers(0, 10, size=30)) + list(rng.integers(50, 60, size=25))
    s = np.round(rng.uniform(0, 1, size=(55, len(gallery))), 2)
    s[rng.random(55) < 0.1] = NAN
    fpirs = (0.04, 0.1, 0.3)
    res = open_set_identification(s, probes, gallery, fpirs=fpirs, rank=rank)
    for f, point in zip(fpirs, res.points):
        fpir, tpir = brute_open_set(s.tolist(), probes, gallery, f, rank)
        assert point.fpir == pytest.approx(fpir) and point.tpir == pytest.approx(tpir)
        assert point.fpir <= f + 1e-12


def test_open_set_refusals():
    s = np.array([[0.9, 0.1], [0.2, 0.3]])
    with pytest.raises(ValueError, match=r"100 unmated probes.*there are 1\."):
        open_set_identification(s, ["a", "x"], ["a", "b"], fpirs=[0.01])  # FPIR 1 % of 1 probe
    r = open_set_identification(s, ["a", "x"], ["a", "b"], fpirs=[0.01, 1.0], on_insufficient="skip")
    assert [p.target_fpir for p in r.points] == [1.0] and r.skipped[0].target == 0.01
    with pytest.raises(ValueError, match="needs mated and unmated"):
        open_set_identification(s, ["a", "b"], ["a", "b"])
    with pytest.raises(ValueError, match="partly NaN"):
        open_set_identification(np.array([[0.9, NAN], [0.2, 0.3]]), ["a", "x"], ["a", "b"], fpirs=[1.0])
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        open_set_identification(s, ["a", "x"], ["a", "b", "c"])
    with pytest.raises(ValueError, match="rank"):
        open_set_identification(s, ["a", "x"], ["a", "b"], fpirs=[1.0], rank=0)


def test_minus_inf_means_no_score():
    # an undetected gallery face scored -inf: never a wrong rank 1, never an alarm, never a threshold
    gallery = ["a", "b"]
    s = np.array([[0.7, -np.inf], [-np.inf, -np.inf], [0.2, -np.inf]])
    assert wrong_identity_rate(s, ["a", "b", "x"], gallery, 0.1) == Rate(1, 3)  # only x (0.2 from a)
    r = open_set_identification(s, ["a", "b", "x"], gallery, fpirs=[1.0])
    assert r.points[0].threshold == 0.2  # the smallest finite score, not -inf
    assert r.points[0].n_identified == 1  # a; b's mate has no score


def test_open_set_at_fixed_thresholds():
    gallery = ["a", "b"]
    s = np.array([[0.9, 0.1], [0.3, 0.5], [0.6, 0.2], [0.45, 0.1]])
    r = open_set_identification(s, ["a", "b", "x", "y"], gallery, fpirs=[], at_thresholds=[0.5, 0.7])
    p5, p7 = r.at_thresholds
    assert p5.target_fpir is None and p5.threshold == 0.5
    assert (p5.n_false_alarms, p5.n_identified) == (1, 2)  # x's 0.6 alarms; a 0.9 and b 0.5 identified
    assert (p7.n_false_alarms, p7.n_identified) == (0, 1)


def test_rate_tag():
    assert [rate_tag(x) for x in (1e-2, 1e-3, 1e-4, 0.1, 0.3, 0.05)] == ["1e-2", "1e-3", "1e-4", "0.1", "0.3", "0.05"]


def _row_example():
    gallery = ["a", "b", "c"]
    s = np.array([
        [0.8, 0.45, 0.1],  # a: genuine 0.8; impostors 0.45, 0.1
        [0.5, 0.35, 0.2],  # b: genuine 0.35; a's 0.5 outranks it
        [NAN, NAN, NAN],  # c: undetected
        [0.42, 0.3, 0.6],  # x: not enrolled, top 0.6
        [0.1, 0.2, 0.3],  # y: not enrolled, top 0.3
    ])
    return s, ["a", "b", "c", "x", "y"], gallery


def test_operating_point_metrics_fields_and_columns():
    s, probes, gallery = _row_example()
    # calibration: 100 impostors 0.00 … 0.99 and genuine [0.995]: FAR 1e-2 -> threshold 0.99 (one
    # impostor at 0.99 allowed; 0.98 would leave two); FAR 1e-3 not measurable with 100
    cal = calibrate_thresholds([0.995], np.arange(100) / 100, fars=[1e-2, 1e-3], on_insufficient="skip")
    row = operating_point_metrics(s, probes, gallery, cal, fixed_threshold=0.4, fpirs=[0.5], ranks=[1, 2])
    ops = row.points
    # comparisons: 5 probes x 3 gallery = 15; genuine a, b, c = 3; impostors 12 (3 NaN of them)
    assert (ops.n_genuine, ops.n_impostor) == (3, 12)
    c = ops.at_far(1e-2)
    assert c is not None and ops.at_far(1e-3) is None and len(ops.calibrated) == 1
    assert c.threshold == 0.99 and c.far == 0 and c.tar == 0 and c.wrong_id == 0
    # at 0.4: impostors >= 0.4: a-b 0.45, b-a 0.5, x-a 0.42, x-c 0.6 -> 4 of 12
    assert ops.fixed.threshold == 0.4 and ops.fixed.n_false_accepts == 4 and ops.fixed.far == pytest.approx(4 / 12)
    # wrong rank 1 >= 0.4: b (a 0.5), x (c 0.6); not y (0.3), not a (own best) -> 2 of 5
    assert (ops.fixed.n_wrong_id, ops.fixed.wrong_id) == (2, 2 / 5)
    assert "FAR = 0.001 needs at least 1000 impostor" in ops.unavailable["far_cal_1e-3"]
    # open set: mated a, b, c; unmated x (top 0.6), y (0.3). FPIR <= 1/2: one alarm; smallest observed
    # score leaving only 0.6 above is 0.35 (b's mate) -> rank 1: a (0.8); rank 2: a and b (0.35, rank 2)
    f = ops.at_fpir(0.5)
    assert f is not None and (ops.n_mated, ops.n_unmated, f.threshold, f.fpir) == (3, 2, 0.35, 0.5)
    assert f.tpir[1] == pytest.approx(1 / 3) and f.tpir[2] == pytest.approx(2 / 3)
    # at the calibrated 0.99 nobody alarms and nobody is identified
    assert (c.fpir, c.tpir[1]) == (0, 0)
    assert row.rates[("at", 0.4, "far")] == Rate(4, 12) and row.rates[("at", 0.4, "wrong_id")] == Rate(2, 5)
    # the flat spelling of report headers and of results files before schema version 2
    m = ops.columns()
    assert (m["threshold_cal_1e-2"], m["n_false_accepts_at_0.4"], m["tpir2_fpir_0.5"], m["fpir_cal_1e-2"]) == \
        (0.99, 4, f.tpir[2], 0)
    assert "threshold_cal_1e-3" not in m


def test_operating_point_metrics_closed_set_and_ratios():
    s, probes, gallery = _row_example()
    keep = [0, 1, 2]  # only enrolled probes: closed set
    cal = calibrate_thresholds([0.9], np.linspace(0, 0.5, 100), fars=[1e-2])
    sr = operating_point_metrics(s[keep], [probes[i] for i in keep], gallery, cal, fpirs=[0.1])
    assert "closed set" in sr.points.unavailable["fpir_0.1"] and sr.points.n_unmated is None
    assert "n_unmated" not in sr.points.columns()
    hr = operating_point_metrics(np.array([[0.9, 0.1, 0.0], [0.1, 0.9, 0.2], [0.0, 0.41, 0.8]]),
                                 ["a", "b", "c"], gallery, cal, fpirs=[0.1])
    # false accepts at 0.4: SR row 2 of 6 (0.45, 0.5); HR row 1 of 6 (0.41)
    rel = with_ratios({"TANet": sr, "HR probes": hr}, ["HR probes"])
    assert rel["TANet"].fixed.far_vs["HR probes"] == pytest.approx((2 / 6) / (1 / 6))
    # wrong identity at 0.4: SR b (a 0.5) = 1 of 3; HR none -> k/0 = inf: no JSON number, the reason instead
    assert rel["TANet"].fixed.wrong_id_vs["HR probes"] is None
    assert "ratio infinite" in rel["TANet"].unavailable["wrong_id_at_0.4_vs_HR probes"]
    assert rel["HR probes"].fixed.wrong_id_vs["HR probes"] is None  # 0/0
    assert "no ratio" in rel["HR probes"].unavailable["wrong_id_at_0.4_vs_HR probes"]
    assert rel["TANet"].columns()["far_cal_1e-2_vs_HR probes"] == rel["TANet"].calibrated[0].far_vs["HR probes"]

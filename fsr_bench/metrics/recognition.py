"""Recognition scores — pure NumPy functions (ROC from scikit-learn), no I/O, no models.

Conventions, chosen once here so every report agrees:

* similarity is cosine similarity; higher means "more likely the same person"; a pair is accepted
  when ``similarity >= threshold`` (the TANet paper's rule: "greater than or equal to o");
* probes whose face was **not detected** stay in every denominator and count as failures (not
  matched, not identified): a super-resolver that makes faces undetectable must not score better
  by shrinking the test set. The one exception is :func:`average_similarity`, which is undefined
  for a face that was never embedded; see there;
* ties are broken pessimistically (an impostor as similar as the genuine match outranks it).

References: TANet (Wang et al., arXiv:2109.08174, SCface matching accuracy / average similarity at
threshold 0.4); LFW "unrestricted" 10-fold protocol (Huang et al., LFW tech. report 07-49, 2007);
CMC / ROC / EER as in ISO/IEC 19795-1; subject-level bootstrap as in e.g. Bolle, Ratha, Pankanti,
"Error analysis of pattern recognition systems — the subsets bootstrap", CVIU 2004.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "cosine_similarity_matrix",
    "matching_accuracy",
    "average_similarity",
    "cmc",
    "ROC",
    "roc",
    "tar_at_far",
    "eer",
    "BootstrapCI",
    "bootstrap_ci",
    "VerificationResult",
    "verification_accuracy_10fold",
    "RowScores",
    "score_row",
    "subject_scores",
]

CMC_RANKS = 10
ROC_POINTS = 200


# -- helpers -----------------------------------------------------------------------------------
def _vector(x: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    return a


def _mask(mask: ArrayLike | None, n: int, name: str = "detected_mask") -> np.ndarray:
    if mask is None:
        return np.ones(n, dtype=bool)
    m = np.asarray(mask)
    if m.shape != (n,) or m.dtype != bool:
        raise ValueError(f"{name} must be a boolean array of shape ({n},); got {m.dtype} {m.shape}")
    return m


# -- similarity --------------------------------------------------------------------------------
def cosine_similarity_matrix(probes: ArrayLike, gallery: ArrayLike) -> np.ndarray:
    """``(P, D)`` × ``(G, D)`` → ``(P, G)`` cosine similarities.

    Rows are L2-normalised here even if the recogniser already did, so that embeddings from any
    source (an ONNX model, a cache file) give true cosines. A zero row has no direction: error.
    """
    p = np.asarray(probes, dtype=np.float64)
    g = np.asarray(gallery, dtype=np.float64)
    if p.ndim != 2 or g.ndim != 2 or p.shape[1] != g.shape[1]:
        raise ValueError(f"need (P, D) and (G, D) embeddings; got {p.shape} and {g.shape}")
    pn, gn = np.linalg.norm(p, axis=1), np.linalg.norm(g, axis=1)
    if (pn == 0).any() or (gn == 0).any():
        raise ValueError(
            "an embedding is all zeros (cosine undefined); undetected faces must be masked out, "
            "not embedded as zero crops"
        )
    return (p / pn[:, None]) @ (g / gn[:, None]).T


# -- the TANet paper's SCface metrics ----------------------------------------------------------
def matching_accuracy(
    genuine_sims: ArrayLike, detected_mask: ArrayLike | None = None, threshold: float = 0.4
) -> float:
    """Share of **all** probes whose similarity to their own gallery face is ``>= threshold``.

    ``genuine_sims[i]``: similarity of probe i to its subject's enrolment (any value, even NaN,
    where not detected). Undetected probes count as not matched (TANet: 22/130 = 16.9231 %).
    """
    s = _vector(genuine_sims, "genuine_sims")
    m = _mask(detected_mask, s.size)
    if s.size == 0:
        raise ValueError("no probes")
    if np.isnan(s[m]).any():
        raise ValueError("a detected probe has a NaN similarity")
    return float(np.count_nonzero(m & (np.where(m, s, -np.inf) >= threshold)) / s.size)


def average_similarity(
    genuine_sims: ArrayLike, detected_mask: ArrayLike | None = None
) -> float | None:
    """Mean genuine similarity over the **detected** probes; ``None`` when none was detected.

    The TANet paper averages the similarities of the faces that reached the recogniser and prints
    "-" when no face was detected (its "LR image" row); an undetected face has no embedding, so no
    similarity to average. ``None`` is that "-". Report the detection rate beside this number: a
    method that loses hard faces to the detector can raise it.
    """
    s = _vector(genuine_sims, "genuine_sims")
    m = _mask(detected_mask, s.size)
    if not m.any():
        return None
    if np.isnan(s[m]).any():
        raise ValueError("a detected probe has a NaN similarity")
    return float(s[m].mean())


# -- identification ----------------------------------------------------------------------------
def cmc(
    sim_matrix: ArrayLike,
    probe_labels: ArrayLike,
    gallery_labels: ArrayLike,
    max_rank: int | None = None,
    detected_mask: ArrayLike | None = None,
) -> np.ndarray:
    """Cumulative match characteristic: ``out[k-1]`` = share of probes identified within rank k.

    Closed set: every probe label must occur in the gallery. With several gallery entries per label
    the best-scoring one represents it (ranks count identities, not images). A probe's rank is
    1 + the number of *other identities* whose best similarity is ``>=`` its own identity's
    (pessimistic ties). Undetected probes (``detected_mask`` False) are misses at every rank and
    stay in the denominator. ``max_rank`` defaults to the number of gallery identities.
    """
    s = np.asarray(sim_matrix, dtype=np.float64)
    pl, gl = np.asarray(probe_labels), np.asarray(gallery_labels)
    if s.ndim != 2 or s.shape != (pl.size, gl.size):
        raise ValueError(
            f"sim_matrix must be (P, G) = ({pl.size}, {gl.size}) for the given labels; got {s.shape}"
        )
    m = _mask(detected_mask, pl.size)
    ids, gl_idx = np.unique(gl, return_inverse=True)
    n_ids = ids.size
    max_rank = n_ids if max_rank is None else int(max_rank)
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    missing = set(pl[m].tolist()) - set(ids.tolist())
    if missing:
        raise ValueError(f"closed-set CMC: probe labels not in the gallery: {sorted(missing)[:10]}")
    # best similarity per gallery identity: (P, n_ids)
    per_id = np.full((pl.size, n_ids), -np.inf)
    for j in range(n_ids):
        per_id[:, j] = s[:, gl_idx == j].max(axis=1)
    hits = np.zeros(max_rank)
    for i in np.flatnonzero(m):
        own = int(np.searchsorted(ids, pl[i]))
        if np.isnan(per_id[i]).any():
            raise ValueError(f"probe {i} is marked detected but has NaN similarities")
        rank = 1 + int(np.count_nonzero(np.delete(per_id[i], own) >= per_id[i, own]))
        if rank <= max_rank:
            hits[rank - 1:] += 1
    return hits / pl.size


# -- verification curves -----------------------------------------------------------------------
class ROC(NamedTuple):
    """Operating points for thresholds in decreasing order; starts at (0, 0), ends at (1, 1)."""

    far: np.ndarray  # false accept rate: share of impostor scores >= threshold
    tar: np.ndarray  # true accept rate: share of genuine scores >= threshold
    thresholds: np.ndarray  # +inf, then every distinct score, descending


def roc(genuine: ArrayLike, impostor: ArrayLike) -> ROC:
    """Exact empirical ROC: one point per distinct score (no binning, no interpolation).

    ``sklearn.metrics.roc_curve`` with every threshold kept (``drop_intermediate=False``); a score
    is accepted when ``>= threshold``. scikit-learn refuses infinite scores, so ``-inf`` (an
    undetected face: rejected at every threshold) enters as a finite value below every other score
    and its threshold is reported as ``-inf`` again — the operating points are unchanged.
    """
    from sklearn.metrics import roc_curve

    g, im = _vector(genuine, "genuine"), _vector(impostor, "impostor")
    if g.size == 0 or im.size == 0:
        raise ValueError("roc needs at least one genuine and one impostor score")
    if np.isnan(g).any() or np.isnan(im).any():
        raise ValueError("scores contain NaN; mask undetected faces before building a ROC")
    scores = np.concatenate([g, im])
    finite = scores[np.isfinite(scores)]
    lo = (finite.min() if finite.size else 0.0) - 1.0
    hi = (finite.max() if finite.size else 0.0) + 1.0
    ranked = np.where(scores == -np.inf, lo, np.where(scores == np.inf, hi, scores))
    truth = np.concatenate([np.ones(g.size, dtype=bool), np.zeros(im.size, dtype=bool)])
    far, tar, thr = roc_curve(truth, ranked, drop_intermediate=False)
    thr = np.where(thr == lo, -np.inf, np.where(thr == hi, np.inf, thr))
    thr[0] = np.inf  # the 'reject all' point
    return ROC(far=far.astype(np.float64), tar=tar.astype(np.float64), thresholds=thr.astype(np.float64))


def tar_at_far(genuine: ArrayLike, impostor: ArrayLike, far: float) -> float:
    """Highest TAR among thresholds whose FAR is ``<= far`` (no interpolation: achievable points).

    With n impostor scores FAR moves in steps of 1/n; asking for a FAR below 1/n returns the TAR at
    FAR = 0, which is honest but noisy — report the impostor count with it.
    """
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must be in [0, 1], got {far}")
    curve = roc(genuine, impostor)
    return float(curve.tar[curve.far <= far].max())


def eer(genuine: ArrayLike, impostor: ArrayLike) -> float:
    """Equal error rate: where FAR equals FRR (= 1 − TAR) along the empirical ROC.

    If a threshold gives FAR == FRR exactly, that value; otherwise linear interpolation between the
    two neighbouring operating points where FRR − FAR changes sign.
    """
    curve = roc(genuine, impostor)
    far, frr = curve.far, 1.0 - curve.tar
    diff = frr - far  # starts at +1 (reject all), ends at -1 (accept all), non-increasing
    i = int(np.argmax(diff <= 0))
    if diff[i] == 0:  # i > 0 always: diff[0] = 1 (the 'reject all' point)
        return float(far[i])
    t = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(far[i - 1] + t * (far[i] - far[i - 1]))


# -- uncertainty -------------------------------------------------------------------------------
@dataclass(frozen=True)
class BootstrapCI:
    estimate: float  # the statistic on the full sample
    low: float  # alpha/2 percentile of the bootstrap distribution
    high: float  # 1 - alpha/2 percentile
    n_resamples: int
    alpha: float
    seed: int


def bootstrap_ci(
    per_subject: ArrayLike,
    statistic: Callable[[np.ndarray], float] | None = None,
    *,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> BootstrapCI:
    """Percentile bootstrap confidence interval, resampling **subjects** with replacement.

    Images of one person are correlated, so resampling images would understate the uncertainty;
    subjects are the independent units. Two ways to call it:

    * ``bootstrap_ci(values)`` — one value per subject (e.g. 1.0 / 0.0 "matched"), statistic = mean;
    * ``bootstrap_ci(np.arange(S), lambda idx: metric_over(idx))`` — ``statistic`` receives the
      resampled rows of ``per_subject`` (here subject indices, possibly repeated) and computes any
      metric, e.g. rank-1 CMC over the probes of those subjects.

    Deterministic for a given ``seed`` (NumPy ``default_rng``).
    """
    data = np.asarray(per_subject)
    if data.ndim == 0 or data.shape[0] == 0:
        raise ValueError("bootstrap_ci needs at least one subject")
    if n < 1 or not 0.0 < alpha < 1.0:
        raise ValueError(f"need n >= 1 and 0 < alpha < 1; got n={n}, alpha={alpha}")
    stat = statistic if statistic is not None else (lambda rows: float(np.mean(rows)))
    rng = np.random.default_rng(seed)
    s = data.shape[0]
    draws = rng.integers(0, s, size=(n, s))
    values = np.array([float(stat(data[d])) for d in draws])
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return BootstrapCI(float(stat(data)), float(low), float(high), n, alpha, seed)


# -- LFW-style verification ----------------------------------------------------------------------
@dataclass(frozen=True)
class VerificationResult:
    mean: float  # mean held-out accuracy over folds
    std: float  # population std over folds (ddof=0, as insightface / facenet report)
    fold_accuracies: np.ndarray  # (n_folds,)
    thresholds: np.ndarray  # (n_folds,) threshold chosen on the other folds


def _best_threshold(sims: np.ndarray, same: np.ndarray) -> float:
    """Threshold maximising accuracy of ``sims >= t``; midpoints between distinct scores."""
    u = np.unique(sims)
    cands = np.concatenate([[u[0] - 1.0], (u[:-1] + u[1:]) / 2, [u[-1] + 1.0]])
    pos_sorted, neg_sorted = np.sort(sims[same]), np.sort(sims[~same])
    tp = pos_sorted.size - np.searchsorted(pos_sorted, cands, side="left")  # same & accepted
    tn = np.searchsorted(neg_sorted, cands, side="left")  # different & rejected
    return float(cands[int(np.argmax(tp + tn))])


def verification_accuracy_10fold(
    sims: ArrayLike, is_same: ArrayLike, n_folds: int = 10
) -> VerificationResult:
    """LFW protocol: for each fold, the threshold that is best on the other folds is applied to it.

    Folds are contiguous blocks in the given order (as LFW's ``pairs.txt`` and insightface's
    ``KFold(shuffle=False)``), so order the pairs so that each block is balanced — and ideally
    identity-disjoint, as LFW's folds are. Give pairs where a face was not detected a similarity
    of ``-np.inf`` ("no match": wrong for a genuine pair, right for an impostor) — do not drop them.
    """
    s = _vector(sims, "sims")
    same = np.asarray(is_same)
    if same.shape != s.shape or same.dtype != bool:
        raise ValueError(f"is_same must be a boolean array shaped like sims {s.shape}")
    if np.isnan(s).any():
        raise ValueError("sims contain NaN; give undetected pairs a 'no match' similarity")
    if not 2 <= n_folds <= s.size:
        raise ValueError(f"n_folds must be in [2, {s.size}], got {n_folds}")
    folds = np.array_split(np.arange(s.size), n_folds)
    accs, thrs = [], []
    for k, test in enumerate(folds):
        train = np.concatenate([f for j, f in enumerate(folds) if j != k])
        t = _best_threshold(s[train], same[train])
        accs.append(float(np.mean((s[test] >= t) == same[test])))
        thrs.append(t)
    a = np.array(accs)
    return VerificationResult(float(a.mean()), float(a.std()), a, np.array(thrs))


# -- one row of a recognition run (probes x gallery) --------------------------------------------------------------------------------
@dataclass
class RowScores:
    """Everything scored for one row; ``similarity``/``rank`` are None where not scorable."""

    metrics: dict[str, Any]
    ci95: dict[str, list[float]]
    per_distance: dict[str, dict[str, Any]]
    per_camera: dict[str, dict[str, Any]]
    roc: dict[str, list[float]]
    cmc: list[float]
    similarity: list[float | None]
    matched: list[bool]
    rank: list[int | None]
    unavailable: dict[str, str] = field(default_factory=dict)
    n_impostor_pairs: int = 0


def _group_scores(mask: np.ndarray, matched: np.ndarray, scored: np.ndarray, own: np.ndarray,
                  detected: np.ndarray) -> dict[str, Any]:
    n = int(mask.sum())
    s = mask & scored
    return {
        "matching_accuracy": float(matched[mask].sum() / n) if n else None,
        "average_similarity": float(own[s].mean()) if s.any() else None,
        "detection_rate": float(detected[mask].mean()) if n else None,
        "n_probes": n,
    }


def _roc_points(genuine: np.ndarray, impostor: np.ndarray) -> dict[str, list[float]]:
    """≤ ROC_POINTS achievable (FAR, TAR) points on a log-spaced FAR grid (for log-x ROC plots)."""
    curve = roc(genuine, impostor)
    lowest = min(1.0, 1.0 / impostor.size)
    grid = np.concatenate([[0.0], np.logspace(math.log10(lowest), 0.0, ROC_POINTS - 1)])
    tar = [float(curve.tar[curve.far <= f + 1e-15].max()) for f in grid]
    return {"far": [float(f) for f in grid], "tar": tar}


def subject_scores(sims: np.ndarray, det_g: np.ndarray, gallery_subject: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(P, G images) similarities → (P, S subjects): each subject's best detected image (``-inf``
    where none of its images was detected), and which subjects have a detected image.

    The multi-image gallery convention (TinyFace Gallery_Match, QMUL-SurvFace gallery): every
    gallery image is embedded and compared on its own — no template fusion — as the official
    TinyFace evaluation does (``test_face_identification.m``: one gallery row per Gallery_Match /
    Gallery_Distractor image); a subject's score is the maximum over its images, so ranks count
    subjects (NIST FRVT 1:N candidate lists; :mod:`fsr_bench.metrics.operating_points`).
    """
    g = np.asarray(gallery_subject, dtype=np.int64)
    det_g = np.asarray(det_g, bool)
    if g.ndim != 1 or g.size != sims.shape[1] or det_g.shape != g.shape:
        raise ValueError(f"gallery_subject needs one subject index per gallery image ({sims.shape[1]}), got {g.shape}")
    n_s = int(g.max()) + 1 if g.size else 0
    if n_s and set(np.unique(g).tolist()) != set(range(n_s)):
        raise ValueError("gallery_subject must index subjects 0..S-1, each with at least one image")
    out = np.full((sims.shape[0], n_s), -np.inf)
    for col in range(n_s):  # S column maxima; a handful of images per subject
        members = np.flatnonzero((g == col) & det_g)
        if members.size:
            out[:, col] = sims[:, members].max(axis=1)
    return out, np.bincount(g, weights=det_g.astype(float), minlength=n_s) > 0


def score_row(emb_p: np.ndarray, det_p: np.ndarray, emb_g: np.ndarray, det_g: np.ndarray,
              subject_index: np.ndarray, threshold: float = 0.4, *, distances: Sequence[str] | None = None,
              cameras: Sequence[str] | None = None, bootstrap_n: int = 1000,
              bootstrap_seed: int = 0, gallery_subject: np.ndarray | None = None) -> RowScores:
    """Score P probes against S gallery subjects. Pure NumPy.

    One gallery embedding per subject, or with ``gallery_subject`` (the subject column of each
    gallery image) several: each image is scored and a subject counts with its best image
    (:func:`subject_scores`). ``subject_index[i]`` is the subject column of probe i's subject. See
    the module docstring for how undetected probes and gallery faces enter each number.
    """
    det_p, det_g = np.asarray(det_p, bool), np.asarray(det_g, bool)
    subj = np.asarray(subject_index, dtype=np.int64)
    n_p = det_p.size
    if n_p == 0:
        raise ValueError("no probes to score")
    sims = np.full((n_p, det_g.size), -np.inf)
    rows, cols = np.flatnonzero(det_p), np.flatnonzero(det_g)
    if rows.size and cols.size:
        sims[np.ix_(rows, cols)] = cosine_similarity_matrix(np.asarray(emb_p)[rows], np.asarray(emb_g)[cols])
    if gallery_subject is not None:
        sims, det_g = subject_scores(sims, det_g, gallery_subject)
    n_g = det_g.size
    arange = np.arange(n_p)
    own = sims[arange, subj]
    scored = det_p & det_g[subj]
    genuine_nan = np.where(scored, own, np.nan)
    ma = matching_accuracy(genuine_nan, scored, threshold)
    avg = average_similarity(genuine_nan, scored)
    matched = scored & (own >= threshold)
    # rank of the own identity: 1 + other identities at least as similar (pessimistic ties)
    ge = sims >= own[:, None]
    ge[arange, subj] = False
    rank = np.where(scored, 1 + ge.sum(axis=1), 0)
    cmc_curve = cmc(sims, subj, np.arange(n_g), max_rank=CMC_RANKS, detected_mask=scored)
    unavailable: dict[str, str] = {}
    if avg is None:
        unavailable["average_similarity"] = "no probe face reached the recogniser (the paper prints '-')"
    genuine = np.where(scored, own, -np.inf)
    other = np.ones((n_p, n_g), dtype=bool)
    other[arange, subj] = False
    impostor = sims[other]
    tar2 = tar3 = eer_value = None
    roc_pts: dict[str, list[float]] = {"far": [], "tar": []}
    if impostor.size:
        tar2 = tar_at_far(genuine, impostor, 1e-2)
        tar3 = tar_at_far(genuine, impostor, 1e-3)
        eer_value = eer(genuine, impostor)
        roc_pts = _roc_points(genuine, impostor)
    else:
        for key in ("tar_at_far_1e-2", "tar_at_far_1e-3", "eer"):
            unavailable[key] = "one gallery subject: there are no impostor pairs"
    metrics = {
        "matching_accuracy": ma,
        "average_similarity": avg,
        "detection_rate": float(det_p.mean()),
        "rank1": float(cmc_curve[0]),
        "rank5": float(cmc_curve[min(5, CMC_RANKS) - 1]),
        "rank20": float(np.mean(scored & (rank <= 20))),  # TinyFace's third rank; beyond the stored CMC
        "tar_at_far_1e-2": tar2,
        "tar_at_far_1e-3": tar3,
        "eer": eer_value,
        "n_probes": int(n_p),
        "n_matched": int(matched.sum()),
    }
    # subject-level bootstrap: ratio of sums over resampled subjects
    ci95: dict[str, list[float]] = {}
    if bootstrap_n > 0:
        uniq, inv = np.unique(subj, return_inverse=True)
        count = np.bincount(inv, minlength=uniq.size).astype(float)
        hits = np.bincount(inv, weights=matched.astype(float), minlength=uniq.size)
        top1 = np.bincount(inv, weights=(scored & (rank == 1)).astype(float), minlength=uniq.size)
        n_sc = np.bincount(inv, weights=scored.astype(float), minlength=uniq.size)
        s_sum = np.bincount(inv, weights=np.where(scored, own, 0.0), minlength=uniq.size)

        def ratio(num: np.ndarray, den: np.ndarray) -> Callable[[np.ndarray], float]:
            return lambda idx: float(num[idx].sum() / den[idx].sum()) if den[idx].sum() > 0 else math.nan

        for key, stat in (("matching_accuracy", ratio(hits, count)), ("rank1", ratio(top1, count)),
                          ("average_similarity", ratio(s_sum, n_sc))):
            if metrics[key] is None:
                continue
            ci = bootstrap_ci(np.arange(uniq.size), stat, n=bootstrap_n, seed=bootstrap_seed)
            if math.isfinite(ci.low) and math.isfinite(ci.high):
                ci95[key] = [ci.low, ci.high]
            else:
                unavailable[f"ci95.{key}"] = "some bootstrap resamples had no detected probe"

    def groups(labels: Sequence[str] | None) -> dict[str, dict[str, Any]]:
        lab = np.asarray(labels if labels is not None else ["all"] * n_p)
        return {g: _group_scores(lab == g, matched, scored, own, det_p) for g in sorted(set(lab.tolist()))}

    return RowScores(
        metrics=metrics, ci95=ci95, per_distance=groups(distances), per_camera=groups(cameras),
        roc=roc_pts, cmc=[float(v) for v in cmc_curve],
        similarity=[float(own[i]) if scored[i] else None for i in range(n_p)],
        matched=[bool(v) for v in matched], rank=[int(r) if scored[i] else None for i, r in enumerate(rank)],
        unavailable=unavailable, n_impostor_pairs=int(impostor.size),
    )

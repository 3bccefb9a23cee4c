"""Operating points that transfer: calibrated thresholds, SR-induced false matches, open-set search.

Pure NumPy, no I/O, no models. Scores are similarities (higher = more likely the same person) and
a comparison is **accepted when ``score >= threshold``** — the rule of the rest of fsr-bench and of
the TANet paper.

Why this module exists: re-fitting a threshold on each method's own test scores (what a plain
TAR@FAR does) gives every super-resolver its own operating point, so a method that shifts all
scores up is not penalised for the false matches that shift causes. A deployed system has *one*
threshold, chosen once on data it is not evaluated on (ISO/IEC 19795-1, "decision threshold";
NIST FRVT/FRTE 1:1 reports FNMR at a threshold fixed from impostor scores). So:

1. :func:`calibrate_thresholds` chooses the threshold per target FAR on a **calibration** set
   (HR-vs-HR comparisons of subjects disjoint from the evaluation subjects);
2. :func:`apply_threshold` applies it **unchanged** to every evaluation row and reports the FAR
   actually reached, TAR/FRR and FMR/FNMR with the counts behind them;
3. :func:`false_match_rate` and :func:`wrong_identity_rate` measure the risk SR is feared for —
   a hallucinated face matching the wrong person — and :func:`relative_to` states them as
   ratios to reference rows (bicubic, HR probes), counts included;
4. :func:`open_set_identification` scores 1:N search with probes of non-enrolled subjects:
   FPIR from the unmated probes' top score, TPIR (= DIR) at rank r at the threshold giving each
   FPIR (NIST FRVT 1:N, Grother et al. NISTIR 8271; QMUL-SurvFace reports TPIR20@FPIR, Cheng et
   al., "Surveillance Face Recognition Challenge", arXiv:1804.09691, 2018);
5. :func:`operating_point_metrics` gathers all of these for one row (model or reference) as a
   structured :class:`fsr_bench.results.OperatingPoints`, and :func:`with_ratios` adds the
   false-match ratios between rows.

Undetected faces are NaN scores (a whole NaN row in a score matrix). They stay in every
denominator, as everywhere in fsr-bench: a super-resolver that makes faces undetectable must not
look better by shrinking the test set. An undetected **genuine** comparison / mated probe is a
failure (rejected, not identified); an undetected **impostor** comparison / unmated probe raises
no alarm (it cannot match anyone). ISO/IEC 19795-1 names the rates that count failures to
acquire this way the *system-level* rates — FAR = FMR·(1 − FTA), FRR = FTA + FNMR·(1 − FTA) —
and the rates over acquired comparisons only FMR / FNMR; both are reported.

Threshold rule (one rule, used by :func:`calibrate_thresholds` and :func:`open_set_identification`):
the threshold for a target rate ``a`` on ``n`` negative scores is **the smallest observed score
t (positive or negative) whose empirical rate ``#{negative >= t} / n`` is ``<= a``**, or ``+inf``
when even the highest score is tied by too many negatives. Rates only change at observed scores,
so this is the operating point with the highest positive acceptance among all thresholds that
meet the target — the point ``sklearn.metrics.roc_curve`` and fsr-bench's ``tar_at_far`` select. A target with ``a · n < 1`` is not measurable (one false accept already exceeds it): it is
refused with a :class:`ValueError`, or skipped with the reason recorded when
``on_insufficient="skip"``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from fsr_bench.results import OperatingPoints, op_column, rate_tag

__all__ = [
    "DEFAULT_FARS",
    "DEFAULT_FPIRS",
    "Calibration",
    "OpenSetPoint",
    "OpenSetResult",
    "OperatingPoint",
    "Rate",
    "Ratio",
    "RowOperatingPoints",
    "Skipped",
    "ThresholdResult",
    "apply_threshold",
    "assert_disjoint_subjects",
    "calibrate_thresholds",
    "false_match_rate",
    "open_set_identification",
    "operating_point_metrics",
    "rate_tag",
    "relative_to",
    "split_scores",
    "with_ratios",
    "wrong_identity_rate",
]

DEFAULT_FARS: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
DEFAULT_FPIRS: tuple[float, ...] = (0.01, 0.1, 0.3)
OnInsufficient = Literal["error", "skip"]


# -- small value types -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Rate:
    """``count`` events out of ``total`` trials; ``value`` is ``None`` when ``total`` is 0."""

    count: int
    total: int

    @property
    def value(self) -> float | None:
        return self.count / self.total if self.total else None


@dataclass(frozen=True)
class Ratio:
    """A row's rate divided by a reference row's rate, with both counts.

    ``value``: ``None`` when both rates are 0 (no false match in either: no ratio to state),
    ``inf`` when only the reference is 0, ``None`` when either rate is undefined (no trials).
    """

    reference: str
    rate: Rate
    reference_rate: Rate

    @property
    def value(self) -> float | None:
        a, b = self.rate.value, self.reference_rate.value
        if a is None or b is None or (a == 0 and b == 0):
            return None
        return math.inf if b == 0 else a / b


@dataclass(frozen=True)
class Skipped:
    """A target rate that was not measurable on the data given, and why."""

    target: float
    reason: str


# -- helpers ---------------------------------------------------------------------------------------
def _vector(x: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    return a


def _check_on_insufficient(value: str) -> None:
    if value not in ("error", "skip"):
        raise ValueError(f"on_insufficient must be 'error' or 'skip', got {value!r}")


def _allowed_negatives(target: float, n: int, what: str, negatives: str, event: str) -> int | str:
    """Largest negative count meeting ``count / n <= target``, or the reason it is not measurable."""
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target {what} must be in (0, 1], got {target!r}")
    # the tolerance absorbs binary rounding (1e-3 * 1000 must be exactly one allowed false accept)
    allowed = math.floor(target * n + 1e-9)
    if allowed < 1:
        need = math.ceil(1.0 / target - 1e-9)
        return (
            f"{what} = {target:g} needs at least {need} {negatives} to be measurable (one {event} "
            f"is already 1/{n} = {1.0 / n if n else math.inf:.3g}); there are {n}"
        )
    return allowed


def _smallest_threshold(candidates: np.ndarray, negatives_sorted: np.ndarray, allowed: int) -> float:
    """Smallest candidate t with ``#{negatives >= t} <= allowed`` (see the module's threshold rule)."""
    finite = candidates[np.isfinite(candidates)]  # a -inf "no score" must not become a threshold
    cands = np.append(np.unique(finite), np.inf)  # ascending; +inf accepts nothing
    n_at_or_above = negatives_sorted.size - np.searchsorted(negatives_sorted, cands, side="left")
    return float(cands[int(np.argmax(n_at_or_above <= allowed))])  # counts fall as t rises


def _score_matrix(score_matrix: ArrayLike, probe_ids: ArrayLike, gallery_ids: ArrayLike
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate; return scores, probe ids, gallery ids and the per-row "detected" mask."""
    s = np.asarray(score_matrix, dtype=np.float64)
    p, g = np.asarray(probe_ids), np.asarray(gallery_ids)
    if p.ndim != 1 or g.ndim != 1 or s.shape != (p.size, g.size):
        raise ValueError(
            f"score_matrix must be (P, G) = ({p.size}, {g.size}) for the given 1-D probe_ids and "
            f"gallery_ids; got {s.shape}"
        )
    if g.size == 0:
        raise ValueError("the gallery is empty")
    nan = np.isnan(s)
    partial = np.flatnonzero(nan.any(axis=1) & ~nan.all(axis=1))
    if partial.size:
        raise ValueError(
            f"score_matrix rows {partial[:10].tolist()} are partly NaN; a row is either all NaN "
            "(probe face not detected) or all finite (an undetected gallery face must be removed "
            "from the gallery, not scored as NaN)"
        )
    return s, p, g, np.asarray(~nan.all(axis=1))


def _best_per_identity(s: np.ndarray, gallery_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, (P, n_ids))``: each identity's best score; several gallery images count as one.

    Ranks count identities, not images (as fsr-bench's ``cmc``). Vectorised
    with ``reduceat`` so a gallery with 10^5 distractors stays fast.
    """
    ids, inverse = np.unique(gallery_ids, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(ids.size))
    return ids, np.maximum.reduceat(s[:, order], starts, axis=1)


def split_scores(score_matrix: ArrayLike, probe_ids: ArrayLike, gallery_ids: ArrayLike
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Genuine (same subject) and impostor (other subjects) entries of a ``(P, G)`` score matrix.

    One comparison per (probe, gallery image); an undetected probe's comparisons are NaN and stay
    in (they count as described in the module docstring).
    """
    s, p, g, _ = _score_matrix(score_matrix, probe_ids, gallery_ids)
    same = p[:, None] == g[None, :]
    return s[same], s[~same]


def assert_disjoint_subjects(calibration: Sequence, evaluation: Sequence) -> None:
    """Refuse a calibration set that shares subjects with the evaluation set.

    A threshold tuned on the people it is then tested on is optimistic; ISO/IEC 19795-1 asks that
    decision thresholds are set on data independent of the test (bob's SCface protocols use the
    ``dev`` group for this and report on ``eval``).
    """
    shared = sorted(set(map(str, calibration)) & set(map(str, evaluation)))
    if shared:
        raise ValueError(
            f"calibration and evaluation share {len(shared)} subject(s) ({', '.join(shared[:10])}"
            f"{', …' if len(shared) > 10 else ''}); calibrate on disjoint subjects (e.g. SCface "
            "group dev for eval, or another split's list file)"
        )


# -- 1:1 calibration and evaluation ----------------------------------------------------------------
@dataclass(frozen=True)
class OperatingPoint:
    """A threshold chosen for ``target_far`` and what it does on the calibration scores."""

    target_far: float
    threshold: float
    n_false_accepts: int  # calibration impostor scores >= threshold
    n_impostor: int
    n_true_accepts: int  # calibration genuine scores >= threshold
    n_genuine: int

    @property
    def far(self) -> float:
        return self.n_false_accepts / self.n_impostor

    @property
    def tar(self) -> float:
        return self.n_true_accepts / self.n_genuine


@dataclass(frozen=True)
class Calibration:
    """Thresholds per target FAR (``points``), targets that were not measurable (``skipped``)."""

    points: tuple[OperatingPoint, ...]
    skipped: tuple[Skipped, ...]
    n_genuine: int
    n_impostor: int

    def threshold(self, target_far: float) -> float:
        for p in self.points:
            if math.isclose(p.target_far, target_far, rel_tol=1e-9):
                return p.threshold
        why = [s.reason for s in self.skipped if math.isclose(s.target, target_far, rel_tol=1e-9)]
        raise KeyError(f"no threshold for FAR {target_far:g}" + (f": {why[0]}" if why else ""))


def calibrate_thresholds(
    genuine: ArrayLike,
    impostor: ArrayLike,
    fars: Sequence[float] = DEFAULT_FARS,
    *,
    on_insufficient: OnInsufficient = "error",
) -> Calibration:
    """One decision threshold per target FAR, chosen on calibration scores (module threshold rule).

    ``genuine`` / ``impostor``: finite similarities of same-subject / different-subject
    comparisons of the calibration set. NaN is refused: leave out calibration pairs whose faces
    were not detected (and report how many) — scoring them as "no match" would lower the
    calibration FAR and so the threshold.

    A target FAR with ``FAR · n_impostor < 1`` (fewer impostor pairs than 1/FAR) raises
    ``ValueError``; with ``on_insufficient="skip"`` it is left out and listed in ``skipped``.
    """
    _check_on_insufficient(on_insufficient)
    g, im = _vector(genuine, "genuine"), _vector(impostor, "impostor")
    if g.size == 0 or im.size == 0:
        raise ValueError(f"calibration needs genuine and impostor scores; got {g.size} and {im.size}")
    if not (np.isfinite(g).all() and np.isfinite(im).all()):
        raise ValueError(
            "calibration scores must be finite; leave out pairs whose faces were not detected "
            "(and report how many) rather than scoring them"
        )
    im_sorted, g_sorted = np.sort(im), np.sort(g)
    candidates = np.concatenate([g, im])
    points, skipped = [], []
    for far in fars:
        allowed = _allowed_negatives(float(far), im.size, "FAR", "impostor comparisons", "false accept")
        if isinstance(allowed, str):
            if on_insufficient == "error":
                raise ValueError(f"cannot calibrate: target {allowed}. Use a larger calibration set, "
                                 "drop this FAR, or pass on_insufficient='skip'")
            skipped.append(Skipped(float(far), allowed))
            continue
        t = _smallest_threshold(candidates, im_sorted, allowed)
        points.append(OperatingPoint(
            target_far=float(far), threshold=t,
            n_false_accepts=int(im.size - np.searchsorted(im_sorted, t, side="left")), n_impostor=im.size,
            n_true_accepts=int(g.size - np.searchsorted(g_sorted, t, side="left")), n_genuine=g.size,
        ))
    return Calibration(tuple(points), tuple(skipped), g.size, im.size)


@dataclass(frozen=True)
class ThresholdResult:
    """A fixed threshold applied to evaluation scores (NaN = face not detected).

    System-level rates (undetected comparisons in the denominator, ISO/IEC 19795-1): ``far``,
    ``tar``, ``frr``. Comparison-level rates (detected comparisons only): ``fmr``, ``fnmr``
    (``None`` when nothing was detected).
    """

    threshold: float
    n_genuine: int
    n_genuine_undetected: int
    n_true_accepts: int
    n_impostor: int
    n_impostor_undetected: int
    n_false_accepts: int

    @property
    def far(self) -> float | None:
        return Rate(self.n_false_accepts, self.n_impostor).value

    @property
    def tar(self) -> float | None:
        return Rate(self.n_true_accepts, self.n_genuine).value

    @property
    def frr(self) -> float | None:
        t = self.tar
        return None if t is None else 1.0 - t

    @property
    def fmr(self) -> float | None:
        return Rate(self.n_false_accepts, self.n_impostor - self.n_impostor_undetected).value

    @property
    def fnmr(self) -> float | None:
        detected = self.n_genuine - self.n_genuine_undetected
        return Rate(detected - self.n_true_accepts, detected).value


def apply_threshold(genuine: ArrayLike, impostor: ArrayLike, threshold: float) -> ThresholdResult:
    """Apply a calibrated threshold unchanged to evaluation scores (accept ``score >= threshold``).

    NaN scores are undetected faces: a rejected genuine comparison, a non-accepted impostor one.
    """
    g, im = _vector(genuine, "genuine"), _vector(impostor, "impostor")
    t = float(threshold)
    if math.isnan(t):
        raise ValueError("threshold is NaN")
    with np.errstate(invalid="ignore"):  # NaN >= t is False, which is the rule for undetected faces
        return ThresholdResult(
            threshold=t,
            n_genuine=g.size, n_genuine_undetected=int(np.isnan(g).sum()), n_true_accepts=int((g >= t).sum()),
            n_impostor=im.size, n_impostor_undetected=int(np.isnan(im).sum()),
            n_false_accepts=int((im >= t).sum()),
        )


# -- SR-induced false matches ----------------------------------------------------------------------
def false_match_rate(impostor_scores: ArrayLike, threshold: float, *, exclude_undetected: bool = False) -> Rate:
    """Share of impostor comparisons (probe vs other subjects' gallery) with ``score >= threshold``.

    Default: undetected comparisons (NaN) stay in the denominator as non-matches — the system-level
    rate (ISO/IEC 19795-1 FAR). ``exclude_undetected=True`` gives the comparison-level FMR.
    Report the detection rate beside it: fewer detected faces also means fewer false matches.
    """
    im = _vector(impostor_scores, "impostor_scores")
    detected = ~np.isnan(im)
    with np.errstate(invalid="ignore"):
        count = int((im >= float(threshold)).sum())
    return Rate(count, int(detected.sum()) if exclude_undetected else im.size)


def wrong_identity_rate(score_matrix: ArrayLike, probe_ids: ArrayLike, gallery_ids: ArrayLike,
                        threshold: float) -> Rate:
    """Share of probes whose rank-1 gallery subject is a **wrong** identity scoring ``>= threshold``.

    This is the hallucination risk in one number: the search would name someone else, confidently
    enough to be acted on. Rank 1 is the identity with the best score (several gallery images of
    one subject count once); ties are pessimistic, as in fsr-bench's ``cmc`` —
    a wrong identity scoring exactly as high as the right one is a wrong rank 1. A probe whose
    subject is not enrolled has only wrong identities. Denominator: all probes; an undetected probe
    (NaN row) names nobody and is not counted as wrong.
    """
    s, p, g, detected = _score_matrix(score_matrix, probe_ids, gallery_ids)
    ids, best = _best_per_identity(s, g)
    own = p[:, None] == ids[None, :]  # (P, n_ids); at most one True per row
    wrong_best = np.where(own, -np.inf, best).max(axis=1)
    own_best = np.where(own, best, -np.inf).max(axis=1)
    t = float(threshold)
    wrong = detected & (wrong_best >= own_best) & (wrong_best >= t)
    return Rate(int(wrong.sum()), p.size)


def relative_to(rates: Mapping[str, Rate], references: Sequence[str]) -> dict[str, dict[str, Ratio]]:
    """Each row's rate relative to each reference row present (e.g. ``"Bicubic"``, ``"HR probes"``).

    Returns ``{row: {reference: Ratio}}``; a missing reference is an error naming the rows that
    exist (a typo must not silently drop the comparison).
    """
    missing = [r for r in references if r not in rates]
    if missing:
        raise KeyError(f"reference row(s) {missing} not among the rows {sorted(rates)}")
    return {row: {ref: Ratio(ref, rate, rates[ref]) for ref in references} for row, rate in rates.items()}


# -- open-set identification -----------------------------------------------------------------------
@dataclass(frozen=True)
class OpenSetPoint:
    """One FPIR target: its threshold and what it gives."""

    target_fpir: float | None  # None: a fixed threshold given by the caller
    threshold: float
    n_false_alarms: int  # unmated probes whose top score >= threshold
    n_unmated: int
    n_identified: int  # mated probes with their mate at rank <= r and score >= threshold
    n_mated: int

    @property
    def fpir(self) -> float:
        return self.n_false_alarms / self.n_unmated

    @property
    def tpir(self) -> float:
        """True positive identification rate at rank r (= DIR, detection and identification rate)."""
        return self.n_identified / self.n_mated

    @property
    def fnir(self) -> float:
        return 1.0 - self.tpir


@dataclass(frozen=True)
class OpenSetResult:
    rank: int
    points: tuple[OpenSetPoint, ...]  # one per measurable target FPIR
    skipped: tuple[Skipped, ...]
    at_thresholds: tuple[OpenSetPoint, ...]  # one per fixed threshold asked for
    n_mated: int
    n_unmated: int
    n_mated_undetected: int
    n_unmated_undetected: int
    n_gallery_identities: int
    n_closed_set_hits: int  # mated probes with their mate at rank <= r, any score (CMC at r)

    @property
    def closed_set_rate(self) -> float:
        return self.n_closed_set_hits / self.n_mated


def open_set_identification(
    score_matrix: ArrayLike,
    probe_ids: ArrayLike,
    gallery_ids: ArrayLike,
    fpirs: Sequence[float] = DEFAULT_FPIRS,
    rank: int = 1,
    *,
    at_thresholds: Sequence[float] = (),
    on_insufficient: OnInsufficient = "error",
) -> OpenSetResult:
    """Open-set 1:N identification: TPIR/DIR at rank ``rank`` at the threshold giving each FPIR.

    * Mated probes: subject enrolled (in ``gallery_ids``); unmated: not enrolled. Gallery
      identities no probe has are distractors and need nothing special.
    * FPIR(T) = share of unmated probes whose **top** score is ``>= T`` (an alarm).
    * TPIR(r, T) = share of mated probes whose mate is at rank ``<= r`` (identities ranked by their
      best score, pessimistic ties) **and** scores ``>= T``; FNIR = 1 − TPIR (NIST FRVT 1:N).
    * T per target FPIR: the module's threshold rule on the unmated top scores, candidates being
      every unmated top score and mated mate score. The threshold is set on the evaluation probes
      themselves, as FRVT and QMUL-SurvFace do for FNIR/TPIR@FPIR. (Some public evaluation code,
      e.g. Probabilistic-Face-Embeddings' ``find_thresholds_by_FAR``, rounds ``FPIR·n`` instead and
      can exceed the target; this rule never does.)
    * Undetected probes (NaN rows): a mated one is never identified; an unmated one raises no
      alarm. Both stay in their denominators.

    ``rank=20`` with the default FPIRs gives QMUL-SurvFace's TPIR20@FPIR; ``rank=1`` the DIR.
    ``at_thresholds``: also report FPIR and TPIR at these fixed thresholds (e.g. the 1:1
    calibrated ones, so every method is searched at one operating point) in ``at_thresholds``.
    """
    _check_on_insufficient(on_insufficient)
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank!r}")
    s, p, g, detected = _score_matrix(score_matrix, probe_ids, gallery_ids)
    ids, best = _best_per_identity(s, g)
    own = p[:, None] == ids[None, :]
    mated = own.any(axis=1)
    n_mated, n_unmated = int(mated.sum()), int((~mated).sum())
    if n_mated == 0 or n_unmated == 0:
        raise ValueError(
            f"open-set identification needs mated and unmated probes (subjects not enrolled); got "
            f"{n_mated} mated and {n_unmated} unmated"
        )
    own_best = np.where(own, best, -np.inf).max(axis=1)
    n_above = (np.where(own, -np.inf, best) >= own_best[:, None]).sum(axis=1)  # other ids >= mate
    in_rank = mated & detected & (1 + n_above <= rank)
    mate_score = own_best[mated & detected]
    top_unmated = best[~mated].max(axis=1)  # NaN where undetected
    alarms = np.sort(top_unmated[~np.isnan(top_unmated)])
    candidates = np.concatenate([alarms, mate_score])

    def point(t: float, target: float | None) -> OpenSetPoint:
        return OpenSetPoint(
            target_fpir=target, threshold=t,
            n_false_alarms=int(alarms.size - np.searchsorted(alarms, t, side="left")), n_unmated=n_unmated,
            n_identified=int((in_rank & (own_best >= t)).sum()), n_mated=n_mated,
        )

    points, skipped = [], []
    for fpir in fpirs:
        allowed = _allowed_negatives(float(fpir), n_unmated, "FPIR", "unmated probes", "false alarm")
        if isinstance(allowed, str):
            if on_insufficient == "error":
                raise ValueError(f"cannot set an open-set threshold: target {allowed}. Add unmated "
                                 "probes, drop this FPIR, or pass on_insufficient='skip'")
            skipped.append(Skipped(float(fpir), allowed))
            continue
        points.append(point(_smallest_threshold(candidates, alarms, allowed), float(fpir)))
    fixed = tuple(point(float(t), None) for t in at_thresholds)
    return OpenSetResult(
        rank=int(rank), points=tuple(points), skipped=tuple(skipped), at_thresholds=fixed,
        n_mated=n_mated, n_unmated=n_unmated,
        n_mated_undetected=int((mated & ~detected).sum()),
        n_unmated_undetected=int((~mated & ~detected).sum()),
        n_gallery_identities=int(ids.size), n_closed_set_hits=int(in_rank.sum()),
    )


# -- one recognition row's operating points (what the runner stores and the report prints) -------
#: A false-match rate of one row: (where: "cal" = calibrated FAR / "at" = fixed threshold, its target
#: FAR or threshold, "far" | "wrong_id"); the key of :attr:`RowOperatingPoints.rates`.
RateKey = tuple[Literal["cal", "at"], float, Literal["far", "wrong_id"]]

_INFINITE_RATIO = "the reference row has no false match (0) while this row has some: ratio infinite"
_NO_RATIO = "no false match in this row nor in the reference row: no ratio"


@dataclass(frozen=True)
class RowOperatingPoints:
    """One row's :class:`~fsr_bench.results.OperatingPoints` (without ratios to other rows) and its
    false-match :class:`Rate` s (count and total) for :func:`with_ratios`."""

    points: OperatingPoints
    rates: dict[RateKey, Rate]


def operating_point_metrics(
    score_matrix: ArrayLike,
    probe_ids: ArrayLike,
    gallery_ids: ArrayLike,
    calibration: Calibration,
    *,
    fixed_threshold: float = 0.4,
    fpirs: Sequence[float] = DEFAULT_FPIRS,
    ranks: Sequence[int] = (1, 20),
) -> RowOperatingPoints:
    """Every operating point of one row from its ``(P, G)`` evaluation score matrix.

    NaN rows are undetected probes; drop undetected gallery faces' columns or give them ``-inf``
    (they then never match). The result (:class:`~fsr_bench.results.OperatingPoints`):

    * ``n_genuine``, ``n_impostor``: comparison counts of this row;
    * ``calibrated``: per calibrated FAR, its threshold applied unchanged: FAR reached and false
      accepts (the SR-induced false-match rate of impostor comparisons), TAR, FNMR, wrong-identity
      rate and count; with unmated probes also FPIR and TPIR per rank at that threshold;
    * ``fixed``: the same at the fixed threshold (the paper's 0.4);
    * open set, when some probes are not enrolled: ``n_mated``, ``n_unmated`` and per target FPIR
      its threshold, the FPIR reached and TPIR per rank (``open_set``);
    * ``unavailable``: targets the data cannot measure, with the reason, under their column names.
    """
    s, p, g, _ = _score_matrix(score_matrix, probe_ids, gallery_ids)
    genuine, impostor = split_scores(s, p, g)
    unavailable: dict[str, str] = {}
    rates: dict[RateKey, Rate] = {}

    def at(threshold: float, where: Literal["cal", "at"], target: float) -> dict[str, Any]:
        r = apply_threshold(genuine, impostor, threshold)
        w = wrong_identity_rate(s, p, g, threshold)
        rates[(where, target, "far")] = Rate(r.n_false_accepts, r.n_impostor)
        rates[(where, target, "wrong_id")] = w
        point: dict[str, Any] = {"threshold": threshold, "far": r.far, "n_false_accepts": r.n_false_accepts,
                                 "wrong_id": w.value, "n_wrong_id": w.count}
        if where == "cal":
            point.update(target_far=target, tar=r.tar, fnmr=r.fnmr, tpir={})
        return point

    calibrated = [at(pt.threshold, "cal", pt.target_far) for pt in calibration.points]
    for skipped in calibration.skipped:
        for key in ("threshold", "far", "tar", "fnmr", "wrong_id"):
            unavailable[op_column(key, "cal", skipped.target)] = skipped.reason
    fixed = at(float(fixed_threshold), "at", float(fixed_threshold))
    doc: dict[str, Any] = {"n_genuine": int(genuine.size), "n_impostor": int(impostor.size),
                           "calibrated": calibrated, "fixed": fixed, "unavailable": unavailable}
    if np.isin(p, g).all():
        for f in fpirs:
            unavailable[op_column(None, "fpir", f)] = "no unmated probes (every probe's subject is enrolled): closed set"
        return RowOperatingPoints(OperatingPoints.model_validate(doc), rates)
    cal_thresholds = [pt.threshold for pt in calibration.points]
    open_set: dict[float, dict[str, Any]] = {}
    for i, r in enumerate(ranks):
        res = open_set_identification(s, p, g, fpirs, rank=r, at_thresholds=cal_thresholds, on_insufficient="skip")
        if i == 0:
            doc["n_mated"], doc["n_unmated"] = res.n_mated, res.n_unmated
            for sk in res.skipped:
                unavailable[op_column(None, "fpir", sk.target)] = sk.reason
        for pt in res.points:
            assert pt.target_fpir is not None  # points at calibrated thresholds are in at_thresholds
            entry = open_set.setdefault(pt.target_fpir, {"target_fpir": pt.target_fpir, "tpir": {}})
            entry.update(threshold=pt.threshold, fpir=pt.fpir)
            entry["tpir"][int(r)] = pt.tpir
        for point, pt in zip(calibrated, res.at_thresholds):
            point["fpir"] = pt.fpir
            point["tpir"][int(r)] = pt.tpir
    doc["open_set"] = list(open_set.values())
    return RowOperatingPoints(OperatingPoints.model_validate(doc), rates)


def with_ratios(rows: Mapping[str, RowOperatingPoints], references: Sequence[str]) -> dict[str, OperatingPoints]:
    """Each row's operating points with its false-match rates stated as ratios to each reference row
    (``far_vs`` / ``wrong_id_vs`` of every point: e.g. vs ``"Bicubic"`` and ``"HR probes"``).

    The counts behind each ratio are the points' own ``n_false_accepts`` / ``n_wrong_id`` and the
    reference row's; see :class:`Ratio`: 0/0 is ``None``, k/0 is infinite, which JSON cannot hold:
    it is ``None`` too, with the reason in ``unavailable`` (as is the 0/0 one).
    """
    keys = sorted({k for row in rows.values() for k in row.rates}, key=str)
    ratios: dict[str, dict[RateKey, dict[str, Ratio]]] = {label: {} for label in rows}
    for key in keys:
        have = {label: row.rates[key] for label, row in rows.items() if key in row.rates}
        for label, by_ref in relative_to(have, references).items():
            ratios[label][key] = by_ref
    out: dict[str, OperatingPoints] = {}
    for label, row in rows.items():
        doc = row.points.model_dump()
        why = doc["unavailable"]
        for where, target, rate in ratios[label]:
            point = doc["fixed"] if where == "at" else next(
                c for c in doc["calibrated"] if math.isclose(c["target_far"], target, rel_tol=1e-9))
            for ref, ratio in ratios[label][(where, target, rate)].items():
                value = ratio.value
                if value is None or math.isinf(value):
                    why.setdefault(op_column(rate, where, target, ref=ref), _NO_RATIO if value is None
                                   else _INFINITE_RATIO)
                    value = None
                point[f"{rate}_vs"][ref] = value
        out[label] = OperatingPoints.model_validate(doc)
    return out

"""What each reported metric means: direction, printed precision, how per-item values aggregate.

Every metric a results file carries is registered here once (:data:`METRICS`, the registry idiom of
models and recognisers); tables and plots read ``higher_is_better``/``decimals``/``percent`` from the
registry instead of owning them, and results conventions can quote ``aggregation``. A plug-in
metric registers with :func:`register_metric`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fsr_bench.metrics.operating_points import DEFAULT_FARS, rate_tag
from fsr_bench.registry import Registry

__all__ = ["METRICS", "Metric", "metric", "register_metric"]

NA = "n/a"


@dataclass(frozen=True)
class Metric:
    """How one metric is named, compared, aggregated and printed."""

    key: str
    name: str
    higher_is_better: bool
    decimals: int
    percent: bool = False  # stored as a fraction 0-1, shown as a percentage
    unit: str = ""
    kind: Literal["reconstruction", "recognition"] = "reconstruction"
    aggregation: str = ""  # how the run-level number comes from per-image / per-probe values

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    @property
    def heading(self) -> str:
        return f"{self.name} {self.arrow}"

    @property
    def column(self) -> str:
        """The heading of a compact column whose cells are :meth:`number`: the unit moves up here
        ("Rank-1 (%) ↑", "PSNR (dB) ↑"), so the cells are bare numbers."""
        unit = "%" if self.percent else self.unit
        return f"{self.name} ({unit}) {self.arrow}" if unit else self.heading

    def display(self, value: float) -> float:
        """The value as printed (percent-scaled, rounded): what "best" is decided on."""
        return round(value * 100.0 if self.percent else value, self.decimals)

    def number(self, value: float | None) -> str:
        """The printed number without its unit (the unit is in :attr:`column`)."""
        return NA if value is None else f"{self.display(value):.{self.decimals}f}"

    def format(self, value: float | None) -> str:
        if value is None:
            return NA
        return f"{self.number(value)}{'%' if self.percent else ''}"

    def format_ci(self, lo_hi: tuple[float, float]) -> str:
        """A 95% interval in the narrow form ``[45.5, 60.3]``, at the value's own precision."""
        lo, hi = (self.number(v) for v in lo_hi)
        return f"[{lo}, {hi}]"


METRICS: Registry[Metric] = Registry("metric", "fsr_bench.metrics")  # type: ignore[type-var]


def register_metric(m: Metric) -> Metric:
    METRICS.register(m.key)(m)
    return m


def metric(key: str) -> Metric:
    """The registered metric ``key`` (an unknown key is an error listing close matches)."""
    return METRICS.get(key).builder


_R: Literal["reconstruction"] = "reconstruction"
_Q: Literal["recognition"] = "recognition"
for _m in (
    Metric("psnr", "PSNR", True, 2, unit="dB", kind=_R,
           aggregation="mean of per-image PSNR over the images not reproduced exactly (those have PSNR inf, "
                       "are counted in n_infinite_psnr; null when every image was exact)"),
    Metric("ssim", "SSIM", True, 4, kind=_R, aggregation="mean of per-image SSIM"),
    Metric("lpips", "LPIPS", False, 4, kind=_R, aggregation="mean of per-image LPIPS"),
    Metric("mps", "MPS", True, 4, kind=_R, aggregation="0.5 * (mean SSIM + 1 - mean LPIPS)"),
    Metric("identity_cosine", "ID cos", True, 4, kind=_R,
           aggregation="mean over images with a face detected on HR of the per-image cosine of the SR and HR "
                       "embeddings (alignment fitted on HR, applied to both; n_identity_undetected counts the rest)"),
    Metric("identity_angle", "ID angle", False, 2, unit="°", kind=_R,
           aggregation="mean over images with a face detected on HR of the per-image angle "
                       "degrees(arccos(cosine)) between SR and HR embeddings (not the angle of the mean cosine)"),
    Metric("matching_accuracy", "Matching Accuracy", True, 1, percent=True, kind=_Q,
           aggregation="share of all probes with own-gallery similarity >= threshold"),
    Metric("average_similarity", "Average Similarity", True, 4, kind=_Q,
           aggregation="mean own-gallery similarity over detected probes"),
    Metric("detection_rate", "Detection rate", True, 1, percent=True, kind=_Q, aggregation="share of all probes"),
    Metric("rank1", "Rank-1", True, 1, percent=True, kind=_Q, aggregation="share of all probes identified at rank 1"),
    Metric("rank5", "Rank-5", True, 1, percent=True, kind=_Q, aggregation="share of all probes within rank 5"),
    Metric("rank20", "Rank-20", True, 1, percent=True, kind=_Q, aggregation="share of all probes within rank 20"),
    Metric("tar_at_far_0.3", "TAR@FAR=0.3", True, 1, percent=True, kind=_Q,
           aggregation="TAR at the largest achievable FAR <= 0.3 over all pairs (QMUL-SurvFace 1:1)"),
    Metric("tar_at_far_0.1", "TAR@FAR=0.1", True, 1, percent=True, kind=_Q,
           aggregation="TAR at the largest achievable FAR <= 0.1 over all pairs (QMUL-SurvFace 1:1)"),
    Metric("tar_at_far_1e-2", "TAR@FAR=1e-2", True, 1, percent=True, kind=_Q,
           aggregation="TAR at the largest achievable FAR <= 1e-2 over all pairs"),
    Metric("tar_at_far_1e-3", "TAR@FAR=1e-3", True, 1, percent=True, kind=_Q,
           aggregation="TAR at the largest achievable FAR <= 1e-3 over all pairs"),
    Metric("eer", "EER", False, 1, percent=True, kind=_Q, aggregation="FAR = FRR on the empirical ROC"),
):
    register_metric(_m)

# Operating points at one threshold per recogniser, calibrated on HR comparisons of subjects disjoint
# from the evaluation subjects and applied unchanged to every row (metrics/operating_points.py). Named
# apart from TAR@FAR above, whose threshold each row sets on its own evaluation impostor scores.
for _far in DEFAULT_FARS:
    _t = rate_tag(_far)
    register_metric(Metric(f"tar_cal_{_t}", f"TAR@cal {_t}", True, 1, percent=True, kind=_Q,
                           aggregation=f"share of genuine comparisons at or above the threshold calibrated to FAR {_t}"
                                       " on disjoint calibration subjects"))
    register_metric(Metric(f"far_cal_{_t}", f"FAR reached@cal {_t}", False, 3, percent=True, kind=_Q,
                           aggregation="share of evaluation impostor comparisons at or above that threshold"))
    register_metric(Metric(f"wrong_id_cal_{_t}", f"WrongID@cal {_t}", False, 1, percent=True, kind=_Q,
                           aggregation="share of all probes whose rank-1 is a wrong subject at or above that threshold"))

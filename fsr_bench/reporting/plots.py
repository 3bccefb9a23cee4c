"""Figures for the report: metric bars, metric vs. scale, ROC, CMC and per-distance bars.

Why it is built this way:

* Figures are ``matplotlib.figure.Figure`` objects rendered by the Agg canvas, never ``pyplot``:
  no global backend switch, no figure registry to leak, safe to call from a notebook or a server.
* One colour per method across every figure of a report (:func:`method_colours`), so a reader
  learns "TANet is blue" once.
* Bars carry their value (the reader should not have to estimate 0.8910 from a bar height) and
  the best bar of each group has a bold label, mirroring the tables' bold.
* Quality bars zoom the y axis (differences of 0.1 dB would be invisible from zero); the tick
  labels show where the axis starts. Percent metrics start at zero.
* Every save is atomic (temporary file + ``os.replace``), like every other output of fsr-bench.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from fsr_bench import atomic, results
from fsr_bench.reporting.load import RECOGNITION, RECONSTRUCTION, Run
from fsr_bench.reporting.tables import (
    DISTANCE_METRICS,
    RECOGNITION_METRICS,
    RECONSTRUCTION_METRICS,
    Metric,
    best_flags,
    distances_of,
    no_face,
    scale_label,
)

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType  # matplotlib >= 3.9 names the rc keys (stubs only)

#: A method's colour: RGBA in [0, 1], as :func:`method_colours` gives it.
Colour = tuple[float, float, float, float]

__all__ = [
    "DPI",
    "STYLE",
    "Panel",
    "bar_panels",
    "cmc_curves",
    "method_colours",
    "metric_vs_scale",
    "per_distance_bars",
    "recognition_bars",
    "reconstruction_bars",
    "roc_curves",
    "save_figure",
]

DPI = 150
#: Matplotlib settings shared by every figure (applied with ``rc_context``, never globally).
STYLE: dict[RcKeyType, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
}
_ROC_MARKS = (1e-3, 1e-2)
_NO_FACE = "no face detected"  # the bar-chart form of Table 4's "-"
# tab10 without its grey (index 7): grey reads as "reference", and no method should look like one.
_PALETTE = (0, 1, 2, 3, 4, 5, 6, 8, 9)


def method_colours(labels: Iterable[str]) -> dict[str, Colour]:
    """A colour per distinct label, in first-seen order (tab10 minus grey; tab20 beyond nine)."""
    unique = list(dict.fromkeys(labels))
    if len(unique) <= len(_PALETTE):
        return {label: colormaps["tab10"](_PALETTE[i]) for i, label in enumerate(unique)}
    cmap = colormaps["tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(unique)}


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as a 150-dpi PNG atomically (:mod:`fsr_bench.atomic`): a reader never sees a
    half-written file."""
    buffer = io.BytesIO()
    with rc_context(STYLE):
        # No bbox_inches="tight": every figure here is laid out already (constrained layout or
        # explicit positions), and "tight" costs a second full draw.
        fig.savefig(buffer, format="png", dpi=DPI, pil_kwargs={"compress_level": 4})
    return atomic.write_bytes(path, buffer.getvalue())


# -- bars ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Panel:
    """One bar panel: a metric, the x groups (scales or distances) and each method's values."""

    metric: Metric
    groups: Sequence[str]
    # label -> one raw value per group; None prints "n/a", a string prints itself (e.g. "no face")
    values: Mapping[str, Sequence[float | str | None]]
    references: frozenset[str] = frozenset()  # hatched and never bold (see tables._ranked)
    # label -> one raw 95% interval (lo, hi) per group, or None: drawn as an error bar
    errors: Mapping[str, Sequence[tuple[float, float] | None]] = field(default_factory=dict)


def _axis_label(metric: Metric) -> str:
    unit = " (%)" if metric.percent else (f" ({metric.unit})" if metric.unit else "")
    return f"{metric.name}{unit} {metric.arrow}"


def _ylim(shown: Sequence[float], metric: Metric, headroom: float) -> tuple[float, float]:
    lo, hi = min(shown), max(shown)
    span = hi - lo if hi > lo else max(abs(hi) * 0.05, 1e-3)
    bottom = 0.0 if metric.percent or lo - 0.8 * span <= 0 else lo - 0.8 * span
    return bottom, hi + headroom * (hi - bottom)


def bar_panels(panels: Sequence[Panel], colours: Mapping[str, Colour], title: str) -> Figure:
    """Grouped bars, one panel per metric, value labels on the bars, best label in bold.

    Panels without a single number (e.g. LPIPS/MPS when LPIPS could not run) are left out; the
    table says why.
    """
    panels = [p for p in panels if any(isinstance(v, (int, float)) for vs in p.values.values() for v in vs)
              ] or list(panels)
    labels = list(dict.fromkeys(label for p in panels for label in p.values))
    n_groups = max(len(p.groups) for p in panels)
    per_panel_w = max(3.0, 0.32 * len(labels) * n_groups + 0.8)
    ncols = max(1, min(len(panels), 4, int(19 // per_panel_w)))
    while len(panels) % ncols:  # no empty cells: 4 panels -> 2×2, 3 wide panels -> 3×1
        ncols -= 1
    nrows = -(-len(panels) // ncols)
    with rc_context(STYLE):
        fig = Figure(figsize=(per_panel_w * ncols, 3.1 * nrows + 0.6), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        rotate = len(labels) * n_groups > 5
        width = 0.8 / max(len(labels), 1)
        for ax, panel in zip(axes, panels):
            m = panel.metric
            shown = [m.display(v) for vs in panel.values.values() for v in vs
                     if isinstance(v, (int, float))]
            shown += [m.display(ci[1]) for cis in panel.errors.values() for ci in cis if ci is not None]
            if shown:
                ax.set_ylim(*_ylim(shown, m, 0.32 if rotate else 0.14))
            bottom = ax.get_ylim()[0]
            for g, group in enumerate(panel.groups):
                column = [panel.values[label][g] if g < len(panel.values[label]) else None
                          for label in labels]
                flags = best_flags([v if isinstance(v, (int, float)) and label not in panel.references
                                    else None for label, v in zip(labels, column)], m)
                for i, (label, value) in enumerate(zip(labels, column)):
                    x = g + (i - (len(labels) - 1) / 2) * width
                    if not isinstance(value, (int, float)):
                        ax.text(x, bottom, f" {value or 'n/a'}", rotation=90, ha="center",
                                va="bottom", fontsize=7, color="0.45")
                        continue
                    height = m.display(value)
                    ax.bar(x, height - bottom, width * 0.92, bottom=bottom, color=colours[label],
                           edgecolor="white", linewidth=0.5,
                           hatch="///" if label in panel.references else None)
                    intervals = panel.errors.get(label, ())
                    ci = intervals[g] if g < len(intervals) else None
                    if ci is not None:  # the runner's interval, at the table's scale (percent where the table is)
                        lo, hi = (m.display(v) for v in ci)
                        ax.errorbar(x, height, yerr=[[max(height - lo, 0.0)], [max(hi - height, 0.0)]],
                                    fmt="none", ecolor="0.25", elinewidth=0.8, capsize=2)
                        height = max(height, hi)
                    ax.text(x, height, f" {m.format(value).rstrip('%')}" if rotate
                            else m.format(value).rstrip("%"),
                            rotation=90 if rotate else 0, ha="center", va="bottom", fontsize=7,
                            fontweight="bold" if flags[i] else "normal")
            ax.set_xticks(range(len(panel.groups)), panel.groups)
            ax.set_xlim(-0.5, len(panel.groups) - 0.5)
            ax.set_title(m.heading)
            ax.set_ylabel(_axis_label(m))
            ax.grid(axis="x", visible=False)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        references = frozenset().union(*(p.references for p in panels))
        handles = [Patch(facecolor=colours[label], edgecolor="white",
                         hatch="///" if label in references else None,
                         label=f"{label} (reference)" if label in references else label)
                   for label in labels]
        _legend_below(fig, handles, per_panel_w * ncols)
        fig.suptitle(title, fontweight="bold")
    return fig


def reconstruction_bars(runs: Sequence[Run], colours: Mapping[str, Colour], title: str) -> Figure:
    """PSNR/SSIM/LPIPS/MPS bars per method, grouped by scale (one comparable group of runs)."""
    scales = sorted({r.scale for r in runs})
    refs = _references(runs)
    panels = [Panel(m, [scale_label(s) for s in scales], _values_by_scale(runs, scales, m.key), refs)
              for m in RECONSTRUCTION_METRICS]
    return bar_panels(panels, colours, title)


def recognition_bars(runs: Sequence[Run], colours: Mapping[str, Colour], title: str) -> Figure:
    """Matching accuracy, average similarity, detection rate and Rank-1 bars per method."""
    scales = sorted({r.scale for r in runs})
    panels = []
    for m in RECOGNITION_METRICS[:4]:
        values = _values_by_scale(runs, scales, m.key, hide_undetected=m.key != "detection_rate")
        panels.append(Panel(m, [scale_label(s) for s in scales], values, _references(runs),
                            _intervals_by_scale(runs, scales, m.key)))
    return bar_panels(panels, colours, title)


def per_distance_bars(run: Run, colours: Mapping[str, Colour], title: str) -> Figure | None:
    """Matching accuracy, average similarity and detection rate per camera distance, for one run
    (one scale); None when the run has no per-distance results."""
    distances = distances_of([run])
    if not distances:
        return None
    panels = []
    for m in DISTANCE_METRICS:
        full = next(x for x in RECOGNITION_METRICS if x.key == m.key)  # full name on the axes
        values: dict[str, list[float | str | None]] = {}
        for row in run.rows:
            series = []
            for d in distances:
                dist = row.per_distance.get(d, {})
                dead = no_face(dist) and m.key != "detection_rate"
                series.append(_NO_FACE if dead else dist.get(m.key))
            values[row.label] = series
        panels.append(Panel(full, distances, values, _references([run])))
    return bar_panels(panels, colours, title)


def _references(runs: Sequence[Run]) -> frozenset[str]:
    return frozenset(label for run in runs for label in run.references)


def _values_by_scale(runs: Sequence[Run], scales: Sequence[int], key: str,
                     hide_undetected: bool = False) -> dict[str, list[float | str | None]]:
    values: dict[str, list[float | str | None]] = {}
    for run in runs:
        for row in run.rows:
            series = values.setdefault(row.label, [None] * len(scales))
            dead = hide_undetected and no_face(row.metrics)
            series[scales.index(run.scale)] = _NO_FACE if dead else row.metrics.get(key)
    return values


def _intervals_by_scale(runs: Sequence[Run], scales: Sequence[int], key: str
                        ) -> dict[str, list[tuple[float, float] | None]]:
    """Each row's 95% interval per scale, where the runner gave one (the table prints the same)."""
    out: dict[str, list[tuple[float, float] | None]] = {}
    for run in runs:
        for row in run.rows:
            series = out.setdefault(row.label, [None] * len(scales))
            if key in row.ci95 and not no_face(row.metrics):
                series[scales.index(run.scale)] = row.ci95[key]
    return out


# -- lines -----------------------------------------------------------------------------------------
def _legend_below(fig: Figure, handles: list, fig_width: float) -> None:
    """A legend under the panels with as many columns as fit the figure's width (never clipped)."""
    widest = max(len(h.get_label()) for h in handles)
    per_entry = 0.075 * widest + 0.6  # inches at 9 pt, plus the swatch and spacing
    ncol = max(1, min(len(handles), int(fig_width // per_entry)))
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol)


def _legend_right(fig: Figure, handles: list) -> None:
    """Curves with long labels (EER in the name): one column beside the axes, never clipped."""
    fig.legend(handles=handles, loc="outside right center")


def metric_vs_scale(runs: Sequence[Run], colours: Mapping[str, Colour], title: str) -> Figure | None:
    """Each metric against the scale, one line per method; None with fewer than two scales."""
    if runs and runs[0].kind != RECONSTRUCTION:
        raise ValueError("metric_vs_scale expects reconstruction runs")
    scales = sorted({r.scale for r in runs})
    if len(scales) < 2:
        return None
    with rc_context(STYLE):
        fig = Figure(figsize=(3.0 * len(RECONSTRUCTION_METRICS), 3.4), layout="constrained")
        axes = fig.subplots(1, len(RECONSTRUCTION_METRICS))
        labels: list[str] = []
        for ax, m in zip(axes, RECONSTRUCTION_METRICS):
            for label, series in _values_by_scale(runs, scales, m.key).items():
                labels.append(label)
                xs = [s for s, v in zip(scales, series) if v is not None]
                ys = [m.display(float(v)) for v in series if v is not None]  # no str: hide_undetected is off
                ax.plot(xs, ys, marker="o", ms=4, lw=1.5, color=colours[label], label=label)
            ax.set_xscale("log", base=2)
            ax.set_xticks(scales, [scale_label(s) for s in scales])
            ax.minorticks_off()
            ax.set_xlabel("scale factor")
            ax.set_ylabel(_axis_label(m))
            ax.set_title(m.heading)
            ax.grid(axis="both", visible=True, alpha=0.3)
        unique = list(dict.fromkeys(labels))
        _legend_below(fig, [Line2D([], [], color=colours[x], marker="o", label=x) for x in unique],
                      3.0 * len(RECONSTRUCTION_METRICS))
        fig.suptitle(title, fontweight="bold")
    return fig


def _curve_axes(runs: Sequence[Run], what: str, title: str) -> tuple[Figure, list, list[int]]:
    if runs and runs[0].kind != RECOGNITION:
        raise ValueError(f"{what} expects recognition runs")
    scales = sorted({r.scale for r in runs})
    fig = Figure(figsize=(4.6 * len(scales) + 2.2, 3.9), layout="constrained")
    axes = list(fig.subplots(1, len(scales), squeeze=False).ravel())
    fig.suptitle(title, fontweight="bold")
    return fig, axes, scales


def roc_curves(runs: Sequence[Run], colours: Mapping[str, Colour], title: str) -> Figure | None:
    """Verification ROC (TAR vs. log FAR), markers at FAR = 1e-3 and 1e-2; None without ROC data."""
    if not any(row.roc_far for run in runs for row in run.rows):
        return None
    with rc_context(STYLE):
        fig, axes, scales = _curve_axes(runs, "roc_curves", title)
        handles: dict[str, Line2D] = {}
        for ax, scale in zip(axes, scales):
            lowest = 1.0
            for run in (r for r in runs if r.scale == scale):
                for row in run.rows:
                    far, tar = np.asarray(row.roc_far), np.asarray(row.roc_tar)
                    keep = far > 0
                    if not keep.any():
                        continue
                    order = np.argsort(far[keep], kind="stable")
                    far, tar = far[keep][order], tar[keep][order]
                    lowest = min(lowest, float(far[0]))
                    eer = row.metrics.get("eer")
                    name = row.label if eer is None else f"{row.label} (EER {eer:.1%})"
                    (line,) = ax.plot(far, tar * 100, lw=1.6, color=colours[row.label], label=name)
                    handles.setdefault(name, line)
                    for mark in _ROC_MARKS:  # the table's own TAR@FAR numbers, not a re-interpolation
                        y = row.metrics.get(results.tar_at_far_key(mark))
                        if y is not None:
                            ax.plot([mark], [y * 100], marker="o", ms=5, color=colours[row.label],
                                    markeredgecolor="white", zorder=3, clip_on=False)
            lowest = min(lowest, _ROC_MARKS[0] / 2)  # keep both marks on the axis
            for mark in _ROC_MARKS:
                ax.axvline(mark, color="0.55", ls=":", lw=1)
                ax.text(mark, 103, f"FAR={mark:.0e}".replace("e-0", "e-"), ha="center",
                        va="bottom", fontsize=7, color="0.35")
            chance = np.logspace(np.log10(lowest), 0, 50)
            ax.plot(chance, chance * 100, color="0.7", ls="--", lw=0.8)
            ax.set_xscale("log")
            ax.set_xlim(lowest, 1.0)
            ax.set_ylim(0, 102)
            ax.set_xlabel("False accept rate (FAR, log) ↓")
            ax.set_ylabel("True accept rate (TAR, %) ↑")
            ax.set_title(scale_label(scale) if len(scales) > 1 else "", pad=14)
            ax.grid(axis="both", visible=True, which="major", alpha=0.3)
        _legend_right(fig, list(handles.values()))
    return fig


def cmc_curves(runs: Sequence[Run], colours: Mapping[str, Colour], title: str) -> Figure | None:
    """Cumulative match characteristic (identification rate vs. rank); None without CMC data."""
    if not any(row.cmc for run in runs for row in run.rows):
        return None
    with rc_context(STYLE):
        fig, axes, scales = _curve_axes(runs, "cmc_curves", title)
        handles: dict[str, Line2D] = {}
        for ax, scale in zip(axes, scales):
            top = 1
            for run in (r for r in runs if r.scale == scale):
                for row in run.rows:
                    if not row.cmc:
                        continue
                    ranks = np.arange(1, len(row.cmc) + 1)
                    top = max(top, len(row.cmc))
                    (line,) = ax.plot(ranks, np.asarray(row.cmc) * 100, marker="o", ms=3.5, lw=1.5,
                                      color=colours[row.label], label=row.label)
                    handles.setdefault(row.label, line)
            ax.set_xticks(range(1, top + 1))
            ax.set_xlim(0.7, top + 0.3)
            ax.set_ylim(0, None)
            ax.set_xlabel("Rank")
            ax.set_ylabel("Identification rate (%) ↑")
            ax.set_title(scale_label(scale) if len(scales) > 1 else "")
            ax.grid(axis="both", visible=True, alpha=0.3)
        _legend_right(fig, list(handles.values()))
    return fig

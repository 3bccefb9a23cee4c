"""Learning curves of training runs: validation PSNR against training minutes (and steps).

What a CPU user pays is minutes, so the equal-compute leaderboard (``benchmarks/leaderboard_compute.sh``)
plots every method's validation PSNR against the trainer's own clock. The points come from each run's
``val_log.csv`` (``step, epoch, psnr, ssim, n, best, elapsed_s``; :mod:`fsr_bench.train.logs`) and the
budget from its ``summary.json``; nothing is recomputed. ``elapsed_s`` is the wall time of the run up to
the end of that validation, validation included (the budget the trainer's ``schedule.max_minutes``
counts), so the curve's last point is where the budget ended.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
from matplotlib.figure import Figure

from fsr_bench.errors import FsrBenchError
from fsr_bench.reporting.plots import method_colours

__all__ = ["Curve", "CurveError", "read_curve", "curves_figure", "budget_table"]

_VAL_COLUMNS = ("step", "psnr", "elapsed_s")


class CurveError(FsrBenchError, ValueError):
    """A run folder without a readable validation log or summary; the message names the file."""


@dataclass(frozen=True)
class Curve:
    """One run's validation points and what its whole budget was."""

    label: str
    steps: tuple[int, ...]
    minutes: tuple[float, ...]
    psnr: tuple[float, ...]
    summary: Mapping  # the run's summary.json (steps, elapsed_s, img_per_s_median, best, stop_reason, ...)

    @property
    def best(self) -> tuple[int, float]:
        """(step, PSNR) of the best validation."""
        i = max(range(len(self.psnr)), key=self.psnr.__getitem__)
        return self.steps[i], self.psnr[i]


def read_curve(run_dir: str | os.PathLike[str], label: str | None = None) -> Curve:
    """The curve of one run folder (``val_log.csv`` + ``summary.json``)."""
    run = Path(run_dir)
    val, summ = run / "val_log.csv", run / "summary.json"
    try:
        frame = pd.read_csv(val)
    except (OSError, ValueError) as exc:
        raise CurveError(f"{val}: cannot read the validation log ({exc}); is {run} a `fsr-bench train` run folder?") from None
    missing = [c for c in _VAL_COLUMNS if c not in frame.columns]
    if missing or frame.empty:
        raise CurveError(f"{val}: {'no validation rows' if frame.empty else f'missing columns {missing}'}")
    try:
        summary = json.loads(summ.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CurveError(f"{summ}: cannot read the run summary ({exc}); a finished run writes it") from None
    frame = frame.sort_values("step")
    return Curve(label=label or run.name, steps=tuple(int(s) for s in frame["step"]),
                 minutes=tuple(float(s) / 60 for s in frame["elapsed_s"]),
                 psnr=tuple(float(p) for p in frame["psnr"]), summary=summary)


def curves_figure(curves: Sequence[Curve], title: str, reference: Mapping[str, float] | None = None) -> Figure:
    """Val PSNR vs minutes (left) and vs optimizer steps (right), one colour per run; ``reference``
    draws horizontal lines (e.g. ``{"Bicubic": 25.50}``)."""
    colours = method_colours(c.label for c in curves)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_min, ax_step = fig.subplots(1, 2, sharey=True)
    for c in curves:
        ax_min.plot(c.minutes, c.psnr, marker="o", ms=3, lw=1.4, color=colours[c.label], label=c.label)
        ax_step.plot(c.steps, c.psnr, marker="o", ms=3, lw=1.4, color=colours[c.label])
    for name, value in (reference or {}).items():
        for ax in (ax_min, ax_step):
            ax.axhline(value, color="0.5", ls="--", lw=1)
        ax_min.annotate(f"{name} {value:.2f}", (0, value), textcoords="offset points", xytext=(2, 3),
                        fontsize=8, color="0.35")
    ax_min.set_xlabel("training minutes (trainer clock, validation included)")
    ax_step.set_xlabel("optimizer steps")
    ax_step.set_xscale("log")
    ax_min.set_ylabel("val PSNR (dB) ↑")
    for ax in (ax_min, ax_step):
        ax.grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=10, fontweight="bold")
    fig.legend(loc="outside right center", fontsize=8, frameon=False)
    return fig


def budget_table(curves: Sequence[Curve]) -> str:
    """Markdown: what each run reached in its budget (steps, minutes, img/s, best val PSNR and its step)."""
    head = ("| run | steps reached | minutes | train img/s (median) | best val PSNR (dB) ↑ | at step | stop |\n"
            "|---|---:|---:|---:|---:|---:|---|\n")
    rows = []
    for c in curves:
        s = c.summary
        ips = s.get("img_per_s_median")
        step, psnr = c.best
        rows.append(f"| {c.label} | {int(s.get('steps', 0)):,} | {float(s.get('elapsed_s', 0)) / 60:.1f} | "
                    f"{'n/a' if ips is None else f'{float(ips):.1f}'} | {psnr:.2f} | {step:,} | {s.get('stop_reason', '?')} |")
    return head + "\n".join(rows) + "\n"

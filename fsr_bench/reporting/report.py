"""Turn finished run folders into ``report.md`` plus ``figures/*.png``.

Why a markdown file with PNGs beside it: it renders on GitHub, in any IDE and in a terminal pager,
diffs in review, and the figures are plain files a person can paste into slides. Links are relative,
so the ``report/`` folder can be moved or zipped as a whole.

The report never contains the time it was generated: the same runs give the same bytes, so a
regenerated example report under ``reports/`` only changes when the results do.
"""
from __future__ import annotations

import os
import re
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Mapping, Sequence, Union

from fsr_bench import atomic
from fsr_bench.reporting.load import RECONSTRUCTION, Run, RunGroup, group_runs, load_runs
from fsr_bench.reporting.tables import (
    dataset_size,
    efficiency_table,
    markdown_table,
    open_set_table,
    operating_points_csv,
    operating_points_table,
    per_distance_table,
    recognition_table,
    reconstruction_table,
    scale_label,
)

if TYPE_CHECKING:
    from fsr_bench.reporting.grids import CropBox

__all__ = ["write_report", "write_report_for"]

#: A zoom box for the grids, ``None`` for no zoom, or "default" (the eye region).
CropChoice = Union["CropBox", None, Literal["default"]]

FIGURES = "figures"
OPERATING_POINTS_CSV = "operating_points.csv"  # the full grid, raw values, beside report.md


def _anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "group"


class _Figures:
    """Renders figures into ``out/figures`` and returns markdown image links (relative)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    def add(self, name: str, make: Callable[[], Any], alt: str) -> str:
        from fsr_bench.reporting.plots import save_figure

        fig = make()
        if fig is None:
            return ""
        path = save_figure(fig, self.out_dir / FIGURES / f"{name}.png")
        return f"![{alt}]({FIGURES}/{path.name})\n"


def _run_tags(group: RunGroup) -> list[str]:
    """A file-name tag per run of a group: "x4", or "x4-1", "x4-2" when runs share a scale."""
    scales = [run.scale for run in group.runs]
    seen: dict[int, int] = {}
    tags = []
    for scale in scales:
        seen[scale] = seen.get(scale, 0) + 1
        tags.append(f"x{scale}" if scales.count(scale) == 1 else f"x{scale}-{seen[scale]}")
    return tags


def _link(path: Path, out_dir: Path) -> str:
    """``[folder name](relative path)``: readable, and still valid when the report moves with it."""
    try:
        rel = os.path.relpath(path.resolve(), out_dir.resolve())
    except ValueError:  # another drive on Windows
        rel = str(path.resolve())
    return f"[{path.resolve().name}]({Path(rel).as_posix()})"


def _overview(runs: Sequence[Run], out_dir: Path) -> str:
    rows = []
    for run in runs:
        rows.append([
            _link(run.path, out_dir), run.kind, run.protocol_name,
            f"{run.dataset_name} ({dataset_size(run)})", scale_label(run.scale),
            ", ".join(r.label for r in run.rows), str(run.provenance.get("device", "?")),
            str(run.provenance.get("timestamp", "?")),
        ])
    return markdown_table(["Run folder", "Kind", "Protocol", "Dataset", "Scale", "Methods", "Device",
                           "Finished"], rows, "llllllll")


def _bullets(mapping: Mapping[str, Any], indent: str = "") -> list[str]:
    lines = []
    for key, value in mapping.items():
        if isinstance(value, Mapping) and value:
            lines.append(f"{indent}- {key}:")
            lines += _bullets(value, indent + "  ")
        else:
            lines.append(f"{indent}- {key}: `{value}`")
    return lines


def _provenance_section(runs: Sequence[Run], out_dir: Path) -> str:
    parts = ["## Conventions & provenance\n",
             "Everything needed to reproduce or compare each number: scoring conventions, data,"
             " code version and the exact weights (full sha256).\n"]
    for run in runs:
        parts.append(f"### {run.protocol_name} {scale_label(run.scale)} — {_link(run.path, out_dir)}\n")
        parts.append(f"- kind: `{run.kind}`\n- protocol hash: `{run.protocol_hash or 'not recorded'}`")
        parts.append("- conventions:\n" + "\n".join(_bullets(run.conventions, "  ")))
        parts.append("- provenance:\n" + "\n".join(_bullets(run.provenance, "  ")))
        models = []
        for row in run.rows:
            weights = (f"`{row.checkpoint}` sha256 `{row.checkpoint_sha256 or 'not recorded'}`"
                       if row.checkpoint else "no checkpoint")
            models.append(f"  - {row.label} (`{row.name}`): {weights}")
        parts.append("- models:\n" + "\n".join(models))
        if run.absent:
            parts.append(f"- absent optional files: {', '.join(run.absent)}"
                         " (the report leaves out what depends on them)")
        parts.append("")
    return "\n".join(parts)


def _reconstruction_section(group: RunGroup, figs: _Figures, colours: Mapping[str, Any],
                            crop: CropBox | None, max_samples: int) -> str:
    from fsr_bench.reporting import grids, plots

    slug = _slug(group.title)
    out = [f"## {group.title}\n", "### Quality (paper Tables 2–3 layout)\n",
           reconstruction_table(group.runs)]
    out.append(figs.add(f"{slug}-metrics", lambda: plots.reconstruction_bars(
        group.runs, colours, f"{group.title}: quality per method"), "quality metrics per method"))
    out.append(figs.add(f"{slug}-vs-scale", lambda: plots.metric_vs_scale(
        group.runs, colours, f"{group.title}: metrics vs. scale"), "metrics vs. scale"))
    out += ["### Efficiency\n", efficiency_table(group.runs)]
    grid_links = []
    for run, tag in zip(group.runs, _run_tags(group)):
        link = figs.add(f"{slug}-{tag}-samples", partial(grids.reconstruction_grid,
                        run, colours, crop=crop, max_samples=max_samples), f"visual comparison ×{run.scale}")
        if link:
            grid_links.append(link)
    if grid_links:
        box = "none" if crop is None else crop.as_text()
        out += ["### Visual comparison (paper Fig. 4 layout)\n",
                f"LR is nearest-upsampled so its pixels stay visible. Under each tile: the zoomed"
                f" region marked in yellow (left,top,right,bottom fractions: {box}) and that"
                f" image's PSNR / SSIM; the best PSNR of each row is bold.\n", *grid_links]
    return "\n".join(x for x in out if x)


def _recognition_section(group: RunGroup, figs: _Figures, colours: Mapping[str, Any],
                         max_samples: int) -> str:
    from fsr_bench.reporting import grids, plots

    slug = _slug(group.title)
    out = [f"## {group.title}\n", "### Matching (paper Table 4 first)\n",
           recognition_table(group.runs), *_absent_references(group.runs)]
    if operating_points_table(group.runs) or open_set_table(group.runs):
        out.append(f"The full operating-point grid (fixed and calibrated thresholds, FAR reached, wrong-identity"
                   f" risk, open set) is in the [appendix](#{_anchor('Appendix: ' + group.title)}) and"
                   f" [`{OPERATING_POINTS_CSV}`]({OPERATING_POINTS_CSV}).\n")
    out.append(figs.add(f"{slug}-metrics", lambda: plots.recognition_bars(
        group.runs, colours, f"{group.title}: per method"), "recognition metrics per method"))
    distances = per_distance_table(group.runs)
    if distances:
        out += ["### Per camera distance\n", distances]
        for run, tag in zip(group.runs, _run_tags(group)):
            out.append(figs.add(f"{slug}-{tag}-distance", partial(plots.per_distance_bars,
                       run, colours, f"{group.title} ×{run.scale}: per distance"), "per-distance results"))
    roc = figs.add(f"{slug}-roc", lambda: plots.roc_curves(
        group.runs, colours, f"{group.title}: verification ROC"), "ROC")
    cmc = figs.add(f"{slug}-cmc", lambda: plots.cmc_curves(
        group.runs, colours, f"{group.title}: identification CMC"), "CMC")
    if roc or cmc:
        out += ["### Verification and identification curves\n",
                "ROC: dots are the table's TAR at FAR = 1e-3 and 1e-2; dashed line = chance.\n", roc, cmc]
    links = [figs.add(f"{slug}-{tag}-samples", partial(grids.recognition_grid,
                      run, colours, max_samples=max_samples), f"probes ×{run.scale}")
        for run, tag in zip(group.runs, _run_tags(group))]
    if any(links):
        out += ["### Visual comparison (paper Fig. 5 layout)\n",
                "Each SR tile shows its cosine similarity to the subject's gallery face"
                " (green ✓: at or above the matching threshold).\n", *links]
    return "\n".join(x for x in out if x)


def _absent_references(runs: Sequence[Run]) -> list[str]:
    """Reference rows a run left out on purpose, with its reason (native LR probes have no HR probes row)."""
    absent: dict[str, str] = {}
    for run in runs:
        recorded = run.conventions.get("absent_references")
        absent.update({str(k): str(v) for k, v in (recorded.items() if isinstance(recorded, Mapping) else ())})
    return [f"*{label}* row absent — {why}.\n" for label, why in absent.items()]


def _appendix(groups: Sequence[RunGroup]) -> str:
    """The full operating-point grids of the recognition groups (the sections lead with one table)."""
    out = []
    for group in groups:
        if group.kind == RECONSTRUCTION:
            continue
        operating, open_set = operating_points_table(group.runs), open_set_table(group.runs)
        if not (operating or open_set):
            continue
        out.append(f"## Appendix: {group.title}\n")
        if operating:
            out += ["### Operating points: fixed 0.4 and calibrated FAR, wrong-identity risk\n", operating]
        if open_set:
            out += ["### Open-set identification (unmated probes)\n", open_set]
    return "\n".join(out)


def _headline(groups: Sequence[RunGroup]) -> str:
    parts = []
    for g in groups:
        scales = "/".join(scale_label(s) for s in g.scales)
        methods = list(dict.fromkeys(r.label for run in g.runs for r in run.rows))
        parts.append(f"- **{g.title}** ({scales}): {len(methods)} methods — {', '.join(methods)}")
    return "\n".join(parts)


def write_report_for(runs: Sequence[Run], out_dir: str | os.PathLike[str], *,
                     crop_box: CropChoice = "default", max_samples: int = 2) -> Path:
    """Write ``out_dir/report.md`` and ``out_dir/figures/*.png`` for already-loaded runs.

    ``crop_box``: a :class:`fsr_bench.reporting.grids.CropBox`, ``None`` for no zoom, or
    ``"default"`` (the eye region). Returns the path of ``report.md``.
    """
    from fsr_bench.reporting.grids import DEFAULT_CROP_BOX
    from fsr_bench.reporting.plots import method_colours

    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    crop = DEFAULT_CROP_BOX if crop_box == "default" else crop_box
    out = Path(out_dir)
    groups = group_runs(runs)
    colours = method_colours(row.label for run in runs for row in run.rows)
    figs = _Figures(out)
    sections = []
    for group in groups:
        if group.kind == RECONSTRUCTION:
            sections.append(_reconstruction_section(group, figs, colours, crop, max_samples))
        else:
            sections.append(_recognition_section(group, figs, colours, max_samples))
    grid = operating_points_csv([run for g in groups if g.kind != RECONSTRUCTION for run in g.runs])
    if grid:
        atomic.write_text(out / OPERATING_POINTS_CSV, grid)
    text = "\n\n".join(x for x in [
        "# fsr-bench report",
        f"Results of {len(runs)} run folder(s), generated by `fsr-bench report`."
        " ↑ higher is better, ↓ lower is better; **bold** is the best method of its column"
        " (per scale where a table has a Scale column).",
        _headline(groups),
        "## What was run\n\n" + _overview(runs, out),
        *sections,
        _appendix(groups),
        _provenance_section(runs, out),
    ] if x)
    return atomic.write_text(out / "report.md", text.rstrip() + "\n")


def write_report(run_dirs: Iterable[str | os.PathLike[str]], out_dir: str | os.PathLike[str] | None = None,
                 *, crop_box: CropChoice = "default", max_samples: int = 2) -> Path:
    """Load run folders and write the report; default ``out_dir`` is ``<first run>/report``.

    Raises :class:`fsr_bench.reporting.load.ReportInputError` (naming the file) for a folder that
    is not a finished, valid run.
    """
    dirs = [Path(d) for d in run_dirs]
    runs = load_runs(dirs)
    return write_report_for(runs, out_dir if out_dir is not None else dirs[0] / "report",
                            crop_box=crop_box, max_samples=max_samples)


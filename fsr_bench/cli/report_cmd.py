"""``fsr-bench report RUN_DIR... [--out DIR]``: finished run folders -> report.md + figures."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from fsr_bench.cli._common import catches_errors, fail, write_failed


@catches_errors
def report(
    run_dirs: List[Path] = typer.Argument(
        ..., help="finished run folders (several are combined, e.g. an ×4 and an ×8 run)",
        show_default=False,
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="output folder for report.md and figures/ (default: FIRST_RUN_DIR/report)",
    ),
    samples: int = typer.Option(2, "--samples", min=1, help="sample rows per visual grid (the paper shows 2)"),
    crop: str = typer.Option(
        "default", "--crop",
        help="zoom box under each grid tile as left,top,right,bottom fractions (e.g."
             " 0.26,0.34,0.74,0.58), 'default' (eye region) or 'none'",
    ),
) -> None:
    """Write a markdown report (paper-layout tables, figures, visual grids) from run folders."""
    from fsr_bench.reporting.grids import parse_crop_box
    from fsr_bench.reporting.load import load_runs
    from fsr_bench.reporting.report import write_report_for
    from fsr_bench.reporting.tables import tables_for_terminal

    if any((d / "sweep.json").is_file() for d in run_dirs):  # a face-size sweep folder: its own report
        if len(run_dirs) != 1:
            raise fail("a face-size sweep folder (sweep.json) makes its report alone; pass it by itself")
        from fsr_bench.reporting.face_size_sweep import load_sweep, sweep_tables, write_sweep_report

        typer.echo(sweep_tables(load_sweep(run_dirs[0])))
        try:
            typer.echo(f"report: {write_sweep_report(run_dirs[0], out)}")
        except OSError as exc:
            raise write_failed(exc, out) from None
        return
    if any((d / "footage.json").is_file() for d in run_dirs):  # a footage run (kind: footage): its own report
        if len(run_dirs) != 1:
            raise fail("a footage run folder (footage.json) makes its report alone; pass it by itself")
        from fsr_bench.reporting.footage import footage_table, write_footage_report
        from fsr_bench.results import read_footage

        typer.echo(footage_table(read_footage(run_dirs[0] / "footage.json")))
        try:
            typer.echo(f"report: {write_footage_report(run_dirs[0], out)}")
        except OSError as exc:
            raise write_failed(exc, out) from None
        return
    choice = crop.strip().lower()
    crop_box: Any = "default" if choice == "default" else None  # "default" | None | CropBox
    if choice not in ("default", "none"):
        try:
            crop_box = parse_crop_box(crop)
        except ValueError as exc:
            raise fail(f"--crop: {exc}") from None
    runs = load_runs(run_dirs)
    typer.echo(tables_for_terminal(runs))
    target = out if out is not None else run_dirs[0] / "report"
    try:
        path = write_report_for(runs, target, crop_box=crop_box, max_samples=samples)
    except OSError as exc:
        raise write_failed(exc, target) from None
    typer.echo(f"report: {path}")

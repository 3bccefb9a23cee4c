"""``fsr-bench run PROTOCOL``: run a benchmark protocol (a YAML path or a bundled name) end to end."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from fsr_bench.cli._common import catches_errors, fail


@catches_errors
def run(
    protocol: Path = typer.Argument(..., help="protocol YAML (protocols/quickstart.yaml) or bundled name (quickstart)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder (default: runs/<protocol name>)"),
    set_: List[str] = typer.Option([], "--set", help="override any protocol key: --set run.batch_size=4 (repeatable)"),
    force: bool = typer.Option(False, "--force", help="recompute models whose finished results would be reused; take over an OUT that another protocol owns"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Run every model of a protocol; write summary.csv, per_image.csv, results.json and a report.

    Precedence: --set > the YAML file > defaults. A rerun reuses models whose results are finished.
    Under `torchrun --nproc_per_node=N fsr-bench run ...` the images (probes, gallery) are sharded
    across the N processes and rank 0 writes the results: the same numbers as one process.
    """
    from fsr_bench.errors import FsrBenchError
    from fsr_bench.protocol import load_protocol
    from fsr_bench.run.outdir import OutputFolderError

    proto = load_protocol(protocol, overrides=set_)
    out_dir = out or Path("runs") / proto.name
    from fsr_bench.run import run_protocol

    try:
        result = run_protocol(proto, out_dir, progress=not quiet, log=typer.echo, force=force)
    except FsrBenchError as exc:  # bad input: a clear message, no traceback
        kept = out_dir / "models"
        # a refused folder (busy, another owner) was not run at all: its models belong to someone else
        reusable = kept.is_dir() and not isinstance(exc, OutputFolderError)
        note = f"\n(finished models are kept in {kept}; a rerun reuses them)" if reusable else ""
        raise fail(f"{exc}{note}") from None
    from fsr_bench.distributed import dist_env

    if dist_env()[0] != 0:  # torchrun: rank 0 wrote the folder and reports it; the others stay quiet
        return
    if proto.kind == "face_size_sweep":  # one recognition run per size + the curves (sweep.json)
        typer.echo(f"\nresults: {out_dir}/sweep.csv, {out_dir}/sweep.json; per size: {out_dir}/sizes/")
        if proto.run.report:
            from fsr_bench.reporting.face_size_sweep import load_sweep, sweep_tables, write_sweep_report

            report = write_sweep_report(out_dir)
            typer.echo(sweep_tables(load_sweep(out_dir)))
            typer.echo(f"report: {report}")
        return
    if proto.kind == "footage":  # one identification table (fsr_bench.run.footage)
        typer.echo(f"\nresults: {out_dir}/identification.csv, {out_dir}/footage.json; per row: {out_dir}/rows/")
        from fsr_bench.reporting.footage import footage_table, write_footage_report

        typer.echo(footage_table(result))
        if proto.run.report:
            typer.echo(f"report: {write_footage_report(out_dir)}")
        return
    typer.echo(f"\nresults: {out_dir}/summary.csv, {out_dir}/results.json")
    if proto.run.report:  # the report reads the result in memory, not results.json back
        from fsr_bench.reporting.load import load_run
        from fsr_bench.reporting.report import write_report_for
        from fsr_bench.reporting.tables import tables_for_terminal

        run_folder = load_run(out_dir, result=result)
        report = write_report_for([run_folder], out_dir / "report")
        typer.echo(tables_for_terminal([run_folder]))
        typer.echo(f"report: {report}")

"""``fsr-bench leaderboard RUN_DIR... -o DIR``: finished runs -> one table (markdown + csv + json)."""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from fsr_bench.cli._common import catches_errors, fail, write_failed


@catches_errors
def leaderboard(
    run_dirs: List[Path] = typer.Argument(..., help="finished run folders (reconstruction and recognition)",
                                          show_default=False),
    out: Path = typer.Option(Path("leaderboard"), "--out", "-o", help="output folder"),
) -> None:
    """Join the same models across runs into one table; every cell names its run and protocol hash."""
    from fsr_bench.reporting.leaderboard import write_leaderboard

    for d in run_dirs:
        if not (d / "results.json").is_file():
            raise fail(f"{d}: no results.json (is it a finished `fsr-bench run` folder?)")
    try:
        path = write_leaderboard(run_dirs, out)
    except ValueError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise write_failed(exc, out) from None
    typer.echo(f"leaderboard: {path}")

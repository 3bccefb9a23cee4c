"""``fsr-bench leaderboard RUN_DIR... -o DIR``: finished runs -> one table (markdown + csv + json).

``fsr-bench leaderboard LEADERBOARD_DIR --add KEY=VALUE... -o DIR`` re-scores a committed leaderboard
with one more row: each protocol it was built from (``runs/<name>/protocol.yaml`` beside its
``leaderboard.json``) is run with that row alone (``--add checkpoint=best.pt`` is ``--set
models.+.checkpoint=best.pt`` on a protocol without its rows and reference rows) into ``DIR/runs/<name>``,
and the table is rebuilt from the committed runs and the new ones, which merge by protocol
(:func:`fsr_bench.reporting.leaderboard.group_runs`). ``--all`` runs the committed rows again too
(``pretrained: true`` rows load the shipped weights; checkpoint rows need their files, which the run
checks before any row starts) and builds the table from the new runs only.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from fsr_bench.cli._common import catches_errors, fail, write_failed


@catches_errors
def leaderboard(
    run_dirs: List[Path] = typer.Argument(..., help="finished run folders (reconstruction and recognition), or with "
                                          "--add one leaderboard folder (leaderboard.json + runs/)",
                                          show_default=False),
    out: Path = typer.Option(Path("leaderboard"), "--out", "-o", help="output folder"),
    add: List[str] = typer.Option([], "--add", help="with a leaderboard folder: one more row, KEY=VALUE of a "
                                  "protocol's model entry (checkpoint=best.pt, label=Mine, name=..., "
                                  "pretrained=true; repeatable), scored on each of its protocols"),
    all_rows: bool = typer.Option(False, "--all", help="with --add: run the committed rows again too"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Join the same models across runs into one table; every cell names its run and protocol hash.

    Runs of the same protocol (same data, degradation and conventions) merge into one table whatever
    their names; with --add, a committed leaderboard is re-scored with one more row.
    """
    from fsr_bench.reporting.leaderboard import write_leaderboard

    if add:
        run_dirs = _rescore(run_dirs, add, out, all_rows, quiet)
    elif all_rows:
        raise fail("--all re-runs a leaderboard's rows with the row given by --add; give --add KEY=VALUE")
    for d in run_dirs:
        if not (d / "results.json").is_file():
            raise fail(f"{d}: no results.json (is it a finished `fsr-bench run` folder?)")
    try:
        path = write_leaderboard(run_dirs, out)
    except OSError as exc:
        raise write_failed(exc, out) from None
    typer.echo(f"leaderboard: {path}")


def _rescore(folders: List[Path], add: List[str], out: Path, all_rows: bool, quiet: bool) -> List[Path]:
    """Run each protocol of a leaderboard folder with the ``--add`` row; the run folders to tabulate."""
    import json

    from fsr_bench.config_io import read_yaml_mapping
    from fsr_bench.protocol import ProtocolError, load_protocol_dict
    from fsr_bench.run import run_protocol

    if len(folders) != 1 or not (folders[0] / "leaderboard.json").is_file():
        raise fail("--add re-scores one leaderboard: give its folder (the one holding leaderboard.json and runs/), "
                   f"not {', '.join(map(str, folders))}")
    board = folders[0]
    try:
        listed = json.loads((board / "leaderboard.json").read_text(encoding="utf-8"))["runs"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise fail(f"{board / 'leaderboard.json'}: not a leaderboard written by `fsr-bench leaderboard` ({exc})") from None
    committed: list[Path] = []
    for entry in listed:  # a committed table's runs live beside it (benchmarks/_runs.sh keep_runs)
        here = board / "runs" / entry["name"]
        folder = here if (here / "protocol.yaml").is_file() else Path(entry.get("folder") or here)
        if folder not in committed:
            committed.append(folder)
    rows = [f"models.+.{item}" for item in add]
    new: list[Path] = []
    for folder in committed:
        doc = read_yaml_mapping(folder / "protocol.yaml", ProtocolError, "protocol")
        if not all_rows:  # the new row alone: the committed rows' numbers are the committed runs'
            doc["models"] = []
            if "references" in doc or doc.get("kind") in ("recognition", "face_size_sweep"):
                doc["references"] = {"hr_probes": False, "lr_image": False}
        doc.setdefault("run", {})["report"] = False  # the table is the report
        proto = load_protocol_dict(doc, rows, source=str(folder / "protocol.yaml"))
        target = out / "runs" / proto.name
        typer.echo(f"{proto.name}: scoring {'every row and ' if all_rows else ''}the added row -> {target}")
        run_protocol(proto, target, progress=not quiet, log=typer.echo)
        new.append(target)
    return new if all_rows else [*committed, *new]

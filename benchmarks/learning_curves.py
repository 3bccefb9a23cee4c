"""Learning curves of training runs (val PSNR vs training minutes and steps) and their budget table.

    python benchmarks/learning_curves.py RUN_DIR[=LABEL] ... -o OUT_DIR [--reference RESULTS_JSON=ROW_NAME ...]

Writes OUT_DIR/learning_curves.png and OUT_DIR/training.md (steps reached, minutes, img/s, best val PSNR).
A ``--reference`` draws a horizontal line at that row's mean PSNR in a scored ``results.json`` (e.g. the
bicubic floor of the same validation split). Used by ``benchmarks/leaderboard_compute.sh score``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fsr_bench import atomic  # noqa: E402
from fsr_bench.reporting.learning_curves import budget_table, curves_figure, read_curve  # noqa: E402
from fsr_bench.reporting.plots import save_figure  # noqa: E402
from fsr_bench.results import read_run  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="RUN_DIR or RUN_DIR=LABEL")
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--title", default="Validation PSNR during training")
    ap.add_argument("--reference", action="append", default=[], help="RESULTS_JSON=ROW_NAME (its psnr)")
    args = ap.parse_args(argv)
    curves = []
    for spec in args.runs:
        path, _, label = spec.partition("=")
        curves.append(read_curve(path, label or None))
    reference = {}
    for spec in args.reference:
        path, _, name = spec.partition("=")
        rows = [r for r in read_run(Path(path)).models if r.name == name]
        if not rows or rows[0].metrics.get("psnr") is None:
            sys.exit(f"error: {path} has no row named {name!r} with a PSNR")
        reference[rows[0].label] = float(rows[0].metrics["psnr"])  # type: ignore[arg-type]
    save_figure(curves_figure(curves, args.title, reference), args.out / "learning_curves.png")
    atomic.write_text(args.out / "training.md", budget_table(curves))
    print(f"wrote {args.out / 'learning_curves.png'} and {args.out / 'training.md'}")


if __name__ == "__main__":
    main()

"""Learning curves read from training run folders (val_log.csv + summary.json), plotted, tabulated."""
import json

import pytest

from fsr_bench.reporting.learning_curves import CurveError, budget_table, curves_figure, read_curve
from fsr_bench.reporting.plots import save_figure


def _run(tmp_path, name, rows, summary):
    run = tmp_path / name
    run.mkdir()
    lines = ["step,epoch,psnr,ssim,n,best,elapsed_s"] + [",".join(map(str, r)) for r in rows]
    (run / "val_log.csv").write_text("\n".join(lines) + "\n")
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_curve_minutes_best_and_table(tmp_path):
    # written out: elapsed 90 s -> 1.5 min; rows out of order are sorted by step; best = max PSNR
    run = _run(tmp_path, "a", [(502, 2.0, 25.10, 0.70, 219, 1, 300.0), (251, 1.0, 24.50, 0.66, 219, 1, 90.0)],
               {"steps": 600, "elapsed_s": 372.0, "img_per_s_median": 13.27, "stop_reason": "time budget"})
    c = read_curve(run, "TANet-S")
    assert c.steps == (251, 502) and c.minutes == (1.5, 5.0) and c.best == (502, 25.10)
    table = budget_table([c])
    assert "| TANet-S | 600 | 6.2 | 13.3 | 25.10 | 502 | time budget |" in table
    out = save_figure(curves_figure([c], "t", {"Bicubic": 24.0}), tmp_path / "curves.png")
    assert out.stat().st_size > 1000


def test_bad_run_folders_name_the_file(tmp_path):
    with pytest.raises(CurveError, match="val_log.csv"):
        read_curve(tmp_path)
    run = _run(tmp_path, "b", [(1, 0.1, 20.0, 0.5, 2, 1, 3.0)], {})
    (run / "summary.json").write_text("{not json")
    with pytest.raises(CurveError, match="summary.json"):
        read_curve(run)
    (run / "val_log.csv").write_text("step,epoch\n1,0.1\n")
    with pytest.raises(CurveError, match="missing columns"):
        read_curve(run)

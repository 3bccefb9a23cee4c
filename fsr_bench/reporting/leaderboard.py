"""One table from many finished runs: reconstruction and recognition side by side, each cell traceable.

``fsr-bench leaderboard RUN_DIR... -o DIR`` reads every run's ``results.json`` through the results
schema (:func:`fsr_bench.results.read_run`), and joins rows that are the *same model* — same
registered name and same weights (checkpoint sha256; none for parameter-free floors and reference
rows) — into one line per method. Columns:

* method (the row label), registered name, role, parameters, the training budget from the row's
  ``training`` record (:func:`fsr_bench.models.checkpoint.training_record`: steps, epochs, minutes,
  machine as ``fsr-bench train`` recorded them, the whole run's for a ``best.pt``, with the step the
  weights were selected at; a shipped model's from its model card), so a leaderboard rebuilds from
  committed results files alone;
* per run, its headline metrics with the run's short name as prefix (``faces256_val_x8:psnr``), the
  metric's direction from :mod:`fsr_bench.metrics.specs`; a recognition run scored with several
  recognisers gets each recogniser's columns instead (``lfw_surveillance_x8:dlib:tar_cal_1e-3``:
  rank-1, TAR at the calibrated FAR 1e-3, EER — the fixed 0.4 threshold is MobileFaceNet's and does
  not carry over), and a cell whose row was **trained with that recogniser's features** is marked
  † in the markdown (``trained_with`` in the csv/json);
* ``sources``: every run a line came from, with its protocol hash.

Written as ``leaderboard.md`` (pandas + tabulate), ``leaderboard.csv`` and ``leaderboard.json``.
Nothing is re-computed here: a number that is not in a results file is not in the leaderboard.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from fsr_bench import atomic
from fsr_bench.results import RunResult, read_run, shown_label

RECONSTRUCTION = ("psnr", "ssim", "lpips", "identity_cosine")
RECOGNITION = ("matching_accuracy", "rank1", "tar_at_far_1e-3", "eer", "tar_cal_1e-3", "wrong_id_cal_1e-3")
#: per recogniser, where a run has several: metrics that mean the same for every recogniser
PER_RECOGNISER = ("rank1", "tar_cal_1e-3", "eer")


def _budget(row: Any) -> dict[str, Any]:
    """What the weights cost: the row's ``training`` record, written by the runner from the checkpoint
    or the shipped model's card (never typed in; a row without one has no budget columns)."""
    return dict(getattr(row, "training", None) or {})


def leaderboard_rows(runs: Sequence[tuple[str, RunResult]]) -> list[dict[str, Any]]:
    lines: dict[tuple[str, str | None, str], dict[str, Any]] = {}
    for run_name, run in runs:
        wanted = RECONSTRUCTION if run.kind == "reconstruction" else RECOGNITION
        for row in run.models:
            key = (row.name, getattr(row, "checkpoint_sha256", None), row.label if row.role == "reference" else "")
            line = lines.setdefault(key, {"method": shown_label(row.label, getattr(row, "variant", None)), "name": row.name, "role": row.role,
                                          "params": row.params, "weights_sha256": key[1],
                                          **{f"budget_{k}": v for k, v in _budget(row).items()}, "sources": []})
            line["params"] = line["params"] if line["params"] is not None else row.params
            by = dict(getattr(row, "by_recogniser", None) or {}) if run.kind == "recognition" else {}
            if len(by) > 1:
                for rec, block in by.items():
                    metrics = (block or {}).get("metrics") or {}
                    for metric in PER_RECOGNISER:
                        if metrics.get(metric) is not None:
                            line[f"{run_name}:{rec}:{metric}"] = metrics[metric]
                    if (block or {}).get("trained_with"):
                        line.setdefault("trained_with", [])
                        if rec not in line["trained_with"]:
                            line["trained_with"].append(rec)
            else:
                for metric in wanted:
                    value = row.metrics.get(metric)
                    if value is not None:
                        line[f"{run_name}:{metric}"] = value
            line["sources"].append(f"{run_name} (protocol {run.protocol_name} #{run.protocol_hash[:12]})")
    return list(lines.values())


def write_leaderboard(run_dirs: Sequence[Path], out: Path) -> Path:
    import pandas as pd

    runs = []
    for d in run_dirs:
        run = read_run(Path(d) / "results.json")
        runs.append((run.protocol_name or Path(d).name, run))
    names = [n for n, _ in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"two runs share a protocol name ({names}); rename one protocol (name:) to tell them apart")
    rows = leaderboard_rows(runs)
    frame = pd.DataFrame(rows)
    frame["sources"] = frame["sources"].map("; ".join)
    trained = [set(r.get("trained_with") or ()) for r in rows]
    if "trained_with" in frame:
        frame["trained_with"] = frame["trained_with"].map(lambda v: "; ".join(v) if isinstance(v, list) else "")
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "leaderboard.csv", frame.to_csv(index=False))
    atomic.write_text(out / "leaderboard.json", json.dumps(
        {"runs": [{"name": n, "protocol_hash": r.protocol_hash, "kind": r.kind,
                   "conventions": r.conventions} for n, r in runs], "rows": rows}, indent=1, default=str) + "\n")
    shown = frame.drop(columns=[c for c in ("weights_sha256", "sources") if c in frame])
    metric_cols = [c for c in shown.columns if ":" in c]
    formats = {c: (lambda v: "" if pd.isna(v) else f"{v:.4f}" if abs(v) < 2 else f"{v:.2f}") for c in metric_cols}
    for col, fmt in formats.items():
        shown[col] = shown[col].map(fmt)
        parts = col.split(":")
        if len(parts) == 3:  # run:recogniser:metric — mark the rows whose loss used this recogniser
            shown[col] = [f"{v} †" if v and parts[1] in t else v for v, t in zip(shown[col], trained)]
    shown = shown.drop(columns=[c for c in ("trained_with",) if c in shown])
    if "params" in shown:
        shown["params"] = shown["params"].map(lambda v: "" if pd.isna(v) else f"{int(v):,}")
    shown = shown.astype(object).where(shown.notna(), "")
    notes = "\n".join(f"- `{n}`: {r.kind}, protocol `{r.protocol_name}` #{r.protocol_hash[:12]}" for n, r in runs)
    if any(c.count(":") == 2 for c in metric_cols):
        notes += ("\n\n`run:recogniser:metric` columns: each recogniser's own calibrated threshold (TAR at FAR 1e-3 set"
                  " on disjoint calibration subjects), rank-1 and EER. †: the row was trained with that recogniser's"
                  " features (an identity loss), so its figure is not an independent measurement.")
    text = (
        "# Leaderboard\n\nGenerated by `fsr-bench leaderboard` from the run folders below; every number comes from "
        "their `results.json` (nothing recomputed). Budget columns are each row's training record, read from its checkpoint "
        "when the run was scored: `budget_steps` is what the whole training run cost, `budget_selected_step` "
        "where the weights were picked.\n\n"
        + shown.to_markdown(index=False, disable_numparse=True) + "\n\n## Runs\n\n" + notes + "\n"
    )
    return atomic.write_text(out / "leaderboard.md", text)

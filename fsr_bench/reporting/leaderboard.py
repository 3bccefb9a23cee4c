"""One table from many finished runs: reconstruction and recognition side by side, each cell traceable.

``fsr-bench leaderboard RUN_DIR... -o DIR`` reads every run's ``results.json`` through the results
schema (:func:`fsr_bench.results.read_run`), and joins rows that are the *same model* — same
registered name, same weights (checkpoint sha256; none for parameter-free floors and reference
rows) and same config overrides — into one line per method.

``leaderboard.csv`` / ``leaderboard.json`` are the raw joined table. Columns:

* method (the row label), registered name, role, parameters, the training budget from the row's
  ``training`` record (:func:`fsr_bench.models.checkpoint.training_record`: steps, epochs, minutes,
  machine as ``fsr-bench train`` recorded them, the whole run's for a ``best.pt``, with the step the
  weights were selected at; a shipped model's from its model card), so a leaderboard rebuilds from
  committed results files alone;
* per run, its headline metrics with the run's short name as prefix (``faces256_val_x8:psnr``); a
  recognition run scored with several recognisers gets each recogniser's columns instead
  (``lfw_surveillance_x8:dlib:tar_cal_1e-3``: rank-1, TAR at the calibrated FAR 1e-3, EER — the fixed
  0.4 threshold is MobileFaceNet's and does not carry over), with ``trained_with`` naming the
  recognisers a row was **trained with** (an identity loss);
* ``sources``: every run a line came from, with its protocol hash.

``leaderboard.md`` is what a reader takes in at a glance: per task (reconstruction, recognition) one
table per run of at most eight columns — method, budget (one column), the metrics under their own
names with unit and ↑/↓ and at their printed precision (all from :mod:`fsr_bench.metrics.specs`),
the best of each column in bold, † on a figure of the recogniser in the row's loss (not ranked).
**Runs of one protocol merge.** Two runs whose numbers are comparable — the same protocol up to its rows
(:func:`comparable_hash`: data, degradation, metrics and recognition conventions, seed, limit and
precision; not the name, description, rows, reference rows or device) — are one table whatever their
names, so a run of only your model joins the committed runs of that protocol; runs that share a name but
not those parts are refused, naming the keys that differ. A row scored on the very split its weights were
selected on (``training.selected_on_evaluated_data``) is marked ‡ in that protocol's table, with one note.

Nothing is re-computed here: a number that is not in a results file is not in the leaderboard.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from fsr_bench import atomic
from fsr_bench.config_io import is_path_key
from fsr_bench.errors import FsrBenchError
from fsr_bench.metrics.specs import Metric, metric
from fsr_bench.provenance import stable_hash
from fsr_bench.reporting.load import Run
from fsr_bench.reporting.paper import paper_line
from fsr_bench.reporting.tables import _bold, _format_params, best_flags, markdown_table
from fsr_bench.results import (
    SELECTION_NOTE,
    OperatingPoints,
    RecognitionRow,
    ReconstructionRow,
    RunResult,
    op_column,
    read_run,
    shown_label,
)

RECONSTRUCTION = ("psnr", "ssim", "lpips", "mps", "identity_cosine")
#: the calibrated target FAR whose TAR and wrong-identity rate the leaderboard shows
CAL_FAR = 1e-3
TAR_CAL, WRONG_ID_CAL = op_column("tar", "cal", CAL_FAR), op_column("wrong_id", "cal", CAL_FAR)
RECOGNITION = ("matching_accuracy", "rank1", "tar_at_far_1e-3", "eer", TAR_CAL, WRONG_ID_CAL)
#: per recogniser, where a run has several: metrics that mean the same for every recogniser
PER_RECOGNISER = ("rank1", TAR_CAL, "eer")


def _recognition_values(metrics: Mapping[str, Any], ops: OperatingPoints | None,
                        wanted: Sequence[str]) -> dict[str, Any]:
    """The wanted columns of one recogniser's numbers; the calibrated ones read from its operating points."""
    cal = ops.at_far(CAL_FAR) if ops is not None else None
    points = {TAR_CAL: cal.tar if cal else None, WRONG_ID_CAL: cal.wrong_id if cal else None}
    return {k: points[k] if k in points else metrics.get(k) for k in wanted}


SELECTED = "‡"
#: run settings that change a number (the rest — device, batch size, samples, report — do not)
COMPARABLE_RUN_KEYS = ("seed", "limit", "precision", "channels_last")


class LeaderboardError(FsrBenchError, ValueError):
    """Runs that cannot share a leaderboard; the message names them and what differs."""


def comparable_parts(run: RunResult) -> dict[str, Any]:
    """What must be equal for two runs' numbers to share a table: the protocol (normalised by the current
    schema, so defaults added since a run was written compare equal) without its name, description, rows
    and reference rows, the run settings of :data:`COMPARABLE_RUN_KEYS`, and paths by their last part
    (a checkout's ``../shared/data/lfw`` and a user's ``/data/lfw`` are the same data)."""
    from fsr_bench.protocol import load_protocol_dict

    doc = dict(run.protocol)
    try:
        doc = load_protocol_dict(doc, source="results.json").model_dump(mode="json")
    except FsrBenchError:  # a protocol this version no longer reads: compare it as written
        pass
    doc = {k: v for k, v in doc.items() if k not in ("name", "description", "models", "references")}
    doc["run"] = {k: v for k, v in (doc.get("run") or {}).items() if k in COMPARABLE_RUN_KEYS}
    return _paths_by_name(doc)


def _paths_by_name(node: Any, path_key: bool = False) -> Any:
    if isinstance(node, dict):
        return {k: _paths_by_name(v, is_path_key(str(k))) for k, v in node.items()}
    if isinstance(node, list):
        return [_paths_by_name(v, path_key) for v in node]
    return Path(node).name if path_key and isinstance(node, str) else node


def comparable_hash(run: RunResult) -> str:
    return stable_hash(comparable_parts(run))


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict) and d:
        return {k: v for key, val in d.items() for k, v in _flat(val, f"{prefix}{key}.").items()}
    return {prefix[:-1]: d}


def group_runs(runs: Sequence[tuple[str, RunResult]]) -> list[tuple[str, list[tuple[str, RunResult]]]]:
    """Runs grouped by :func:`comparable_hash`, each group named by its first run; a name used by two
    groups is a :class:`LeaderboardError` naming the keys that differ."""
    groups: dict[str, tuple[str, list[tuple[str, RunResult]]]] = {}
    first_of_name: dict[str, tuple[str, RunResult]] = {}
    for name, run in runs:
        key = comparable_hash(run)
        if name in first_of_name and comparable_hash(first_of_name[name][1]) != key:
            a, b = _flat(comparable_parts(first_of_name[name][1])), _flat(comparable_parts(run))
            diff = [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            raise LeaderboardError(
                f"two runs are named {name!r} but are not the same protocol (its data, degradation or conventions "
                f"differ: {'; '.join(diff[:6]) or 'see their results.json'}), so their numbers cannot share a table; "
                "score both on the same protocol, or rename one (name:) to show them as separate columns")
        first_of_name.setdefault(name, (name, run))
        groups.setdefault(key, (name, []))[1].append((name, run))
    return list(groups.values())


def leaderboard_rows(runs: Sequence[tuple[str, RunResult]]) -> list[dict[str, Any]]:
    """One line per model (name + weights + overrides); columns ``<protocol>:<metric>``, runs of one
    protocol merged (:func:`group_runs`); a row scored in two runs of one protocol keeps the first's numbers."""
    lines: dict[tuple[str, str | None, str, str], dict[str, Any]] = {}
    for run_name, run in ((group, run) for group, members in group_runs(runs) for _, run in members):
        for row in run.models:
            key = (row.name, row.checkpoint_sha256, row.label if row.role == "reference" else "",
                   stable_hash(row.overrides))  # the same weights built another way are another model
            if key in lines and any(c.startswith(f"{run_name}:") for c in lines[key]):
                continue  # already scored in another run of this protocol (the references of a one-row run)
            params = row.params if isinstance(row, ReconstructionRow) else None
            line = lines.setdefault(key, {"method": shown_label(row.label, row.variant), "name": row.name,
                                          "role": row.role, "params": params, "weights_sha256": key[1],
                                          **{f"budget_{k}": v for k, v in (row.training or {}).items()},
                                          "sources": []})
            line["params"] = line["params"] if line["params"] is not None else params
            if isinstance(row, RecognitionRow) and len(row.by_recogniser) > 1:
                for rec, block in row.by_recogniser.items():
                    values = _recognition_values(block.metrics, block.operating_points, PER_RECOGNISER)
                    line.update({f"{run_name}:{rec}:{k}": v for k, v in values.items() if v is not None})
                    if block.trained_with:
                        line.setdefault("trained_with", [])
                        if rec not in line["trained_with"]:
                            line["trained_with"].append(rec)
            else:
                values = (_recognition_values(row.metrics, row.operating_points, RECOGNITION)
                          if isinstance(row, RecognitionRow) else {k: row.metrics.get(k) for k in RECONSTRUCTION})
                line.update({f"{run_name}:{k}": v for k, v in values.items() if v is not None})
            if row.selected_on_evaluated_data:
                line.setdefault("selected_on", [])
                line["selected_on"].append(run_name)
            line["sources"].append(f"{run_name} (protocol {run.protocol_name} #{run.protocol_hash[:12]})")
    return list(lines.values())


def write_leaderboard(run_dirs: Sequence[Path], out: Path) -> Path:
    import pandas as pd

    runs = []
    for d in run_dirs:
        run = read_run(Path(d) / "results.json")
        runs.append((run.protocol_name or Path(d).name, run))
    rows = leaderboard_rows(runs)
    frame = pd.DataFrame(rows)
    frame["sources"] = frame["sources"].map("; ".join)
    for col in ("trained_with", "selected_on"):
        if col in frame:
            frame[col] = frame[col].map(lambda v: "; ".join(v) if isinstance(v, list) else "")
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "leaderboard.csv", frame.to_csv(index=False))
    atomic.write_text(out / "leaderboard.json", json.dumps(
        {"runs": [{"name": n, "folder": str(d), "protocol_hash": r.protocol_hash, "comparable_hash": comparable_hash(r),
                   "kind": r.kind, "conventions": r.conventions} for (n, r), d in zip(runs, run_dirs)],
         "rows": rows}, indent=1, default=str) + "\n")
    views = {n: _view(Path(d), r) for d, (n, r) in zip(run_dirs, runs)}
    paper = {n: paper_line(v) for n, v in views.items() if v is not None}
    return atomic.write_text(out / "leaderboard.md", leaderboard_markdown(runs, rows, paper))


def _view(path: Path, run: RunResult) -> Run | None:
    """The run as the report reads it, from results.json alone (the paper line needs no more);
    None when the run records no scale (then no paper figure can be named for it)."""
    scale = next((block["scale"] for block in (run.conventions.get(k) for k in ("degradation", "dataset"))
                  if isinstance(block, Mapping) and isinstance(block.get("scale"), int)), None)
    if scale is None:
        return None
    return Run(path=path, kind=run.kind, protocol_name=run.protocol_name or path.name, protocol_hash=run.protocol_hash,
               protocol=run.protocol, conventions=run.conventions, provenance=run.provenance, scale=scale, rows=())


# -- the markdown: one compact table per run -------------------------------------------------------
#: at most this many recognisers side by side in one recognition table (method + budget + 3 each <= 8)
_RECOGNISERS_PER_TABLE = 2
_NONE = "—"
#: the single-recogniser columns in reading order: the paper's figure, then identification, then the two TARs
_RECOGNITION_SHOWN = ("matching_accuracy", "rank1", "tar_at_far_1e-3", TAR_CAL, WRONG_ID_CAL, "eer")


def _budget_text(line: Mapping[str, Any]) -> str:
    """``1,506 steps · 46.2 min``, and the step the weights were picked at when it is not the last."""
    steps, minutes, picked = (line.get(f"budget_{k}") for k in ("steps", "train_minutes", "selected_step"))
    if steps is None:
        return _NONE
    text = f"{int(steps):,} steps"
    if minutes is not None:
        text += f" · {float(minutes):.1f} min"
    if picked is not None and int(picked) != int(steps):
        text += f" (weights of step {int(picked):,})"
    return text


def _cells(lines: Sequence[Mapping[str, Any]], keys: Sequence[tuple[str, Metric, str | None]]) -> list[list[str]]:
    """Metric cells, the best of each column in bold among the rows that compete (not references),
    † where the column's recogniser was in the row's loss."""
    columns = []
    for key, m, rec in keys:
        values = [line.get(key) for line in lines]
        dagger = [bool(rec) and rec in (line.get("trained_with") or ()) for line in lines]
        flags = best_flags([None if line["role"] == "reference" or d else v
                            for line, v, d in zip(lines, values, dagger)], m)
        columns.append([_bold(m.number(v), f) + (" †" if d else "") if v is not None else ""
                        for v, f, d in zip(values, flags, dagger)])
    return [list(row) for row in zip(*columns)] if columns else [[] for _ in lines]


def _method(line: Mapping[str, Any], run: str) -> str:
    """The method cell of one run's table: ‡ when the row's weights were selected on that run's data."""
    return f"{line['method']} {SELECTED}" if run in (line.get("selected_on") or ()) else str(line["method"])


def _present(lines: Sequence[Mapping[str, Any]], key: str) -> bool:
    return any(line.get(key) is not None for line in lines)


def _reconstruction_table(name: str, lines: Sequence[Mapping[str, Any]]) -> str:
    keys = [(f"{name}:{k}", metric(k), None) for k in RECONSTRUCTION if _present(lines, f"{name}:{k}")]
    rows = [line for line in lines if any(line.get(k) is not None for k, _, _ in keys)]
    body = [[_method(line, name), _format_params(line.get("params")), _budget_text(line), *cells]
            for line, cells in zip(rows, _cells(rows, keys))]
    return markdown_table(["Method", "Params", "Budget", *(m.column for _, m, _ in keys)], body,
                          "lrl" + "r" * len(keys))


def _recognition_tables(name: str, lines: Sequence[Mapping[str, Any]]) -> list[str]:
    recs = list(dict.fromkeys(k.split(":")[1] for line in lines for k in line if k.count(":") == 2
                              and k.startswith(f"{name}:")))
    groups: list[list[tuple[str, Metric, str | None]]]
    if recs:  # several recognisers: each one's own calibrated columns, two recognisers a table
        groups = [[(f"{name}:{r}:{k}", metric(k), r) for r in recs[i:i + _RECOGNISERS_PER_TABLE]
                   for k in PER_RECOGNISER] for i in range(0, len(recs), _RECOGNISERS_PER_TABLE)]
        heads = [[f"{rec} {m.column}" for _, m, rec in keys] for keys in groups]
    else:
        groups = [[(f"{name}:{k}", metric(k), None) for k in _RECOGNITION_SHOWN]]
        heads = [[m.column for _, m, _ in keys] for keys in groups]
    tables = []
    for keys, head in zip(groups, heads):
        keep = [i for i, (k, _, _) in enumerate(keys) if _present(lines, k)]
        keys, head = [keys[i] for i in keep], [head[i] for i in keep]
        rows = [line for line in lines if any(line.get(k) is not None for k, _, _ in keys)]
        body = [[_method(line, name), _budget_text(line), *cells] for line, cells in zip(rows, _cells(rows, keys))]
        tables.append(markdown_table(["Method", "Budget", *head], body, "ll" + "r" * len(keys)))
    return tables


_TAR_NOTE = ("TAR@FAR=1e-3: each row's threshold set on its own evaluation impostor scores so that FAR ≤ 1e-3."
             " TAR@cal 1e-3: one threshold per recogniser, calibrated to FAR 1e-3 on HR-vs-HR comparisons of"
             " subjects disjoint from the evaluation subjects and applied unchanged to every row (a deployed"
             " system's operating point; the FAR it reaches on the evaluation impostors is in each run's"
             " `results.json` and report); WrongID@cal: probes whose rank-1 is a wrong subject at or above that threshold.")


def leaderboard_markdown(runs: Sequence[tuple[str, RunResult]], lines: Sequence[Mapping[str, Any]],
                         paper: Mapping[str, str] | None = None) -> str:
    """``leaderboard.md``: per task (reconstruction, then recognition) one table per run, each at most
    eight columns with the metrics' own names, units, directions and precision
    (:mod:`fsr_bench.metrics.specs`); the raw joined table is ``leaderboard.csv``."""
    groups = group_runs(runs)
    sections = []
    for kind, title in (("reconstruction", "Reconstruction"), ("recognition", "Recognition")):
        named = [n for n, members in groups if members[0][1].kind == kind]  # runs of one protocol: one table
        if not named:
            continue
        parts = [f"## {title}"]
        for n in named:
            tables = _reconstruction_table(n, lines) if kind == "reconstruction" else "\n\n".join(
                _recognition_tables(n, lines))
            line = (paper or {}).get(n)
            parts.append(f"### {n}\n\n{tables}" + (f"\n\n{line}" if line else ""))
        sections.append("\n\n".join(parts))
    notes = ["**Bold**: the best of each column among the methods (reference rows are shown, not ranked).",
             "Budget: optimizer steps of the whole training run and its wall-clock minutes, from each row's"
             " training record (machine, precision and threads: the `budget_*` columns of `leaderboard.csv`);"
             f" {_NONE}: no training (a parameter-free floor or a reference row)."]
    thresholds = sorted({float(r.conventions["threshold"]) for _, r in runs
                         if r.kind == "recognition" and r.conventions.get("threshold") is not None})
    if thresholds:
        notes.append("Matching Accuracy: share of all probes whose similarity to their own gallery face is at or"
                     f" above the fixed threshold {' / '.join(f'{t:g}' for t in thresholds)} (the paper's rule).")
    if any(r.kind == "recognition" for _, r in runs):
        notes.append(_TAR_NOTE)
    if any(k.count(":") == 2 for line in lines for k in line):
        notes.append("Several recognisers: each with its own calibrated threshold (the fixed 0.4 is MobileFaceNet's"
                     " and does not carry over), rank-1 and EER. †: the row was trained with that recogniser's"
                     " features (an identity loss), so its figure is not an independent measurement and is not"
                     " ranked for bold.")
    if any(line.get("selected_on") for line in lines):
        notes.append(f"{SELECTED}: {SELECTION_NOTE} (that run's table).")
    group_of = {id(r): group for group, members in groups for _, r in members}
    runs_text = "\n".join(f"- `{n}`: {r.kind}, protocol `{r.protocol_name}` #{r.protocol_hash[:12]}"
                          + (f" (the same protocol as `{group_of[id(r)]}`: its table)" if group_of[id(r)] != n else "")
                          for n, r in runs)
    return (
        "# Leaderboard\n\nGenerated by `fsr-bench leaderboard` from the run folders below; every number comes from "
        "their `results.json` (nothing recomputed); `leaderboard.csv` holds the whole joined table with raw values, "
        "weights sha256 and sources.\n\n" + "\n\n".join(sections) + "\n\n"
        + "\n".join(f"- {n}" for n in notes) + "\n\n## Runs\n\n" + runs_text + "\n"
    )

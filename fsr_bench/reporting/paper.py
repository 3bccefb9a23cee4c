"""The TANet paper's published figures beside ours: reference rows where a run follows the paper's
protocol, and otherwise one line naming the nearest published figures and why they are not the same.

The figures are transcribed once, with their table cited, in ``tanet_paper.json`` beside this file
(Wang et al., arXiv:2109.08174, Tables 1-4; ``tests/test_paper_reference.py`` checks every entry
against the paper text). They are *reported*, not measured here: tables print them as "— paper
(reported)" rows that never compete for bold.

Which runs follow the paper (its "Datasets and Implementation Details" and Table 4 text):

* reconstruction on the ``ffhq`` (Table 2, with Table 1's ablation rows) or ``celeba`` (Table 3)
  dataset presets, bicubic LR, ×4 or ×8;
* recognition on SCface, all 130 subjects, ×8, MobileFaceNet at the fixed threshold 0.4 (Table 4).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

from fsr_bench.reporting.load import RECONSTRUCTION, Run

__all__ = ["PAPER_FILE", "PaperRow", "nearest_paper_line", "paper_line", "paper_note", "paper_rows"]

PAPER_FILE = Path(__file__).with_name("tanet_paper.json")
SUFFIX = " — paper (reported)"
_DATASET_TABLES = {"ffhq": ("2", "1"), "celeba": ("3",)}
_NAMES = {"ffhq": "FFHQ", "celeba": "CelebA", "scface": "SCface"}


@dataclass(frozen=True)
class PaperRow:
    """One published row: the paper's method name, its table and its figures (fractions for percentages)."""

    method: str
    table: str
    scale: int
    metrics: Mapping[str, float | None]
    undetected: bool = False

    @property
    def label(self) -> str:
        return f"{self.method}{SUFFIX}"


@lru_cache(maxsize=1)
def _paper() -> Mapping[str, Any]:
    return json.loads(PAPER_FILE.read_text(encoding="utf-8"))


def _rows(table: str, scale: int) -> list[PaperRow]:
    block = _paper()["tables"][table]
    return [PaperRow(method=r["method"], table=table, scale=r["scale"], undetected=bool(r.get("undetected")),
                     metrics={k: r.get(k) for k in block["metrics"]})
            for r in block["rows"] if r["scale"] == scale]


def _dataset_type(run: Run) -> str:
    """The protocol's dataset preset (``ffhq``, ``celeba``, ``scface``, …): the runner's description
    says ``folder`` for every face-folder preset, so the protocol as run is read first."""
    data = run.protocol.get("data") if isinstance(run.protocol, Mapping) else None
    data = data if isinstance(data, Mapping) else {}
    inner = data["dataset"] if isinstance(data.get("dataset"), Mapping) else data
    return str(inner.get("type") or run.dataset.get("type") or "unknown")


def _differences(run: Run) -> list[str]:
    """Why ``run`` is not the paper's protocol (empty when it is)."""
    kind, dtype = run.kind, _dataset_type(run)
    why = []
    if kind == RECONSTRUCTION:
        if dtype not in _DATASET_TABLES:
            why.append(f"the faces are {run.dataset_name}, not the paper's FFHQ/CelebA test split")
        degradation = str((run.conventions.get("degradation") or {}).get("type") or "unknown")
        if degradation != "bicubic":
            why.append(f"LR made by `{degradation}`, not bicubic downsampling")
        if run.scale not in (4, 8):
            why.append(f"the paper reports ×4 and ×8, this run is ×{run.scale}")
        return why
    if dtype != "scface":
        why.append(f"the probes are {run.dataset_name} ({dtype}), not SCface's surveillance-camera captures"
                   " of its 130 subjects")
    elif run.dataset.get("subjects") != "all":
        why.append(f"SCface subjects `{run.dataset.get('subjects')}`, not all 130")
    if run.scale != 8:
        why.append(f"the paper's Table 4 is ×8, this run is ×{run.scale}")
    recogniser = (run.conventions.get("recogniser") or {}).get("name")
    if recogniser != "mobilefacenet":
        why.append(f"recogniser {recogniser}, not MobileFaceNet")
    if run.conventions.get("threshold") != 0.4:
        why.append(f"threshold {run.conventions.get('threshold')}, not 0.4")
    return why


def _tables_for(run: Run) -> tuple[str, ...]:
    if run.kind != RECONSTRUCTION:
        return ("4",)
    return _DATASET_TABLES.get(_dataset_type(run), ("2",))  # 256x256 FFHQ is the nearest for other faces


def paper_rows(run: Run) -> list[PaperRow]:
    """The paper's rows for a run that follows its protocol (none for any other run)."""
    if _differences(run):
        return []
    rows: list[PaperRow] = []
    for table in _tables_for(run):
        seen = {r.method for r in rows}
        rows += [r for r in _rows(table, run.scale) if r.method not in seen]  # Table 1's TANet = Table 2's
    return rows


def paper_note(runs: Sequence[Run]) -> str | None:
    """The footnote under a table that carries paper rows."""
    tables = sorted({t for run in runs if paper_rows(run) for t in _tables_for(run)})
    if not tables:
        return None
    return (f"*— paper (reported)*: the figures the TANet paper publishes for this protocol"
            f" ({', '.join('Table ' + t for t in tables)}; Wang et al., arXiv:2109.08174), transcribed in"
            f" `fsr_bench/reporting/{PAPER_FILE.name}` — not measured here and never bolded; {_paper()['setup']}.")


def nearest_paper_line(runs: Sequence[Run]) -> str | None:
    """For runs that do not follow the paper: which of its figures are nearest, and why they differ."""
    parts = []
    for run in runs:
        why = _differences(run)
        if not why:
            continue
        scale = min((4, 8), key=lambda s: abs(s - run.scale)) if run.kind == RECONSTRUCTION else 8
        table = _tables_for(run)[0]
        block = _paper()["tables"][table]
        dataset = _NAMES[block["dataset"]]
        keys = ("psnr", "ssim") if run.kind == RECONSTRUCTION else ("matching_accuracy", "average_similarity")
        quoted = "; ".join(
            f"{r.method} " + " / ".join(_quote(k, r.metrics.get(k)) for k in keys)
            for r in _rows(table, scale) if r.method in ("Bicubic", "TANet"))
        parts.append(f"×{run.scale}: nearest is Table {table} ({dataset} ×{scale}: {quoted}), not the same"
                     f" protocol — {'; '.join(why)}")
    if not parts:
        return None
    return "Paper comparison: " + " | ".join(dict.fromkeys(parts)) + "."


def _quote(key: str, value: float | None) -> str:
    from fsr_bench.metrics.specs import metric

    m = metric(key)
    return m.format(value) + (f" {m.unit}" if m.unit else "")


def paper_line(run: Run) -> str:
    """One line for a table without room for the paper's rows (the leaderboard): the published
    figures of the run's protocol, or the nearest ones and what differs."""
    rows = paper_rows(run)
    if not rows:
        return nearest_paper_line([run]) or ""
    tables = ", ".join(f"Table {t}" for t in _tables_for(run))
    quoted = "; ".join(f"{r.method} " + " / ".join(_quote(k, v) for k, v in r.metrics.items() if v is not None)
                       for r in rows if not r.undetected)
    return (f"Paper (reported, not measured here; {tables}, {_NAMES[_paper()['tables'][_tables_for(run)[0]]['dataset']]}"
            f" ×{run.scale}): {quoted}.")

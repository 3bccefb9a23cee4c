"""The report of a ``kind: footage`` run: one identification table (per track and per face) with
every operating point, read from ``OUT/footage.json`` (:class:`fsr_bench.results.FootageResult`)."""
from __future__ import annotations

import os
from pathlib import Path

from fsr_bench import atomic
from fsr_bench.results import FootageResult, read_footage

__all__ = ["footage_table", "write_footage_report"]


def _pct(v: float | None, ci: list[float] | None = None) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}%" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def _source(point) -> str:
    src = point.source
    if src.get("kind") == "calibrated":
        reached = src.get("far_reached")
        return (f"calibrated at FAR {src.get('target_far'):g} on HR-vs-HR pairs of disjoint subjects by run "
                f"{src.get('protocol_name')} #{str(src.get('protocol_hash'))[:12]} ({src.get('recogniser')}"
                + (f"; FAR reached there {100 * reached:.2f}%" if isinstance(reached, (int, float)) else "") + ")")
    return "stated"


def footage_table(result: FootageResult) -> str:
    """Markdown: one table per level; rows = No SR and the models, columns = rank-1, then TAR and
    wrong-identity rate at each operating point."""
    labels = [p.label for p in result.operating_points]
    parts = []
    for level, title in (("track", "Per track"), ("face", "Per face")):
        head = ["Method", "n (mated)", "Rank-1 ↑", *(f"TAR@{k} ↑" for k in labels), *(f"WrongID@{k} ↓" for k in labels)]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        for row in result.rows:
            lv = row.track if level == "track" else row.face
            name = f"{row.label} (reference)" if row.role == "reference" else row.label
            ci = lv.ci95
            lines.append("| " + " | ".join([name, f"{lv.n} ({lv.n_mated})", _pct(lv.rank1, ci.get("rank1")),
                                            *(_pct(lv.tar[k], ci.get(f"tar@{k}")) for k in labels),
                                            *(_pct(lv.wrong_id[k], ci.get(f"wrong_id@{k}")) for k in labels)]) + " |")
        parts.append(f"**{title}**\n\n" + "\n".join(lines))
    return "\n\n".join(parts)


def write_footage_report(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> Path:
    """``OUT/report/report.md`` of the footage run in ``run_dir``; returns its path."""
    run_dir = Path(run_dir)
    result = read_footage(run_dir / "footage.json")
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    conv = result.conventions
    points = "\n".join(f"- **{p.label}**: cosine threshold {p.threshold:.4f} — {_source(p)}"
                       for p in result.operating_points)
    without = ", ".join(f"{r.label}: {r.n_inputs_without_faces} of {r.n_inputs}" for r in result.rows)
    wl = result.watchlist
    recogniser = wl.get("recogniser") or {}
    git = result.provenance.get("git") or {}
    commit = f"{str(git.get('commit'))[:10]}{' + uncommitted changes' if git.get('dirty') else ''}"
    versions = ", ".join(f"{k} {v}" for k, v in (result.provenance.get("versions") or {}).items())
    text = "\n".join([
        f"# Footage identification — {result.protocol_name}\n",
        f"Watchlist: {wl.get('identities')} identities ({wl.get('watchlist')}), recogniser "
        f"{recogniser.get('name', '?')} (weights sha256 {str(recogniser.get('weights_sha256') or '-')[:12]}). "
        f"Inputs without any face found: {without}.\n",
        "## Identification\n",
        footage_table(result),
        "",
        "- Rank-1: " + str(conv.get("rank1")) + ".",
        "- TAR@t: " + str(conv.get("tar")) + ".",
        "- WrongID@t: " + str(conv.get("wrong_id")) + ".",
        "- Units: track = " + str((conv.get("units") or {}).get("track")) + "; face = "
        + str((conv.get("units") or {}).get("face")) + ". " + str(conv.get("same_units")) + ".",
        "- Labels: " + str(conv.get("labels")) + ". " + str(conv.get("no_sr")) + ".",
        "- [lo, hi]: 95 % confidence interval, " + str((conv.get("bootstrap") or {}).get("method", "none")) + ".",
        "",
        "## Operating points\n",
        points,
        "",
        "## Provenance\n",
        f"- protocol {result.protocol_name} #{result.protocol_hash[:12]}; git {commit}; versions: {versions or '-'}",
        f"- inference: {conv.get('inference')}; detector options: {conv.get('options')}",
        "- checkpoints (sha256): " + (", ".join(f"{r.label}: {r.checkpoint_sha256[:12]}" for r in result.rows
                                               if r.checkpoint_sha256) or "none (no model loaded weights)"),
        "- per unit: `per_unit.csv`; the table: `identification.csv`; everything: `footage.json`",
        "",
    ])
    return atomic.write_text(out / "report.md", text)

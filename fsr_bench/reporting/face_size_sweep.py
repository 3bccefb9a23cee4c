"""The face-size sweep report: accuracy vs LR face size, one curve per method (issue 13 §3).

Reads ``OUT/sweep.json`` (written by :mod:`fsr_bench.run.face_size_sweep`) and writes
``report.md`` with one table per recogniser and metric (rows = methods, columns = LR face sizes
with their inter-eye distance) and ``figures/face-size-sweep.png``: matching accuracy (TANet's fixed
threshold) and TAR at the calibrated FAR against LR face height, the inter-eye distance on the top
axis, one line per method, one row of panels per recogniser. References (HR probes, LR image) are
dashed grey/black: the HR probes' line is the ceiling the SR curves approach.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from fsr_bench import atomic
from fsr_bench.reporting.load import ReportInputError
from fsr_bench.reporting.tables import markdown_table

__all__ = ["SWEEP_METRICS", "load_sweep", "sweep_plot", "sweep_tables", "write_sweep_report"]

#: (key in sweep.json values, heading) of the two curves
SWEEP_METRICS = (("matching_accuracy", "Matching accuracy"), ("tar_at_cal_far", "TAR @ calibrated FAR"))


def load_sweep(folder: str | Path) -> dict[str, Any]:
    """``folder/sweep.json``, checked for the fields the report reads (a clear error otherwise)."""
    file = Path(folder) / "sweep.json"
    if not file.is_file():
        raise ReportInputError(f"{file} not found: {folder} is not a finished face-size sweep folder "
                               "(expected sweep.json written by `fsr-bench run` on a kind: face_size_sweep protocol)")
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportInputError(f"cannot read {file}: {exc}; re-run the sweep") from None
    for key in ("kind", "points", "rows", "conventions"):
        if not isinstance(doc, dict) or key not in doc:
            raise ReportInputError(f"{file}: missing field {key!r}; re-run the sweep")
    if doc["kind"] != "face_size_sweep":
        raise ReportInputError(f"{file}: kind is {doc['kind']!r}, expected 'face_size_sweep'")
    sizes = [p["label"] for p in doc["points"]]
    for row in doc["rows"]:
        if [v["size"] for v in row["values"]] != sizes:
            raise ReportInputError(f"{file}: row {row.get('label')!r} ({row.get('recogniser')}) does not have one "
                                   f"value per size {sizes}; the file was edited or cut off — re-run the sweep")
    return doc


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def sweep_tables(doc: Mapping[str, Any]) -> str:
    """Markdown: per recogniser and metric, methods × sizes; best method per size in bold."""
    points = doc["points"]
    heads = [f"{p['label']} (IED {p['interocular_lr_px']:.1f} px)" for p in points]
    conv = doc["conventions"]
    parts = []
    for rec in conv.get("recognisers") or sorted({r["recogniser"] for r in doc["rows"]}):
        rows = [r for r in doc["rows"] if r["recogniser"] == rec]
        for key, title in SWEEP_METRICS:
            body = []
            ranked = [r for r in rows if r["role"] != "reference"]
            best = []
            for j in range(len(points)):
                vals = [round(100 * r["values"][j][key], 1) for r in ranked if r["values"][j][key] is not None]
                best.append(max(vals) if len(vals) > 1 else None)
            for r in rows:
                cells = [r["label"] + (" †" if r.get("trained_with") else "")]
                for j, v in enumerate(r["values"]):
                    text = _pct(v[key])
                    if r["role"] != "reference" and v[key] is not None and best[j] == round(100 * v[key], 1):
                        text = f"**{text}**"
                    cells.append(text)
                body.append(cells)
            far = conv.get("sweep", {}).get("far")
            name = title if key != "tar_at_cal_far" else f"TAR @ calibrated FAR {far:g}"
            parts.append(f"### {name} — {rec}\n\n" + markdown_table(["Method", *heads], body, "l" + "r" * len(points)))
    return "\n\n".join(parts)


def sweep_plot(doc: Mapping[str, Any], path: str | Path) -> Path:
    """The curves (see the module docstring) as a PNG at ``path``."""
    from matplotlib.figure import Figure

    from fsr_bench.reporting.plots import method_colours, save_figure

    points = doc["points"]
    h = np.array([p["lr_size"][0] for p in points], dtype=float)
    ied = np.array([p["interocular_lr_px"] for p in points], dtype=float)
    order = np.argsort(h)
    recs = doc["conventions"].get("recognisers") or sorted({r["recogniser"] for r in doc["rows"]})
    colours = method_colours(r["label"] for r in doc["rows"] if r["role"] != "reference")
    fig = Figure(figsize=(9.0, 3.4 * len(recs)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(recs), len(SWEEP_METRICS), squeeze=False))
    far = doc["conventions"].get("sweep", {}).get("far")
    for i, rec in enumerate(recs):
        for k, (key, title) in enumerate(SWEEP_METRICS):
            ax = axes[i, k]
            for r in (r for r in doc["rows"] if r["recogniser"] == rec):
                y = np.array([np.nan if v[key] is None else 100 * v[key] for v in r["values"]], dtype=float)[order]
                ref = r["role"] == "reference"
                style = dict(color="0.2" if "HR" in r["label"] else "0.6", linestyle="--") if ref \
                    else dict(color=colours[r["label"]], linestyle="-")
                ax.plot(h[order], y, marker="o", markersize=3.5, label=r["label"], **style)
            ax.set_xlabel("LR face height (px)")
            ax.set_ylabel("%")
            ax.set_ylim(0, 100)
            ax.set_xticks(h[order])
            name = title if key != "tar_at_cal_far" else f"TAR @ calibrated FAR {far:g}"
            ax.set_title(f"{name} — {rec}")
            ax.grid(alpha=0.3)
            if len(h) > 1:
                top = ax.secondary_xaxis("top", functions=(lambda x: np.interp(x, h[order], ied[order]),
                                                           lambda x: np.interp(x, ied[order], h[order])))
                top.set_xticks(ied[order], [f"{v:.1f}" for v in ied[order]])
                top.set_xlabel("inter-eye distance, LR (px)")
            if i == 0 and k == 0:
                ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def _conventions_text(doc: Mapping[str, Any]) -> list[str]:
    c = doc["conventions"]
    sw = c.get("sweep", {})
    io = c.get("interocular", {})
    measured = io.get("measured") or {}
    ied = (f"measured: median MTCNN eye distance {measured['source_interocular_px']:.1f} px (IQR "
           f"{measured['iqr'][0]:.1f}–{measured['iqr'][1]:.1f}) over {measured['n_measured']} HR probe crops, "
           "scaled by lr_w / crop_w") if measured else f"basis: {io.get('basis')}"
    deg = sw.get("degradation", {})
    ds = (c.get("recognition") or {}).get("dataset") or {}
    cal = ((c.get("recognition") or {}).get("calibration") or {}).get("per_recogniser") or {}
    cal_text = "; ".join(f"{name}: {v.get('n_subjects')} subjects, {v.get('n_genuine')} genuine / "
                         f"{v.get('n_impostor')} impostor HR pairs" for name, v in cal.items())
    return [
        f"Data: {ds.get('name', '?')} — {ds.get('n_subjects', '?')} gallery subjects, {ds.get('n_probes', '?')} probes "
        f"(at most {ds.get('max_probes_per_identity')} per identity), the same at every size; calibration on "
        f"disjoint subjects ({cal_text or 'not recorded'}).",
        f"Sizes: LR faces {', '.join(p['label'] for p in doc['points'])} (W×H, aspect {sw.get('aspect_hw')}), made "
        f"from the same {sw.get('crop_height')}-px-tall centre face region of every probe, HR face = LR × "
        f"{sw.get('scale')}, degradation {deg.get('type', '?')}.",
        f"Models: {c.get('model_scale')}.",
        f"Face region: {c.get('face_region')}.",
        f"IED = inter-eye distance in LR pixels ({ied}); SR output IED = LR × scale.",
        f"Matching accuracy: {c.get('matching_accuracy')}. TAR: {c.get('tar_at_cal_far')}.",
        "† the row's model was trained with this recogniser's features (its score is not independent).",
        f"Per-size run folders (full recognition reports): {', '.join(p['folder'] for p in doc['points'])}.",
        f"Provenance: protocol {doc.get('protocol_name')} #{str(doc.get('protocol_hash', ''))[:12]}, git "
        f"{str((doc.get('provenance') or {}).get('git', {}).get('commit', '?'))[:10]}.",
    ]


def write_sweep_report(folder: str | Path, out: str | Path | None = None) -> Path:
    """``report.md`` + ``figures/face-size-sweep.png`` for the sweep in ``folder``; returns the report path."""
    doc = load_sweep(folder)
    dest = Path(out) if out is not None else Path(folder) / "report"
    figure = sweep_plot(doc, dest / "figures" / "face-size-sweep.png")
    text = "\n".join([
        f"# Face-size sweep: {doc.get('protocol_name')}",
        "",
        f"![accuracy vs face size]({figure.relative_to(dest).as_posix()})",
        "",
        sweep_tables(doc),
        "",
        *(f"- {line}" for line in _conventions_text(doc)),
        "",
    ])
    return atomic.write_text(dest / "report.md", text)

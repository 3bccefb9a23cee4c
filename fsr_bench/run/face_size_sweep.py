"""Run a ``kind: face_size_sweep`` protocol: one recognition run per LR face size, then the curves' data.

Output folder::

    OUT/sizes/<W>x<H>/   a complete ``kind: recognition`` run folder per size (results.json, per_probe.csv,
                         samples/; ``fsr-bench report`` reads each)
    OUT/cache/           the face and SR caches, shared by every size: the gallery, the calibration set
                         and the HR-probe row are detected and embedded once, not once per size
    OUT/sweep.json       conventions, the sizes (LR size, inter-eye distance) and every row's numbers per
                         size and recogniser (read by fsr_bench.reporting.face_size_sweep)
    OUT/sweep.csv        the same, one line per (size, row, recogniser)

Every size is made from the same face region (``crop_height`` × its width at the LR aspect), so the
calibration subjects' HR-vs-HR scores, and the thresholds calibrated on them, are the same at every
size; each point applies them unchanged, as the recognition protocol does for every row.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fsr_bench import atomic, results
from fsr_bench.protocol import ProtocolError
from fsr_bench.protocol.face_size_sweep import FaceSizeSweepProtocol
from fsr_bench.provenance import collect
from fsr_bench.run.common import Log, resolve_device

__all__ = ["SWEEP_COLUMNS", "crop_width", "measure_interocular", "run_face_size_sweep", "sweep_points"]

SWEEP_COLUMNS = ("size", "lr_h", "lr_w", "interocular_lr_px", "interocular_sr_px", "label", "role", "recogniser",
                 "matching_accuracy", "tar_at_cal_far", "far_cal", "threshold_cal", "detection_rate", "rank1",
                 "n_probes")

MODEL_SCALE_RULE = ("every model runs at its own scale (the sweep's) on each LR size: an h×w LR face becomes an "
                    "(h·s)×(w·s) output, then detected and aligned to the recogniser's crop like any probe")


def measure_interocular(protocol: FaceSizeSweepProtocol, cache: Path, device: str) -> dict[str, Any]:
    """Median MTCNN eye distance (centre to centre, px) on the first ``sweep.measure_probes`` HR probe
    crops (the face region at native resolution, ``crop_height`` tall), with the run's detector."""
    from fsr_bench.data.face_size_sweep import face_size_sweep
    from fsr_bench.face.detect import FaceAligner
    from fsr_bench.run.recognition import build_recognition_set

    sw, det = protocol.sweep, protocol.recognition.detector
    (first,) = face_size_sweep([sw.lr_heights[0]], aspect_hw=sw.aspect_hw, scale=sw.scale,
                               crop_height=sw.crop_height, crop_width=crop_width(protocol),
                               degradation=sw.degradation)
    dataset = build_recognition_set(protocol.point_protocol(first.probe_degradation(), first.label), cache, device)
    probes = dataset.probes[: sw.measure_probes]
    faces = [im.hr for im in (dataset.read_probe(p, seed=protocol.run.seed) for p in probes) if im.hr is not None]
    aligner = FaceAligner(min_face_size=det.min_face_size, thresholds=det.thresholds, factor=det.factor,
                          selection=det.selection, min_prob=det.min_prob, batch_size=det.batch_size, device=device)
    found = aligner.align(faces)
    lm = found.landmarks[found.detected].numpy()
    if lm.shape[0] == 0:
        raise ProtocolError(f"sweep.source_interocular_px: measure: MTCNN found no face in the {len(faces)} HR probe "
                            "crops; give the eye distance in source pixels, or null for the template basis")
    ied = np.hypot(lm[:, 1, 0] - lm[:, 0, 0], lm[:, 1, 1] - lm[:, 0, 1])
    return {"source_interocular_px": float(np.median(ied)), "n_measured": int(ied.size), "n_tried": len(faces),
            "iqr": [float(np.percentile(ied, 25)), float(np.percentile(ied, 75))],
            "how": f"median MTCNN eye distance over the HR probe crops ({sw.crop_height} px tall, native resolution)"}


def crop_width(protocol: FaceSizeSweepProtocol) -> int:
    """The one source crop width of every size: ``crop_height`` at the LR frame's aspect."""
    from fsr_bench.data.face_size_sweep import round_half_up

    ah, aw = protocol.sweep.aspect_hw
    return max(1, round_half_up(protocol.sweep.crop_height * aw / ah))


def sweep_points(protocol: FaceSizeSweepProtocol, source_interocular_px: float | None):
    from fsr_bench.data.face_size_sweep import face_size_sweep
    from fsr_bench.data.io import FsrBenchDataError

    sw = protocol.sweep
    try:
        return face_size_sweep(sw.lr_heights, aspect_hw=sw.aspect_hw, scale=sw.scale, crop_height=sw.crop_height,
                               crop_width=crop_width(protocol), degradation=sw.degradation, source_interocular_px=source_interocular_px,
                               face_width_fraction=sw.face_width_fraction)
    except FsrBenchDataError as exc:
        raise ProtocolError(f"sweep: {exc}") from None


def run_face_size_sweep(protocol: FaceSizeSweepProtocol, out_dir: str | Path, *, progress: bool = True,
                        log: Log = print, force: bool = False) -> dict[str, Any]:
    """Every size of ``protocol.sweep``; returns the document written to ``OUT/sweep.json``."""
    from fsr_bench.run.recognition import run_recognition

    out = Path(out_dir)
    cache = out / "cache"
    device = resolve_device(protocol.run.device)
    sw = protocol.sweep
    measured: dict[str, Any] | None = None
    if sw.source_interocular_px == "measure":
        measured = measure_interocular(protocol, cache, device)
        ied_source: float | None = measured["source_interocular_px"]
        log(f"inter-eye distance: median {ied_source:.1f} px over {measured['n_measured']} HR probe crops")
    else:
        ied_source = sw.source_interocular_px
    points = sweep_points(protocol, ied_source)
    tag = results.op_column("tar", "cal", sw.far)  # the column whose reason a missing value shows
    lines: list[list[Any]] = []
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    point_docs = []
    first_conventions: dict[str, Any] = {}
    for p in points:
        folder = out / "sizes" / p.label
        log(f"\n== LR face {p.label} (W×H), inter-eye {p.interocular_lr_px:.1f} px LR / "
            f"{p.interocular_sr_px:.1f} px after x{p.scale} ==")
        run = run_recognition(protocol.point_protocol(p.probe_degradation(), p.label), folder, progress=progress,
                              log=log, force=force, cache_dir=cache)
        first_conventions = first_conventions or dict(run.conventions)
        point_docs.append({**p.describe(), "folder": f"sizes/{p.label}"})
        for row in run.recognition_rows():
            blocks = row.by_recogniser or {str(row.recogniser): results.RecogniserScores(
                metrics=row.metrics, unavailable=row.unavailable, operating_points=row.operating_points)}
            for name, block in blocks.items():
                m, ops = block.metrics, block.operating_points
                cal = ops.at_far(sw.far) if ops is not None else None
                why = ops.unavailable if ops is not None else {}
                value = {"size": p.label, "matching_accuracy": m.get("matching_accuracy"),
                         "tar_at_cal_far": cal.tar if cal else None, "far_cal": cal.far if cal else None,
                         "threshold_cal": cal.threshold if cal else None, "detection_rate": m.get("detection_rate"),
                         "rank1": m.get("rank1"), "n_probes": m.get("n_probes"),
                         "unavailable": {k: why[k] for k in (tag,) if k in why}}
                entry = rows.setdefault((row.label, name), {
                    "label": row.label, "role": row.role, "recogniser": name,
                    "trained_with": block.trained_with, "values": []})
                entry["values"].append(value)
                lines.append([p.label, p.lr_size[0], p.lr_size[1], p.interocular_lr_px, p.interocular_sr_px,
                              row.label, row.role, name, value["matching_accuracy"], value["tar_at_cal_far"],
                              value["far_cal"], value["threshold_cal"], value["detection_rate"], value["rank1"],
                              value["n_probes"]])
    doc = {
        "kind": "face_size_sweep",
        "protocol_name": protocol.name,
        "protocol_hash": protocol.hash(),
        "protocol": protocol.model_dump(mode="json"),
        "conventions": {
            "sweep": sw.model_dump(mode="json"),
            "model_scale": MODEL_SCALE_RULE,
            "face_region": f"the same {sw.crop_height}x{crop_width(protocol)} (HxW) centre crop at every size, so the "
                           "gallery, the calibration faces and the HR-probe row are identical across sizes; an LR "
                           "width rounded to whole pixels stretches the face horizontally by at most "
                           f"{100 * max(abs(p.lr_size[1] * sw.crop_height / (p.lr_size[0] * crop_width(protocol)) - 1) for p in points):.1f}%",
            "interocular": {"basis": points[0].interocular_basis, "measured": measured,
                            "rule": "LR inter-eye distance = source eye distance × lr_w / crop_w (measured) or "
                                    "from the ArcFace 112 template (template); SR = LR × scale"},
            "tar_at_cal_far": f"TAR at the threshold calibrated at FAR {sw.far:g} on HR-vs-HR scores of the "
                              "calibration subjects, the same threshold at every size; far_cal is the FAR it "
                              "reaches on each size's impostor pairs",
            "matching_accuracy": f"share of probes with own-gallery similarity >= {protocol.recognition.threshold} "
                                 "(TANet's fixed rule)",
            "recognisers": list(protocol.recognition.names),
            "recognition": {k: first_conventions.get(k) for k in ("detector", "recognisers", "calibration", "dataset",
                                                                   "similarity", "inference")},
        },
        "provenance": collect(device),
        "points": point_docs,
        "rows": list(rows.values()),
    }
    atomic.write_json(out / "sweep.json", doc)
    results.write_csv(out / "sweep.csv", results.frame(lines, SWEEP_COLUMNS))
    return doc

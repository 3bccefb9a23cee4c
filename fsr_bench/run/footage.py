"""Run a ``kind: footage`` protocol: labelled clips/frames → ``sr --faces`` per row → one watchlist →
one identification table (per track and per face) at every operating point.

Output folder::

    OUT/protocol.yaml          the validated protocol, as run
    OUT/footage.json           fsr_bench.results.FootageResult: conventions, provenance, operating
                               points (thresholds and their sources), per row and level the numbers
    OUT/identification.csv     label, level, n, n_mated, rank1, tar@<op>, wrong_id@<op> (the table)
    OUT/per_unit.csv           label, level, identity, input, unit (track or face), frame, best, score
    OUT/rows/<label>/<identity>/<input>/   the sr --faces job folders (faces/, frames/, watchlist.json)
    OUT/report/report.md       the table and its conventions (run.report)

Scoring (per row, per level; a *unit* is a track — the L2-normalised mean embedding of its faces, a
still frame's faces being one track each — or a single face):

* every face found in ``data.root/<identity>/`` is that identity; a unit is **mated** when its
  identity is on the watchlist;
* **rank-1** = share of mated units whose best-scoring watchlist identity is their own (no
  threshold; null when no unit is mated);
* **TAR@t** = share of mated units answered with their own identity at a score ``>= t``;
* **wrong-identity rate@t** = share of *all* units answered with another identity at a score ``>= t``
  (for an unknown person, any accepted answer is wrong);
* the rest of the units are rejected (best score below ``t``). Units come from the detector on the
  native frames, before any SR, so every row answers the same units (the counts say so).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from fsr_bench import atomic, results
from fsr_bench.protocol import ProtocolError
from fsr_bench.protocol.footage import NO_SR, FootageProtocol
from fsr_bench.provenance import collect
from fsr_bench.run.common import Log, checkpoint_sha, load_model, resolve_device, safe_filename

__all__ = ["identification_level", "labelled_inputs", "operating_points", "run_footage"]

LEVELS = ("track", "face")
PER_UNIT_COLUMNS = ("label", "level", "identity", "input", "unit", "frame", "best", "score", "mated")


def labelled_inputs(root: Path, list_file: str | None) -> list[tuple[str, Path]]:
    """``(identity, clip or frame)`` for every video and image under ``root/<identity>/``, sorted."""
    from fsr_bench.data.io import FsrBenchDataError, read_list_file
    from fsr_bench.run.frames import FramesError, collect_inputs

    if not root.is_dir():
        raise ProtocolError(f"data.root {root}: no such folder (expected root/<identity>/<clip or frame>)")
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if list_file is not None:
        listed = read_list_file(list_file)
        missing = sorted(set(listed) - {d.name for d in folders})
        if missing:
            raise ProtocolError(f"data.list_file {list_file}: no folder under {root} for {', '.join(missing[:10])}")
        folders = [d for d in folders if d.name in set(listed)]
    if not folders:
        raise ProtocolError(f"data.root {root}: no identity folder (expected root/<identity>/<clip or frame>)")
    out: list[tuple[str, Path]] = []
    for d in folders:
        try:
            out += [(d.name, p) for p in collect_inputs([d])]
        except (FramesError, FsrBenchDataError) as exc:
            raise ProtocolError(f"data.root: {d}: {exc}") from None
    return out


def operating_points(protocol: FootageProtocol) -> list[results.OperatingPoint]:
    """Stated thresholds, then every FAR the calibration run set for the watchlist's recogniser."""
    from fsr_bench.run.watchlist import resolve_threshold

    points = [results.OperatingPoint(label=f"{t:g}", threshold=t, source={"kind": "stated", "value": t})
              for t in protocol.thresholds.stated]
    run = protocol.thresholds.calibration_run
    if run is not None:
        path = Path(run)
        file = path / "results.json" if path.is_dir() else path
        if not file.is_file():
            raise ProtocolError(f"thresholds.calibration_run {run}: no results.json there; run a recognition "
                                "protocol with a calibration block first, or state thresholds only")
        recogniser = protocol.watchlist.recogniser
        per = (results.read_run(file).conventions.get("calibration") or {}).get("per_recogniser") or {}
        fars = sorted(((per.get(recogniser) or {}).get("thresholds") or {}), key=float, reverse=True)
        if not fars:  # resolve_threshold names what is missing
            resolve_threshold(str(file), recogniser, 1e-3)
        for far in fars:
            threshold, source = resolve_threshold(str(file), recogniser, float(far))
            points.append(results.OperatingPoint(label=f"cal {far}", threshold=threshold, source=source))
    return points


def _rates(units: list[dict[str, Any]], points: list[results.OperatingPoint]) -> dict[str, float | None]:
    """``rank1``, ``tar@<op>``, ``wrong_id@<op>`` of some units (see the module docstring)."""
    mated = [u for u in units if u["mated"]]

    def share(hits: int, n: int) -> float | None:
        return hits / n if n else None

    out = {"rank1": share(sum(u["best"] == u["identity"] for u in mated), len(mated))}
    for p in points:
        out[f"tar@{p.label}"] = share(sum(u["best"] == u["identity"] and u["score"] >= p.threshold for u in mated),
                                      len(mated))
        out[f"wrong_id@{p.label}"] = share(sum(u["best"] != u["identity"] and u["score"] >= p.threshold
                                               for u in units), len(units))
    return out


def identification_level(units: list[dict[str, Any]], points: list[results.OperatingPoint], bootstrap_n: int = 0,
                         bootstrap_seed: int = 0) -> results.FootageLevel:
    """The numbers of one level from its answered units (``identity``, ``mated``, ``best``, ``score``).

    95 % CIs (``bootstrap_n`` > 0): percentile bootstrap over **identities** (a person's tracks and
    faces are correlated): rank-1 and TAR resample the mated identities, wrong-identity rates all."""
    from fsr_bench.metrics.recognition import bootstrap_ci

    rates = _rates(units, points)
    ci95: dict[str, list[float]] = {}
    if bootstrap_n > 0 and units:
        by: dict[str, list[dict[str, Any]]] = {}
        for u in units:
            by.setdefault(u["identity"], []).append(u)
        mated = sorted(i for i, us in by.items() if us[0]["mated"])
        every = sorted(by)
        for key in rates:
            ids = every if key.startswith("wrong_id@") else mated
            if not ids:
                continue

            def stat(idx: np.ndarray, ids: list[str] = ids, key: str = key) -> float:
                value = _rates([u for k in idx for u in by[ids[k]]], points)[key]
                return float("nan") if value is None else value  # never: every resample holds units

            ci = bootstrap_ci(np.arange(len(ids)), stat, n=bootstrap_n, seed=bootstrap_seed)
            ci95[key] = [ci.low, ci.high]
    return results.FootageLevel(
        n=len(units), n_mated=sum(1 for u in units if u["mated"]), rank1=rates["rank1"],
        tar={p.label: rates[f"tar@{p.label}"] for p in points},
        wrong_id={p.label: rates[f"wrong_id@{p.label}"] for p in points}, ci95=ci95)


def _no_sr():
    """The baseline: the native face crop, unchanged (a ×1 nearest 'model', exactly the identity)."""
    from fsr_bench.models.interpolate import Interpolate, InterpolateConfig

    return Interpolate(InterpolateConfig(scale=1, kernel="nearest")).eval()


def run_footage(protocol: FootageProtocol, out_dir: str | Path, *, progress: bool = True, log: Log = print,
                force: bool = False, cache_dir: str | Path | None = None) -> results.FootageResult:
    """Run every row of ``protocol`` (see the module docstring); returns what footage.json holds.
    ``force`` and ``cache_dir`` are accepted for the runner interface; nothing is cached here."""
    from fsr_bench.models.precision import describe, infer, resolve_precision
    from fsr_bench.run.frames import FrameOptions, run_faces
    from fsr_bench.run.watchlist import Watchlist

    t_start = time.perf_counter()
    out = Path(out_dir)
    run, faces = protocol.run, protocol.faces
    device = str(resolve_device(run.device))
    inputs = labelled_inputs(Path(protocol.data.root), protocol.data.list_file)
    names = [f"{identity}/{safe_filename(p.relative_to(Path(protocol.data.root) / identity).as_posix())}"
             for identity, p in inputs]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:  # two inputs would share one job folder (a/b.png and a_b.png both become a_b.png)
        raise ProtocolError(f"data.root: inputs share the job folder name {', '.join(clash[:5])}; rename one of them")
    points = operating_points(protocol)
    wl = protocol.watchlist
    watchlist = Watchlist(Path(wl.root), wl.recogniser, wl.weights, points[0].threshold, points[0].source, device)
    enrolled = set(watchlist.names)
    log(f"{protocol.data.root}: {len(inputs)} clip(s)/frame(s) of {len({i for i, _ in inputs})} identities; "
        f"watchlist {len(enrolled)} identities; operating points " + ", ".join(p.label for p in points))
    options = FrameOptions(detector=faces.detector, detector_weights=faces.detector_weights, min_face=faces.min_face,
                           upsample=faces.upsample, min_score=faces.min_score, margin=faces.margin,
                           batch_size=faces.batch_size, paste=False, stride=faces.stride, min_iou=faces.track_iou)
    precision = resolve_precision(run.precision, device)

    rows_spec: list[tuple[str, Any]] = ([(NO_SR, None)] if protocol.references.no_sr else []) + \
        [(m.display, m) for m in protocol.models]
    rows: list[results.FootageRow] = []
    boot = protocol.bootstrap
    per_unit: list[list[Any]] = []
    shutil.rmtree(out / "rows", ignore_errors=True)  # this protocol's folder (claimed): no earlier run's faces mix in

    def raise_error(exc: Exception) -> None:
        raise exc

    for label, spec in rows_spec:
        t0 = time.perf_counter()
        net = _no_sr().to(device) if spec is None else load_model(spec, device, channels_last=run.channels_last)
        info = {"name": "no_sr" if spec is None else spec.name, "scale": net.scale,
                "checkpoint": None if spec is None else spec.checkpoint,
                "checkpoint_sha256": None if spec is None else checkpoint_sha(spec),
                "pretrained": bool(spec is not None and spec.pretrained)}

        def forward(x, net=net):
            return infer(net, x.to(device), precision, run.channels_last)

        jobs = run_faces(list(zip([p for _, p in inputs], names)), out / "rows" / safe_filename(label), net,
                         forward, options, info, describe(precision, run.channels_last, device), device,
                         raise_error, watchlist)
        units: dict[str, list[dict[str, Any]]] = {level: [] for level in LEVELS}
        for (identity, _), name, job in zip(inputs, names, jobs):
            answers = job.watchlist or {}
            for level, key in (("track", "tracks"), ("face", "faces")):
                for a in answers.get(key, []):
                    unit = {"identity": identity, "mated": identity in enrolled, "best": a["best"],
                            "score": float(a["score"])}
                    units[level].append(unit)
                    per_unit.append([label, level, identity, name, a["track"],
                                     a.get("frame", ";".join(str(f) for f in a.get("frames", []))),
                                     a["best"], unit["score"], unit["mated"]])
        row = results.FootageRow(
            label=label, name=info["name"], role="reference" if spec is None else "model", scale=net.scale,
            checkpoint=info["checkpoint"], checkpoint_sha256=info["checkpoint_sha256"], n_inputs=len(jobs),
            n_inputs_without_faces=sum(1 for j in jobs if j.faces == 0),
            track=identification_level(units["track"], points, boot.n, boot.seed),
            face=identification_level(units["face"], points, boot.n, boot.seed),
            seconds=round(time.perf_counter() - t0, 3))
        rows.append(row)
        log(f"{label}: {row.track.n} track(s), {row.face.n} face(s); rank-1 per track "
            f"{_pct(row.track.rank1)}, per face {_pct(row.face.rank1)} ({row.seconds:.1f}s)")
        del net

    answers = watchlist.answers()
    result = results.FootageResult(
        protocol_name=protocol.name, protocol_hash=protocol.hash(), protocol=protocol.model_dump(mode="json"),
        conventions=_conventions(protocol, options, describe(precision, run.channels_last, device)),
        provenance={**collect(device), "runtime_s": round(time.perf_counter() - t_start, 3)},
        watchlist={k: answers[k] for k in ("watchlist", "identities", "recogniser", "enrolment_detector",
                                           "enrolment_undetected")} | {"names": list(watchlist.names)},
        operating_points=points, rows=rows)
    _write_tables(out, result, per_unit)
    atomic.write_text(out / "footage.json", result.model_dump_json(indent=2) + "\n")
    return result


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _write_tables(out: Path, result: results.FootageResult, per_unit: list[list[Any]]) -> None:
    labels = [p.label for p in result.operating_points]
    lines = []
    for row in result.rows:
        for level in LEVELS:
            lv = row.track if level == "track" else row.face
            lines.append([row.label, level, lv.n, lv.n_mated, lv.rank1, *(lv.tar[k] for k in labels),
                          *(lv.wrong_id[k] for k in labels)])
    columns = ["label", "level", "n", "n_mated", "rank1", *(f"tar@{k}" for k in labels),
               *(f"wrong_id@{k}" for k in labels)]
    results.write_csv(out / "identification.csv", results.frame(lines, columns))
    results.write_csv(out / "per_unit.csv", results.frame(per_unit, PER_UNIT_COLUMNS))


def _conventions(protocol: FootageProtocol, options: Any, inference: str) -> dict[str, Any]:
    return {
        "labels": "every face found in data.root/<identity>/ is <identity>; mated: <identity> is on the watchlist",
        "units": {"track": "a video's IoU track (its faces' L2-normalised mean embedding); a still frame's faces are "
                           "one track each", "face": "each face on its own"},
        "rank1": "share of mated units whose best-scoring watchlist identity is their own (no threshold)",
        "tar": "share of mated units answered with their own identity at a cosine score >= the threshold",
        "wrong_id": "share of all units answered with another identity at a score >= the threshold (unknown "
                    "people: any accepted answer)",
        "same_units": "faces are detected on the native frames before SR, so every row answers the same units",
        "no_sr": f"{NO_SR}: the native face crop (x1, unchanged) aligned by the recogniser from the frame "
                 "detector's landmarks",
        "pipeline": "fsr_bench.run.frames.run_faces (sr --faces) per row, fsr_bench.run.watchlist.Watchlist",
        "options": {"detector": options.detector, "min_face": options.min_face, "upsample": options.upsample,
                    "min_score": options.min_score, "margin": options.margin, "stride": options.stride,
                    "track_iou": options.min_iou},
        "inference": inference,
        "similarity": "cosine of L2-normalised embeddings; templates: L2-normalised mean of an identity's images",
        "bootstrap": {"n": protocol.bootstrap.n, "seed": protocol.bootstrap.seed, "unit": "identity",
                      "method": "percentile, 95 %; rank-1/TAR over the mated identities, wrong-identity over all"},
    }

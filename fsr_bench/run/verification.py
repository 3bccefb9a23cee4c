"""1:1 verification runs (``data: {type: survface_verification}``): QMUL-SurvFace's listed pairs.

QMUL-SurvFace's verification protocol (Cheng, Zhu, Gong, "Surveillance Face Recognition Challenge",
arXiv:1804.09691, 2018): about 5,300 positive and 5,300 negative pairs of native surveillance faces;
TAR at FAR = 30 %, 10 %, 1 %, 0.1 % (``data.fars``). Both images of a pair are surveillance faces,
so a super-resolver is applied to both; each distinct image is super-resolved, detected and embedded
once per row (the recognition runner's caches, ``OUT/cache``), then every listed pair is scored by
the cosine of the two embeddings.

Rows as in a recognition run: "LR image" (both images given to the detector as read — resized to
``lr_size`` when set), one per model (SR of both), "HR probes" (the native files: without
``lr_size`` the same as "LR image", there is no HR version). A pair with an undetected face has
similarity ``-inf``: a positive pair is then rejected at every threshold, a negative one never
falsely accepted; both stay in their denominators (the rule of every fsr-bench recognition number).
``matching_accuracy`` is TAR at the fixed ``recognition.threshold`` (share of positive pairs at or
above it), so the paper's fixed-threshold column has its 1:1 counterpart; ``detection_rate`` is the
share of the row's images with a detected face. TAR@FAR comes from each row's own impostor scores
(:func:`fsr_bench.metrics.recognition.tar_at_far`, largest achievable FAR <= target), the
benchmark's convention; the counts are in ``n_genuine_pairs`` / ``n_impostor_pairs``.

Outputs: results.json / summary.csv as any recognition run, ``per_pair.csv`` (label, first, second,
same, similarity, detected, accepted, recogniser) and ``scores.npz`` (per recogniser and row, the
pair similarities in ``pairs``' order).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fsr_bench import results
from fsr_bench.metrics.recognition import _roc_points, eer, tar_at_far
from fsr_bench.protocol import ProtocolError
from fsr_bench.protocol.recognition import HR_PROBES, LR_IMAGE, RecognitionProtocol
from fsr_bench.provenance import collect
from fsr_bench.run.caches import FaceStore
from fsr_bench.run.common import Log, inference_convention, resolve_device
from fsr_bench.run.recognition_rows import Row, model_row, super_resolve

__all__ = ["PER_PAIR_COLUMNS", "run_verification"]

PER_PAIR_COLUMNS = ("label", "first", "second", "same", "similarity", "detected", "accepted", "recogniser")


def _pair_metrics(sims: np.ndarray, same: np.ndarray, detected_images: np.ndarray, fars: list[float],
                  threshold: float) -> tuple[dict[str, Any], dict[str, str], dict[str, list[float]]]:
    genuine, impostor = sims[same], sims[~same]
    metrics: dict[str, Any] = {
        "matching_accuracy": float(np.mean(genuine >= threshold)) if genuine.size else None,
        "detection_rate": float(detected_images.mean()),
        "n_genuine_pairs": int(genuine.size), "n_impostor_pairs": int(impostor.size),
    }
    unavailable: dict[str, str] = {}
    finite = genuine[np.isfinite(genuine)]
    metrics["average_similarity"] = float(finite.mean()) if finite.size else None
    if not finite.size:
        unavailable["average_similarity"] = "no positive pair had both faces detected"
    for key in ("rank1", "rank5", "rank20"):
        unavailable[key] = "1:1 verification: there is no gallery to rank"
    roc_pts: dict[str, list[float]] = {"far": [], "tar": []}
    if genuine.size and impostor.size:
        for far in fars:
            metrics[results.tar_at_far_key(far)] = tar_at_far(genuine, impostor, far)
        metrics["eer"] = eer(genuine, impostor)
        roc_pts = _roc_points(genuine, impostor)
    else:
        for far in fars:
            unavailable[results.tar_at_far_key(far)] = "needs positive and negative pairs"
    return metrics, unavailable, roc_pts


def run_verification(protocol: RecognitionProtocol, out_dir: str | Path, *, progress: bool = True,
                     log: Log = print, force: bool = False, cache_dir: str | Path | None = None) -> results.RunResult:
    """Score every row of a ``survface_verification`` protocol (see the module docstring)."""
    from fsr_bench.data.identity_folders import read_native_probe
    from fsr_bench.data.io import FsrBenchDataError
    from fsr_bench.data.survface import SurvFaceVerificationSet
    from fsr_bench.face import create_recogniser
    from fsr_bench.face.detect import FaceAligner
    from fsr_bench.progress import progress_bar

    t_start = time.perf_counter()
    data = protocol.data
    assert data.type == "survface_verification"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache" if cache_dir is None else Path(cache_dir)
    device = resolve_device(protocol.run.device)
    rec, run = protocol.recognition, protocol.run
    try:
        dataset = SurvFaceVerificationSet(root=Path(data.root), max_pairs=data.max_pairs, seed=data.seed,
                                          name=data.name or "QMUL-SurvFace verification")
    except FsrBenchDataError as exc:
        raise ProtocolError(f"data (survface_verification): {exc}") from None
    images = dataset.images[: run.limit] if run.limit else dataset.images
    index = {p: i for i, p in enumerate(images)}
    pairs = [p for p in dataset.pairs if p.first in index and p.second in index]
    if not pairs:
        raise ProtocolError("data (survface_verification): no pair left to score (run.limit keeps too few images)")
    same = np.array([p.same for p in pairs], dtype=bool)
    first = np.array([index[p.first] for p in pairs])
    second = np.array([index[p.second] for p in pairs])
    log(f"{dataset.name}: {int(same.sum())} positive / {int((~same).sum())} negative pairs, {len(images)} images")

    rows: list[Row] = []
    if protocol.references.lr_image:
        rows.append(Row(LR_IMAGE, "reference", role="reference", input="lr"))
    for spec in protocol.models:
        rows.append(model_row(spec, cache / "sr", data.scale, device, force, inference_convention(run, device)))
    if protocol.references.hr_probes:
        rows.append(Row(HR_PROBES, "reference", role="reference", input="hr"))
    det, names = rec.detector, rec.names
    stores: list[FaceStore] = []
    for k, name in enumerate(names):
        try:
            recogniser = create_recogniser(name, weights=rec.weights, device=device, flip=rec.flip)
        except Exception as exc:  # weights unavailable offline, unknown name, …: say which key to fix
            raise ProtocolError(f"recognition recogniser {name!r}: {exc}") from exc
        aligner = FaceAligner(min_face_size=det.min_face_size, thresholds=det.thresholds, factor=det.factor,
                              selection=det.selection, min_prob=det.min_prob, batch_size=det.batch_size,
                              device=device, recogniser=recogniser)
        stores.append(FaceStore(cache, aligner, recogniser, det.max_side, fresh=force))

    lr_size = (int(data.lr_size[0]), int(data.lr_size[1])) if data.lr_size else None
    entries, per_pair = [], []
    arrays: dict[str, np.ndarray] = {"first": np.array([str(p.first.name) for p in pairs]),
                                     "second": np.array([str(p.second.name) for p in pairs]), "same": same}
    for row in rows:
        t0 = time.perf_counter()
        row.work = {"sr_computed": 0, "sr_reused": 0}
        state: dict[str, Any] = {"model": None, "scale": data.scale, "run": run}
        emb = [torch.zeros(len(images), st.dim) for st in stores]
        found = [torch.zeros(len(images), dtype=torch.bool) for _ in stores]
        bar = progress_bar(total=len(images), desc=row.label, unit="img", disable=not progress, leave=False)
        for start in range(0, len(images), run.batch_size):
            read = [read_native_probe(p, lr_size) for p in images[start : start + run.batch_size]]
            batch = [im.hr for im in read] if row.input == "hr" else [im.lr for im in read]
            if row.sr_store is not None:
                batch = super_resolve(row, batch, state, device)
            for k, st in enumerate(stores):
                _, e, d = st.embed(batch)
                emb[k][start : start + len(batch)], found[k][start : start + len(batch)] = e, d
            bar.update(len(batch))
        bar.close()
        if row.sr_store is not None:
            row.sr_store.save()
        for st in stores:
            st.save()
        blocks: dict[str, dict[str, Any]] = {}
        for k, name in enumerate(names):
            vecs, ok = emb[k].double().numpy(), found[k].numpy()
            both = ok[first] & ok[second]
            sims = np.where(both, np.einsum("ij,ij->i", vecs[first], vecs[second]), -np.inf)
            metrics, unavailable, roc_pts = _pair_metrics(sims, same, ok, list(data.fars), rec.threshold)
            blocks[name] = {"metrics": metrics, "unavailable": unavailable, "roc": roc_pts,
                            "trained_with": name in row.trained_with}
            arrays[f"{name}|{row.label}"] = sims.astype(np.float32)
            per_pair += [[row.label, pairs[j].first.name, pairs[j].second.name, bool(same[j]),
                          float(sims[j]) if both[j] else None, bool(both[j]), bool(sims[j] >= rec.threshold), name]
                         for j in range(len(pairs))]
        main = blocks[names[0]]
        row.work["seconds"] = round(time.perf_counter() - t0, 3)
        m = main["metrics"]
        log(f"{row.label}: TAR@FAR " + "  ".join(
            f"{f:g}: {100 * m[results.tar_at_far_key(f)]:.2f}%" for f in data.fars
            if m.get(results.tar_at_far_key(f)) is not None) + f"  detected {100 * m['detection_rate']:.2f}%")
        entries.append({
            "label": row.label, "variant": row.variant, "name": row.name, "role": row.role, "scale": row.scale,
            "checkpoint": row.checkpoint, "checkpoint_sha256": row.checkpoint_sha256, "training": row.training,
            "overrides": row.spec.overrides if row.spec else {}, "metrics": m, "unavailable": main["unavailable"],
            "roc": main["roc"], "n_impostor_pairs": m["n_impostor_pairs"], "recogniser": names[0],
            "trained_with": list(row.trained_with), "by_recogniser": blocks, "work": row.work,
        })

    run_result = results.RunResult.model_validate({
        "kind": "recognition",
        "protocol_name": protocol.name,
        "protocol_hash": protocol.hash(),
        "protocol": protocol.model_dump(mode="json"),
        "conventions": {
            "task": "1:1 verification of listed pairs (QMUL-SurvFace Face_Verification_Test_Set)",
            "threshold": rec.threshold,
            "recogniser": stores[0].recogniser.describe(),
            "recognisers": {name: st.recogniser.describe() for name, st in zip(names, stores)},
            "detector": {**stores[0].aligner.describe(), "max_side": det.max_side},
            "degradation": {"type": "real_surveillance", "lr_size": list(lr_size) if lr_size else None,
                            "scale": data.scale, "note": "native surveillance faces; SR applied to both images"},
            "dataset": {**dataset.describe(), "n_scored_pairs": len(pairs)},
            "seed": run.seed,
            "inference": inference_convention(run, device),
            "similarity": "cosine of L2-normalised embeddings; -inf when either face of the pair is undetected",
            "matching_accuracy": "TAR at the fixed threshold: share of positive pairs with similarity >= threshold",
            "tar_at_far": "each row's own ROC over all listed pairs; TAR at the largest achievable FAR <= target",
            "references": {LR_IMAGE: "both images as read (resized to lr_size when set), no SR",
                           HR_PROBES: "the native files (no HR version exists)"},
        },
        "provenance": {**collect(device), "runtime_s": round(time.perf_counter() - t_start, 3)},
        "models": entries,
        "samples": [],
    })
    results.write_csv(out / "summary.csv", results.summary_frame(run_result))
    results.write_csv(out / "per_pair.csv", results.frame(per_pair, PER_PAIR_COLUMNS))
    savez: Any = np.savez_compressed
    savez(out / "scores.npz", **arrays)
    results.write_run(out, run_result)
    return run_result

"""Run a recognition protocol: gallery → rows (references, SR models) → detection → embeddings →
scores, with on-disk caches so that adding one model to a finished run costs only that model.

Output folder (read by ``fsr_bench.reporting``)::

    OUT/protocol.yaml        the validated protocol, as run
    OUT/results.json         conventions + provenance + one entry per row ("models")
    OUT/summary.csv          model, scale, label, matching_accuracy, average_similarity,
                             detection_rate, rank1, tar_at_far_1e-3, eer, n_probes
    OUT/per_probe.csv        label, probe, subject, distance, camera, similarity, detected, matched, rank
    OUT/samples/<probe>/     lr.png, gallery.png, <label>.png (what the detector saw) for the first
                             ``run.num_samples`` probes
    OUT/cache/               faces_<key>.pt (detection + embedding per image content),
                             sr/<label>_<key>.pt (SR outputs per LR content), SCface face boxes

Scoring conventions (recorded in ``results.json["conventions"]``):

* similarity = cosine of the recogniser's L2-normalised embeddings;
* **matching accuracy** (TANet Table 4) = share of *all* probes whose similarity to their own
  subject's gallery embedding is ``>= threshold``; undetected probes are not matched;
* **average similarity** = mean of those own-gallery similarities over the probes that reached the
  recogniser (probe face — and its gallery face — detected); ``null`` ("-" in the paper) when none
  did. Read it next to the detection rate: a method that loses hard faces can raise it;
* an **undetected** probe has similarity ``-inf`` to every gallery face: it is rejected at every
  threshold (a false non-match for its genuine pair, a true reject for impostor pairs), it is a miss
  at every CMC rank, and it stays in every denominator — never dropped. Its per_probe.csv similarity
  and rank are empty. A gallery face that is not detected makes its subject's probes unscorable the
  same way (listed in ``results.json["gallery"]``);
* ranks are pessimistic (an impostor as similar as the genuine match outranks it); ROC/TAR/EER use
  all genuine (probe, own gallery) and impostor (probe, other gallery) pairs; 95 % confidence
  intervals are percentile bootstraps over subjects;
* SR outputs are clamped to [0, 1] and rounded to 8 bits before detection (as if saved as PNG),
  which also makes the SR cache exact.

Caches: the face cache is keyed by the image's 8-bit content and the whole face pipeline (detector
settings, ``max_side``, recogniser and its weights' sha256, flip); the SR cache by the model name,
checkpoint sha256 and overrides, and within it by the LR probe's content. A model whose outputs are
all cached is never even built.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from fsr_bench import results
from fsr_bench.data.identity_folders import ProbeItem, RecognitionSet
from fsr_bench.metrics.recognition import RowScores, score_row
from fsr_bench.protocol import ModelSpec, ProtocolError
from fsr_bench.protocol.recognition import HR_PROBES, LR_IMAGE, RecognitionProtocol
from fsr_bench.provenance import collect
from fsr_bench.run.caches import FaceStore, SRStore, content_key
from fsr_bench.run.common import Log, checkpoint_sha, load_model, resolve_device, safe_filename

__all__ = ["build_recognition_set", "run_recognition"]

SAVE_EVERY_BATCHES = 64  # SR cache checkpoints during long model rows


# -- data ------------------------------------------------------------------------------------------
def build_recognition_set(protocol: RecognitionProtocol, cache_dir: Path, device: str = "cpu",
                          progress: bool = False) -> RecognitionSet:
    """The dataset adapter of ``protocol.data``; data problems become ProtocolErrors naming the block."""
    from fsr_bench.data.identity_folders import RECOGNITION_SETS
    from fsr_bench.data.io import FsrBenchDataError

    spec = protocol.data
    try:
        return RECOGNITION_SETS.get(spec.type).builder(spec.model_dump(), cache_dir=cache_dir, device=device,
                                                       progress=progress)
    except FsrBenchDataError as exc:
        raise ProtocolError(f"data ({spec.type}): {exc}") from None


# -- rows ------------------------------------------------------------------------------------------
@dataclass
class _Row:
    label: str
    name: str
    role: str = "model"  # fsr_bench.results.Role
    spec: ModelSpec | None = None
    scale: int | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    sr_store: SRStore | None = None
    work: dict[str, Any] = field(default_factory=dict)


class _ProbeReader:
    """Reads probe batches; small LR probes are kept in memory (uint8) after the first read, so
    each further row costs no decoding or degradation."""

    MAX_KEPT_PIXELS = 256 * 256

    def __init__(self, dataset: RecognitionSet, probes: list[ProbeItem], batch_size: int, seed: int):
        self.dataset, self.probes, self.batch_size, self.seed = dataset, probes, batch_size, seed
        self._lr: dict[int, torch.Tensor | None] = {}

    def batches(self, want: str) -> Iterator[tuple[int, list[ProbeItem], list[torch.Tensor | None]]]:
        """(start, items, images) with images = the probes' ``want`` ("hr" or "lr") images."""
        from fsr_bench.data.io import to_uint8

        for start in range(0, len(self.probes), self.batch_size):
            items = self.probes[start : start + self.batch_size]
            idx = range(start, start + len(items))
            if want == "lr" and all(i in self._lr for i in idx):
                kept = [self._lr[i] for i in idx]
                yield start, items, [None if lr is None else lr.float() / 255.0 for lr in kept]
                continue
            read = [self.dataset.read_probe(p, seed=self.seed) for p in items]
            for i, im in zip(idx, read):
                if im.lr is None or im.lr.shape[-2] * im.lr.shape[-1] <= self.MAX_KEPT_PIXELS:
                    self._lr[i] = None if im.lr is None else to_uint8(im.lr)
            yield start, items, [getattr(im, want) for im in read]


def _super_resolve(row: _Row, lrs: list[torch.Tensor | None], state: dict[str, Any], device: str
                   ) -> list[torch.Tensor | None]:
    """SR of a batch through the row's cache; the model is built on the first cache miss only."""
    from fsr_bench.data.io import to_uint8

    store = row.sr_store
    assert store is not None and row.spec is not None
    keys = [None if lr is None else content_key(lr) for lr in lrs]
    missing: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
    for k, lr in zip(keys, lrs):
        if k is not None and lr is not None and k not in store.outputs:
            missing.setdefault((int(lr.shape[-2]), int(lr.shape[-1])), {})[k] = lr
    for group in missing.values():
        if state.get("model") is None:
            state["model"] = _build_model(row.spec, device, state["scale"])
            store.scale = state["model"].scale
        ks = list(group)
        with torch.inference_mode():
            sr = state["model"](torch.stack([group[k] for k in ks]).to(device)).clamp(0, 1)
        for k, out in zip(ks, to_uint8(sr).cpu()):
            store.put(k, out.clone())
        row.work["sr_computed"] += len(ks)
    row.work["sr_reused"] += sum(1 for k in keys if k is not None) - sum(len(g) for g in missing.values())
    return [None if k is None else store.outputs[k].float() / 255.0 for k in keys]


def _build_model(spec: ModelSpec, device: str, scale: int):
    return load_model(spec, device, scale, f"this protocol's probes are made for x{scale}; use the _x{scale} "
                      "variant of the model (or change the data block's scale)")


def _model_row(spec: ModelSpec, sr_dir: Path, scale: int, device: str, force: bool) -> _Row:
    sha = checkpoint_sha(spec)
    store = SRStore(sr_dir, spec, sha, fresh=force)
    if store.scale is None:  # never run: build it now so a bad model fails before the long work
        model = _build_model(spec, device, scale)
        store.scale = model.scale
        del model
    return _Row(label=spec.display, name=spec.name, role="model", spec=spec, scale=store.scale, checkpoint=spec.checkpoint,
                checkpoint_sha256=sha, sr_store=store)


def _sample_folders(samples: Path, probes: list[ProbeItem], chosen: set[int]) -> dict[int, Path]:
    """``samples/<probe stem>``; the flattened relative name where stems repeat across identities."""
    stems = [Path(p.name).name for p in probes]
    unique = len(set(stems)) == len(stems)
    return {i: samples / safe_filename(stems[i] if unique else probes[i].name.replace("/", "_"))
            for i in chosen}


def _write_sample(folder: Path, name: str, image: torch.Tensor | None, max_side: int = 512) -> None:
    from fsr_bench.data.io import write_image
    from fsr_bench.data.resize import imresize

    if image is None:
        return
    side = max(image.shape[-2:])
    if side > max_side:  # HD mugshots would make multi-MB sample PNGs
        image = imresize(image, scale=max_side / side)
    write_image(image.clamp(0, 1), folder / name)


# -- the run ---------------------------------------------------------------------------------------
def run_recognition(protocol: RecognitionProtocol, out_dir: str | Path, *, progress: bool = True,
                    log: Log = print, force: bool = False) -> results.RunResult:
    """Run every row of ``protocol``; returns the :class:`~fsr_bench.results.RunResult` written to
    results.json.

    ``force`` recomputes every SR output, detection and embedding, rewriting those caches (SCface
    face-crop boxes, which depend only on the file and the crop settings, are kept).
    """
    from tqdm import tqdm

    from fsr_bench.face import create_recogniser
    from fsr_bench.face.detect import FaceAligner

    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"
    device = resolve_device(protocol.run.device)
    rec, run = protocol.recognition, protocol.run

    dataset = build_recognition_set(protocol, cache, device=device, progress=progress)
    probes = dataset.probes[: run.limit] if run.limit else dataset.probes
    gallery = dataset.gallery
    subject_row = {g.subject: i for i, g in enumerate(gallery)}
    subj_idx = np.array([subject_row[p.subject] for p in probes], dtype=np.int64)
    log(f"{dataset.name}: {len(gallery)} gallery subjects, {len(probes)} probes"
        + (f" (run.limit of {len(dataset.probes)})" if len(probes) < len(dataset.probes) else ""))

    # rows: fail fast on a bad model before any detection work
    rows: list[_Row] = []
    if protocol.references.lr_image:
        rows.append(_Row(LR_IMAGE, "reference", role="reference"))
    for spec in protocol.models:
        rows.append(_model_row(spec, cache / "sr", dataset.scale, device, force))
    if protocol.references.hr_probes:
        rows.append(_Row(HR_PROBES, "reference", role="reference"))

    det = rec.detector
    aligner = FaceAligner(min_face_size=det.min_face_size, thresholds=det.thresholds, factor=det.factor,
                          selection=det.selection, min_prob=det.min_prob, batch_size=det.batch_size,
                          device=device)
    try:
        recogniser = create_recogniser(rec.recogniser, weights=rec.weights, device=device, flip=rec.flip)
    except Exception as exc:  # weights unavailable offline, unknown name, …: say which key to fix
        raise ProtocolError(f"recognition.recogniser {rec.recogniser!r}: {exc}") from exc
    store = FaceStore(cache, aligner, recogniser, det.max_side, fresh=force)

    # gallery: streamed in detector-sized batches (HD mugshots are large)
    sample_idx = set(range(min(run.num_samples, len(probes))))
    samples = out / "samples"
    folders = _sample_folders(samples, probes, sample_idx)
    gallery_samples: dict[int, list[Path]] = {}
    for i in sample_idx:
        gallery_samples.setdefault(subject_row[probes[i].subject], []).append(folders[i])
    emb_g = torch.zeros(len(gallery), store.dim)
    det_g = torch.zeros(len(gallery), dtype=torch.bool)
    bar = tqdm(total=len(gallery), desc="gallery", unit="img", disable=not progress, leave=False)
    for start in range(0, len(gallery), det.batch_size):
        enrolled = [dataset.read_gallery(g) for g in gallery[start : start + det.batch_size]]
        _, e, d = store.embed(enrolled)
        emb_g[start : start + len(e)], det_g[start : start + len(d)] = e, d
        for k, image in enumerate(enrolled):
            for folder in gallery_samples.get(start + k, []):
                _write_sample(folder, "gallery.png", image)
        bar.update(len(enrolled))
    bar.close()
    store.save()
    undetected_gallery = [g.subject for g, d in zip(gallery, det_g.tolist()) if not d]
    if undetected_gallery:
        log(f"warning: no face detected in {len(undetected_gallery)} gallery image(s) "
            f"({', '.join(undetected_gallery[:10])}); their probes cannot match")

    # rows
    reader = _ProbeReader(dataset, probes, run.batch_size, run.seed)
    results_rows = []
    per_probe = []
    for row in rows:
        t0 = time.perf_counter()
        row.work = {"sr_computed": 0, "sr_reused": 0, "faces_computed": 0, "faces_reused": 0}
        c0, r0 = store.computed, store.reused
        emb_p = torch.zeros(len(probes), store.dim)
        det_p = torch.zeros(len(probes), dtype=torch.bool)
        state: dict[str, Any] = {"model": None, "scale": dataset.scale}
        bar = tqdm(total=len(probes), desc=row.label, unit="probe", disable=not progress, leave=False)
        want = "hr" if row.label == HR_PROBES else "lr"  # the one reference that reads HR probes
        for batch_no, (pos, items, read) in enumerate(reader.batches(want)):
            lrs = read if want == "lr" else None
            images = read if row.sr_store is None else _super_resolve(row, read, state, device)
            if row.sr_store is not None and (batch_no + 1) % SAVE_EVERY_BATCHES == 0:
                row.sr_store.save()
            _, e, d = store.embed(images)
            emb_p[pos : pos + len(items)], det_p[pos : pos + len(items)] = e, d
            for k in range(len(items)):
                if pos + k in sample_idx:
                    folder = folders[pos + k]
                    _write_sample(folder, f"{safe_filename(row.label)}.png", images[k])
                    if lrs is not None and not (folder / "lr.png").exists():
                        _write_sample(folder, "lr.png", lrs[k])
            bar.update(len(items))
        bar.close()
        if row.sr_store is not None:
            row.sr_store.save()
        store.save()
        state["model"] = None
        row.work["faces_computed"] = store.computed - c0
        row.work["faces_reused"] = store.reused - r0
        scores = score_row(emb_p.numpy(), det_p.numpy(), emb_g.numpy(), det_g.numpy(), subj_idx,
                           rec.threshold, distances=[p.distance for p in probes],
                           cameras=[p.camera for p in probes], bootstrap_n=rec.bootstrap.n,
                           bootstrap_seed=rec.bootstrap.seed)
        row.work["seconds"] = round(time.perf_counter() - t0, 3)
        results_rows.append(_entry(row, scores, len(gallery)))
        per_probe += [[row.label, p.name, p.subject, p.distance, p.camera, scores.similarity[i],
                       bool(det_p[i]), scores.matched[i], scores.rank[i]] for i, p in enumerate(probes)]
        log(_summary_line(row, scores))

    run_result = results.RunResult.model_validate({
        "kind": "recognition",
        "protocol_name": protocol.name,
        "protocol_hash": protocol.hash(),
        "protocol": protocol.model_dump(mode="json"),
        "conventions": _conventions(protocol, dataset, aligner, recogniser, len(probes)),
        "provenance": {**collect(device), "runtime_s": round(time.perf_counter() - t_start, 3)},
        "gallery": {"n_subjects": len(gallery), "n_detected": int(det_g.sum()),
                    "undetected_subjects": undetected_gallery},
        "models": results_rows,
        "samples": _samples_manifest(folders, probes, [r.label for r in rows]),
    })
    results.write_csv(out / "summary.csv", results.summary_frame(run_result))
    results.write_csv(out / "per_probe.csv", results.frame(per_probe, results.COLUMNS["recognition"]["per_probe"]))
    results.write_run(out, run_result)
    return run_result


def _samples_manifest(folders: dict[int, Path], probes: list[ProbeItem], labels: list[str]) -> list[dict[str, Any]]:
    """Which sample folder holds which probe and which row's view of it (only files that exist)."""
    out = []
    for i in sorted(folders):
        sub = folders[i]
        if not sub.is_dir():
            continue
        outputs = {label: f"{safe_filename(label)}.png" for label in labels
                   if (sub / f"{safe_filename(label)}.png").is_file()}
        out.append({"folder": sub.name, "image": probes[i].name,
                    "lr": "lr.png" if (sub / "lr.png").is_file() else None,
                    "reference": "gallery.png" if (sub / "gallery.png").is_file() else None, "outputs": outputs})
    return out


def _entry(row: _Row, s: RowScores, n_gallery: int) -> dict[str, Any]:
    return {
        "label": row.label,
        "name": row.name,
        "role": row.role,
        "scale": row.scale,
        "checkpoint": row.checkpoint,
        "checkpoint_sha256": row.checkpoint_sha256,
        "overrides": row.spec.overrides if row.spec else {},
        "metrics": s.metrics,
        "unavailable": s.unavailable,
        "ci95": s.ci95,
        "per_distance": s.per_distance,
        "per_camera": s.per_camera,
        "roc": s.roc,
        "cmc": s.cmc,
        "n_gallery": n_gallery,
        "n_impostor_pairs": s.n_impostor_pairs,
        "work": row.work,
    }


def _fmt(v: float | None, pct: bool = True) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.2f}%" if pct else f"{v:.4f}"


def _summary_line(row: _Row, s: RowScores) -> str:
    m, w = s.metrics, row.work
    reuse = (f"SR {w['sr_computed']} computed/{w['sr_reused']} cached, " if row.sr_store else "") + \
        f"faces {w['faces_computed']} computed/{w['faces_reused']} cached, {w['seconds']:.1f}s"
    return (f"{row.label}: matching acc {_fmt(m['matching_accuracy'])}  avg sim "
            f"{_fmt(m['average_similarity'], pct=False)}  detected {_fmt(m['detection_rate'])}  rank-1 "
            f"{_fmt(m['rank1'])}  TAR@1e-3 {_fmt(m['tar_at_far_1e-3'])}  EER {_fmt(m['eer'])}  ({reuse})")


def _conventions(protocol: RecognitionProtocol, dataset: RecognitionSet, aligner, recogniser,
                 n_scored: int) -> dict[str, Any]:
    rec = protocol.recognition
    return {
        "threshold": rec.threshold,
        "recogniser": recogniser.describe(),
        "detector": {**aligner.describe(), "max_side": rec.detector.max_side,
                     "max_side_rule": "longer side above max_side: MATLAB-bicubic downscale, 8-bit, then detect"},
        "degradation": dataset.describe_degradation(),
        "dataset": {**dataset.describe(), "n_scored": n_scored},
        "seed": protocol.run.seed,
        "similarity": "cosine of L2-normalised embeddings",
        "matching_accuracy": "share of all probes with similarity to their own gallery embedding >= threshold; "
                             "undetected probes are not matched (TANet Table 4)",
        "average_similarity": "mean own-gallery similarity over probes whose face (and gallery face) was "
                              "detected; null ('-') when none was",
        "undetected": "similarity -inf to every gallery face: rejected at every threshold, a miss at every "
                      "CMC rank, kept in every denominator",
        "rank": "1 + number of other gallery subjects with similarity >= the own subject's (pessimistic ties)",
        "roc": "all (probe, own gallery) genuine and (probe, other gallery) impostor pairs; TAR at the "
               "largest achievable FAR <= target; results.json roc holds <= 200 log-spaced points",
        "sr_output": "clamped to [0, 1] and rounded to 8 bits before detection",
        "bootstrap": {"n": rec.bootstrap.n, "seed": rec.bootstrap.seed, "unit": "subject",
                      "method": "percentile, 95 %"},
        "references": {
            HR_PROBES: "the probes' face region (identity folders: the centre crop; SCface: the face crop) at "
                       "native resolution, no degradation, no SR (upper bound)",
            LR_IMAGE: "the LR probe given to the detector without SR (the paper's first row)",
        },
    }

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

import hashlib
import io
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import yaml

from fsr_bench import __version__, atomic
from fsr_bench.data.identity_folders import ProbeItem, RecognitionSet
from fsr_bench.recognition_protocol import HR_PROBES, LR_IMAGE, RecognitionProtocol
from fsr_bench.protocol import ModelSpec, ProtocolError
from fsr_bench.provenance import collect, stable_hash
from fsr_bench.runner import checkpoint_sha, load_model, resolve_device, safe_name

__all__ = [
    "PER_PROBE_COLUMNS",
    "SUMMARY_COLUMNS",
    "FaceStore",
    "RowScores",
    "build_recognition_set",
    "content_key",
    "run_recognition",
    "score_row",
]

SUMMARY_COLUMNS = ["model", "scale", "label", "matching_accuracy", "average_similarity", "detection_rate",
                   "rank1", "tar_at_far_1e-3", "eer", "n_probes"]
PER_PROBE_COLUMNS = ["label", "probe", "subject", "distance", "camera", "similarity", "detected", "matched",
                     "rank"]
CMC_RANKS = 10
ROC_POINTS = 200
CACHE_VERSION = 1
SAVE_EVERY_BATCHES = 64  # SR cache checkpoints during long model rows
Log = Callable[[str], None]


# -- data ------------------------------------------------------------------------------------------
def build_recognition_set(protocol: RecognitionProtocol, cache_dir: Path, device: str = "cpu",
                          progress: bool = False) -> RecognitionSet:
    """The dataset adapter of ``protocol.data``; data problems become ProtocolErrors naming the block."""
    from fsr_bench.data.io import FsrBenchDataError

    spec = protocol.data
    try:
        if spec.type == "scface":
            from fsr_bench.data.scface import SCfaceSet

            return SCfaceSet(root=spec.root, subjects=spec.subjects, distances=spec.distances,
                             cameras=spec.cameras, face_crop=spec.face_crop.model_dump(),
                             lr_size=spec.lr_size, scale=spec.scale, cache_dir=cache_dir, device=device,
                             progress=progress)
        from fsr_bench.data.identity_folders import IdentityFolderSet

        return IdentityFolderSet(root=spec.root, list_file=spec.list_file, gallery_list=spec.gallery_list,
                                 max_identities=spec.max_identities,
                                 max_probes_per_identity=spec.max_probes_per_identity, seed=spec.seed,
                                 probe_degradation=spec.probe_degradation.model_dump(), name=spec.name)
    except FsrBenchDataError as exc:
        raise ProtocolError(f"data ({spec.type}): {exc}") from None


def content_key(image: torch.Tensor) -> str:
    """sha256 of an image's 8-bit pixels and shape: equal pixels, equal key (the cache key)."""
    from fsr_bench.data.io import to_uint8

    pixels = to_uint8(image.detach().cpu()).contiguous()
    h = hashlib.sha256(str(tuple(pixels.shape)).encode())
    h.update(pixels.numpy().tobytes())
    return h.hexdigest()


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _torch_load(path: Path) -> dict[str, Any] | None:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except Exception:  # a damaged cache costs a recomputation, never a wrong number
        return None
    return obj if isinstance(obj, dict) and obj.get("version") == CACHE_VERSION else None


# -- the face cache --------------------------------------------------------------------------------
class FaceStore:
    """Detection + alignment + embedding of images, cached by 8-bit content for one face pipeline.

    ``embed(images)`` returns ``(keys, embeddings (N, D) float32 — zero rows where undetected,
    detected (N,) bool)``; ``None`` images (probes that could not be made) are undetected.
    """

    def __init__(self, folder: Path, aligner, recogniser, max_side: int | None, fresh: bool = False):
        self.aligner, self.recogniser, self.max_side = aligner, recogniser, max_side
        self.pipeline = {
            "version": CACHE_VERSION,
            "detector": aligner.describe(),
            "max_side": max_side,
            "recogniser": {k: v for k, v in recogniser.describe().items() if k not in ("device", "weights_path")},
        }
        self.path = folder / f"faces_{stable_hash(self.pipeline)[:16]}.pt"
        self.dim = int(recogniser.embedding_dim)
        self.entries: dict[str, tuple[bool, torch.Tensor]] = {}
        cached = None if fresh else _torch_load(self.path)
        if cached is not None:
            for k, d, e in zip(cached["keys"], cached["detected"].tolist(), cached["embeddings"]):
                self.entries[k] = (bool(d), e)
        self.computed = 0
        self.reused = 0
        self._dirty = False

    def _prepare(self, image: torch.Tensor) -> torch.Tensor:
        """Downscale images whose longer side exceeds ``max_side`` (alignment output is 112×112)."""
        from fsr_bench.data.identity_folders import quantize
        from fsr_bench.data.resize import imresize

        side = max(image.shape[-2:])
        if self.max_side is None or side <= self.max_side:
            return image
        return quantize(imresize(image, scale=self.max_side / side))

    def embed(self, images: Sequence[torch.Tensor | None]) -> tuple[list[str | None], torch.Tensor, torch.Tensor]:
        keys = [None if im is None else content_key(im) for im in images]
        todo: dict[str, torch.Tensor] = {}
        for k, im in zip(keys, images):
            if k is not None and k not in self.entries and k not in todo:
                todo[k] = im
        if todo:
            todo_keys = list(todo)
            found = self.aligner.align([self._prepare(todo[k].float()) for k in todo_keys])
            emb = torch.zeros(len(todo_keys), self.dim)
            if bool(found.detected.any()):
                emb[found.detected] = self.recogniser.embed(found.faces[found.detected]).float()
            for i, k in enumerate(todo_keys):
                self.entries[k] = (bool(found.detected[i]), emb[i].clone())
            self.computed += len(todo_keys)
            self._dirty = True
        n_keys = sum(1 for k in keys if k is not None)
        self.reused += n_keys - len(todo)
        out = torch.zeros(len(images), self.dim)
        det = torch.zeros(len(images), dtype=torch.bool)
        for i, k in enumerate(keys):
            if k is not None:
                d, e = self.entries[k]
                det[i] = d
                out[i] = e
        return keys, out, det

    def save(self) -> None:
        if not self._dirty:
            return
        keys = list(self.entries)
        atomic.write_bytes(self.path, _torch_bytes({
            "version": CACHE_VERSION,
            "pipeline": stable_hash(self.pipeline),
            "keys": keys,
            "detected": torch.tensor([self.entries[k][0] for k in keys], dtype=torch.bool),
            "embeddings": torch.stack([self.entries[k][1] for k in keys]) if keys else torch.zeros(0, self.dim),
        }))
        self._dirty = False


class _SRStore:
    """SR outputs (uint8) of one model, keyed by the LR probe's content."""

    def __init__(self, folder: Path, spec: ModelSpec, sha: str | None, fresh: bool):
        self.meta = {"version": CACHE_VERSION, "fsr_bench": __version__, "name": spec.name,
                     "checkpoint_sha256": sha, "overrides": spec.overrides}
        self.path = folder / f"{safe_name(spec.display)}_{stable_hash(self.meta)[:16]}.pt"
        cached = None if fresh else _torch_load(self.path)
        self.scale: int | None = cached.get("scale") if cached else None
        self.outputs: dict[str, torch.Tensor] = dict(zip(cached["keys"], cached["outputs"])) if cached else {}
        self._dirty = False

    def put(self, key: str, sr: torch.Tensor) -> None:
        self.outputs[key] = sr
        self._dirty = True

    def save(self) -> None:
        if self._dirty:
            keys = list(self.outputs)
            atomic.write_bytes(self.path, _torch_bytes({
                "version": CACHE_VERSION, "scale": self.scale, "meta_hash": stable_hash(self.meta),
                "keys": keys, "outputs": [self.outputs[k] for k in keys]}))
            self._dirty = False


# -- scoring (pure) --------------------------------------------------------------------------------
@dataclass
class RowScores:
    """Everything scored for one row; ``similarity``/``rank`` are None where not scorable."""

    metrics: dict[str, Any]
    ci95: dict[str, list[float]]
    per_distance: dict[str, dict[str, Any]]
    per_camera: dict[str, dict[str, Any]]
    roc: dict[str, list[float]]
    cmc: list[float]
    similarity: list[float | None]
    matched: list[bool]
    rank: list[int | None]
    unavailable: dict[str, str] = field(default_factory=dict)
    n_impostor_pairs: int = 0


def _group_scores(mask: np.ndarray, matched: np.ndarray, scored: np.ndarray, own: np.ndarray,
                  detected: np.ndarray) -> dict[str, Any]:
    n = int(mask.sum())
    s = mask & scored
    return {
        "matching_accuracy": float(matched[mask].sum() / n) if n else None,
        "average_similarity": float(own[s].mean()) if s.any() else None,
        "detection_rate": float(detected[mask].mean()) if n else None,
        "n_probes": n,
    }


def _roc_points(genuine: np.ndarray, impostor: np.ndarray) -> dict[str, list[float]]:
    """≤ ROC_POINTS achievable (FAR, TAR) points on a log-spaced FAR grid (for log-x ROC plots)."""
    from fsr_bench.face.recognition import roc

    curve = roc(genuine, impostor)
    lowest = min(1.0, 1.0 / impostor.size)
    grid = np.concatenate([[0.0], np.logspace(math.log10(lowest), 0.0, ROC_POINTS - 1)])
    tar = [float(curve.tar[curve.far <= f + 1e-15].max()) for f in grid]
    return {"far": [float(f) for f in grid], "tar": tar}


def score_row(emb_p: np.ndarray, det_p: np.ndarray, emb_g: np.ndarray, det_g: np.ndarray,
              subject_index: np.ndarray, threshold: float = 0.4, *, distances: Sequence[str] | None = None,
              cameras: Sequence[str] | None = None, bootstrap_n: int = 1000,
              bootstrap_seed: int = 0) -> RowScores:
    """Score P probes against S gallery subjects (one gallery embedding each). Pure NumPy.

    ``subject_index[i]`` is the gallery row of probe i's subject. See the module docstring for how
    undetected probes and gallery faces enter each number.
    """
    from fsr_bench.face import recognition as R

    det_p, det_g = np.asarray(det_p, bool), np.asarray(det_g, bool)
    subj = np.asarray(subject_index, dtype=np.int64)
    n_p, n_g = det_p.size, det_g.size
    if n_p == 0:
        raise ValueError("no probes to score")
    sims = np.full((n_p, n_g), -np.inf)
    rows, cols = np.flatnonzero(det_p), np.flatnonzero(det_g)
    if rows.size and cols.size:
        sims[np.ix_(rows, cols)] = R.cosine_similarity_matrix(np.asarray(emb_p)[rows], np.asarray(emb_g)[cols])
    arange = np.arange(n_p)
    own = sims[arange, subj]
    scored = det_p & det_g[subj]
    genuine_nan = np.where(scored, own, np.nan)
    ma = R.matching_accuracy(genuine_nan, scored, threshold)
    avg = R.average_similarity(genuine_nan, scored)
    matched = scored & (own >= threshold)
    # rank of the own identity: 1 + other identities at least as similar (pessimistic ties)
    ge = sims >= own[:, None]
    ge[arange, subj] = False
    rank = np.where(scored, 1 + ge.sum(axis=1), 0)
    cmc = R.cmc(sims, subj, np.arange(n_g), max_rank=CMC_RANKS, detected_mask=scored)
    unavailable: dict[str, str] = {}
    if avg is None:
        unavailable["average_similarity"] = "no probe face reached the recogniser (the paper prints '-')"
    genuine = np.where(scored, own, -np.inf)
    other = np.ones((n_p, n_g), dtype=bool)
    other[arange, subj] = False
    impostor = sims[other]
    tar2 = tar3 = eer = None
    roc_pts: dict[str, list[float]] = {"far": [], "tar": []}
    if impostor.size:
        tar2 = R.tar_at_far(genuine, impostor, 1e-2)
        tar3 = R.tar_at_far(genuine, impostor, 1e-3)
        eer = R.eer(genuine, impostor)
        roc_pts = _roc_points(genuine, impostor)
    else:
        for key in ("tar_at_far_1e-2", "tar_at_far_1e-3", "eer"):
            unavailable[key] = "one gallery subject: there are no impostor pairs"
    metrics = {
        "matching_accuracy": ma,
        "average_similarity": avg,
        "detection_rate": float(det_p.mean()),
        "rank1": float(cmc[0]),
        "rank5": float(cmc[min(5, CMC_RANKS) - 1]),
        "tar_at_far_1e-2": tar2,
        "tar_at_far_1e-3": tar3,
        "eer": eer,
        "n_probes": int(n_p),
        "n_matched": int(matched.sum()),
    }
    # subject-level bootstrap: ratio of sums over resampled subjects
    ci95: dict[str, list[float]] = {}
    if bootstrap_n > 0:
        uniq, inv = np.unique(subj, return_inverse=True)
        count = np.bincount(inv, minlength=uniq.size).astype(float)
        hits = np.bincount(inv, weights=matched.astype(float), minlength=uniq.size)
        top1 = np.bincount(inv, weights=(scored & (rank == 1)).astype(float), minlength=uniq.size)
        n_sc = np.bincount(inv, weights=scored.astype(float), minlength=uniq.size)
        s_sum = np.bincount(inv, weights=np.where(scored, own, 0.0), minlength=uniq.size)

        def ratio(num: np.ndarray, den: np.ndarray) -> Callable[[np.ndarray], float]:
            return lambda idx: float(num[idx].sum() / den[idx].sum()) if den[idx].sum() > 0 else math.nan

        for key, stat in (("matching_accuracy", ratio(hits, count)), ("rank1", ratio(top1, count)),
                          ("average_similarity", ratio(s_sum, n_sc))):
            if metrics[key] is None:
                continue
            ci = R.bootstrap_ci(np.arange(uniq.size), stat, n=bootstrap_n, seed=bootstrap_seed)
            if math.isfinite(ci.low) and math.isfinite(ci.high):
                ci95[key] = [ci.low, ci.high]
            else:
                unavailable[f"ci95.{key}"] = "some bootstrap resamples had no detected probe"

    def groups(labels: Sequence[str] | None) -> dict[str, dict[str, Any]]:
        lab = np.asarray(labels if labels is not None else ["all"] * n_p)
        return {g: _group_scores(lab == g, matched, scored, own, det_p) for g in sorted(set(lab.tolist()))}

    return RowScores(
        metrics=metrics, ci95=ci95, per_distance=groups(distances), per_camera=groups(cameras),
        roc=roc_pts, cmc=[float(v) for v in cmc],
        similarity=[float(own[i]) if scored[i] else None for i in range(n_p)],
        matched=[bool(v) for v in matched], rank=[int(r) if scored[i] else None for i, r in enumerate(rank)],
        unavailable=unavailable, n_impostor_pairs=int(impostor.size),
    )


# -- rows ------------------------------------------------------------------------------------------
@dataclass
class _Row:
    label: str
    name: str
    spec: ModelSpec | None = None
    scale: int | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    sr_store: _SRStore | None = None
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
                yield start, items, [None if self._lr[i] is None else self._lr[i].float() / 255.0 for i in idx]
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
        if k is not None and k not in store.outputs:
            missing.setdefault(tuple(lr.shape[-2:]), {})[k] = lr
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
    model = load_model(spec, device)
    if model.scale != scale:
        raise ProtocolError(
            f"model {spec.display!r} ({spec.name}) is x{model.scale} but this protocol's probes are made "
            f"for x{scale}; use the _x{scale} variant of the model (or change the data block's scale)"
        )
    return model


def _model_row(spec: ModelSpec, sr_dir: Path, scale: int, device: str, force: bool) -> _Row:
    try:
        sha = checkpoint_sha(spec)
    except OSError as exc:
        raise ProtocolError(f"model {spec.display!r}: cannot read checkpoint {spec.checkpoint!r} ({exc})") from None
    store = _SRStore(sr_dir, spec, sha, fresh=force)
    if store.scale is None:  # never run: build it now so a bad model fails before the long work
        model = _build_model(spec, device, scale)
        store.scale = model.scale
        del model
    return _Row(label=spec.display, name=spec.name, spec=spec, scale=store.scale, checkpoint=spec.checkpoint,
                checkpoint_sha256=sha, sr_store=store)


from fsr_bench.naming import safe_filename as label_filename  # noqa: E402  (one rule, shared with reports)


def _sample_folders(samples: Path, probes: list[ProbeItem], chosen: set[int]) -> dict[int, Path]:
    """``samples/<probe stem>``; the flattened relative name where stems repeat across identities."""
    stems = [Path(p.name).name for p in probes]
    unique = len(set(stems)) == len(stems)
    return {i: samples / label_filename(stems[i] if unique else probes[i].name.replace("/", "_"))
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
                    log: Log = print, force: bool = False) -> dict[str, Any]:
    """Run every row of ``protocol``; returns the results dict also written to results.json.

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
    atomic.write_text(out / "protocol.yaml", yaml.safe_dump(protocol.model_dump(mode="json"), sort_keys=False))
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
        rows.append(_Row(LR_IMAGE, "reference"))
    for spec in protocol.models:
        rows.append(_model_row(spec, cache / "sr", dataset.scale, device, force))
    if protocol.references.hr_probes:
        rows.append(_Row(HR_PROBES, "reference"))

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
        images = [dataset.read_gallery(g) for g in gallery[start : start + det.batch_size]]
        _, e, d = store.embed(images)
        emb_g[start : start + len(e)], det_g[start : start + len(d)] = e, d
        for k, image in enumerate(images):
            for folder in gallery_samples.get(start + k, []):
                _write_sample(folder, "gallery.png", image)
        bar.update(len(images))
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
        want = "hr" if row.label == HR_PROBES else "lr"
        for batch_no, (pos, items, images) in enumerate(reader.batches(want)):
            lrs = images if want == "lr" else None
            if row.sr_store is not None:
                images = _super_resolve(row, images, state, device)
                if (batch_no + 1) % SAVE_EVERY_BATCHES == 0:
                    row.sr_store.save()
            _, e, d = store.embed(images)
            emb_p[pos : pos + len(items)], det_p[pos : pos + len(items)] = e, d
            for k in range(len(items)):
                if pos + k in sample_idx:
                    folder = folders[pos + k]
                    _write_sample(folder, f"{label_filename(row.label)}.png", images[k])
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

    results = {
        "kind": "recognition",
        "protocol_name": protocol.name,
        "protocol_hash": protocol.hash(),
        "protocol": protocol.model_dump(mode="json"),
        "conventions": _conventions(protocol, dataset, aligner, recogniser, len(probes)),
        "provenance": {**collect(device), "runtime_s": round(time.perf_counter() - t_start, 3)},
        "gallery": {"n_subjects": len(gallery), "n_detected": int(det_g.sum()),
                    "undetected_subjects": undetected_gallery},
        "models": results_rows,
    }
    atomic.write_csv(out / "summary.csv", SUMMARY_COLUMNS, (
        [r["name"], r["scale"], r["label"]] + [r["metrics"][k] for k in SUMMARY_COLUMNS[3:]]
        for r in results_rows))
    atomic.write_csv(out / "per_probe.csv", PER_PROBE_COLUMNS, per_probe)
    atomic.write_json(out / "results.json", results)
    return results


def _entry(row: _Row, s: RowScores, n_gallery: int) -> dict[str, Any]:
    return {
        "label": row.label,
        "name": row.name,
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

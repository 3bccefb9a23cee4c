"""Run a recognition protocol: gallery → rows (references, SR models) → detection → embeddings →
scores, with on-disk caches so that adding one model to a finished run costs only that model.

Output folder (read by ``fsr_bench.reporting``)::

    OUT/protocol.yaml        the validated protocol, as run
    OUT/results.json         conventions + provenance + one entry per row ("models")
    OUT/summary.csv          model, scale, label, matching_accuracy, average_similarity,
                             detection_rate, rank1, tar_at_far_1e-3, eer, n_probes
    OUT/per_probe.csv        label, probe, subject, distance, camera, similarity, detected, matched, rank,
                             recogniser (mated probes; one block per recogniser)
    OUT/scores.npz           "<recogniser>|<label>": the (P, G) score matrix of every row (NaN row =
                             undetected probe, -inf column = undetected gallery face), probe_ids,
                             gallery_ids, "<recogniser>|calibration_genuine/_impostor" scores
    OUT/samples/<probe>/     lr.png, gallery.png, <label>.png (what the detector saw) for the first
                             ``run.num_samples`` probes; ``.key`` names the data they were made from
                             (dataset, degradation, seed): when it changes, the folder is emptied first
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
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from fsr_bench import results
from fsr_bench.data.identity_folders import ProbeItem, RecognitionSet
from fsr_bench.data.native_folders import ABSENT_HR_PROBES
from fsr_bench.distributed import SINGLE, Ranks
from fsr_bench.metrics.operating_points import (
    Calibration,
    RowOperatingPoints,
    assert_disjoint_subjects,
    calibrate_thresholds,
    operating_point_metrics,
    split_scores,
    with_ratios,
)
from fsr_bench.metrics.recognition import RowScores, cosine_similarity_matrix, score_row
from fsr_bench.protocol import ProtocolError
from fsr_bench.protocol.recognition import HR_PROBES, LR_IMAGE, RecognitionProtocol
from fsr_bench.provenance import collect, stable_hash
from fsr_bench.run.caches import FaceStore
from fsr_bench.run.common import (
    Log,
    evaluated_split,
    inference_convention,
    ranks_provenance,
    resolve_device,
    safe_filename,
)
from fsr_bench.run.outdir import keyed_sample_folder
from fsr_bench.run.recognition_rows import Row, model_row, super_resolve, trained_with

__all__ = ["build_recognition_set", "calibration_blocks", "run_recognition", "trained_with"]

SAVE_EVERY_BATCHES = 64  # SR cache checkpoints during long model rows
CALIBRATION_BATCH = 16  # calibration images embedded at a time
#: How several gallery images of one subject are used (results.json gallery.template, conventions)
GALLERY_TEMPLATE = ("no template fusion: every gallery image is embedded and scored on its own, as the official "
                    "TinyFace evaluation (test_face_identification.m) does; a subject's score is its best image's "
                    "(max), so ranks count subjects (NIST FRVT 1:N candidate lists). The official TinyFace CMC "
                    "counts image positions instead: the same rank-1, and rank-5/20 can differ when other subjects "
                    "have several images above the mate. Impostor pairs / ROC: probe vs each other subject's best "
                    "image; open set (scores.npz, operating points): the image-level (P, G images) matrix")


# -- data ------------------------------------------------------------------------------------------
def build_recognition_set(protocol: RecognitionProtocol, cache_dir: Path, device: str = "cpu",
                          progress: bool = False) -> RecognitionSet:
    """The dataset adapter of ``protocol.data``; data problems become ProtocolErrors naming the block."""
    from fsr_bench.data.identity_folders import RECOGNITION_SETS
    from fsr_bench.data.io import FsrBenchDataError

    block, _ = calibration_blocks(protocol)
    try:
        return RECOGNITION_SETS.get(block["type"]).builder(block, cache_dir=cache_dir, device=device,
                                                           progress=progress)
    except FsrBenchDataError as exc:
        raise ProtocolError(f"data ({block['type']}): {exc}") from None


def calibration_blocks(protocol: RecognitionProtocol) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(evaluation data block, calibration data block or None) for the dataset adapters.

    identity_folder + ``calibration.fraction``: the data block's identities split by
    :func:`~fsr_bench.data.identity_folders.split_identities`, evaluation keeps the rest;
    ``calibration.list_file``: those identities calibrate, and the runner refuses any overlap with
    the evaluation subjects. SCface: bob's ``calibration.protocol`` / ``group``.
    """
    from fsr_bench.data.identity_folders import split_identities
    from fsr_bench.data.io import FsrBenchDataError
    from fsr_bench.data.scface import bob_protocol

    data, cal = protocol.data.model_dump(), protocol.calibration
    if cal is None:
        return data, None
    try:
        if data["type"] == "identity_folder":
            fixed = {"max_identities": cal.max_identities, "max_probes_per_identity": cal.max_probes_per_identity,
                     "unmated_identities": None, "single_image_distractors": False, "gallery_list": None}
            if cal.fraction is not None:
                cal_ids, eval_ids = split_identities(data["root"], data["list_file"], cal.fraction, cal.seed)
                return ({**data, "include_identities": sorted(eval_ids)},
                        {**data, **fixed, "include_identities": sorted(cal_ids)})
            return data, {**data, **fixed, "list_file": cal.list_file}
        if data["type"] == "native_identity_folder":  # HR-vs-HR from the gallery side (data.native_folders)
            gallery_side = {**data, "role": "calibration", "max_identities": cal.max_identities,
                            "max_probes_per_identity": cal.max_probes_per_identity}
            if cal.fraction is not None:
                cal_ids, _ = split_identities(data["gallery_root"], data["list_file"], cal.fraction, cal.seed)
                return {**data, "exclude_identities": sorted(cal_ids)}, {**gallery_side,
                                                                         "include_identities": sorted(cal_ids)}
            return data, {**gallery_side, "list_file": cal.list_file}
        assert cal.group is not None  # the protocol's validator
        return data, {**data, **bob_protocol(cal.protocol, cal.group)}
    except FsrBenchDataError as exc:
        raise ProtocolError(f"calibration: {exc}") from None


def _build_calibration_set(protocol: RecognitionProtocol, cache_dir: Path, device: str, progress: bool
                           ) -> RecognitionSet | None:
    from fsr_bench.data.identity_folders import RECOGNITION_SETS
    from fsr_bench.data.io import FsrBenchDataError

    _, block = calibration_blocks(protocol)
    if block is None:
        return None
    try:
        return RECOGNITION_SETS.get(block["type"]).builder(block, cache_dir=cache_dir, device=device,
                                                           progress=progress)
    except FsrBenchDataError as exc:
        raise ProtocolError(f"calibration ({block['type']}): {exc}") from None


class _ProbeReader:
    """Reads probe batches; small LR probes are kept in memory (uint8) after the first read, so
    each further row costs no decoding or degradation."""

    MAX_KEPT_PIXELS = 256 * 256

    def __init__(self, dataset: RecognitionSet, probes: list[ProbeItem], batch_size: int, seed: int):
        self.dataset, self.probes, self.batch_size, self.seed = dataset, probes, batch_size, seed
        self._lr: dict[int, torch.Tensor | None] = {}

    @property
    def n_batches(self) -> int:
        return -(-len(self.probes) // self.batch_size)

    def batches(self, want: str, chunks: range | None = None
                ) -> Iterator[tuple[int, list[ProbeItem], list[torch.Tensor | None]]]:
        """(start, items, images) with images = the probes' ``want`` ("hr" or "lr") images, for
        every batch or the batch numbers in ``chunks`` (this process's share)."""
        from fsr_bench.data.io import to_uint8

        for chunk in (range(self.n_batches) if chunks is None else chunks):
            start = chunk * self.batch_size
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
                    log: Log = print, force: bool = False, ranks: Ranks = SINGLE,
                    cache_dir: str | Path | None = None) -> results.RunResult:
    """Run every row of ``protocol``; returns the :class:`~fsr_bench.results.RunResult` written to
    results.json.

    ``cache_dir`` (default ``OUT/cache``): where the face and SR caches live; runs that share
    images (the sizes of a face-size sweep) share it.

    ``force`` recomputes every SR output, detection and embedding, rewriting those caches (SCface
    face-crop boxes, which depend only on the file and the crop settings, are kept).

    ``ranks`` (several processes under torchrun, see :func:`fsr_bench.run.run_protocol`): the
    gallery, the calibration images and each row's probes are split into contiguous blocks of whole
    batches (the single-process batches, so every face goes through the detector, the recogniser
    and the model in the same batch as in one process); rank 0 gathers the embeddings, the new
    cache entries and the sample images, scores every row and alone writes OUT (the others read the
    caches, never write them).
    """
    if protocol.data.type == "survface_verification":  # listed 1:1 pairs, no gallery
        from fsr_bench.run.verification import run_verification

        if ranks.world > 1:
            raise ProtocolError("data.type survface_verification: 1:1 verification runs are not sharded across "
                                "processes; run it without torchrun")
        return run_verification(protocol, out_dir, progress=progress, log=log, force=force, cache_dir=cache_dir)
    from fsr_bench.face import create_recogniser
    from fsr_bench.face.detect import FaceAligner
    from fsr_bench.progress import progress_bar

    t_start = time.perf_counter()
    out = Path(out_dir)
    cache = out / "cache" if cache_dir is None else Path(cache_dir)
    rec, run = protocol.recognition, protocol.run
    device = ranks.step(lambda: resolve_device(protocol.run.device))
    assert device is not None
    if ranks.is_main:
        out.mkdir(parents=True, exist_ok=True)

    def build_sets() -> tuple[RecognitionSet, RecognitionSet | None]:
        return (build_recognition_set(protocol, cache, device=device, progress=progress),
                _build_calibration_set(protocol, cache, device, progress))

    # rank 0 first: an adapter may write a cache (SCface face boxes) the others then only read
    first = ranks.step(build_sets, main_only=True)
    sets = ranks.step(lambda: first if ranks.is_main else build_sets())
    assert sets is not None
    dataset, cal_set = sets
    probes = dataset.probes[: run.limit] if run.limit else dataset.probes
    gallery = dataset.gallery
    if cal_set is not None:
        try:
            assert_disjoint_subjects(sorted({g.subject for g in cal_set.gallery} | {p.subject for p in cal_set.probes}),
                                     sorted({g.subject for g in gallery} | {p.subject for p in probes}))
        except ValueError as exc:
            raise ProtocolError(f"calibration: {exc}") from None
    # several gallery images per subject (TinyFace Gallery_Match, QMUL-SurvFace): each image is scored,
    # a subject counts with its best one (fsr_bench.metrics.recognition.subject_scores)
    subject_row: dict[str, int] = {}
    first_image: dict[int, int] = {}
    for i, g in enumerate(gallery):
        first_image.setdefault(subject_row.setdefault(g.subject, len(subject_row)), i)
    gallery_subject = np.array([subject_row[g.subject] for g in gallery], dtype=np.int64)
    multi_image = len(subject_row) < len(gallery)
    mated = np.array([p.subject in subject_row for p in probes], dtype=bool)
    mated_idx = np.flatnonzero(mated)
    subj_idx = np.array([subject_row[probes[i].subject] for i in mated_idx], dtype=np.int64)
    probe_ids = np.array([p.subject for p in probes], dtype=object)
    gallery_ids = np.array([g.subject for g in gallery], dtype=object)
    if not mated.any():
        raise ProtocolError("data: no probe's subject is enrolled in the gallery; nothing to match")
    log(f"{dataset.name}: {len(subject_row)} gallery subjects"
        + (f" ({len(gallery)} images)" if multi_image else "") + f", {len(probes)} probes"
        + (f" ({len(probes) - mated_idx.size} unmated)" if mated_idx.size < len(probes) else "")
        + (f" (run.limit of {len(dataset.probes)})" if len(probes) < len(dataset.probes) else ""))

    def build_rows() -> tuple[list[Row], list[Any], list[Any], list[FaceStore]]:
        """Rows (fail fast on a bad model before any detection work), recognisers, aligners, caches."""
        rows: list[Row] = []
        if protocol.references.lr_image:
            rows.append(Row(LR_IMAGE, "reference", role="reference", input="lr"))
        for spec in protocol.models:
            rows.append(model_row(spec, cache / "sr", dataset.scale, device, force,
                                  inference_convention(protocol.run, device), evaluated_split(protocol)))
        if protocol.hr_probes_row:
            rows.append(Row(HR_PROBES, "reference", role="reference", input="hr"))
        det = rec.detector
        key = "recognition.recogniser" if rec.recognisers is None else "recognition.recognisers"
        stores: list[FaceStore] = []
        recognisers = []
        aligners: list[Any] = []
        for k, name in enumerate(rec.names):
            try:
                recognisers.append(create_recogniser(name, weights=rec.weights, device=device, flip=rec.flip))
            except Exception as exc:  # weights unavailable offline, unknown name, …: say which key to fix
                where = key if rec.recognisers is None else f"{key}[{k}]"
                raise ProtocolError(f"{where} {name!r}: {exc}") from exc
            aligner = FaceAligner(min_face_size=det.min_face_size, thresholds=det.thresholds, factor=det.factor,
                                  selection=det.selection, min_prob=det.min_prob, batch_size=det.batch_size,
                                  device=device, recogniser=recognisers[-1])  # the recogniser's own crop
            aligners.append(aligner)
            stores.append(FaceStore(cache, aligner, recognisers[-1], det.max_side, fresh=force))
        return rows, recognisers, aligners, stores

    built = ranks.step(build_rows)
    assert built is not None
    rows, recognisers, aligners, stores = built
    det = rec.detector
    names = rec.names

    # gallery: streamed in detector-sized batches (HD mugshots are large)
    sample_idx = set(range(min(run.num_samples, len(probes))))
    samples = out / "samples"
    folders = _sample_folders(samples, probes, sample_idx)
    sample_key = stable_hash({"dataset": dataset.describe(), "degradation": dataset.describe_degradation(),
                              "seed": run.seed})

    def key_samples() -> None:  # images of other data (dataset, degradation, seed) go first
        for folder in folders.values():
            keyed_sample_folder(folder, sample_key)

    ranks.step(key_samples, main_only=True)
    gallery_samples: dict[int, list[Path]] = {}
    for i in sample_idx:
        if probes[i].subject in subject_row:  # the subject's first gallery image
            gallery_samples.setdefault(first_image[subject_row[probes[i].subject]], []).append(folders[i])
    bar = progress_bar(total=len(gallery), desc="gallery", unit="img", disable=not progress, leave=False)
    embedded = _embed_sharded(ranks, stores, len(gallery), det.batch_size,
                              lambda lo, hi: [dataset.read_gallery(g) for g in gallery[lo:hi]],
                              keep=set(gallery_samples), bar=bar)
    bar.close()

    def gallery_done() -> tuple[list[torch.Tensor], list[torch.Tensor], list[str]]:
        emb_g, det_g, kept = embedded
        for j, image in kept.items():
            for folder in gallery_samples.get(j, []):
                _write_sample(folder, "gallery.png", image)
        for st in stores:
            st.save()
        found_g = np.bincount(gallery_subject, weights=det_g[0].numpy().astype(float),
                              minlength=len(subject_row)) > 0
        undetected = [name for name, col in subject_row.items() if not found_g[col]]
        n_undetected_images = int((~det_g[0]).sum())
        if n_undetected_images:
            log(f"warning: no face detected in {n_undetected_images} gallery image(s); "
                f"{len(undetected)} subject(s) have no detected gallery face "
                f"({', '.join(undetected[:10])}) and their probes cannot match")
        return emb_g, det_g, undetected

    enrolled = ranks.step(gallery_done, main_only=True)
    emb_g, det_g, undetected_gallery = enrolled if enrolled is not None else ([], [], [])

    # calibration: HR-vs-HR scores of the calibration subjects -> one threshold per FAR and recogniser
    calibrations: list[Calibration] = []
    cal_info: dict[str, Any] = {}
    score_arrays: dict[str, np.ndarray] = {"probe_ids": probe_ids.astype(str), "gallery_ids": gallery_ids.astype(str)}
    if cal_set is None:
        calibrations = [Calibration((), (), 0, 0) for _ in stores]
    else:
        cal_g, cal_p = cal_set.gallery, cal_set.probes
        cal_gallery = _embed_sharded(ranks, stores, len(cal_g), CALIBRATION_BATCH,
                                     lambda lo, hi: [cal_set.read_gallery(g) for g in cal_g[lo:hi]])
        cal_probes = _embed_sharded(ranks, stores, len(cal_p), CALIBRATION_BATCH,
                                    lambda lo, hi: [cal_set.read_probe(p, seed=run.seed).hr for p in cal_p[lo:hi]])

        def calibrate() -> list[Calibration]:
            for st in stores:
                st.save()
            return [_calibrate(protocol, cal_set, cal_gallery[0][k].numpy(), cal_gallery[1][k].numpy(),
                               cal_probes[0][k].numpy(), cal_probes[1][k].numpy(), names[k], cal_info, log,
                               score_arrays) for k in range(len(stores))]

        calibrations = ranks.step(calibrate, main_only=True) or []

    # rows
    reader = _ProbeReader(dataset, probes, run.batch_size, run.seed)
    mine = ranks.block(reader.n_batches)
    lo, hi = min(len(probes), mine.start * run.batch_size), min(len(probes), mine.stop * run.batch_size)
    per_row: list[list[tuple[RowScores, RowOperatingPoints]]] = []
    per_probe: list[list[Any]] = []
    for row in rows:
        t0 = time.perf_counter()
        row.work = {"sr_computed": 0, "sr_reused": 0, "faces_computed": 0, "faces_reused": 0}
        c0, r0 = sum(st.computed for st in stores), sum(st.reused for st in stores)

        def embed_row(row: Row = row) -> dict[str, Any]:
            """This process's share of the row: embeddings of probes lo:hi, new cache entries, samples."""
            emb_p = [torch.zeros(hi - lo, st.dim) for st in stores]
            det_p = [torch.zeros(hi - lo, dtype=torch.bool) for _ in stores]
            kept: dict[int, tuple[torch.Tensor | None, torch.Tensor | None]] = {}
            state: dict[str, Any] = {"model": None, "scale": dataset.scale, "run": protocol.run}
            bar = progress_bar(total=hi - lo, desc=row.label, unit="probe", disable=not progress, leave=False)
            want = "hr" if row.input == "hr" else "lr"
            for batch_no, (pos, items, read) in enumerate(reader.batches(want, mine)):
                lrs = read if want == "lr" else None
                images = read if row.sr_store is None else super_resolve(row, read, state, device)
                if ranks.is_main and row.sr_store is not None and (batch_no + 1) % SAVE_EVERY_BATCHES == 0:
                    row.sr_store.save()
                for k, st in enumerate(stores):
                    _, e, d = st.embed(images)
                    emb_p[k][pos - lo : pos - lo + len(items)], det_p[k][pos - lo : pos - lo + len(items)] = e, d
                for j in range(len(items)):
                    if pos + j in sample_idx:
                        kept[pos + j] = (images[j], None if lrs is None else lrs[j])
                bar.update(len(items))
            bar.close()
            state["model"] = None
            sr_fresh = row.sr_store.take_fresh() if row.sr_store is not None else {}
            faces_fresh = [st.take_fresh() for st in stores]  # rank 0 has its own entries already
            return {"lo": lo, "emb": emb_p, "det": det_p, "kept": kept,
                    "sr_fresh": sr_fresh if not ranks.is_main else {},
                    "faces_fresh": faces_fresh if not ranks.is_main else [{} for _ in stores],
                    "work": {**row.work, "faces_computed": sum(st.computed for st in stores) - c0,
                             "faces_reused": sum(st.reused for st in stores) - r0}}

        parts = ranks.gather(ranks.step(embed_row))

        def score(row: Row = row) -> None:
            assert parts is not None
            emb_p = [torch.cat([part["emb"][k] for part in parts]) for k in range(len(stores))]
            det_p = [torch.cat([part["det"][k] for part in parts]) for k in range(len(stores))]
            for part in parts:
                if row.sr_store is not None:
                    row.sr_store.merge(part["sr_fresh"])
                for st, fresh in zip(stores, part["faces_fresh"]):
                    st.merge(fresh)
                for i, (image, lr) in part["kept"].items():
                    _write_sample(folders[i], f"{safe_filename(row.label)}.png", image)
                    if lr is not None and not (folders[i] / "lr.png").exists():
                        _write_sample(folders[i], "lr.png", lr)
            row.work = {k: sum(part["work"][k] for part in parts) for k in row.work}
            if row.sr_store is not None:
                row.sr_store.save()
            for st in stores:
                st.save()
            scored = []
            for k in range(len(stores)):
                ep, dp, eg, dg = emb_p[k].numpy(), det_p[k].numpy(), emb_g[k].numpy(), det_g[k].numpy()
                scores = score_row(ep[mated_idx], dp[mated_idx], eg, dg, subj_idx, rec.threshold,
                                   distances=[probes[i].distance for i in mated_idx],
                                   cameras=[probes[i].camera for i in mated_idx], bootstrap_n=rec.bootstrap.n,
                                   bootstrap_seed=rec.bootstrap.seed,
                                   gallery_subject=gallery_subject if multi_image else None)
                matrix = score_matrix(ep, dp, eg, dg)
                score_arrays[f"{names[k]}|{row.label}"] = matrix.astype(np.float32)
                ops = operating_point_metrics(matrix, probe_ids, gallery_ids, calibrations[k],
                                              fixed_threshold=rec.threshold, fpirs=cal_fpirs(protocol),
                                              ranks=cal_ranks(protocol))
                scored.append((scores, ops))
                per_probe.extend([row.label, probes[i].name, probes[i].subject, probes[i].distance, probes[i].camera,
                                  scores.similarity[j], bool(dp[i]), scores.matched[j], scores.rank[j], names[k]]
                                 for j, i in enumerate(mated_idx))
            row.work["seconds"] = round(time.perf_counter() - t0, 3)
            per_row.append(scored)
            log(_summary_line(row, scored[0][0]))

        ranks.step(score, main_only=True)

    def write() -> results.RunResult:
        results_rows = _entries(rows, per_row, names, len(subject_row))
        run_result = results.RunResult.model_validate({
            "kind": "recognition",
            "protocol_name": protocol.name,
            "protocol_hash": protocol.hash(),
            "protocol": protocol.model_dump(mode="json"),
            "conventions": _conventions(protocol, dataset, aligners[0], recognisers, len(probes), cal_info,
                                        inference_convention(protocol.run, device)),
            "provenance": {**collect(device), **ranks_provenance(ranks),
                           "runtime_s": round(time.perf_counter() - t_start, 3)},
            "gallery": {"n_subjects": len(subject_row), "n_images": len(gallery), "n_detected": int(det_g[0].sum()),
                        "undetected_subjects": undetected_gallery, "template": GALLERY_TEMPLATE},
            "models": results_rows,
            "samples": _samples_manifest(folders, probes, [r.label for r in rows]),
        })
        results.write_csv(out / "summary.csv", results.summary_frame(run_result))
        results.write_csv(out / "per_probe.csv", results.frame(per_probe, results.COLUMNS["recognition"]["per_probe"]))
        savez: Any = np.savez_compressed  # keyword names are the arrays' names
        savez(out / "scores.npz", **score_arrays)
        results.write_run(out, run_result)
        return run_result

    run_result = ranks.step(write, main_only=True, share=True)
    assert run_result is not None
    return run_result


def _embed_sharded(ranks: Ranks, stores: list[FaceStore], n: int, batch: int,
                   read: Callable[[int, int], list[torch.Tensor | None]], keep: frozenset[int] | set[int] = frozenset(),
                   bar: Any = None) -> tuple[list[torch.Tensor], list[torch.Tensor], dict[int, torch.Tensor | None]]:
    """Embeddings (per store: (n, D), detected (n,)) of ``n`` images read ``batch`` at a time by
    ``read(lo, hi)``, each process embedding its block of whole batches; the images at ``keep``
    come along (samples). On rank 0 the whole arrays, with the other processes' new cache
    entries merged into ``stores``; empty lists elsewhere."""
    chunks = ranks.block(-(-n // batch))
    lo, hi = min(n, chunks.start * batch), min(n, chunks.stop * batch)

    def embed() -> dict[str, Any]:
        emb = [torch.zeros(hi - lo, st.dim) for st in stores]
        det = [torch.zeros(hi - lo, dtype=torch.bool) for _ in stores]
        kept: dict[int, torch.Tensor | None] = {}
        for start in range(lo, hi, batch):
            images = read(start, min(hi, start + batch))
            for k, st in enumerate(stores):
                _, e, d = st.embed(images)
                emb[k][start - lo : start - lo + len(e)], det[k][start - lo : start - lo + len(d)] = e, d
            kept.update({start + j: im for j, im in enumerate(images) if start + j in keep})
            if bar is not None:
                bar.update(len(images))
        fresh = [st.take_fresh() for st in stores]  # rank 0 has its own entries already
        return {"emb": emb, "det": det, "kept": kept, "fresh": fresh if not ranks.is_main else [{} for _ in stores]}

    parts = ranks.gather(ranks.step(embed))
    if parts is None:
        return [], [], {}
    kept: dict[int, torch.Tensor | None] = {}
    for part in parts:
        kept.update(part["kept"])
        for st, fresh in zip(stores, part["fresh"]):
            st.merge(fresh)
    return ([torch.cat([part["emb"][k] for part in parts]) for k in range(len(stores))],
            [torch.cat([part["det"][k] for part in parts]) for k in range(len(stores))], kept)


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


def score_matrix(emb_p: np.ndarray, det_p: np.ndarray, emb_g: np.ndarray, det_g: np.ndarray) -> np.ndarray:
    """(P, G) cosine scores in fsr_bench.metrics.operating_points' convention: an undetected probe
    is a NaN row, an undetected gallery face a ``-inf`` column (it never matches)."""
    p, g = np.asarray(emb_p, dtype=np.float64), np.asarray(emb_g, dtype=np.float64)
    dp, dg = np.asarray(det_p, bool), np.asarray(det_g, bool)
    s = np.full((p.shape[0], g.shape[0]), np.nan)
    # undetected faces have no embedding (zero rows): score only the detected, then mark the rest
    s[np.ix_(dp, dg)] = cosine_similarity_matrix(p[dp], g[dg]) if dp.any() and dg.any() else np.nan
    s[:, ~dg] = -np.inf
    s[~dp, :] = np.nan
    return s


def cal_fpirs(protocol: RecognitionProtocol) -> list[float]:
    from fsr_bench.metrics.operating_points import DEFAULT_FPIRS

    return list(protocol.calibration.fpirs) if protocol.calibration else list(DEFAULT_FPIRS)


def cal_ranks(protocol: RecognitionProtocol) -> list[int]:
    return list(protocol.calibration.ranks) if protocol.calibration else [1, 20]


def _calibrate(protocol: RecognitionProtocol, cal_set: RecognitionSet, eg: np.ndarray, dg: np.ndarray, ep: np.ndarray,
               dp: np.ndarray, name: str, info: dict[str, Any], log: Log, arrays: dict[str, np.ndarray]) -> Calibration:
    """HR-vs-HR scores of the calibration subjects (their "HR probes" ``ep``/``dp`` vs their gallery
    ``eg``/``dg``, one recogniser's embeddings and detections) -> thresholds.

    Pairs with an undetected face are left out of the calibration (and counted): scoring them as
    non-matches would lower the measured FAR and so the threshold.
    """
    assert protocol.calibration is not None
    cal = protocol.calibration
    g_items, p_items = cal_set.gallery, cal_set.probes
    dg, dp = dg.astype(bool), dp.astype(bool)
    gi = np.array([g.subject for g in g_items], dtype=object)[dg]
    pi = np.array([p.subject for p in p_items], dtype=object)[dp]
    if gi.size < 2 or pi.size == 0:
        raise ProtocolError(f"calibration ({name}): {int(dg.sum())} gallery and {int(dp.sum())} probe faces detected "
                            "among the calibration subjects; need two or more of each")
    s = cosine_similarity_matrix(ep[dp], eg[dg])
    genuine, impostor = split_scores(s, pi, gi)
    arrays[f"{name}|calibration_genuine"], arrays[f"{name}|calibration_impostor"] = genuine, impostor
    try:
        result = calibrate_thresholds(genuine, impostor, cal.fars)
    except ValueError as exc:
        raise ProtocolError(f"calibration.fars ({name}): {exc}") from None
    info[name] = {
        "n_subjects": len(g_items), "n_probes": len(p_items), "n_gallery_undetected": int((~dg).sum()),
        "n_probes_undetected": int((~dp).sum()), "n_genuine": int(genuine.size), "n_impostor": int(impostor.size),
        "thresholds": {f"{pt.target_far:g}": pt.threshold for pt in result.points},
        "far_reached": {f"{pt.target_far:g}": pt.far for pt in result.points},
        "tar": {f"{pt.target_far:g}": pt.tar for pt in result.points},
        "subjects": sorted({g.subject for g in g_items}),
    }
    log(f"calibration ({name}): {genuine.size} genuine / {impostor.size} impostor HR pairs; thresholds "
        + ", ".join(f"FAR {pt.target_far:g} -> {pt.threshold:.4f}" for pt in result.points))
    return result


def _bicubic_label(rows: list[Row]) -> str | None:
    for row in rows:
        if row.spec is not None and row.spec.name.startswith("bicubic_x") and not row.spec.overrides:
            return row.label
    return None


def _entries(rows: list[Row], per_row: list[list[tuple[RowScores, RowOperatingPoints]]], names: list[str],
             n_gallery: int) -> list[dict[str, Any]]:
    """results.json rows: the first recogniser's numbers at the top (as before), every recogniser's
    under ``by_recogniser``; false-match ratios vs Bicubic and HR probes in the operating points."""
    refs = [r for r in (_bicubic_label(rows), next((r.label for r in rows if r.input == "hr"), None)) if r]
    blocks: list[dict[str, dict[str, Any]]] = [{} for _ in rows]
    for k, name in enumerate(names):
        ops = {row.label: per_row[i][k][1] for i, row in enumerate(rows)}
        points = with_ratios(ops, refs) if refs else {label: op.points for label, op in ops.items()}
        for i, row in enumerate(rows):
            scores = per_row[i][k][0]
            blocks[i][name] = {"metrics": scores.metrics, "unavailable": scores.unavailable, "ci95": scores.ci95,
                               "trained_with": name in row.trained_with,
                               "operating_points": points[row.label].model_dump(mode="json")}
    out = []
    for i, row in enumerate(rows):
        s = per_row[i][0][0]
        first = blocks[i][names[0]]
        out.append({
            "label": row.label,
            "variant": row.variant,
            "name": row.name,
            "role": row.role,
            "scale": row.scale,
            "checkpoint": row.checkpoint,
            "checkpoint_sha256": row.checkpoint_sha256,
            "training": row.training,
            "overrides": row.spec.overrides if row.spec else {},
            "metrics": first["metrics"],
            "unavailable": first["unavailable"],
            "operating_points": first["operating_points"],
            "ci95": s.ci95,
            "per_distance": s.per_distance,
            "per_camera": s.per_camera,
            "roc": s.roc,
            "cmc": s.cmc,
            "n_gallery": n_gallery,
            "n_impostor_pairs": s.n_impostor_pairs,
            "recogniser": names[0],
            "trained_with": list(row.trained_with),
            "by_recogniser": blocks[i],
            "work": row.work,
        })
    return out


def _fmt(v: float | None, pct: bool = True) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.2f}%" if pct else f"{v:.4f}"


def _summary_line(row: Row, s: RowScores) -> str:
    m, w = s.metrics, row.work
    reuse = (f"SR {w['sr_computed']} computed/{w['sr_reused']} cached, " if row.sr_store else "") + \
        f"faces {w['faces_computed']} computed/{w['faces_reused']} cached, {w['seconds']:.1f}s"
    return (f"{row.label}: matching acc {_fmt(m['matching_accuracy'])}  avg sim "
            f"{_fmt(m['average_similarity'], pct=False)}  detected {_fmt(m['detection_rate'])}  rank-1 "
            f"{_fmt(m['rank1'])}  TAR@1e-3 {_fmt(m['tar_at_far_1e-3'])}  EER {_fmt(m['eer'])}  ({reuse})")


def _conventions(protocol: RecognitionProtocol, dataset: RecognitionSet, aligner, recognisers: list,
                 n_scored: int, calibration: dict[str, Any], protocol_inference: str) -> dict[str, Any]:
    rec = protocol.recognition
    return {
        "threshold": rec.threshold,
        "recogniser": recognisers[0].describe(),
        "recognisers": {name: r.describe() for name, r in zip(rec.names, recognisers)},
        "calibration": None if protocol.calibration is None else {
            **protocol.calibration.model_dump(mode="json"), "per_recogniser": calibration,
            "rule": "thresholds set on HR-vs-HR scores of the calibration subjects (disjoint from the evaluation "
                    "subjects), applied unchanged to every row; *_cal_<FAR> columns",
        },
        "operating_points": "far_*/wrong_id_*: share of impostor comparisons / probes whose rank-1 is a wrong "
                            "subject at or above the threshold (fsr_bench.metrics.operating_points); *_vs_<row>: "
                            "ratio to that row's rate; open set (unmated probes): DIR/TPIR<r> at FPIR",
        "detector": {**aligner.describe(), "max_side": rec.detector.max_side,
                     "max_side_rule": "longer side above max_side: MATLAB-bicubic downscale, 8-bit, then detect"},
        "degradation": dataset.describe_degradation(),
        "dataset": {**dataset.describe(), "n_scored": n_scored},
        "seed": protocol.run.seed,
        "inference": protocol_inference,
        "similarity": "cosine of L2-normalised embeddings",
        "gallery_template": GALLERY_TEMPLATE,
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
        "absent_references": {} if protocol.hr_probes_row or not protocol.references.hr_probes
        else {HR_PROBES: ABSENT_HR_PROBES},
    }

"""Run a reconstruction protocol: build → infer → score → write, with reuse of finished work.

Output folder layout (read by ``fsr_bench.reporting``)::

    OUT/protocol.yaml             the validated protocol, as run (after --set overrides)
    OUT/results.json              conventions + provenance + one row per model + the samples manifest
                                  (schema: fsr_bench.results.RunResult)
    OUT/summary.csv               fsr_bench.results.COLUMNS["reconstruction"]["summary"]
    OUT/per_image.csv             model, label, image, psnr, ssim, lpips, identity_cosine, identity_angle
    OUT/models/<label>/…          per-model result.json + per_image.csv (the unit of reuse)
    OUT/samples/<image>/…         lr.png, hr.png, <label>.png for the first ``run.num_samples`` images;
                                  ``.key`` names the data they were made from (dataset, degradation,
                                  seed): when it changes, the folder's images are made again
    OUT/owner.json, OUT/.lock     who owns the folder (fsr_bench.run.outdir)

Scoring goes through :class:`fsr_bench.metrics.ReconstructionMetrics` (its ``compute`` states the
rule for exact reconstructions). A model's finished result is reused by a rerun when its *work
key* — model spec, checkpoint sha256, dataset, degradation, metric conventions, seed, limit — is
unchanged; so adding one model to a protocol costs only that model. Every file is written atomically.

``metrics.identity`` adds the SR↔HR identity columns (:mod:`fsr_bench.face.identity`): the face is
detected and the recogniser's alignment fitted on each HR image once per run (only for images some
model is scored on), then applied unchanged to every model's SR output.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

from fsr_bench import __version__, atomic, results
from fsr_bench.distributed import SINGLE, Ranks
from fsr_bench.metrics import MetricConventions, ReconstructionMetrics
from fsr_bench.models.precision import infer, resolve_precision
from fsr_bench.protocol import ModelSpec, ProtocolError, ReconstructionProtocol
from fsr_bench.provenance import collect, stable_hash
from fsr_bench.run.common import (
    Log,
    checkpoint_sha,
    count_gflops,
    evaluated_split,
    inference_convention,
    load_model,
    ranks_provenance,
    read_json,
    resolve_device,
    safe_filename,
    training_of,
)
from fsr_bench.run.outdir import keyed_sample_folder

__all__ = ["batch_plan", "batches", "build_dataset", "metric_conventions", "model_result", "run_model",
           "run_reconstruction"]


def build_dataset(spec: dict[str, Any]):
    """Dataset from a "type + kwargs" block (``package_faces`` or an image-folder type)."""
    from fsr_bench.data.folders import build_dataset as build

    return build(spec, where="data.dataset")


def describe_dataset(dataset) -> dict[str, Any]:
    if hasattr(dataset, "describe"):
        return dataset.describe()
    return {"type": type(dataset).__name__, "n_images": len(dataset)}


def _grouped(pairs: Iterable[tuple[Any, Any]], batch_size: int) -> Iterator[list[Any]]:
    """The one batching rule: consecutive ``(thing, HR shape)`` of equal shape, at most ``batch_size``."""
    pending: list[Any] = []
    shape = None
    for thing, hr_shape in pairs:
        if pending and (len(pending) == batch_size or hr_shape != shape):
            yield pending
            pending = []
        shape = hr_shape
        pending.append(thing)
    if pending:
        yield pending


def batches(dataset, indices: list[int], batch_size: int) -> Iterator[list[dict]]:
    """Consecutive items of equal HR size, at most ``batch_size`` at a time."""
    return _grouped(((item, item["hr"].shape) for item in (dataset[i] for i in indices)), batch_size)


def batch_plan(dataset, indices: list[int], batch_size: int, ranks: Ranks) -> list[list[int]]:
    """The single-process batches (as index lists), known to every process: each reads the HR
    shapes of its share of the images, rank 0 groups them and shares the plan. Sharding whole
    batches of this plan makes every image pass through the model in the same batch as in one
    process, so per-image numbers are identical, not merely close."""
    share = [indices[i] for i in ranks.block(len(indices))]
    shapes = ranks.step(lambda: [tuple(dataset[i]["hr"].shape) for i in share])
    parts = ranks.gather(shapes)

    def group() -> list[list[int]]:
        assert parts is not None
        return list(_grouped(zip(indices, [s for part in parts for s in part]), batch_size))

    plan = ranks.step(group, main_only=True, share=True)
    assert plan is not None
    return plan


def metric_conventions(protocol: ReconstructionProtocol, scale: int) -> MetricConventions:
    m = protocol.metrics
    return MetricConventions(y_channel=m.y_channel, crop_border=scale if m.crop_border is None else m.crop_border,
                             quantize=m.quantize, lpips_net=m.lpips_net, lpips_version=m.lpips_version)


def _metrics(protocol: ReconstructionProtocol, conv: MetricConventions, device: str, log: Log) -> ReconstructionMetrics:
    """Scores under ``conv``; LPIPS when the protocol asks and its weights are there (else n/a, said once)."""
    if not protocol.metrics.lpips:
        return ReconstructionMetrics(conv, None, "disabled in the protocol (metrics.lpips: false)")
    metrics = ReconstructionMetrics.create(conv, device=device)
    if metrics.lpips is None:
        log(f"LPIPS unavailable — LPIPS and MPS will be reported as n/a.\n  {metrics.lpips_unavailable_reason}")
    return metrics


def _identity(protocol: ReconstructionProtocol, device: str):
    """The SR↔HR identity scorer of ``metrics.identity`` (None when the block is absent)."""
    spec = protocol.metrics.identity
    if spec is None:
        return None
    from fsr_bench.face import create_recogniser
    from fsr_bench.face.detect import FaceAligner
    from fsr_bench.face.identity import IdentitySimilarity

    try:
        recogniser = create_recogniser(spec.recogniser, weights=spec.weights, device=device, flip=spec.flip)
    except Exception as exc:  # weights unavailable offline, unknown name, …: say which key to fix
        raise ProtocolError(f"metrics.identity.recogniser {spec.recogniser!r}: {exc}") from exc
    det = spec.detector
    aligner = FaceAligner(min_face_size=det.min_face_size, thresholds=det.thresholds, factor=det.factor,
                          selection=det.selection, min_prob=det.min_prob, batch_size=det.batch_size, device=device)
    return IdentitySimilarity(recogniser, aligner)


def _identity_scores(identity, refs: dict[int, Any], items: list[dict], hr: torch.Tensor, sr: torch.Tensor,
                     quantize: bool) -> list[float | None]:
    """Per-item SR↔HR cosines; HR references are made on first use and kept in ``refs`` for the
    run's other models. SR is quantised to 8 bits first when the other metrics are."""
    from fsr_bench.data.io import to_uint8

    new = [k for k, it in enumerate(items) if it["index"] not in refs]
    if new:
        for k, ref in zip(new, identity.references([hr[k] for k in new])):
            refs[items[k]["index"]] = ref
    sr = to_uint8(sr.cpu()).float() / 255.0 if quantize else sr.float().cpu()
    return identity.cosines(list(sr), [refs[it["index"]] for it in items])


def hr_of(item: dict[str, Any], scale: int, dataset=None) -> torch.Tensor:
    """An item's HR cropped to a multiple of ``scale``; an HR smaller than the scale names its file."""
    from fsr_bench.data.degradations import mod_crop

    h, w = item["hr"].shape[-2:]
    if h < scale or w < scale:
        paths = getattr(dataset, "paths", None)
        where = paths[item["index"]] if paths is not None else item["name"]
        raise ProtocolError(f"{where}: the HR image is {w}x{h}, smaller than the scale "
                            f"{scale} (data.degradation.scale); remove it from the dataset (or its list_file)")
    return mod_crop(item["hr"], scale)


def prepare_samples(folder: Path, dataset, degradation, indices: list[int], data_key: str, seed: int
                    ) -> dict[int, Path]:
    """``samples/<image>/`` with hr.png and lr.png of ``data_key`` for each of ``indices``.

    A folder made from other data (another dataset, degradation or seed: its ``.key`` differs) loses
    its images, which are made again; the folders of one data key are what every model adds its
    ``<label>.png`` to."""
    from fsr_bench.data.io import write_image

    dirs: dict[int, Path] = {}
    for i in indices:
        item = dataset[i]
        sub = folder / safe_filename(str(item["name"]))
        dirs[i] = sub
        if keyed_sample_folder(sub, data_key) and (sub / "lr.png").is_file():
            continue
        hr = hr_of(item, degradation.scale, dataset)
        lr = degradation(hr.unsqueeze(0), index=[item["index"]], seed=seed)[0]
        write_image(hr, sub / "hr.png")
        write_image(lr.clamp(0, 1), sub / "lr.png")
    return dirs


def write_missing_samples(spec: ModelSpec, protocol: ReconstructionProtocol, dataset, degradation, device: str,
                          sample_dirs: dict[int, Path], log: Log) -> int:
    """``<label>.png`` of a reused model for the sample folders that lack it (``run.num_samples``
    raised on a rerun, or the folder made again for new data); returns how many were written."""
    from fsr_bench.data.io import write_image

    name = f"{safe_filename(spec.display)}.png"
    missing = [i for i, sub in sample_dirs.items() if not (sub / name).is_file()]
    if not missing:
        return 0
    model = load_model(spec, device, degradation.scale)
    for items in batches(dataset, missing, protocol.run.batch_size):
        hr = torch.stack([hr_of(it, model.scale, dataset) for it in items])
        lr = degradation(hr, index=[it["index"] for it in items], seed=protocol.run.seed).to(device)
        with torch.inference_mode():
            sr = model(lr).clamp(0, 1).cpu()
        for k, it in enumerate(items):
            write_image(sr[k], sample_dirs[it["index"]] / name)
    log(f"{spec.display}: wrote {len(missing)} missing sample image(s)")
    return len(missing)


def run_model(spec: ModelSpec, protocol: ReconstructionProtocol, dataset, degradation, scoring: ReconstructionMetrics,
              device: str, indices: list[int], samples: set[int], progress: bool,
              plan: list[list[int]] | None = None, identity=None,
              identity_refs: dict[int, Any] | None = None) -> dict[str, Any]:
    """One model over ``indices`` (or the batches of ``plan``: this process's share): the part of
    a result one process computes — scored rows, SR↔HR identity cosines, timing, FLOPs — and the SR
    outputs of the images in ``samples``. :func:`model_result` makes the result from the parts of
    every process."""
    from fsr_bench.data.degradations import needs_mod_crop
    from fsr_bench.progress import progress_bar

    model = load_model(spec, device, degradation.scale,
                       f"the degradation is x{degradation.scale}; use the _x{degradation.scale} variant or "
                       "change data.degradation.scale", channels_last=protocol.run.channels_last)
    scorer = ReconstructionMetrics(scoring.conventions, scoring.lpips, scoring.lpips_unavailable_reason)
    precision = resolve_precision(protocol.run.precision, device)
    forward_seconds, timed_images, gflops, cropped = 0.0, 0, None, 0
    cosines: list[float | None] = []
    refs: dict[int, Any] = {} if identity_refs is None else identity_refs
    seed = protocol.run.seed
    outputs: dict[int, torch.Tensor] = {}
    todo = batches(dataset, indices, protocol.run.batch_size) if plan is None else \
        ([dataset[i] for i in b] for b in plan)
    n_todo = len(indices) if plan is None else sum(len(b) for b in plan)
    bar = progress_bar(total=n_todo, desc=f"{spec.display}", unit="img", disable=not progress, leave=False)
    for batch_no, items in enumerate(todo):
        cropped += sum(needs_mod_crop(it["hr"], model.scale) for it in items)
        hr_cpu = torch.stack([hr_of(it, model.scale, dataset) for it in items])
        lr = degradation(hr_cpu, index=[it["index"] for it in items], seed=seed).to(device)
        hr = hr_cpu.to(device)
        if gflops is None and protocol.run.flops and batch_no == 0:
            gflops = count_gflops(model, lr)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        sr = infer(model, lr, precision, protocol.run.channels_last).clamp(0, 1)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if batch_no > 0 or n_todo <= len(items):  # first batch is warm-up when there are more
            forward_seconds += time.perf_counter() - t0
            timed_images += len(items)
        scorer.update(sr, hr, names=[str(it["name"]) for it in items])
        if identity is not None:
            cosines += _identity_scores(identity, refs, items, hr_cpu, sr, scoring.conventions.quantize)
        for k, it in enumerate(items):
            if it["index"] in samples:
                outputs[it["index"]] = sr[k].cpu()
        bar.update(len(items))
    bar.close()
    return {
        "label": spec.display,
        "name": spec.name,
        "variant": getattr(model, "variant", None),
        "role": "floor" if spec.checkpoint is None and model.num_parameters() == 0 else "model",
        "scale": model.scale,
        "params": model.num_parameters(),
        "rows": scorer.rows, "forward_seconds": forward_seconds, "timed_images": timed_images,
        "gflops": gflops, "n_mod_cropped": cropped, "samples": outputs,
        "identity_cosines": cosines if identity is not None else None,
    }


def model_result(spec: ModelSpec, parts: list[dict[str, Any]], scoring: ReconstructionMetrics,
                 evaluated: dict[str, Any] | None = None) -> dict[str, Any]:
    """A model's result from the :func:`run_model` parts of every process, in rank order: rows
    concatenated in the single-process order and scored as one (the means are those of one
    process); FLOPs from rank 0's first batch (the run's first batch); ``images_per_s`` is the
    throughput of one process (timed images / forward seconds over all processes)."""
    scorer = ReconstructionMetrics(scoring.conventions, scoring.lpips, scoring.lpips_unavailable_reason)
    for part in parts:
        scorer.extend(part["rows"])
    means = scorer.compute()
    lpips_on = scorer.lpips is not None
    rows = [{"image": r["name"], "psnr": r["psnr"], "ssim": r["ssim"], **({"lpips": r["lpips"]} if lpips_on else {})}
            for r in scorer.rows]
    first = parts[0]
    unavailable = {} if lpips_on else {"lpips": scorer.lpips_unavailable_reason, "mps": "needs LPIPS"}
    id_metrics: dict[str, Any] = {}
    id_counts: dict[str, Any] = {}
    if first["identity_cosines"] is not None:
        from fsr_bench.face.identity import angle_degrees

        cosines = [c for p in parts for c in p["identity_cosines"]]  # rank order = the rows' order
        for row, c in zip(rows, cosines):
            row["identity_cosine"], row["identity_angle"] = c, None if c is None else angle_degrees(c)
        found = [c for c in cosines if c is not None]
        id_counts["n_identity_undetected"] = len(cosines) - len(found)
        id_metrics = {"identity_cosine": sum(found) / len(found) if found else None,
                      "identity_angle": sum(angle_degrees(c) for c in found) / len(found) if found else None}
        if not found:
            unavailable.update(dict.fromkeys(id_metrics, "no face detected on any HR image"))
    forward_seconds = sum(p["forward_seconds"] for p in parts)
    return {
        "label": first["label"],
        "name": first["name"],
        "variant": first["variant"],
        "role": first["role"],
        "scale": first["scale"],
        "overrides": spec.overrides,
        "checkpoint": spec.checkpoint,
        "checkpoint_sha256": checkpoint_sha(spec),
        "training": training_of(spec, evaluated),
        "params": first["params"],
        "gflops": first["gflops"],
        "images_per_s": (sum(p["timed_images"] for p in parts) / forward_seconds) if forward_seconds > 0 else None,
        "n_images": means["n"],
        "n_infinite_psnr": means["n_infinite_psnr"],
        "n_mod_cropped": sum(p["n_mod_cropped"] for p in parts),
        **id_counts,
        "metrics": {**{k: means[k] for k in ("psnr", "ssim", "lpips", "mps")}, **id_metrics},
        "unavailable": unavailable,
        "per_image": rows,
    }


def run_reconstruction(protocol: ReconstructionProtocol, out_dir: str | Path, *, progress: bool = True,
                       log: Log = print, force: bool = False, ranks: Ranks = SINGLE) -> results.RunResult:
    """Run every model of ``protocol``; returns the :class:`~fsr_bench.results.RunResult` written to
    results.json.

    ``ranks`` (several processes under torchrun, see :func:`fsr_bench.run.run_protocol`): each
    process runs each model on its contiguous block of whole batches of the single-process batch
    plan (:func:`batch_plan`); rank 0 decides reuse, gathers the parts, scores them as one and
    alone writes OUT. The numbers are those of one process (the same images in the same batches).
    """
    from fsr_bench.data.degradations import DegradationConfigError, build_degradation

    out = Path(out_dir)

    def setup():
        if ranks.is_main:
            out.mkdir(parents=True, exist_ok=True)
        device = resolve_device(protocol.run.device)
        dataset = build_dataset(protocol.data.dataset)
        if len(dataset) == 0:
            raise ProtocolError(f"data.dataset {protocol.data.dataset} holds no images")
        try:
            degradation = build_degradation(protocol.data.degradation)
        except DegradationConfigError as exc:  # name the protocol key, not only the constructor's argument
            raise ProtocolError(f"data.degradation.{exc}" if str(exc).startswith("scale ") else
                                f"data.degradation: {exc}") from None
        scoring = _metrics(protocol, metric_conventions(protocol, degradation.scale), device, log)
        return device, dataset, degradation, scoring

    setup_result = ranks.step(setup)
    assert setup_result is not None
    device, dataset, degradation, scoring = setup_result
    if ranks.world > 1:  # every process must score alike (an LPIPS download may fail on one)
        lpips_on = ranks.gather(scoring.lpips is not None)
        ranks.step(lambda: _same_everywhere(lpips_on, "LPIPS availability"), main_only=True)
    n = len(dataset) if protocol.run.limit is None else min(len(dataset), protocol.run.limit)
    indices = list(range(n))
    identity = _identity(protocol, device)
    identity_refs: dict[int, Any] = {}  # image index -> HR reference, shared by the run's models
    conventions = {
        "metrics": {**scoring.conventions.describe(), "lpips": protocol.metrics.lpips,
                    "lpips_unavailable": None if scoring.lpips is not None else scoring.lpips_unavailable_reason,
                    **({"lpips_trunk": scoring.lpips.describe()} if scoring.lpips is not None else {}),
                    **({"identity": identity.describe()} if identity is not None else {})},
        "degradation": degradation.describe(),
        "dataset": {**describe_dataset(dataset), "n_scored": n},
        "seed": protocol.run.seed,
        "inference": inference_convention(protocol.run, device),
        "hr_mod_crop": "HR sizes not divisible by the scale are cropped to the next multiple, top-left"
                       " anchored (models[].n_mod_cropped counts them)",
    }
    sample_idx = indices[: protocol.run.num_samples]
    data_key = stable_hash({"dataset": describe_dataset(dataset), "degradation": conventions["degradation"],
                            "seed": protocol.run.seed})
    sample_dirs = ranks.step(lambda: prepare_samples(out / "samples", dataset, degradation, sample_idx, data_key,
                                                     protocol.run.seed), main_only=True) or {}
    plan = None
    if ranks.world > 1:
        full = batch_plan(dataset, indices, protocol.run.batch_size, ranks)
        plan = [full[b] for b in ranks.block(len(full))]
    rows: list[Any] = []  # None on processes other than rank 0 for computed models
    for spec in protocol.models:
        folder = out / "models" / safe_filename(spec.display)

        def reuse(spec: ModelSpec = spec, folder: Path = folder) -> tuple[str, dict[str, Any] | None]:
            """(work key, the finished result when it is reused): rank 0 decides for every process."""
            key = stable_hash({"spec": spec.model_dump(mode="json"), "checkpoint_sha256": checkpoint_sha(spec),
                               "conventions": conventions, "limit": protocol.run.limit, "version": __version__,
                               "lpips_available": scoring.lpips is not None})
            cached = read_json(folder / "result.json")
            if cached and cached.get("work_key") == key and not force:
                log(f"{spec.display}: reusing finished result ({folder / 'result.json'})")
                write_missing_samples(spec, protocol, dataset, degradation, device, sample_dirs, log)
                # the weights' record is read, not computed: results saved before rows carried it get it
                return key, {**cached, "training": training_of(spec, evaluated_split(protocol))}
            return key, None

        decided = ranks.step(reuse, main_only=True, share=True)
        assert decided is not None
        key, cached = decided
        if cached is not None:
            rows.append(cached)
            continue
        def compute(spec: ModelSpec = spec) -> dict[str, Any]:
            return run_model(spec, protocol, dataset, degradation, scoring, device, indices, set(sample_idx),
                             progress, plan, identity, identity_refs)

        part = ranks.step(compute)
        parts = ranks.gather(part)

        def write(spec: ModelSpec = spec, folder: Path = folder, key: str = key) -> dict[str, Any]:
            from fsr_bench.data.io import write_image

            assert parts is not None
            for p in parts:
                for i, sr in p["samples"].items():
                    write_image(sr, sample_dirs[i] / f"{safe_filename(spec.display)}.png")
            result = model_result(spec, parts, scoring, evaluated_split(protocol))
            result["work_key"] = key
            results.write_csv(folder / "per_image.csv", results.frame(
                ([r["image"], r["psnr"], r["ssim"], r.get("lpips"), r.get("identity_cosine"), r.get("identity_angle")]
                 for r in result["per_image"]),
                ["image", "psnr", "ssim", "lpips", "identity_cosine", "identity_angle"]))
            atomic.write_json(folder / "result.json", result)
            m = result["metrics"]
            psnr = "n/a (every image exact)" if m["psnr"] is None else f"{m['psnr']:.2f}"
            log(f"{spec.display}: PSNR {psnr}  SSIM {m['ssim']:.4f}" +
                (f"  LPIPS {m['lpips']:.4f}  MPS {m['mps']:.4f}" if m["lpips"] is not None else "  LPIPS n/a") +
                (f"  ID cos {m['identity_cosine']:.4f} ({result['n_identity_undetected']} HR face(s) undetected)"
                 if m.get("identity_cosine") is not None else ""))
            return result

        rows.append(ranks.step(write, main_only=True))

    def finish() -> results.RunResult:
        samples = _samples_manifest(out / "samples", dataset, sample_idx, [r["label"] for r in rows])
        run = results.RunResult.model_validate({
            "kind": "reconstruction",
            "protocol_name": protocol.name,
            "protocol_hash": protocol.hash(),
            "protocol": protocol.model_dump(mode="json"),
            "conventions": conventions,
            "provenance": {**collect(device), **ranks_provenance(ranks)},
            "models": [{k: v for k, v in r.items() if k != "per_image"} for r in rows],
            "samples": samples,
        })
        cols = results.COLUMNS["reconstruction"]
        results.write_csv(out / "summary.csv", results.summary_frame(run))
        results.write_csv(out / "per_image.csv", results.frame(
            ([r["name"], r["label"], p["image"], p["psnr"], p["ssim"], p.get("lpips"), p.get("identity_cosine"),
              p.get("identity_angle")] for r in rows for p in r["per_image"]), cols["per_image"]))
        results.write_run(out, run)
        return run

    run = ranks.step(finish, main_only=True, share=True)
    assert run is not None
    return run


def _same_everywhere(values: list[Any] | None, what: str) -> None:
    if values is not None and len(set(values)) > 1:
        raise ProtocolError(f"{what} differs between the processes of this run ({values}); rerun it")


def _samples_manifest(folder: Path, dataset, indices: list[int], labels: list[str]) -> list[dict[str, Any]]:
    """Which sample folder holds which image and which row's output (only files that exist)."""
    out = []
    for i in indices:
        name = str(dataset[i]["name"])  # a handful of images: reading them again is cheap
        sub = folder / safe_filename(name)
        if not sub.is_dir():
            continue
        outputs = {label: f"{safe_filename(label)}.png" for label in labels
                   if (sub / f"{safe_filename(label)}.png").is_file()}
        out.append({"folder": sub.name, "image": name,
                    "lr": "lr.png" if (sub / "lr.png").is_file() else None,
                    "reference": "hr.png" if (sub / "hr.png").is_file() else None, "outputs": outputs})
    return out

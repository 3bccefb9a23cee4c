"""Run a reconstruction protocol: build → infer → score → write, with reuse of finished work.

Output folder layout (read by ``fsr_bench.reporting``)::

    OUT/protocol.yaml             the validated protocol, as run (after --set overrides)
    OUT/results.json              conventions + provenance + one entry per model
    OUT/summary.csv               model, scale, label, psnr, ssim, lpips, mps, n_images, params, gflops, images_per_s
    OUT/per_image.csv             model, label, image, psnr, ssim, lpips
    OUT/models/<label>/…          per-model result.json + per_image.csv (the unit of reuse)
    OUT/samples/<image>/…         lr.png, hr.png, <label>.png for the first ``run.num_samples`` images

A model's finished result is reused by a rerun when its *work key* — model spec, checkpoint sha256,
dataset, degradation, metric conventions, seed, limit — is unchanged; so adding one model to a
protocol costs only that model. Every file is written atomically.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from fsr_bench import __version__, atomic
from fsr_bench.provenance import collect, stable_hash
from fsr_bench.protocol import ModelSpec, ProtocolError, ReconstructionProtocol

SUMMARY_COLUMNS = ["model", "scale", "label", "psnr", "ssim", "lpips", "mps", "n_images", "params",
                   "gflops", "images_per_s"]
Log = Callable[[str], None]


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ProtocolError(f"run.device={device!r} but torch sees no CUDA device; use --set run.device=cpu")
    return device


from fsr_bench.naming import safe_filename as safe_name  # noqa: E402  (re-exported for runners)


def build_dataset(spec: dict[str, Any]):
    """Dataset from a "type + kwargs" block (``package_faces`` or the image-folder types)."""
    spec = dict(spec)
    kind = spec.get("type")
    if kind == "package_faces":
        from fsr_bench.data.package_faces import PackageFaces

        spec.pop("type")
        try:
            return PackageFaces(**{k: tuple(v) if k == "names" else v for k, v in spec.items()})
        except TypeError as exc:
            raise ProtocolError(f"data.dataset: {exc}") from None
    from fsr_bench.data.folders import build_dataset as build_folder

    return build_folder(spec)


def describe_dataset(dataset) -> dict[str, Any]:
    if hasattr(dataset, "describe"):
        return dataset.describe()
    return {"type": type(dataset).__name__, "n_images": len(dataset)}


def load_model(spec: ModelSpec, device: str):
    """Build a protocol's model; a learned model without weights is refused, never benchmarked."""
    from fsr_bench.models import RegistryError, create_model
    from fsr_bench.models.checkpoint import CheckpointError

    try:
        model = create_model(spec.name, checkpoint=spec.checkpoint, **spec.overrides)
    except (CheckpointError, RegistryError, TypeError, ValueError) as exc:
        raise ProtocolError(f"model {spec.display!r}: {exc}") from exc
    if spec.checkpoint is None and model.num_parameters() > 0:
        raise ProtocolError(
            f"model {spec.display!r} ({spec.name}) has {model.num_parameters():,} learned parameters "
            "but no checkpoint; random weights are never benchmarked. Set its `checkpoint:` "
            "(train one with `fsr-bench train`) or remove it from the protocol."
        )
    return model.to(device).eval()


def checkpoint_sha(spec: ModelSpec) -> str | None:
    if spec.checkpoint is None:
        return None
    from fsr_bench.models.checkpoint import sha256_file

    return sha256_file(spec.checkpoint)


def count_gflops(model, lr: torch.Tensor) -> float | None:
    """Forward FLOPs per image, counted by torch (matmul/conv families; 1 MAC = 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.inference_mode():
            model(lr[:1])
        return counter.get_total_flops() / 1e9
    except Exception:  # an op FlopCounterMode cannot trace must not cost the benchmark
        return None


def batches(dataset, indices: list[int], batch_size: int) -> Iterator[list[dict]]:
    """Consecutive items of equal HR size, at most ``batch_size`` at a time."""
    pending: list[dict] = []
    for i in indices:
        item = dataset[i]
        if pending and (len(pending) == batch_size or item["hr"].shape != pending[0]["hr"].shape):
            yield pending
            pending = []
        pending.append(item)
    if pending:
        yield pending


class Scorer:
    """PSNR/SSIM (and LPIPS when available) under one :class:`MetricConventions`."""

    def __init__(self, protocol: ReconstructionProtocol, scale: int, device: str, log: Log):
        from fsr_bench.metrics.functional import MetricConventions

        m = protocol.metrics
        self.conv = MetricConventions(
            y_channel=m.y_channel,
            crop_border=scale if m.crop_border is None else m.crop_border,
            quantize=m.quantize,
            lpips_net=m.lpips_net,
            lpips_version=m.lpips_version,
        )
        self.lpips = None
        self.lpips_unavailable: str | None = None if m.lpips else "disabled in the protocol (metrics.lpips: false)"
        if m.lpips:
            from fsr_bench.metrics.lpips import LPIPSMetric, MetricUnavailable

            try:
                self.lpips = LPIPSMetric(net=m.lpips_net, version=m.lpips_version, device=device)
            except MetricUnavailable as exc:
                self.lpips_unavailable = str(exc)
                log(f"LPIPS unavailable — LPIPS and MPS will be reported as n/a.\n  {exc}")
        self.conventions = {**self.conv.describe(), "lpips": m.lpips,
                            "lpips_unavailable": self.lpips_unavailable}

    def __call__(self, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"psnr": self.conv.psnr(sr, hr), "ssim": self.conv.ssim(sr, hr)}
        if self.lpips is not None:
            out["lpips"] = self.lpips(sr, hr, quantize=self.conv.quantize)
        return out


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None]
    return float(sum(finite) / len(finite)) if finite else None


def run_model(spec: ModelSpec, protocol: ReconstructionProtocol, dataset, degradation, scorer: Scorer,
              device: str, indices: list[int], samples_dir: Path, log: Log, progress: bool) -> dict[str, Any]:
    from tqdm import tqdm

    from fsr_bench.data.io import write_image

    model = load_model(spec, device)
    if model.scale != degradation.scale:
        raise ProtocolError(
            f"model {spec.display!r} is x{model.scale} but the degradation is x{degradation.scale}; "
            f"use the _x{degradation.scale} variant or change data.degradation.scale"
        )
    from fsr_bench.data.degradations import mod_crop, needs_mod_crop

    rows: list[dict[str, Any]] = []
    forward_seconds, timed_images, gflops, cropped = 0.0, 0, None, 0
    seed = protocol.run.seed
    bar = tqdm(total=len(indices), desc=f"{spec.display}", unit="img", disable=not progress, leave=False)
    for batch_no, items in enumerate(batches(dataset, indices, protocol.run.batch_size)):
        cropped += sum(needs_mod_crop(it["hr"], model.scale) for it in items)
        hr_cpu = torch.stack([mod_crop(it["hr"], model.scale) for it in items])
        lr = degradation(hr_cpu, index=[it["index"] for it in items], seed=seed).to(device)
        hr = hr_cpu.to(device)
        if gflops is None and protocol.run.flops and batch_no == 0:
            gflops = count_gflops(model, lr)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            sr = model(lr).clamp(0, 1)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if batch_no > 0 or len(indices) <= len(items):  # first batch is warm-up when there are more
            forward_seconds += time.perf_counter() - t0
            timed_images += len(items)
        scores = scorer(sr, hr)
        for k, it in enumerate(items):
            row = {"image": it["name"], **{m: float(v[k]) for m, v in scores.items()}}
            rows.append(row)
            if it["index"] < protocol.run.num_samples:
                folder = samples_dir / safe_name(str(it["name"]))
                write_image(sr[k].cpu(), folder / f"{safe_name(spec.display)}.png")
                if not (folder / "hr.png").exists():
                    write_image(hr[k].cpu(), folder / "hr.png")
                    write_image(lr[k].clamp(0, 1).cpu(), folder / "lr.png")
        bar.update(len(items))
    bar.close()
    lpips_mean = _mean([r.get("lpips") for r in rows]) if scorer.lpips is not None else None
    ssim_mean = _mean([r["ssim"] for r in rows])
    psnr_vals = [r["psnr"] for r in rows]
    metrics = {
        "psnr": _mean([v for v in psnr_vals if math.isfinite(v)]),
        "ssim": ssim_mean,
        "lpips": lpips_mean,
        "mps": None if lpips_mean is None else 0.5 * (ssim_mean + 1.0 - lpips_mean),
    }
    unavailable = {} if scorer.lpips is not None else {"lpips": scorer.lpips_unavailable,
                                                       "mps": "needs LPIPS"}
    return {
        "label": spec.display,
        "name": spec.name,
        "scale": model.scale,
        "overrides": spec.overrides,
        "checkpoint": spec.checkpoint,
        "checkpoint_sha256": checkpoint_sha(spec),
        "params": model.num_parameters(),
        "gflops": gflops,
        "images_per_s": (timed_images / forward_seconds) if forward_seconds > 0 else None,
        "n_images": len(rows),
        "n_infinite_psnr": sum(1 for v in psnr_vals if not math.isfinite(v)),
        "n_mod_cropped": cropped,
        "metrics": metrics,
        "unavailable": unavailable,
        "per_image": rows,
    }


def run_reconstruction(protocol: ReconstructionProtocol, out_dir: str | Path, *, progress: bool = True,
                       log: Log = print, force: bool = False) -> dict[str, Any]:
    """Run every model of ``protocol``; returns the results dict also written to results.json."""
    from fsr_bench.data.degradations import build_degradation

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "protocol.yaml", _yaml(protocol.model_dump(mode="json")))
    device = resolve_device(protocol.run.device)
    dataset = build_dataset(protocol.data.dataset)
    if len(dataset) == 0:
        raise ProtocolError(f"data.dataset {protocol.data.dataset} holds no images")
    degradation = build_degradation(protocol.data.degradation)
    n = len(dataset) if protocol.run.limit is None else min(len(dataset), protocol.run.limit)
    indices = list(range(n))
    scorer = Scorer(protocol, degradation.scale, device, log)
    conventions = {
        "metrics": scorer.conventions,
        "degradation": degradation.describe(),
        "dataset": {**describe_dataset(dataset), "n_scored": n},
        "seed": protocol.run.seed,
        "hr_mod_crop": "HR sizes not divisible by the scale are cropped to the next multiple, top-left"
                       " anchored (models[].n_mod_cropped counts them)",
    }
    results_models = []
    for spec in protocol.models:
        folder = out / "models" / safe_name(spec.display)
        key = stable_hash({"spec": spec.model_dump(mode="json"), "checkpoint_sha256": checkpoint_sha(spec),
                           "conventions": conventions, "limit": protocol.run.limit, "version": __version__,
                           "lpips_available": scorer.lpips is not None})
        cached = _read_json(folder / "result.json")
        if cached and cached.get("work_key") == key and not force:
            log(f"{spec.display}: reusing finished result ({folder / 'result.json'})")
            results_models.append(cached)
            continue
        result = run_model(spec, protocol, dataset, degradation, scorer, device, indices,
                           out / "samples", log, progress)
        result["work_key"] = key
        atomic.write_csv(folder / "per_image.csv", ["image", "psnr", "ssim", "lpips"],
                         ([r["image"], r["psnr"], r["ssim"], r.get("lpips")] for r in result["per_image"]))
        atomic.write_json(folder / "result.json", result)
        m = result["metrics"]
        log(f"{spec.display}: PSNR {m['psnr']:.2f}  SSIM {m['ssim']:.4f}" +
            (f"  LPIPS {m['lpips']:.4f}  MPS {m['mps']:.4f}" if m["lpips"] is not None else "  LPIPS n/a"))
        results_models.append(result)

    results = {
        "kind": "reconstruction",
        "protocol_name": protocol.name,
        "protocol_hash": protocol.hash(),
        "protocol": protocol.model_dump(mode="json"),
        "conventions": conventions,
        "provenance": collect(device),
        "models": [{k: v for k, v in r.items() if k != "per_image"} for r in results_models],
    }
    _write_tables(out, results_models)
    atomic.write_json(out / "results.json", results)
    return results


def _write_tables(out: Path, models: list[dict[str, Any]]) -> None:
    atomic.write_csv(out / "summary.csv", SUMMARY_COLUMNS, (
        [r["name"], r["scale"], r["label"], r["metrics"]["psnr"], r["metrics"]["ssim"], r["metrics"]["lpips"],
         r["metrics"]["mps"], r["n_images"], r["params"], r["gflops"], r["images_per_s"]] for r in models))
    atomic.write_csv(out / "per_image.csv", ["model", "label", "image", "psnr", "ssim", "lpips"], (
        [r["name"], r["label"], row["image"], row["psnr"], row["ssim"], row.get("lpips")]
        for r in models for row in r["per_image"]))


def _read_json(path: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _yaml(obj: Any) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False)


def run_protocol(protocol, out_dir, **kwargs) -> dict[str, Any]:
    """Dispatch on the protocol's kind."""
    if protocol.kind == "reconstruction":
        return run_reconstruction(protocol, out_dir, **kwargs)
    from fsr_bench.recognition_runner import run_recognition

    return run_recognition(protocol, out_dir, **kwargs)

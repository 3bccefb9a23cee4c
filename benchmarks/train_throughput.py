"""Training throughput (img/s) and peak memory of TANet at the paper's sizes, and where the time goes.

Measures the optimizer step the trainer runs (``fsr_bench.train.losses.TrainStep`` + Adam, L1, the
same autocast / channels-last / ``torch.compile`` switches as ``fsr-bench train``) on synthetic
batches already on the device, so the numbers are the model's; the data pipeline is measured
separately (``loader``: decode JPEG → crop/augment → MATLAB-bicubic LR, as ``TrainPairs`` does)
and must deliver more img/s than the step consumes.

Usage::

    python benchmarks/train_throughput.py                      # CPU: small batch, few steps
    python benchmarks/train_throughput.py --device cuda --quick   # ~3 min on one H100, 2 of them compiling
    python benchmarks/train_throughput.py --device cuda           # + ablations, more steps

Writes ``benchmarks/results/train_throughput_<device>.json`` (device named inside) and prints a table.
Sizes: FFHQ HR 256×256 → LR 64×64 (×4) / 32×32 (×8); batch 16 on GPU (the protocols' global batch).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = {  # name -> (precision, channels_last, compile)
    "fp32": ("fp32", False, False),
    "fp16": ("fp16", False, False),  # end-to-end only (GradScaler path)
    "fp32+cl": ("fp32", True, False),
    "bf16": ("bf16", False, False),
    "bf16+cl": ("bf16", True, False),
    "bf16+cl+compile": ("bf16", True, True),
}


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def build(name: str, dev: torch.device, precision: str, channels_last: bool, compile_: bool):
    from fsr_bench.models import create_model
    from fsr_bench.train.losses import TrainStep

    torch.manual_seed(0)
    model = create_model(name).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_mod = TrainStep(model, "l1")
    runner = torch.compile(step_mod) if compile_ else step_mod
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, **({"fused": True} if dev.type == "cuda" else {}))
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]

    def step(lr, hr):
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            loss, _ = runner(lr, hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return model, step


def batch(model, dev, n: int, hr: int, channels_last: bool):
    g = torch.Generator().manual_seed(0)
    s = model.scale
    hr_t = torch.rand(n, 3, hr, hr, generator=g).to(dev)
    lr_t = torch.rand(n, 3, hr // s, hr // s, generator=g).to(dev)
    if channels_last:
        hr_t = hr_t.contiguous(memory_format=torch.channels_last)
        lr_t = lr_t.contiguous(memory_format=torch.channels_last)
    return lr_t, hr_t


def measure(name, variant, dev, n, hr, warmup, steps) -> dict:
    precision, cl, comp = VARIANTS[variant]
    row = {"model": name, "variant": variant, "precision": precision, "channels_last": cl, "compile": comp,
           "batch": n, "hr": hr}
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    try:
        model, step = build(name, dev, precision, cl, comp)
        row["params"] = model.num_parameters()
        lr, hrt = batch(model, dev, n, hr, cl)
        t0 = time.perf_counter()
        for _ in range(warmup):
            step(lr, hrt)
        sync(dev)
        row["warmup_s"] = round(time.perf_counter() - t0, 2)  # includes compilation
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step(lr, hrt)  # no per-step host sync, as in the trainer
        sync(dev)
        dt = (time.perf_counter() - t0) / steps
        row.update(step_ms=round(dt * 1000, 2), img_per_s=round(n / dt, 2), final_loss=round(float(loss.detach()), 5))
    except torch.OutOfMemoryError:
        row["error"] = "out of memory"
    except Exception as exc:  # a failing variant (e.g. compile) must not hide the others
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    if dev.type == "cuda":
        row["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    else:
        row["peak_rss_gb_process"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return row


def profile_top_ops(name, variant, dev, n, hr, steps=3, top=15) -> dict:
    from torch.profiler import ProfilerActivity, profile

    precision, cl, comp = VARIANTS[variant]
    model, step = build(name, dev, precision, cl, False)
    lr, hrt = batch(model, dev, n, hr, cl)
    step(lr, hrt)
    sync(dev)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            step(lr, hrt)
        sync(dev)
    key = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, key, 0) > 0]
    total = sum(getattr(e, key) for e in events) or 1.0
    events.sort(key=lambda e: -getattr(e, key))
    rows = [{"op": e.key, "self_ms_per_step": round(getattr(e, key) / 1000 / steps, 3),
             "share": round(getattr(e, key) / total, 4), "calls_per_step": e.count // steps} for e in events[:top]]
    return {"model": name, "variant": variant, "batch": n, "sorted_by": key, "top_ops": rows}


def loader_throughput(n_images: int = 128, batch_size: int = 16, workers=(0, 2), steps: int = 8) -> list[dict]:
    """img/s of the training data pipeline on synthetic 256² JPEGs (decode, augment, bicubic LR)."""
    from fsr_bench.data.degradations import build_degradation
    from fsr_bench.data.folders import FaceFolder
    from fsr_bench.data.io import write_image
    from fsr_bench.train.data import EpochSampler, TrainPairs

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        g = torch.Generator().manual_seed(0)
        for i in range(n_images):
            img = torch.nn.functional.interpolate(torch.rand(1, 3, 32, 32, generator=g), size=256, mode="bilinear")[0]
            write_image(img, Path(tmp) / f"{i // 8}" / f"{i:05d}.jpg")
        hr_set = FaceFolder(tmp)
        pairs = TrainPairs(hr_set, 4, build_degradation({"type": "bicubic", "scale": 4}), global_batch=batch_size)
        for w in workers:
            sampler = EpochSampler(len(hr_set), batch_size)
            loader = torch.utils.data.DataLoader(pairs, batch_size=batch_size, sampler=sampler, num_workers=w,
                                                 persistent_workers=w > 0, pin_memory=torch.cuda.is_available())
            seen, t0 = 0, None
            for epoch in range(100):
                sampler.set_epoch(epoch)
                for b in loader:
                    if t0 is None:  # skip the first batch (worker start-up)
                        t0 = time.perf_counter()
                        continue
                    seen += b["hr"].shape[0]
                    if seen >= steps * batch_size:
                        break
                if seen >= steps * batch_size:
                    break
            dt = time.perf_counter() - t0
            out.append({"workers": w, "img_per_s": round(seen / dt, 1), "batch": batch_size,
                        "pipeline": "JPEG 256² decode + dihedral augment + MATLAB bicubic x4 LR"})
    return out


def _synthetic_faces(root: Path, n: int, side: int = 256) -> None:
    from fsr_bench.data.io import write_image

    g = torch.Generator().manual_seed(0)
    for i in range(n):
        img = torch.nn.functional.interpolate(torch.rand(1, 3, 16, 16, generator=g), size=side, mode="bicubic")[0]
        write_image(img.clamp(0, 1), root / f"id{i // 8:03d}" / f"{i:05d}.jpg")


def end_to_end(dev: torch.device, variant: str, n_train: int, batch: int, steps: int, workers: int,
               model_overrides: dict | None = None, side: int = 256, log_every: int = 10,
               deterministic: bool = False) -> dict:
    """The real ``fsr-bench train`` loop (loader, AMP, checkpoints, resume) on synthetic JPEG faces.

    Trains ``steps`` steps, stops, resumes to ``steps + steps // 2``; img/s is the median over log
    intervals (``log_every`` steps) of the first session, without the first (start-up), and includes
    the data loader and the epoch-end checkpoints.
    """
    from fsr_bench.train.config import load_config
    from fsr_bench.train.trainer import train

    precision, cl, comp = VARIANTS[variant]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        _synthetic_faces(Path(tmp) / "train", n_train, side)
        _synthetic_faces(Path(tmp) / "val", 16, side)
        base = {
            "model": {"name": "tanet_x4", "overrides": model_overrides or {}},
            "data": {"train": {"type": "faces256", "root": f"{tmp}/train"},
                     "val": {"type": "faces256", "root": f"{tmp}/val"},
                     "batch_size": batch, "val_batch_size": 16, "workers": workers},
            "schedule": {"max_steps": steps, "log_every": log_every, "ckpt_every_minutes": None},
            "precision": precision, "channels_last": cl, "compile": comp, "val_every": 0,
            "deterministic": deterministic,
            "device": dev.type, "log": {"progress": False}, "out_dir": f"{tmp}/run",
        }
        first = train(load_config(None, [], base=base), echo=lambda m: None)
        with open(f"{tmp}/run/train_log.csv") as f:
            intervals = [float(line.split(",")[3]) for line in f.readlines()[1:]]
        second = train(load_config(None, [f"schedule.max_steps={steps + steps // 2}"], base=base),
                       resume=True, echo=lambda m: None)
        steady = sorted(intervals[1:]) or intervals  # the first interval holds start-up and cudnn autotuning
        from fsr_bench.models.checkpoint import read_checkpoint

        digest = hashlib.sha256()
        for k, v in sorted(read_checkpoint(f"{tmp}/run/last.pt")["state_dict"].items()):
            digest.update(k.encode() + v.cpu().numpy().tobytes())  # numpy copies any memory format in C order
        return {"variant": variant, "batch": batch, "workers": workers, "train_images": n_train,
                "model_overrides": model_overrides or {}, "steps": first["steps"],
                "img_per_s_intervals": [round(v, 1) for v in intervals],
                "img_per_s_steady_median": round(steady[len(steady) // 2], 1),
                "resumed_to_step": second["steps"], "deterministic": deterministic,
                "weights_sha256": digest.hexdigest()[:16], "val_psnr_after_resume": round(second["last_val"]["psnr"], 3),
                "wall_s": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--quick", action="store_true", help="x4/x8 only; on a GPU < 3 min")
    ap.add_argument("--models", nargs="*", help="default: tanet_x4 tanet_x8 (+ ablations unless --quick)")
    ap.add_argument("--variants", nargs="*", choices=list(VARIANTS), help="default: all on GPU, fp32/fp32+cl/bf16 on CPU")
    ap.add_argument("--batch", type=int, help="default: 16 on GPU, 1 on CPU")
    ap.add_argument("--hr", type=int, default=256, help="HR side (FFHQ: 256)")
    ap.add_argument("--steps", type=int, help="timed steps (default: 10 GPU / 2 CPU)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (default: 3 GPU / 1 CPU)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's); 1 is far faster on a busy machine")
    ap.add_argument("--no-models", action="store_true", help="skip the model-only step timings")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--no-loader", action="store_true")
    ap.add_argument("--no-end-to-end", action="store_true", help="skip the real trainer run (needs pydantic)")
    ap.add_argument("--e2e-deterministic", action="store_true",
                    help="also train twice with deterministic: true (fp32) and compare the weights")
    ap.add_argument("--e2e-variants", nargs="*", choices=list(VARIANTS) + ["fp16"],
                    help="end-to-end trainer variants on GPU (default: bf16+cl; full mode adds fp16)")
    ap.add_argument("--out", type=Path, help="JSON path (default: benchmarks/results/train_throughput_<cpu|gpu>.json)")
    args = ap.parse_args(argv)

    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if args.device == "auto" else args.device))
    gpu = dev.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    if gpu:
        torch.backends.cudnn.benchmark = True
    models = args.models or (["tanet_x4", "tanet_x8"] + ([] if args.quick else
                             ["tanet_no_global_x4", "tanet_no_local_x4", "tanet_no_global_x8", "tanet_no_local_x8"]))
    variants = args.variants or ([v for v in VARIANTS if v != "fp16"] if gpu else ["fp32", "fp32+cl", "bf16"])
    n = args.batch or (16 if gpu else 1)
    steps = args.steps or (10 if gpu else 2)
    warmup = args.warmup or (3 if gpu else 1)
    t_start = time.perf_counter()
    out = args.out or ROOT / "benchmarks" / "results" / f"train_throughput_{'gpu' if gpu else 'cpu'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    report = {
        "benchmark": "train_throughput",
        "device": device_name(dev),
        "device_type": dev.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if gpu else None,
        "cpu_count": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "settings": {"batch": n, "hr": args.hr, "steps": steps, "warmup": warmup, "quick": args.quick,
                     "what": "TrainStep(L1) + Adam on synthetic batches already on the device; img/s = batch / step time"},
        "results": results,
    }

    def save() -> None:  # after every stage: a run cut short keeps what it measured
        report["wall_s"] = round(time.perf_counter() - t_start, 1)
        out.write_text(json.dumps(report, indent=2) + "\n")

    def stage(name, fn):
        try:
            report[name] = fn()
        except Exception as exc:  # report and go on
            report[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}
        save()
        return report[name]

    def time_models(compiled: bool) -> None:
        for name in [] if args.no_models else models:
            for v in variants:
                if VARIANTS[v][2] != compiled:
                    continue
                if name not in ("tanet_x4", "tanet_x8") and v not in ("fp32", "bf16+cl"):
                    continue  # ablations: the baseline and the fast variant only
                row = measure(name, v, dev, n, args.hr, warmup, steps)
                results.append(row)
                print(json.dumps(row), flush=True)
                save()

    # eager timings, profile, loader and end-to-end first; torch.compile last (its warm-up is
    # minutes), so a run cut short by a timeout loses only compiled rows
    time_models(compiled=False)
    if not args.no_profile:
        prof = stage("profile", lambda: [profile_top_ops("tanet_x4", v, dev, n, args.hr, steps=2 if not gpu else 3)
                                         for v in (["fp32", "bf16+cl"] if gpu else ["fp32"])])
        for p in prof if isinstance(prof, list) else []:
            print(f"\nprofile {p['model']} {p['variant']} (batch {p['batch']}), top ops by {p['sorted_by']}:")
            for r in p["top_ops"][:10]:
                print(f"  {r['share'] * 100:5.1f}%  {r['self_ms_per_step']:9.2f} ms/step  {r['op']}")
    if not args.no_loader:
        if gpu:
            kw = dict(n_images=128, steps=20, workers=(0, 8)) if args.quick else dict(
                n_images=256, steps=40, workers=(0, 4, 8, 14))
        else:
            kw = dict(n_images=64, steps=6, workers=(0, 1))
        print("\nloader:", json.dumps(stage("loader", lambda: loader_throughput(**kw))))
    if not args.no_end_to_end:
        if gpu:
            e2e = args.e2e_variants or (["bf16+cl"] if args.quick else ["bf16+cl", "fp16"])
            images, e2e_steps = (320, 60) if args.quick else (640, 100)

            def fn():
                rows = [end_to_end(dev, v, images, n, e2e_steps, 12, log_every=20) for v in e2e]
                if args.e2e_deterministic:
                    det = [end_to_end(dev, "fp32", 64, n, 8, 4, log_every=4, deterministic=True) for _ in range(2)]
                    rows += det + [{"deterministic_runs_identical": det[0]["weights_sha256"] == det[1]["weights_sha256"]}]
                return rows
        else:  # a reduced model on CPU: checks the loop, not the paper-size speed
            small = {"channels": 32, "num_modules": 4, "num_resblocks": 4, "num_blocks": 2}
            fn = lambda: [end_to_end(dev, "fp32", 32, 4, 10, 1, small, side=128)]  # noqa: E731
        print("\nend to end:", json.dumps(stage("end_to_end", fn)))
    time_models(compiled=True)
    save()
    print(f"\n{'model':20s} {'variant':16s} {'img/s':>8s} {'step ms':>9s} {'mem GB':>7s} {'warmup s':>8s}")
    for r in results:
        mem = r.get("peak_mem_gb", r.get("peak_rss_gb_process", ""))
        print(f"{r['model']:20s} {r['variant']:16s} {r.get('img_per_s', r.get('error', '')):>8} "
              f"{r.get('step_ms', ''):>9} {mem:>7} {r.get('warmup_s', ''):>8}")
    print(f"wrote {out} ({report['wall_s']} s, {report['device']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where a TANet-S training step's time goes on a CPU, and what the trainer's defaults take back, in ONE run.

    python benchmarks/train_step_cpu.py                  # TANet-S x8 and x4, 5 timed reps (~10 min on a busy core)
    python benchmarks/train_step_cpu.py --compile        # + torch.compile'd TrainStep (compile time recorded)
    python benchmarks/train_step_cpu.py --profile        # + a torch.profiler table of the new step per model

The CPU training configs' step (``TrainStep`` L1 + Adam, batch 8, 128x128 HR patches, 1 thread, as
``fsr-bench train`` runs it) in the precision and layout the trainings use on this CPU (``--precision
auto``: bf16 autocast + channels-last where the CPU has native bf16, else fp32 + channels-last, what
``benchmarks/leaderboard_compute.sh`` trains TANet-S in), timed per variant:

* ``adam_loop``: Adam's per-tensor loop — the trainer's optimizer on a CPU before it used the fused kernel;
* ``adam_foreach``: the multi-tensor implementation;
* ``adam_fused``: the fused kernel, the trainer's default now;
* ``compile+adam_fused`` (``--compile``): ``torch.compile`` of the ``TrainStep``, as ``compile: true``.

Beside them, in the same round robin: the 3x3-conv peak of ``cpu_throughput.py`` (64 -> 64 channels,
batch 16, 64x64) in fp32 NCHW, fp32 channels-last and bf16 channels-last; the data pipeline per
training batch (JPEG decode + crop + MATLAB-bicubic degradation, 8 faces of ../shared/data/faces256, the
work a data worker on the training core does); and validation per batch of 8 whole 256x256 faces
(model forward, PSNR + SSIM as ``score_pairs`` computes them, the SSIM filter as the float64
``F.conv2d`` it replaced).

**Timing on a shared core.** Each call is timed by the process's CPU time (``time.process_time``) as
well as wall time: on a core shared with other users the wall time mostly measures them, the CPU time
what the step costs a core of its own (a training pinned to an idle core runs at its CPU time). The
fractions of peak use CPU time on both sides. Every variant is timed round-robin (rep 1 of all, then
rep 2, ...) and reported as the median; the load average is recorded around every block.

GFLOP/s of a step = FlopCounterMode forward FLOPs x 3 (``cpu_throughput.py``'s convention) / seconds.
Writes ``benchmarks/results/train_step_cpu.json`` (CPU model and flags, torch, threads, load, git commit).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cpu_throughput import CONV_FLOPS, FORMATS, conv_calls, cpu_info, forward_gflops, load  # noqa: E402

from fsr_bench.atomic import write_text  # noqa: E402
from fsr_bench.models import create_model  # noqa: E402
from fsr_bench.models.precision import autocast, cpu_bf16_flags, resolve_precision  # noqa: E402
from fsr_bench.provenance import collect  # noqa: E402
from fsr_bench.train.losses import TrainStep  # noqa: E402

MODELS = ("tanet_s_x8", "tanet_s_x4")
BATCH, HR = 8, 128  # the CPU training configs (protocols/train_tanet_s_faces256_x*.yaml)
SHARED = ROOT.parent / "shared" / "data"
ADAM = {"adam_loop": {"foreach": False}, "adam_foreach": {"foreach": True}, "adam_fused": {"fused": True}}


def round_robin(calls: dict[str, Callable[[], None]], reps: int) -> dict[str, dict[str, float]]:
    """Median CPU and wall seconds per call, interleaved, after one warm-up round."""
    cpu: dict[str, list[float]] = {k: [] for k in calls}
    wall: dict[str, list[float]] = {k: [] for k in calls}
    for rep in range(reps + 1):
        for name, fn in calls.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            if rep:
                cpu[name].append(time.process_time() - c0)
                wall[name].append(time.perf_counter() - w0)
    return {k: {"cpu_s": statistics.median(cpu[k]), "wall_s": statistics.median(wall[k])} for k in calls}


def _cpu_with_children() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def step_fn(name: str, precision: str, fmt: str, adam: dict, compiled: bool) -> Callable[[], None]:
    torch.manual_seed(0)
    model = create_model(name).to(memory_format=FORMATS[fmt]).train()
    s = model.scale
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(BATCH, 3, HR // s, HR // s, generator=g).contiguous(memory_format=FORMATS[fmt])
    hr = torch.rand(BATCH, 3, HR, HR, generator=g).contiguous(memory_format=FORMATS[fmt])
    step = TrainStep(model, "l1")
    wrapped = torch.compile(step) if compiled else step
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, **adam)

    def fn() -> None:  # the trainer's _train_step
        with autocast("cpu", precision):
            loss, _ = wrapped(lr, hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return fn


def data_calls(scale: int) -> dict[str, Callable[[], None]]:
    """The data worker's work for one training batch, on real faces (skipped without ../shared)."""
    from fsr_bench.data.degradations import build_degradation
    from fsr_bench.data.folders import build_dataset
    from fsr_bench.train.data import TrainPairs

    root = SHARED / "faces256"
    if not root.is_dir():
        return {}
    hr_set = build_dataset({"type": "faces256", "root": str(root), "list_file": str(SHARED / "splits" / "faces256_train.txt")},
                           "data.train", None)
    deg = build_degradation({"type": "bicubic", "scale": scale})
    pairs = TrainPairs(hr_set, scale, deg, patch=(HR, HR), seed=0, global_batch=BATCH)
    counter = iter(range(10**9))

    def batch() -> None:  # 8 new images each call: no page-cache or decode reuse between reps
        k = next(counter)
        torch.utils.data.default_collate([pairs[(k * BATCH + i) % len(pairs), 0, i] for i in range(BATCH)])

    def read() -> None:
        k = next(counter)
        for i in range(BATCH):
            hr_set[(k * BATCH + i) % len(hr_set)]
    return {f"data/x{scale}/batch": batch, f"data/x{scale}/read_only": read}


def validation_calls(name: str, precision: str, fmt: str) -> dict[str, Callable[[], None]]:
    """One validation batch (8 whole 256x256 faces) as ``score_pairs`` runs it, in parts."""
    from fsr_bench.metrics import MetricConventions
    from fsr_bench.metrics.functional import _gaussian_taps, _prepare
    from fsr_bench.models.precision import infer

    torch.manual_seed(0)
    model = create_model(name).to(memory_format=FORMATS[fmt]).eval()
    s = model.scale
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(BATCH, 3, 256, 256, generator=g)
    lr = F.interpolate(hr, scale_factor=1 / s, mode="bicubic", antialias=True).clamp(0, 1)
    sr = infer(model, lr, precision, fmt == "cl")
    conv = MetricConventions(crop_border=s)
    a, _, _ = _prepare(sr, hr, s, True, True)
    taps = _gaussian_taps(11, 1.5, a.device)
    n, c, h, w = a.shape

    def filter_conv2d() -> None:  # the SSIM filter before: float64 F.conv2d (im2col on a CPU), 5 per SSIM
        for _ in range(5):
            F.conv2d(F.conv2d(a.reshape(n * c, 1, h, w), taps.view(1, 1, -1, 1)), taps.view(1, 1, 1, -1))
    return {f"val/{name}/forward": lambda: infer(model, lr, precision, fmt == "cl"),
            f"val/{name}/psnr": lambda: conv.psnr(sr, hr), f"val/{name}/ssim": lambda: conv.ssim(sr, hr),
            f"val/{name}/ssim_filters_conv2d_before": filter_conv2d}


def profile_table(name: str, precision: str, fmt: str) -> str:
    from torch.profiler import ProfilerActivity, profile

    fn = step_fn(name, precision, fmt, ADAM["adam_fused"], False)
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd TrainStep + fused Adam")
    ap.add_argument("--profile", action="store_true", help="profiler table of the fused-Adam step per model")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train_step_cpu.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    precision = resolve_precision(args.precision, "cpu")
    fmt = "cl" if args.channels_last else "nchw"
    res: dict = {"benchmark": "train_step_cpu", "cpu": cpu_info(), "torch": torch.__version__, "threads": 1,
                 "provenance": collect("cpu"), "load_start": load(),
                 "settings": {"reps": args.reps, "batch": BATCH, "hr": HR, "precision": precision, "format": fmt,
                              "native_bf16": list(cpu_bf16_flags()),
                              "what": "round-robin medians of process CPU time (and wall time); GFLOP/s from "
                                      "FlopCounterMode forward FLOPs x3 per training step"}}
    print(f"{res['cpu']['model']} ({res['cpu']['flags']}), torch {torch.__version__}, {precision}/{fmt}, load {res['load_start']}",
          flush=True)
    calls: dict[str, Callable[[], None]] = {}
    gflop: dict[str, float] = {}
    compile_s: dict[str, dict[str, float]] = {}
    for name in args.models:
        torch.manual_seed(0)
        ref = create_model(name).eval()
        gflop[name] = forward_gflops(ref, HR // ref.scale) * 3 * BATCH
        for key, adam in ADAM.items():
            calls[f"step/{name}/{key}"] = step_fn(name, precision, fmt, adam, False)
        if args.compile:
            torch._dynamo.reset()
            fn = step_fn(name, precision, fmt, ADAM["adam_fused"], True)
            c0, w0 = _cpu_with_children(), time.perf_counter()
            fn()  # compilation happens here, outside the timed reps (C++ builds run in g++ child processes)
            compile_s[name] = {"cpu_s": round(_cpu_with_children() - c0, 1), "wall_s": round(time.perf_counter() - w0, 1)}
            calls[f"step/{name}/compile+adam_fused"] = fn
        calls.update(data_calls(create_model(name).scale))
        calls.update(validation_calls(name, precision, fmt))
    calls.update({k: fn for k, (_, fn) in conv_calls([1]).items() if k != "peak:bf16/nchw/t1"})
    before = load()
    t0 = time.perf_counter()
    secs = round_robin(calls, args.reps)
    res.update({"load_before": before, "load_after": load(), "seconds": round(time.perf_counter() - t0, 1)})
    peak = {k.removeprefix("peak:").removesuffix("/t1"): {"gflops_cpu": round(CONV_FLOPS / v["cpu_s"] / 1e9, 1),
                                                          "gflops_wall": round(CONV_FLOPS / v["wall_s"] / 1e9, 1)}
            for k, v in secs.items() if k.startswith("peak:")}
    same = f"{'bf16' if precision == 'bf16' else 'fp32'}/{fmt}"
    fastest = max(peak, key=lambda k: peak[k]["gflops_cpu"])
    res["conv_peak"] = {"shape": "3x3 conv 64->64, batch 16, 64x64", "fastest": fastest, "variants": peak}
    res["steps"], res["data"], res["validation"] = {}, {}, {}
    for key, v in secs.items():
        row = {"ms_cpu": round(v["cpu_s"] * 1e3, 1), "ms_wall": round(v["wall_s"] * 1e3, 1)}
        kind, *rest = key.split("/")
        if kind == "step":
            name, variant = rest
            g = gflop[name] / v["cpu_s"]
            row.update({"img_per_s_cpu": round(BATCH / v["cpu_s"], 2), "gflops_cpu": round(g, 1),
                        "frac_peak_same": round(g / peak[same]["gflops_cpu"], 3),
                        "frac_peak_fastest": round(g / peak[fastest]["gflops_cpu"], 3),
                        "frac_peak_bf16_cl": round(g / peak["bf16/cl"]["gflops_cpu"], 3)})
            if variant.startswith("compile"):
                row["compile"] = compile_s[name]
            res["steps"].setdefault(name, {"gflop_per_step": round(gflop[name], 3)})[variant] = row
        elif kind == "data":
            res["data"].setdefault(rest[0], {})[rest[1]] = row
        elif kind == "val":
            res["validation"].setdefault(rest[0], {})[rest[1]] = row
    for name, rows in res["steps"].items():
        base = rows["adam_loop"]["ms_cpu"]
        for variant, row in rows.items():
            if isinstance(row, dict):
                row["speedup_vs_adam_loop"] = round(base / row["ms_cpu"], 3)
    if args.profile:
        res["profiles"] = {name: profile_table(name, precision, fmt) for name in args.models}
    res["load_end"] = load()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: res[k] for k in ("conv_peak", "steps", "data", "validation", "load_before", "load_after")}, indent=1))
    for name, table in res.get("profiles", {}).items():
        print(f"\n{name} (fused Adam):\n{table}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

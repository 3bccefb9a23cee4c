"""CPU latency of TANet: onnxruntime (fp32) vs PyTorch fp32 and PyTorch bf16 autocast.

    python benchmarks/onnx_latency.py                          # tanet_x4, tanet_x8, tanet_s_x4, tanet_s_x8
    python benchmarks/onnx_latency.py --models tanet_s_x4 --threads 2 --reps 5

Per model: export with dynamic H x W (``fsr_bench.models.export.export_onnx``, which checks the graph
against PyTorch), then the median of ``--reps`` batch-1 forwards after one warm-up, at the paper's
FFHQ setting (64x64 LR at x4, 32x32 at x8 -> 256x256), for each engine on the same thread count.
Also recorded: onnxruntime-vs-PyTorch parity on the timed input, and what bf16 costs in accuracy
(max |bf16 - fp32|, PSNR of bf16 against fp32, outputs clamped to [0, 1]). Random weights: latency
does not depend on their values. The machine, its load average before and after, and the thread
count go into ``benchmarks/results/onnx_latency_cpu.json``; a figure from a loaded machine says so.
A default run takes about 3 minutes on 2 busy cores (exports dominate).
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fsr_bench.atomic import write_json
from fsr_bench.models import create_model
from fsr_bench.models.export import export_onnx, onnx_parity, onnx_session
from fsr_bench.provenance import collect

LR_SIDE = {4: 64, 8: 32}  # -> 256x256 HR, the FFHQ setting of the paper


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_ms(fn, reps: int) -> tuple[float, list[float]]:
    fn()  # warm-up: allocator, oneDNN primitive caches, onnxruntime arena
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), [round(t, 2) for t in times]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.clamp(0, 1).double() - b.clamp(0, 1).double()).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def measure(name: str, reps: int, workdir: Path) -> dict:
    torch.manual_seed(0)
    model = create_model(name).eval()
    side = LR_SIDE[model.scale]
    lr = torch.rand(1, 3, side, side)
    t0 = time.perf_counter()
    path = export_onnx(model, workdir / f"{name}.onnx")
    export_s = time.perf_counter() - t0
    session = onnx_session(path)
    feed = {session.get_inputs()[0].name: lr.numpy()}

    with torch.inference_mode():
        fp32 = model(lr)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(lr).float()

        def torch_fp32():
            model(lr)

        def torch_bf16():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                model(lr)

        rows = {"torch_fp32": median_ms(torch_fp32, reps), "torch_bf16_autocast": median_ms(torch_bf16, reps),
                "onnxruntime_fp32": median_ms(lambda: session.run(None, feed), reps)}
    parity = onnx_parity(model, path, lr)
    return {
        "model": name,
        "scale": model.scale,
        "params": model.num_parameters(),
        "lr_size": [side, side],
        "export_s": round(export_s, 1),
        "onnx_mb": round(path.stat().st_size / 1e6, 1),
        "median_ms": {k: round(v[0], 2) for k, v in rows.items()},
        "times_ms": {k: v[1] for k, v in rows.items()},
        "speedup_onnxruntime_vs_torch_fp32": round(rows["torch_fp32"][0] / rows["onnxruntime_fp32"][0], 3),
        "parity_onnx_vs_torch": {"max_abs_diff": parity["max_abs_diff"], "psnr_db": parity["psnr_db"]},
        "bf16_vs_fp32": {"max_abs_diff": (bf16 - fp32).abs().max().item(), "psnr_db": psnr(bf16, fp32)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["tanet_x4", "tanet_x8", "tanet_s_x4", "tanet_s_x8"])
    ap.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "onnx_latency_cpu.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)  # onnxruntime sessions take the same count (export.onnx_session)

    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            row = measure(name, args.reps, Path(tmp))
            rows.append(row)
            ms = row["median_ms"]
            print(f"{name:12s} x{row['scale']}  torch fp32 {ms['torch_fp32']:8.1f} ms  bf16 {ms['torch_bf16_autocast']:8.1f} ms"
                  f"  onnxruntime {ms['onnxruntime_fp32']:8.1f} ms  (parity {row['parity_onnx_vs_torch']['max_abs_diff']:.1e},"
                  f" export {row['export_s']:.0f} s)", flush=True)
    load_after = os.getloadavg()
    import onnxruntime

    result = {
        "benchmark": "onnx_latency",
        "machine": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "threads": args.threads,
                    "load_average_1_5_15_before": [round(v, 2) for v in load_before],
                    "load_average_1_5_15_after": [round(v, 2) for v in load_after],
                    "note": "load average above the core count means other work shared the CPUs: "
                            "absolute times are then inflated, ratios less so"},
        "settings": {"batch": 1, "reps": args.reps, "warmup": 1, "weights": "random (latency only)",
                     "onnxruntime": onnxruntime.__version__, "providers": ["CPUExecutionProvider"]},
        "provenance": collect("cpu"),
        "results": rows,
    }
    write_json(args.out, result)
    print(f"wrote {args.out} (load average {load_before[0]:.1f} -> {load_after[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()

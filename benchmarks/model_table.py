"""Parameters, GFLOPs and inference speed of every registered model -> README's model table.

    python benchmarks/model_table.py                    # all models, print a markdown table
    python benchmarks/model_table.py --write-readme     # also replace the table in README.md
    python benchmarks/model_table.py --device cuda --pattern "tanet*"
    python benchmarks/model_table.py --precision bf16 --channels-last --pattern "tanet*"
    python benchmarks/model_table.py --from-json benchmarks/results/model_table_cpu.json --write-readme

GFLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions, matmuls,
attention; 1 multiply-add = 2 FLOPs) for one image: 64x64 -> 256x256 at x4, 32x32 -> 256x256 at x8.
Speed is the median of ``--reps`` timed batch-1 forwards after one warm-up, on the device named in
the output, in ``--precision`` / ``--channels-last`` (``fsr_bench.models.precision``; default fp32
NCHW, the reference path; the table header names the mode). Results go to
``benchmarks/results/model_table_<device>.json`` (``_<precision>[_cl]`` appended unless fp32 NCHW).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import time
from pathlib import Path

import torch

from fsr_bench.models import count_gflops, create_model, list_models
from fsr_bench.models.precision import describe, infer, prepare, resolve_precision
from fsr_bench.provenance import collect

ROOT = Path(__file__).resolve().parents[1]
LR_SIDE = {4: 64, 8: 32}  # -> 256x256 HR, the FFHQ setting of the paper
START, END = "<!-- model-table:start -->", "<!-- model-table:end -->"


def measure(name: str, device: str, reps: int, precision: str = "fp32", channels_last: bool = False) -> dict:
    model = create_model(name).to(device).eval()
    side = LR_SIDE.get(model.scale, 256 // model.scale)
    lr = torch.rand(1, 3, side, side, device=device)
    gflops = count_gflops(model, (side, side))  # the project's one FLOP counter (as `list models --flops`)
    model = prepare(model, device, channels_last)
    times = []
    for i in range(reps + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        infer(model, lr, precision, channels_last)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:  # the first call is warm-up
            times.append(time.perf_counter() - t0)
    return {
        "name": name,
        "scale": model.scale,
        "lr_size": [side, side],
        "params": model.num_parameters(),
        "gflops": gflops,
        "images_per_s": 1.0 / statistics.median(times),
        "paper": model.info.paper,
    }


def markdown(rows: list[dict], device_name: str, mode: str) -> str:
    lines = [
        f"| model | scale | LR → HR | params | GFLOPs | img/s ({device_name}, {mode}) |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        h, w = r["lr_size"]
        lines.append(
            f"| `{r['name']}` | ×{r['scale']} | {h}×{w} → {h * r['scale']}×{w * r['scale']} | "
            f"{r['params'] / 1e6:.2f} M | {r['gflops']:.1f} | {r['images_per_s']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pattern", default="*")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--precision", default="fp32", help="fp32 | bf16 | fp16 | auto (fsr_bench.models.precision)")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False)
    ap.add_argument("--write-readme", action="store_true")
    ap.add_argument("--from-json", type=Path, help="re-render a saved results file instead of measuring")
    args = ap.parse_args()

    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        rows, prov, reps = saved["rows"], saved["provenance"], saved["reps"]
        # files written before the precision option existed could only measure the fp32 NCHW path
        mode = saved.get("mode", "fp32, NCHW")
    else:
        rows, reps = [], args.reps
        precision = resolve_precision(args.precision, args.device)
        mode = describe(precision, args.channels_last, args.device)
        for name in list_models(args.pattern):
            row = measure(name, args.device, args.reps, precision, args.channels_last)
            rows.append(row)
            print(f"{name:24s} x{row['scale']}  {row['params'] / 1e6:7.2f} M  {row['gflops']:8.1f} GFLOPs  "
                  f"{row['images_per_s']:8.2f} img/s", flush=True)
        prov = collect(args.device)
    device_name = prov["device"]
    table = markdown(rows, device_name, mode)
    print("\n" + table)
    if not args.from_json:
        tag = "cuda" if args.device.startswith("cuda") else "cpu"
        if mode != "fp32, NCHW":
            tag += f"_{precision}" + ("_cl" if args.channels_last else "")
        out = ROOT / "benchmarks" / "results" / f"model_table_{tag}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"device": device_name, "mode": mode, "reps": args.reps, "provenance": prov,
                                   "host": platform.node(), "load_avg": list(os.getloadavg()), "rows": rows},
                                  indent=2) + "\n")
        print(f"wrote {out}")
    if args.write_readme:
        readme = ROOT / "README.md"
        text = readme.read_text()
        if START not in text:
            raise SystemExit(f"README.md has no {START} ... {END} block to replace")
        note = (f"\n_Generated by `python benchmarks/model_table.py --write-readme` on {device_name}, "
                f"{prov['timestamp']}, git {str(prov['git']['commit'])[:10]}; {mode}; batch 1, median of {reps} runs; "
                "GFLOPs from torch's FlopCounterMode (1 multiply-add = 2 FLOPs). Paper-default configs, "
                "random weights (speed and size only)._\n")
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), START + "\n" + table + "\n" + note + END,
                      text, flags=re.S)
        readme.write_text(text)
        print("updated README.md")


if __name__ == "__main__":
    main()

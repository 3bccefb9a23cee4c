"""Which precision and memory layout trains each leaderboard method fastest on this CPU, one thread.

The equal-compute leaderboard (``benchmarks/leaderboard_compute.sh``) gives every method the same CPU
minutes, so each method should train in its own fastest safe setting, not in one setting that suits some
architectures (channels-last helps plain 3x3 convolution stacks, hurts deconvolution- and
attention-heavy ones on oneDNN) and the recipes' bf16, which is emulated — several times slower than fp32
— on a CPU without native bf16 (``fsr_bench.models.precision.cpu_bf16_flags``).

Times the trainer's own optimizer step (``TrainStep`` + Adam, L1, autocast as ``fsr-bench train``) on
synthetic batches of the leaderboard's shape (batch 8, 16x16 LR -> 128x128 HR at x8), interleaved
round-robin with medians so that every variant sees the same machine. Run it pinned to the core the
trainings use (``taskset -c 1 python benchmarks/train_layout.py``).

Writes ``benchmarks/results/train_layout_cpu.json`` and prints the fastest variant per method.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cpu_throughput import cpu_info, load, round_robin  # noqa: E402

from fsr_bench.atomic import write_text  # noqa: E402
from fsr_bench.models import create_model  # noqa: E402
from fsr_bench.models.precision import autocast  # noqa: E402
from fsr_bench.provenance import collect  # noqa: E402

# leaderboard row -> (registered model, overrides): the models of protocols/train_<row>_faces256_x8.yaml
ROWS = {
    "tanet_s": ("tanet_s_x8", {}), "tanet_s_window": ("tanet_s_x8", {"tokenizer": "window"}),
    "didnet_s": ("didnet_s_x8", {}), "srfbn_s": ("srfbn_s_x8", {}), "sparnet_s": ("sparnet_s_x8", {}),
    "sisn_s": ("sisn_s_x8", {}), "nlsn_s": ("nlsn_s_x8", {}), "ipt_s": ("ipt_s_x8", {}),
}
VARIANTS = {"fp32": ("fp32", False), "fp32+cl": ("fp32", True)}
BF16 = {"bf16+cl": ("bf16", True)}  # --bf16: slow where bf16 is emulated (minutes per row)


def step_fn(model_name: str, overrides: dict, precision: str, channels_last: bool, batch: int, scale: int):
    torch.manual_seed(0)
    model = create_model(model_name, **overrides)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    lr = torch.rand(batch, 3, 128 // scale, 128 // scale).contiguous(memory_format=fmt)
    hr = torch.rand(batch, 3, 128, 128).contiguous(memory_format=fmt)

    def fn() -> None:
        with autocast("cpu", precision):
            out = model(lr)
        loss = (out.float() - hr).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--bf16", action="store_true", help="also time bf16 autocast + channels-last")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/train_layout_cpu.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results: dict = {"benchmark": "train_layout", "cpu": cpu_info(), "torch": torch.__version__,
                     "affinity": sorted(os.sched_getaffinity(0)), "threads": 1, "load_start": load(),
                     "settings": {"batch": args.batch, "hr_patch": 128, "scale": 8, "reps": args.reps,
                                  "what": "median seconds per optimizer step (forward + L1 backward + Adam), "
                                          "round-robin after one warm-up"}, "rows": {}}
    for row in args.rows:
        name, overrides = ROWS[row]
        variants = {**VARIANTS, **(BF16 if args.bf16 else {})}
        calls = {v: (1, step_fn(name, overrides, p, cl, args.batch, 8)) for v, (p, cl) in variants.items()}
        secs = round_robin(calls, args.reps)
        fastest = min(secs, key=secs.__getitem__)
        results["rows"][row] = {"model": name, "overrides": overrides,
                                "s_per_step": {k: round(v, 4) for k, v in secs.items()}, "fastest": fastest}
        print(f"{row:16s} " + "  ".join(f"{k} {v:.3f} s" for k, v in secs.items()) + f"  -> {fastest}", flush=True)
    results["load_end"] = load()
    results["provenance"] = collect()
    write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

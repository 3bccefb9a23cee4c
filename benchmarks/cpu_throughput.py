"""CPU throughput of TANet against this machine's own measured convolution peak, in ONE run.

    python benchmarks/cpu_throughput.py            # full: threads 1 and 2, 3 timed reps (a few minutes on 2 quiet cores)
    python benchmarks/cpu_throughput.py --quick    # 1 thread, 1 timed rep (~1 min)
    python benchmarks/cpu_throughput.py --compile --models tanet_s_x4 --out ...  # + torch.compile'd bf16 channels-last

What it measures, all in the same process so that the ratios compare like with like:

1. **conv peak**: a 3x3, 64->64-channel convolution, batch 16, 64x64 (TANet's dominant op), as
   GFLOP/s in fp32 NCHW, fp32 channels-last and bf16 channels-last (autocast);
2. **TANet x4 / x8** at the paper's size (``tanet_x4``, ``tanet_x8``) and the CPU training config
   "TANet-S" (``tanet_s_x4`` / ``tanet_s_x8``: C = 32, G = I = 4, N = 2; the CPU training configs):
   inference img/s on whole 256x256 faces, and training-step img/s (``TrainStep`` L1 + Adam, as
   ``fsr-bench train`` runs it) on 128x128 HR patches, per precision (fp32, bf16 autocast) x memory
   format (NCHW, channels-last) x threads (1, 2). Each figure is also GFLOP/s (forward FLOPs from
   torch's FlopCounterMode, x3 for a training step) and a fraction of the conv peak of the same
   dtype/format/threads and of the bf16 channels-last peak, both re-timed inside that block.

The machine this project develops on is shared, so every variant of one measurement is timed
**round-robin** (rep 1 of every variant, then rep 2, ...): load that comes and goes hits all
variants alike, and the ratios stay meaningful even when the absolute figures do not. The load
average is recorded before and after every block. Targets (issue 9) are evaluated at the end; a
missed target gets a ``torch.profiler`` table of the top ops in the JSON.

Writes ``benchmarks/results/cpu_throughput.json`` (CPU model and flags, torch version, threads,
load average, git commit, date).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fsr_bench.atomic import write_text  # noqa: E402
from fsr_bench.models import count_gflops, create_model  # noqa: E402
from fsr_bench.models.precision import autocast, cpu_bf16_flags  # noqa: E402
from fsr_bench.provenance import collect  # noqa: E402
from fsr_bench.train.losses import TrainStep  # noqa: E402

# registered names; tanet_s_x* is the CPU training configs' TANet-S (C = 32, G = I = 4, N = 2)
MODELS = ("tanet_x4", "tanet_x8", "tanet_s_x4", "tanet_s_x8")
FORMATS = {"nchw": torch.contiguous_format, "cl": torch.channels_last}
HR_INFER, HR_TRAIN = 256, 128  # whole faces for inference; the CPU configs' patches for training
TARGETS = {"inference_speedup": 3.0, "inference_frac_bf16_peak": 0.60, "train_speedup": 6.0}


# -- machine ----------------------------------------------------------------------------------
def cpu_info() -> dict:
    info = {"model": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        info["model"] = fields.get("Model name", info["model"])
        flags = fields.get("Flags", "").split()
        info["flags"] = sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
        info["hypervisor"] = fields.get("Hypervisor vendor")
    except (OSError, subprocess.SubprocessError):
        pass
    info["native_bf16"] = list(cpu_bf16_flags())
    info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    info["mkldnn"] = torch.backends.mkldnn.is_available()
    return info


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- timing -----------------------------------------------------------------------------------
def round_robin(calls: dict[str, tuple[int, Callable[[], None]]], reps: int) -> dict[str, float]:
    """Median seconds per call of each ``name -> (threads, fn)``, timed interleaved after one warm-up."""
    times: dict[str, list[float]] = {k: [] for k in calls}
    for rep in range(reps + 1):  # rep 0 warms up (allocations, oneDNN primitive caches)
        for name, (threads, fn) in calls.items():
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            fn()
            if rep:
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def variants(threads: list[int]):
    for t in threads:
        for prec in ("fp32", "bf16"):
            for fmt in FORMATS:
                yield f"{prec}/{fmt}/t{t}", prec, fmt, t


# -- 1. conv peak -----------------------------------------------------------------------------
CONV_FLOPS = 2 * 16 * 64 * 64 * 9 * 64 * 64  # batch 16, 64 -> 64 channels, 3x3, 64x64


def conv_calls(threads: list[int]) -> dict[str, tuple[int, Callable[[], None]]]:
    n, c, hw = 16, 64, 64
    conv = torch.nn.Conv2d(c, c, 3, padding=1).eval()
    x = torch.randn(n, c, hw, hw, generator=torch.Generator().manual_seed(0))
    calls = {}
    for key, prec, fmt, t in variants(threads):
        m = torch.nn.Conv2d(c, c, 3, padding=1).eval().to(memory_format=FORMATS[fmt])
        m.load_state_dict(conv.state_dict())
        xi = x.contiguous(memory_format=FORMATS[fmt])

        def fn(m=m, xi=xi, prec=prec):
            with torch.inference_mode(), autocast("cpu", prec):
                m(xi)
        calls[f"peak:{key}"] = (t, fn)
    return calls


def peak_from(secs: dict[str, float]) -> dict[str, dict]:
    return {k.removeprefix("peak:"): {"gflops": round(CONV_FLOPS / s / 1e9, 1), "ms": round(s * 1e3, 2)}
            for k, s in secs.items() if k.startswith("peak:")}


def conv_peak(threads: list[int], reps: int) -> dict[str, dict]:
    return peak_from(round_robin(conv_calls(threads), max(reps, 3)))  # cheap: always at least 3 reps


# -- 2. models --------------------------------------------------------------------------------
def build(name: str, fmt: str):
    torch.manual_seed(0)
    return create_model(name).to(memory_format=FORMATS[fmt])


def forward_gflops(model, lr_side: int) -> float:
    return count_gflops(model, (lr_side, lr_side))  # the project's one FLOP counter


def model_block(label: str, mode: str, threads: list[int], reps: int, batch: int, compile_: bool) -> dict:
    """img/s per variant of one model in ``mode`` ("inference" | "training")."""
    ref = build(label, "nchw")
    s = ref.scale
    hr = HR_INFER if mode == "inference" else HR_TRAIN
    gflops_img = forward_gflops(ref.eval(), hr // s) * (1 if mode == "inference" else 3)
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(batch, 3, hr // s, hr // s, generator=g)
    hr_t = torch.rand(batch, 3, hr, hr, generator=g)
    calls, extras = {}, {}
    for key, prec, fmt, t in variants(threads):
        model = build(label, fmt)
        x = lr.contiguous(memory_format=FORMATS[fmt])
        y = hr_t.contiguous(memory_format=FORMATS[fmt])
        if mode == "inference":
            model.eval()

            def fn(model=model, x=x, prec=prec):
                with torch.inference_mode(), autocast("cpu", prec):
                    model(x)
        else:
            model.train()
            step = TrainStep(model, "l1")
            opt = torch.optim.Adam(model.parameters(), lr=2e-4)

            def fn(step=step, opt=opt, x=x, y=y, prec=prec):
                with autocast("cpu", prec):  # fp32 master weights, as the trainer
                    loss, _ = step(x, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        calls[key] = (t, fn)
    if compile_:  # the trainer's `compile: true` (whole TrainStep) / a compiled model for inference
        for t in threads:
            torch._dynamo.reset()  # static shapes per model: no dynamic-shape recompiles across blocks
            model = build(label, "cl")
            x = lr.contiguous(memory_format=torch.channels_last)
            y = hr_t.contiguous(memory_format=torch.channels_last)
            if mode == "inference":
                compiled = torch.compile(model.eval())

                def fn(compiled=compiled, x=x):
                    with torch.inference_mode(), autocast("cpu", "bf16"):
                        compiled(x)
            else:
                compiled = torch.compile(TrainStep(model.train(), "l1"))
                opt = torch.optim.Adam(model.parameters(), lr=2e-4)

                def fn(compiled=compiled, opt=opt, x=x, y=y):
                    with autocast("cpu", "bf16"):
                        loss, _ = compiled(x, y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            t0 = time.perf_counter()
            torch.set_num_threads(t)
            key = f"bf16/cl+compile/t{t}"
            try:
                fn()  # compilation happens here, outside the timed reps
            except Exception as exc:  # recorded in the JSON: a compiler failure must not hide the eager figures
                extras[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                continue
            extras[key] = round(time.perf_counter() - t0, 1)
            calls[key] = (t, fn)
    # the conv peak is re-timed inside the same round robin, so each fraction of peak compares
    # figures taken under the same load (on a shared machine, minutes apart can differ 2x)
    calls.update(conv_calls(threads))
    before = load()
    t0 = time.perf_counter()
    secs = round_robin(calls, reps)
    rows = {key: {"error": msg} for key, msg in extras.items() if isinstance(msg, str)}
    for key, sec in secs.items():
        if key.startswith("peak:"):
            continue
        rows[key] = {"img_per_s": round(batch / sec, 3), "gflops": round(gflops_img * batch / sec, 1)}
        if key in extras:
            rows[key]["compile_s"] = extras[key]
    return {"batch": batch, "hr": hr, "lr": hr // s, "gflop_per_img": round(gflops_img, 3),
            "seconds": round(time.perf_counter() - t0, 1), "load_before": before, "load_after": load(),
            "conv_peak": peak_from(secs), "variants": rows}


def add_fractions(block: dict) -> None:
    peak = block["conv_peak"]
    for key, row in block["variants"].items():
        if "error" in row:
            continue
        prec, fmt, t = key.split("/")
        fmt = fmt.split("+")[0]
        row["frac_peak_same"] = round(row["gflops"] / peak[f"{prec}/{fmt}/{t}"]["gflops"], 3)
        row["frac_peak_bf16_cl"] = round(row["gflops"] / peak[f"bf16/cl/{t}"]["gflops"], 3)


def profile_table(label: str, mode: str, batch: int, threads: int) -> str:
    """Top ops (self CPU time) of the bf16 channels-last path: where the time goes."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    model = build(label, "cl")
    s = model.scale
    hr = HR_INFER if mode == "inference" else HR_TRAIN
    x = torch.rand(batch, 3, hr // s, hr // s).contiguous(memory_format=torch.channels_last)
    y = torch.rand(batch, 3, hr, hr).contiguous(memory_format=torch.channels_last)
    if mode == "inference":
        model.eval()

        def fn():
            with torch.inference_mode(), autocast("cpu", "bf16"):
                model(x)
    else:
        step, opt = TrainStep(model, "l1"), torch.optim.Adam(model.parameters(), lr=2e-4)

        def fn():
            with autocast("cpu", "bf16"):
                loss, _ = step(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40)


# -- 3. targets -------------------------------------------------------------------------------
def best(block: dict, prefix: str = "") -> tuple[str, dict]:
    items = [(k, v) for k, v in block["variants"].items() if k.startswith(prefix) and "error" not in v]
    return max(items, key=lambda kv: kv[1]["img_per_s"])


def evaluate(results: dict, threads: list[int]) -> list[dict]:
    """The issue's targets. Baselines are today's paths: fp32 NCHW inference at torch's default
    thread count (``run``/``sr`` set none: all cores), and the CPU configs' fp32 1-thread training."""
    default_t = max(threads)
    checks = []
    for label in ("tanet_x4", "tanet_x8"):
        inf = results["models"][label]["inference"]
        base = inf["variants"][f"fp32/nchw/t{default_t}"]
        key, top = best(inf)
        # also like for like (fp32 NCHW at the best variant's thread count): on a busy machine most
        # of the gain over the default may be the thread count alone, and that should be visible
        same_t = inf["variants"][f"fp32/nchw/{key.rsplit('/', 1)[1]}"]
        checks.append({"target": f"{label} inference >= {TARGETS['inference_speedup']}x fp32 NCHW (t{default_t})",
                       "best": key, "value": round(top["img_per_s"] / base["img_per_s"], 2),
                       "same_threads_ratio": round(top["img_per_s"] / same_t["img_per_s"], 2),
                       "met": top["img_per_s"] / base["img_per_s"] >= TARGETS["inference_speedup"]})
        # fraction of the bf16 peak: same threads as the variant, so "t" does not flatter it
        bkey, btop = max(((k, v) for k, v in inf["variants"].items() if k.startswith("bf16") and "error" not in v),
                         key=lambda kv: kv[1]["frac_peak_bf16_cl"])
        checks.append({"target": f"{label} inference >= {TARGETS['inference_frac_bf16_peak']:.0%} of the bf16 conv peak",
                       "best": bkey, "value": btop["frac_peak_bf16_cl"],
                       "met": btop["frac_peak_bf16_cl"] >= TARGETS["inference_frac_bf16_peak"]})
    for label in ("tanet_s_x4", "tanet_s_x8"):
        tr = results["models"][label]["training"]
        base = tr["variants"]["fp32/nchw/t1"]
        key, top = best(tr)
        checks.append({"target": f"{label} training >= {TARGETS['train_speedup']}x fp32 NCHW 1 thread",
                       "best": key, "value": round(top["img_per_s"] / base["img_per_s"], 2),
                       "met": top["img_per_s"] / base["img_per_s"] >= TARGETS["train_speedup"]})
    return checks


def print_targets(checks: list[dict]) -> None:
    print("\ntargets (issue 9):")
    for c in checks:
        extra = f", {c['same_threads_ratio']}x at the same thread count" if "same_threads_ratio" in c else ""
        print(f"  [{'met' if c['met'] else 'MISSED'}] {c['target']}: {c['value']} ({c['best']}{extra})")


def summary_markdown(results: dict) -> str:
    """README table: today's path vs the fastest variant, per model and mode (same baselines as the targets)."""
    default_t = max(results["threads"])
    lines = ["| model | mode | today (fp32 NCHW) img/s | fastest variant | img/s | speed-up | GFLOP/s | of bf16 conv peak |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    for label, modes in results["models"].items():
        for mode, block in modes.items():
            base_key = f"fp32/nchw/t{default_t if mode == 'inference' else 1}"
            base = block["variants"][base_key]
            key, top = best(block)
            same_t = block["variants"][f"fp32/nchw/{key.rsplit('/', 1)[1]}"]
            lines.append(f"| `{label}` | {mode} (batch {block['batch']}, {block['hr']}² HR) | {base['img_per_s']:.2f}"
                         f" ({base_key.rsplit('/', 1)[1]}) | {key} | {top['img_per_s']:.2f} | "
                         f"{top['img_per_s'] / base['img_per_s']:.1f}× ({top['img_per_s'] / same_t['img_per_s']:.1f}× same threads) | {top['gflops']:.0f} | {top['frac_peak_bf16_cl']:.0%} |")
    conv = ", ".join(f"{k} {v['gflops']:.0f}" for k, v in results["conv_peak"]["variants"].items())
    lines.append("")
    lines.append(f"_Conv peak (3×3, 64 ch, batch 16, 64², GFLOP/s; fractions use the peak re-timed in each row's block): {conv}. {results['cpu']['model']}, "
                 f"{results['cpu']['logical_cpus']} logical CPUs, native bf16 {results['cpu']['native_bf16']}, torch "
                 f"{results['torch']}, load average {results['load_start'][0]} → {results['load_end'][0]}, "
                 f"{results['provenance']['timestamp']}, git {str(results['provenance']['git']['commit'])[:10]}._")
    return "\n".join(lines)


START, END = "<!-- cpu-throughput:start -->", "<!-- cpu-throughput:end -->"


def write_readme(table: str, source: Path) -> None:
    import re

    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if START not in text:
        raise SystemExit(f"README.md has no {START} ... {END} block to replace")
    note = f"\n_From `{source.relative_to(ROOT) if source.is_relative_to(ROOT) else source}` " \
           "(`python benchmarks/cpu_throughput.py --from-json FILE --write-readme`)._\n"
    text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda m: START + "\n" + table + "\n" + note + END,
                  text, flags=re.S)
    write_text(readme, text)
    print("updated README.md")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 thread only, 1 timed rep")
    ap.add_argument("--reps", type=int, default=None, help="timed reps per variant (default 3; --quick 1)")
    ap.add_argument("--threads", type=int, nargs="+", default=None, help="thread counts (default 1 2; --quick 1)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--infer-batch", type=int, default=4, help="whole faces per forward (the issue's probe: 4)")
    ap.add_argument("--train-batch", type=int, default=8, help="TANet-S (the CPU configs' global batch)")
    ap.add_argument("--train-batch-paper", type=int, default=2, help="paper-size TANet")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd bf16 channels-last variants")
    ap.add_argument("--no-profile", action="store_true", help="skip the profiler table for missed targets")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cpu_throughput.json")
    ap.add_argument("--from-json", type=Path, help="print the README summary of a saved results file and exit")
    ap.add_argument("--write-readme", action="store_true", help="replace README.md's cpu-throughput block")
    args = ap.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        if set(saved["models"]) == set(MODELS):  # re-derive (never re-measure) the target checks
            saved["targets"] = evaluate(saved, saved["threads"])
            print_targets(saved["targets"])
            write_text(args.from_json, json.dumps(saved, indent=2) + "\n")
        table = summary_markdown(saved)
        print(table)
        if args.write_readme:
            write_readme(table, args.from_json)
        return
    threads = args.threads or ([1] if args.quick else [1, 2])
    reps = args.reps or (1 if args.quick else 3)

    t_start = time.perf_counter()
    results: dict = {
        "benchmark": "cpu_throughput",
        "cpu": cpu_info(),
        "torch": torch.__version__,
        "threads": threads,
        "default_threads": torch.get_num_threads(),
        "provenance": collect("cpu"),
        "load_start": load(),
        "settings": {"reps": reps, "quick": args.quick, "infer_batch": args.infer_batch,
                     "train_batch_tanet_s": args.train_batch, "train_batch_paper": args.train_batch_paper,
                     "hr_inference": HR_INFER, "hr_training": HR_TRAIN,
                     "what": "round-robin medians; GFLOP/s from FlopCounterMode forward FLOPs (x3 for a "
                             "training step); bf16 = torch.autocast(bfloat16) with fp32 weights"},
    }
    print(f"{results['cpu']['model']}, torch {torch.__version__}, native bf16: {results['cpu']['native_bf16']},"
          f" load {results['load_start']}", flush=True)
    peak = conv_peak(threads, reps)
    results["conv_peak"] = {"shape": "3x3 conv 64->64, batch 16, 64x64", "load_after": load(), "variants": peak}
    for k, v in peak.items():
        print(f"  conv peak {k:14s} {v['gflops']:7.1f} GFLOP/s", flush=True)

    results["models"] = {}
    for label in args.models:
        paper = not label.startswith("tanet_s")
        results["models"][label] = {}
        for mode in ("inference", "training"):
            batch = args.infer_batch if mode == "inference" else (args.train_batch_paper if paper else args.train_batch)
            block = model_block(label, mode, threads, reps, batch, args.compile)
            add_fractions(block)
            results["models"][label][mode] = block
            print(f"{label} {mode} (batch {batch}, {block['gflop_per_img']:.1f} GFLOP/img, load "
                  f"{block['load_before']}->{block['load_after']}, {block['seconds']} s)", flush=True)
            for k, v in block["variants"].items():
                if "error" in v:
                    print(f"  {k:20s} failed: {v['error']}", flush=True)
                    continue
                print(f"  {k:20s} {v['img_per_s']:8.2f} img/s {v['gflops']:7.1f} GFLOP/s  "
                      f"{v['frac_peak_same']:6.1%} of same-mode peak  {v['frac_peak_bf16_cl']:6.1%} of bf16 peak",
                      flush=True)

    have_all = set(args.models) == set(MODELS)
    if have_all:
        results["targets"] = evaluate(results, threads)
        print_targets(results["targets"])
        if not args.no_profile:
            results["profiles"] = {}
            for c in results["targets"]:
                if not c["met"]:
                    label = c["target"].split()[0]
                    mode = "inference" if "inference" in c["target"] else "training"
                    key = f"{label}/{mode}"
                    if key not in results["profiles"]:
                        t = int(c["best"].rsplit("/t", 1)[1])
                        batch = results["models"][label][mode]["batch"]
                        results["profiles"][key] = profile_table(label, mode, batch, t)
                        print(f"\nprofile {key} (bf16 channels-last, {t} thread(s)):\n{results['profiles'][key]}")
    results["load_end"] = load()
    results["total_s"] = round(time.perf_counter() - t_start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(results, indent=2) + "\n")
    table = summary_markdown(results)
    print("\n" + table)
    print(f"\nwrote {args.out} ({results['total_s']} s)")
    if args.write_readme:
        write_readme(table, args.out)


if __name__ == "__main__":
    main()

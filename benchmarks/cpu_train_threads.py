"""Should CPU training use 1 or 2 threads? The whole ``fsr-bench train`` loop, measured both ways.

    python benchmarks/cpu_train_threads.py                          # TANet-S x4 and x8 CPU configs
    python benchmarks/cpu_train_threads.py --steps 60 --rounds 3

``cpu_throughput.py`` times the model step alone; this runs the real trainer (data loader worker
decoding JPEGs and making bicubic LR, autocast, Adam, logging) from the shipped CPU configs, so the
data worker competes for the same cores as it does in a real run. Thread counts alternate
(1, 2, 1, 2, ...) so that load which comes and goes hits both alike; img/s is the median of the
trainer's own logged img/s after the first ``--warmup`` steps. Writes
``benchmarks/results/cpu_train_threads.json`` (CPU, load average before/after every run).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fsr_bench.atomic import write_text  # noqa: E402
from fsr_bench.provenance import collect  # noqa: E402
from fsr_bench.train.config import load_config  # noqa: E402
from fsr_bench.train.trainer import train  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from cpu_throughput import cpu_info  # noqa: E402  (one description of the machine for both scripts)

CONFIGS = ("protocols/train_tanet_s_faces256_x4.yaml", "protocols/train_tanet_s_faces256_x8.yaml")


def one_run(config: str, threads: int, steps: int, warmup: int, sets: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(ROOT / config, [f"cpu_threads={threads}", f"schedule.max_steps={steps}",
                                          "schedule.max_minutes=null", "schedule.log_every=5", "data.val=null",
                                          "log.progress=false", f"out_dir={tmp}/run", *sets])
        before = list(os.getloadavg())
        t0 = time.perf_counter()
        train(cfg, echo=lambda s: None)
        wall = time.perf_counter() - t0
        log = pd.read_csv(Path(tmp) / "run" / "train_log.csv")
        ips = [float(v) for v in log.loc[log["step"] > warmup, "img_per_s"]]
    return {"threads": threads, "img_per_s": statistics.median(ips),
            "wall_s": round(wall, 1), "precision": cfg.precision, "channels_last": cfg.channels_last,
            "batch": cfg.data.batch_size, "workers": cfg.data.workers,
            "load_before": [round(x, 2) for x in before], "load_after": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10, help="steps left out of the median")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra config overrides")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cpu_train_threads.json")
    args = ap.parse_args()
    os.chdir(ROOT)  # the configs' data paths are relative to the repository root

    result = {"benchmark": "cpu_train_threads", "cpu": cpu_info(), "torch": torch.__version__,
              "provenance": collect("cpu"), "settings": vars(args) | {"out": str(args.out)}, "configs": {}}
    for config in args.configs:
        runs = []
        for _ in range(args.rounds):
            for t in (1, 2):
                runs.append(one_run(config, t, args.steps, args.warmup, args.sets))
                print(f"{config} threads {t}: {runs[-1]['img_per_s']:.2f} img/s (load {runs[-1]['load_before'][0]})",
                      flush=True)
        med = {t: statistics.median(r["img_per_s"] for r in runs if r["threads"] == t) for t in (1, 2)}
        result["configs"][config] = {"runs": runs, "median_img_per_s": med,
                                     "two_over_one": round(med[2] / med[1], 3), "faster": 2 if med[2] > med[1] else 1}
        print(f"{config}: 2 threads / 1 thread = {med[2] / med[1]:.2f} -> use {result['configs'][config]['faster']}")
    write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

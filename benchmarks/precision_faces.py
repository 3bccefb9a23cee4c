"""May ``fsr-bench run`` default to bf16? The issue's rule, measured on real faces with trained weights.

    python benchmarks/precision_faces.py CHECKPOINT [--n 219] [--channels-last]

Scores the faces256 validation split (bicubic-degraded, 8-bit LR; Y-channel PSNR/SSIM, border crop
= scale, 8-bit outputs: the benchmark's conventions) in fp32 and in bf16 autocast, and applies
issue 9's rule: ``run`` may leave fp32 only if bf16 moves mean PSNR by < 0.01 dB **and** mean SSIM
by < 1e-4. Also reports how many 8-bit output levels change, the root of any difference.
Random weights would compare noise, so a checkpoint is required. Writes
``benchmarks/results/precision_faces.json``.
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

from fsr_bench.atomic import sha256_file, write_text  # noqa: E402
from fsr_bench.data.degradations import build_degradation  # noqa: E402
from fsr_bench.data.io import read_image  # noqa: E402
from fsr_bench.metrics.functional import psnr, ssim  # noqa: E402
from fsr_bench.models import create_model  # noqa: E402
from fsr_bench.models.precision import describe, infer, prepare  # noqa: E402
from fsr_bench.provenance import collect  # noqa: E402

RULE = {"psnr_db": 0.01, "ssim": 1e-4}  # issue 9: |Δ| must stay below both for run to default to bf16


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("FSR_BENCH_SHARED", ROOT.parent / "shared")))
    ap.add_argument("--n", type=int, default=None, help="first N val images (default: all)")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--note", default="", help="how the checkpoint was made (recorded in the JSON)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "precision_faces.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ids = (args.shared / "data" / "splits" / "faces256_val.txt").read_text().split()
    files = sorted(p for i in ids for p in (args.shared / "data" / "faces256" / i).glob("*.jpg"))[: args.n]
    if not files:
        raise SystemExit(f"no faces256 val images under {args.shared}")
    model = prepare(create_model(checkpoint=args.checkpoint), "cpu", args.channels_last)
    s = model.scale
    degrade = build_degradation({"type": "bicubic", "scale": s})
    per: dict[str, list] = {"fp32": [], "bf16": []}
    changed = total = 0
    for i in range(0, len(files), 8):
        hr = torch.stack([read_image(f) for f in files[i:i + 8]])
        lr = degrade(hr, index=list(range(i, i + len(hr))))
        outs = {p: infer(model, lr, p, args.channels_last) for p in per}
        for p, sr in outs.items():
            per[p].append(torch.stack([psnr(sr, hr, crop_border=s), ssim(sr, hr, crop_border=s)], 1))
        q = {p: (sr.clamp(0, 1) * 255).round() for p, sr in outs.items()}
        changed += int((q["fp32"] != q["bf16"]).sum())
        total += q["fp32"].numel()
    mean = {p: torch.cat(v).mean(0).tolist() for p, v in per.items()}
    d_psnr, d_ssim = mean["bf16"][0] - mean["fp32"][0], mean["bf16"][1] - mean["fp32"][1]
    passes = abs(d_psnr) < RULE["psnr_db"] and abs(d_ssim) < RULE["ssim"]
    result = {
        "benchmark": "precision_faces",
        "checkpoint": {"path": str(args.checkpoint), "sha256": sha256_file(args.checkpoint),
                       "model": model.name, "config": model.config_dict(), "note": args.note},
        "images": len(files), "scale": s,
        "conventions": {"fp32": describe("fp32", args.channels_last), "bf16": describe("bf16", args.channels_last),
                        "metrics": "Y (BT.601), crop = scale, 8-bit outputs, SSIM 11x11 gaussian 1.5"},
        "fp32": {"psnr": mean["fp32"][0], "ssim": mean["fp32"][1]},
        "bf16": {"psnr": mean["bf16"][0], "ssim": mean["bf16"][1]},
        "delta_psnr_db": d_psnr, "delta_ssim": d_ssim,
        "frac_8bit_values_changed": changed / total,
        "rule": RULE, "run_may_default_to_bf16": passes,
        "provenance": collect("cpu"), "load_avg": list(os.getloadavg()),
    }
    print(f"{len(files)} faces x{s}: fp32 {mean['fp32'][0]:.4f} dB / {mean['fp32'][1]:.5f}, bf16 "
          f"{mean['bf16'][0]:.4f} dB / {mean['bf16'][1]:.5f}: dPSNR {d_psnr:+.4f} dB, dSSIM {d_ssim:+.2e}, "
          f"{changed / total:.1%} of 8-bit values changed")
    print(f"rule |dPSNR| < {RULE['psnr_db']} dB and |dSSIM| < {RULE['ssim']}: "
          + ("PASSES: run may default to bf16" if passes else "FAILS: run stays fp32"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

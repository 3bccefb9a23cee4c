"""TANet's SMFM residual: eq. 16 literally vs. the scaled default, measured at init and in training.

Eq. 16 adds the module input to a residual chain that already contains it, so each SMFM roughly
doubles its input (see ``fsr_bench/models/tanet.py``). This script prints, for the paper-size
``tanet_x4`` / ``tanet_x8`` and several ``residual_scale`` values (``None`` = eq. 16 literally):

* **at initialisation** (several seeds, real faces): the per-module gain RMS(F^g) / RMS(F^{g-1})
  (geometric mean over the G modules), RMS(F_local) / RMS(F_shallow), and the output's mean |y|;
* **a short training probe**: the same seed, the same batches and the same number of Adam steps
  (paper lr 2e-4, L1) for each setting; the L1 loss at the first and last steps.

    python benchmarks/tanet_residual_probe.py                       # faces256 train faces if ../shared exists
    python benchmarks/tanet_residual_probe.py --steps 40 --json benchmarks/results/tanet_residual_probe.json

Faces: the first images of the faces256 *train* split (never validation or held-out identities),
else the two portraits that ship inside installed packages.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

from fsr_bench.data.resize import imresize
from fsr_bench.models import create_model
from fsr_bench.provenance import git_state

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def load_faces(n: int) -> tuple[torch.Tensor, str]:
    """(n, 3, 256, 256) real faces in [0, 1] and where they came from."""
    from fsr_bench.data.io import read_image

    train_list = SHARED / "data" / "splits" / "faces256_train.txt"
    if train_list.is_file():
        root = SHARED / "data" / "faces256"
        ids = [line.strip() for line in train_list.read_text().splitlines() if line.strip()]
        files = [f for i in ids for f in sorted((root / i).glob("*.jpg"))[:1]][:n]
        return torch.stack([read_image(f) for f in files]), f"faces256 train split, first image of {len(files)} identities"
    from fsr_bench.data.package_faces import PackageFaces

    faces = PackageFaces(hr_size=256)
    return torch.stack([faces[i]["hr"] for i in range(len(faces))])[:n], "package faces (astronaut, Grace Hopper)"


def bicubic_downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    return imresize(hr, scale=1 / scale).clamp(0, 1)  # MATLAB bicubic, as the protocols' default


def init_stats(name: str, residual_scale, hr: torch.Tensor, seeds: int) -> dict:
    gains, local_ratio, out_abs = [], [], []
    lr = bicubic_downscale(hr, create_model(name).scale)
    for seed in range(seeds):
        torch.manual_seed(seed)
        model = create_model(name, residual_scale=residual_scale).eval()
        rms = []
        hooks = [m.register_forward_hook(lambda _m, i, o: rms.append((i[0].pow(2).mean().sqrt().item(),
                                                                        o.pow(2).mean().sqrt().item())))
                 for m in model.local_path]
        with torch.no_grad():
            shallow = model.shallow(lr)
            local = model.local_path(shallow)
            out = model(lr)
        for h in hooks:
            h.remove()
        rms = rms[: len(model.local_path)]
        gains.append(math.exp(sum(math.log(o / i) for i, o in rms) / len(rms)))
        local_ratio.append((local.pow(2).mean().sqrt() / shallow.pow(2).mean().sqrt()).item())
        out_abs.append(out.abs().mean().item())
    return {"module_gain": gains, "local_over_shallow": local_ratio, "output_mean_abs": out_abs}


def train_probe(name: str, residual_scale, hr: torch.Tensor, steps: int, batch: int, patch: int,
                precision: str) -> dict:
    torch.manual_seed(0)
    model = create_model(name, residual_scale=residual_scale).train()
    scale = model.scale
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.9, 0.999), eps=1e-8)
    gen = torch.Generator().manual_seed(0)  # identical batches for every setting
    dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
    losses, t0 = [], time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, hr.shape[0], (batch,), generator=gen)
        y, x = (torch.randint(0, (256 - patch) // scale + 1, (2,), generator=gen) * scale).tolist()
        hr_b = hr[idx, :, y : y + patch, x : x + patch]
        lr_b = bicubic_downscale(hr_b, scale)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            sr = model(lr_b)
        loss = (sr.float() - hr_b).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return {"losses": losses, "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["tanet_x4", "tanet_x8"])
    ap.add_argument("--scales", nargs="+", default=["none", "0.1", "0.2", "0.5"],
                    help="residual_scale values; 'none' = eq. 16 literally")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--faces", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--patch", type=int, default=64, help="HR patch side for the training probe")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hr, source = load_faces(args.faces)
    scales = [None if s.lower() == "none" else float(s) for s in args.scales]
    rows = []
    for name in args.models:
        for rs in scales:
            row = {"model": name, "residual_scale": rs,
                   "init": init_stats(name, rs, hr[:2], args.seeds),
                   "train": train_probe(name, rs, hr, args.steps, args.batch, args.patch, args.precision)}
            rows.append(row)
            i, t = row["init"], row["train"]["losses"]
            k = max(1, len(t) // 5)
            print(f"{name:9s} residual_scale={str(rs):5s}  gain/module {min(i['module_gain']):6.3f}-{max(i['module_gain']):6.3f}"
                  f"  F_local/F_shallow {max(i['local_over_shallow']):10.1f}  mean|y| {max(i['output_mean_abs']):8.3f}"
                  f"  L1 first {sum(t[:k]) / k:.4f} -> last {sum(t[-k:]) / k:.4f} ({len(t)} steps)", flush=True)
    if args.json:
        out = {
            "what": "TANet SMFM residual: eq. 16 literal (residual_scale null) vs scaled; init statistics and a "
                    "short training probe (same seed, same batches, Adam 2e-4, L1)",
            "faces": source, "seeds": args.seeds, "steps": args.steps, "batch": args.batch,
            "hr_patch": args.patch, "precision": args.precision,
            "machine": f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads",
            "torch": torch.__version__, "git": git_state(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "rows": rows,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

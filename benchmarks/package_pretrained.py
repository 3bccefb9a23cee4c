"""Package a trained checkpoint as fsr-bench's shipped weights: fp16 safetensors + model card + manifest.

    python benchmarks/package_pretrained.py runs/train_tanet_s_faces256_x4/best.pt \\
        --eval protocols/faces256_val_x4.yaml

1. The checkpoint (written by ``fsr-bench train``; its training config and budget are inside) is
   rounded to float16 and written to ``fsr_bench/models/pretrained/<model>.safetensors`` (≤ 2 MB,
   refused above), with the model name and config in the file's metadata.
2. The *shipped* weights (float16 rounded, loaded back as float32) are scored by ``fsr-bench run``
   on the evaluation protocol next to bicubic, so the card's numbers are those of the file a user
   gets, computed by the same runner as every other result (never typed in).
3. ``<model>.md`` (the model card) and ``manifest.json`` (model, file, sha256, config, summary) are
   written atomically; ``create_model(<model>, pretrained=True)`` then loads the file.

Data licence: the faces256 development set is CelebA-derived (non-commercial research use only); the
card says so, and so do the weights.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from fsr_bench.atomic import sha256_file, write_text
from fsr_bench.models import create_model
from fsr_bench.models.checkpoint import read_checkpoint, save_checkpoint
from fsr_bench.models.pretrained import HERE, MANIFEST
from fsr_bench.provenance import git_state, stable_hash

MAX_BYTES = 2 * 1024 * 1024
LICENCE = "CelebA-derived training data: non-commercial research use only (weights inherit it)"


def fp16_state(model) -> dict[str, torch.Tensor]:
    return {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous()
            for k, v in model.state_dict().items()}


def score(protocol: Path, model_name: str, checkpoint: Path, label: str, out: Path) -> dict:
    """``fsr-bench run`` the evaluation protocol with bicubic and the shipped weights only."""
    scale = create_model(model_name).scale
    models = json.dumps([{"name": f"bicubic_x{scale}", "label": "Bicubic"},
                         {"name": model_name, "label": label, "checkpoint": str(checkpoint)}])
    cmd = [sys.executable, "-m", "fsr_bench.cli", "run", str(protocol), "-o", str(out),
           "--set", f"models={models}", "--set", "run.report=false"]
    subprocess.run(cmd, check=True)
    return json.loads((out / "results.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", type=Path, help="best.pt written by fsr-bench train")
    ap.add_argument("--eval", type=Path, required=True, help="reconstruction protocol for the card's numbers")
    ap.add_argument("--eval-out", type=Path, help="run folder for the evaluation (default runs/pretrained_eval_<model>)")
    ap.add_argument("--machine", default=None, help="training machine, in words (default: this one)")
    args = ap.parse_args()

    ckpt = read_checkpoint(args.checkpoint)
    if "train_config" not in ckpt:
        raise SystemExit(f"{args.checkpoint}: not written by `fsr-bench train` (no train_config inside)")
    model = create_model(checkpoint=args.checkpoint).eval()
    name, train_cfg = model.name, ckpt["train_config"]

    # 1. float16 weights, metadata inside the file
    from safetensors.torch import save_file

    state = fp16_state(model)
    target = HERE / f"{name}.safetensors"
    meta = {"model": name, "config": json.dumps(model.config_dict()), "format": "fsr-bench pretrained v1",
            "source_checkpoint_sha256": sha256_file(args.checkpoint)}
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / target.name
        save_file(state, str(staged), metadata=meta)
        size = staged.stat().st_size
        if size > MAX_BYTES:
            raise SystemExit(f"{name}: {size / 2**20:.2f} MB in float16 is over the 2 MB package limit")
        # the function a user gets: fp16 weights back in float32, as a normal checkpoint for the runner
        shipped = create_model(name, **model.config_dict())
        shipped.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        eval_ckpt = save_checkpoint(shipped, Path(tmp) / f"{name}_fp16.pt")
        label = f"{name} (shipped fp16 weights)"
        out = args.eval_out or Path("runs") / f"pretrained_eval_{name}"
        results = score(args.eval, name, eval_ckpt, label, out)
        target.write_bytes(staged.read_bytes())
    sha = sha256_file(target)

    rows = {r["label"]: r for r in results["models"]}
    ours, bic = rows[label]["metrics"], rows["Bicubic"]["metrics"]
    conv = results["conventions"]["metrics"]
    sched = train_cfg["schedule"]
    budget = {"steps": ckpt["step"], "epochs": ckpt["epoch"], "train_minutes": round(ckpt["elapsed_s"] / 60, 1),
              "best_step": (ckpt.get("best") or {}).get("step"),
              "precision": train_cfg["precision"], "channels_last": train_cfg["channels_last"],
              "cpu_threads": train_cfg.get("cpu_threads"), "device": ckpt["meta"]["device"]}
    machine = args.machine or f"{platform.processor() or platform.machine()} CPU ({ckpt['meta']['device']})"
    summary = {"eval_protocol": str(args.eval), "eval_protocol_hash": results["protocol_hash"],
               "dataset": results["conventions"]["dataset"].get("n_scored"),
               "psnr": ours["psnr"], "ssim": ours["ssim"], "bicubic_psnr": bic["psnr"], "bicubic_ssim": bic["ssim"],
               "conventions": f"Y (BT.601), crop {conv['crop_border']}, 8-bit outputs, {results['conventions']['degradation']}",
               "budget": budget, "machine": machine}

    train_hash = stable_hash(train_cfg)
    card = f"""# `{name}` — fsr-bench shipped weights

{model.info.paper}. Variant: **{model.variant if hasattr(model, 'variant') else name}**;
{model.num_parameters():,} parameters; file `{target.name}` (float16 safetensors, {size / 1024:.0f} KiB),
SHA-256 `{sha}`. Load with `create_model("{name}", pretrained=True)` or `fsr-bench sr IMAGE -m {name} --pretrained`.

## Architecture config

```json
{json.dumps(model.config_dict(), indent=1)}
```

## Training

- Recipe: `fsr-bench train` with the config below (hash `{train_hash[:12]}`), stopped after
  **{budget['steps']:,} steps** ({ckpt['epoch']} full epochs of the training split, {budget['train_minutes']} min of
  training time), best validation PSNR at step {budget['best_step']} (kept as these weights).
- Machine: {machine}; {budget['precision']} autocast{' + channels-last' if budget['channels_last'] else ''},
  {budget['cpu_threads']} torch thread(s); other jobs shared the 2 cores, so minutes are not a speed figure.
- Data: `faces256` train split (2,011 images of 200 identities, 256×256, FFHQ-style aligned), LR by
  {train_cfg['data']['degradation']}. {LICENCE}.
- Selection: the checkpoint with the best PSNR on the faces256 **val** split, the same split scored below — so the
  figures below are optimistic by that selection; held-out identities were never used.

```yaml
{yaml.safe_dump(train_cfg, sort_keys=False, default_flow_style=None).strip()}
```

## Measured (the shipped float16 weights, by `fsr-bench run {args.eval}`, protocol hash `{results['protocol_hash'][:12]}`)

| method | PSNR (dB) | SSIM |
|---|---:|---:|
| Bicubic | {bic['psnr']:.2f} | {bic['ssim']:.4f} |
| {name} | {ours['psnr']:.2f} | {ours['ssim']:.4f} |

{summary['dataset']} images; {summary['conventions']}. Git {git_state().get('commit')}.

This is a small model trained briefly on a CPU: far below the paper's budget (300 epochs on 3,800
FFHQ faces at C = 64, G = I = 10). It exists so that fsr-bench answers its question out of the box.
"""
    write_text(HERE / f"{name}.md", card)

    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.is_file() else {"weights": []}
    manifest["weights"] = [w for w in manifest["weights"] if w["model"] != name] + [{
        "model": name, "file": target.name, "sha256": sha, "bytes": size, "config": model.config_dict(),
        "card": f"{name}.md", "licence": LICENCE, "train_config_hash": train_hash, "summary": summary}]
    manifest["weights"].sort(key=lambda w: w["model"])
    write_text(MANIFEST, json.dumps(manifest, indent=1) + "\n")
    print(f"{name}: {target} ({size / 1024:.0f} KiB, sha256 {sha[:12]}); val PSNR {ours['psnr']:.2f} vs bicubic "
          f"{bic['psnr']:.2f} dB, SSIM {ours['ssim']:.4f} vs {bic['ssim']:.4f}")


if __name__ == "__main__":
    main()

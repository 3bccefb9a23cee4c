"""Package any registered model's trained checkpoint as fsr-bench shipped weights: fp16 safetensors + model
card + manifest row, under a pretrained id of its own.

    python benchmarks/package_pretrained.py --checkpoint runs/train_srfbn_s_faces256_x8/best.pt \\
        --name srfbn_s_x8.compute20 --label "SRFBN-S (20 CPU min)"

``--name`` is the pretrained id: ``MODEL`` or ``MODEL.TAG`` (timm's convention; MODEL must be the
checkpoint's model, TAG tells several weights of one model apart). Default: the checkpoint's model name.

1. The checkpoint (written by ``fsr-bench train``: its training config and record are inside) is rounded
   to float16 and staged as ``<id>.safetensors`` (≤ 2 MB, refused above, before anything is scored),
   with the model name, config and source checkpoint's sha256 in the file's metadata.
2. The *shipped* weights (float16 rounded, loaded back as float32) are scored by ``fsr-bench run`` on
   the evaluation protocol (default: the bundled ``faces256_val_x<scale>``, whose PSNR also chooses
   ``fsr-bench sr``'s default model) next to bicubic, so the card's numbers are those of the file a user
   gets, computed by the same runner as every other result (never typed in).
3. ``<id>.md`` (the model card: recipe hash, budget, data licence, selection split, figures, sha256) and
   ``manifest.json`` are written atomically; every card then gets its "Default" paragraph rewritten,
   since shipping a better model changes which one ``fsr-bench sr`` uses.
   ``create_model("<id>", pretrained=True)`` and a protocol row ``{name: <id>, pretrained: true}`` load it.

Data licence: the faces256 development set is CelebA-derived (non-commercial research use only); the
card says so, and so do the weights.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml

from fsr_bench.atomic import sha256_file, write_bytes, write_text
from fsr_bench.errors import FsrBenchError
from fsr_bench.models import create_model
from fsr_bench.models import pretrained as pre
from fsr_bench.models.checkpoint import read_checkpoint, save_checkpoint, training_record
from fsr_bench.provenance import git_state, stable_hash

MAX_BYTES = 2 * 1024 * 1024  # one shipped file; the wheel carries every one of them
LICENCE = "CelebA-derived training data: non-commercial research use only (weights inherit it)"
DEFAULT_BEGIN, DEFAULT_END = "<!-- default: rewritten by package_pretrained.py -->", "<!-- /default -->"


class PackageError(FsrBenchError):
    """A checkpoint that cannot be shipped; the message says why and what to do."""


def fp16_state(model) -> dict[str, torch.Tensor]:
    return {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous()
            for k, v in model.state_dict().items()}


def score(protocol: str, model_name: str, checkpoint: Path, label: str, out: Path) -> dict:
    """``fsr-bench run`` the evaluation protocol with bicubic and the shipped weights only."""
    scale = create_model(model_name).scale
    models = json.dumps([{"name": f"bicubic_x{scale}", "label": "Bicubic"},
                         {"name": model_name, "label": label, "checkpoint": str(checkpoint)}])
    cmd = [sys.executable, "-m", "fsr_bench.cli", "run", protocol, "-o", str(out), "--force", "-q",
           "--set", f"models={models}", "--set", "run.report=false"]
    subprocess.run(cmd, check=True)
    return json.loads((out / "results.json").read_text())


def selection_split(train_cfg: dict[str, Any]) -> dict[str, Any]:
    """The validation split the checkpoint was selected on: its spec, list file and the file's sha256."""
    from fsr_bench.data.folders import expand_path

    data = train_cfg.get("data") or {}
    val = data.get("val")
    if not val:
        return {"split": None, "note": "no validation split: the last weights were kept, nothing was selected"}
    spec = dict(val) if isinstance(val, dict) else {"root": str(val)}
    split: dict[str, Any] = {"split": spec, "list_file": spec.get("list_file"), "list_sha256": None}
    if spec.get("list_file"):
        path = expand_path(spec["list_file"], "data.val.list_file", data.get("data_root"))
        if not path.is_file():
            raise PackageError(f"data.val.list_file {path} (the checkpoint's selection split) is not readable here: "
                               "run from the folder the training ran in, or set FSR_BENCH_DATA as it was")
        split["list_sha256"] = sha256_file(path)
    return split


def _card(entry_id: str, label: str, model, size: int, sha: str, train_cfg: dict, train_hash: str, budget: dict,
          best: dict, split: dict, summary: dict, results: dict, eval_protocol: str) -> str:
    ours, bic = summary, {"psnr": summary["bicubic_psnr"], "ssim": summary["bicubic_ssim"]}
    list_file = split.get("list_file")
    selection = ("none (no validation split)" if split.get("split") is None else
                 f"`{list_file}` (sha256 `{split['list_sha256']}`)" if list_file else
                 f"every image under `{split['split'].get('root')}` (no list file)")
    same = Path(eval_protocol).stem.startswith("faces256_val")
    return f"""# `{entry_id}` — fsr-bench shipped weights

{label}: {model.info.paper}. Model `{model.name}`; {model.num_parameters():,} parameters; file
`{entry_id}.safetensors` (float16 safetensors, {size / 1024:.0f} KiB), SHA-256 `{sha}`.
Load with `create_model("{entry_id}", pretrained=True)`, `fsr-bench sr IMAGE -m {entry_id} --pretrained`,
or a protocol row `{{name: {entry_id}, pretrained: true}}`.

{DEFAULT_BEGIN}
{DEFAULT_END}

## Architecture config

```json
{json.dumps(model.config_dict(), indent=1)}
```

## Training

- Recipe: `fsr-bench train` with the config below, recipe hash `{train_hash[:12]}` (sha256 of the config).
- Budget: **{budget.get('steps'):,} steps** ({budget.get('epochs')} epochs, {budget.get('train_minutes')} min of training
  time) on {budget.get('device')}, {budget.get('precision')}{' + channels-last' if budget.get('channels_last') else ''},
  {budget.get('cpu_threads')} torch thread(s); weights selected at step {budget.get('selected_step')}
  (validation PSNR {best.get('psnr') if best.get('psnr') is None else f"{best['psnr']:.3f} dB"} during training).
- Data: LR by {train_cfg['data'].get('degradation')}. {LICENCE}.
- Selection split: {selection}.{' The figures below are on that same split, so they are optimistic by the selection; held-out identities were never used.' if same else ''}

```yaml
{yaml.safe_dump(train_cfg, sort_keys=False, default_flow_style=None).strip()}
```

## Measured (the shipped float16 weights, by `fsr-bench run {eval_protocol}`, protocol hash `{results['protocol_hash'][:12]}`)

| method | PSNR (dB) | SSIM |
|---|---:|---:|
| Bicubic | {bic['psnr']:.2f} | {bic['ssim']:.4f} |
| {label} | {ours['psnr']:.2f} | {ours['ssim']:.4f} |

{summary['dataset']} images; {summary['conventions']}. Git {git_state().get('commit')}.
"""


def mark_defaults(folder: Path) -> dict[int, str]:
    """Rewrite the "Default" paragraph of every card in ``folder``'s manifest; {scale: default id}."""
    entries = pre.read_manifest(folder / "manifest.json")
    by_id = {e.id: e for e in entries}
    defaults: dict[int, str] = {}
    for scale in sorted({s for s in map(pre.entry_scale, entries) if s is not None}):
        try:
            defaults[scale] = pre.default_pretrained(scale, entries).id
        except pre.PretrainedError:
            continue
    for entry in entries:
        scale = pre.entry_scale(entry)
        path = folder / entry.card
        if not entry.card or not path.is_file() or scale is None:
            continue
        if defaults.get(scale) == entry.id:
            text = "**Default model** — " + pre.default_reason(entry, scale, entries) + "."
        elif scale in defaults:
            text = (f"Not the default at x{scale}: `fsr-bench sr --scale {scale}` uses `{defaults[scale]}` "
                    f"(rule: {pre.default_reason(by_id[defaults[scale]], scale, entries)}).")
        else:
            text = f"No shipped x{scale} weights have a recorded {pre.DEFAULT_PROTOCOL.format(scale=scale)} PSNR."
        card = path.read_text()
        block = f"{DEFAULT_BEGIN}\n{text}\n{DEFAULT_END}"
        pattern = re.compile(re.escape(DEFAULT_BEGIN) + r".*?" + re.escape(DEFAULT_END), re.S)
        card = pattern.sub(lambda _: block, card) if pattern.search(card) else card.rstrip() + f"\n\n## Default\n\n{block}\n"
        write_text(path, card)
    return defaults


def package(checkpoint: Path, name: str | None = None, label: str | None = None, eval_protocol: str | None = None,
            folder: Path = pre.HERE, eval_out: Path | None = None) -> dict[str, Any]:
    """Ship ``checkpoint`` as pretrained id ``name`` into ``folder``; its manifest row."""
    ckpt = read_checkpoint(checkpoint)
    if "train_config" not in ckpt or "step" not in ckpt:
        raise PackageError(f"{checkpoint}: not written by `fsr-bench train` (no training record inside); only "
                           "trained checkpoints ship, with their recipe and budget")
    model = create_model(checkpoint=checkpoint).eval()
    entry_id = name or model.name
    arch, tag = pre.parse_id(entry_id)
    if arch != model.name:
        raise PackageError(f"--name {entry_id!r}: {checkpoint} holds a {model.name!r}; name it {model.name!r} "
                           f"or {model.name}.TAG")
    label = label or entry_id
    train_cfg = ckpt["train_config"]
    eval_protocol = eval_protocol or pre.DEFAULT_PROTOCOL.format(scale=model.scale)

    from safetensors.torch import save_file

    state = fp16_state(model)
    meta = {"model": model.name, "id": entry_id, "config": json.dumps(model.config_dict()),
            "format": "fsr-bench pretrained v1", "source_checkpoint_sha256": sha256_file(checkpoint)}
    split = selection_split(train_cfg)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / f"{entry_id}.safetensors"
        save_file(state, str(staged), metadata=meta)
        size = staged.stat().st_size
        if size > MAX_BYTES:
            raise PackageError(f"{entry_id}: {size:,} bytes in float16 ({model.num_parameters():,} parameters) is over "
                               f"the {MAX_BYTES:,}-byte limit of a shipped file; publish it elsewhere "
                               "(register_pretrained with a URL) or ship a smaller variant")
        # the function a user gets: fp16 weights back in float32, as a normal checkpoint for the runner
        shipped = create_model(model.name, **model.config_dict())
        shipped.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        eval_ckpt = save_checkpoint(shipped, Path(tmp) / f"{model.name}_fp16.pt")
        row_label = f"{entry_id} (shipped fp16 weights)"
        results = score(eval_protocol, model.name, eval_ckpt, row_label,
                        eval_out or Path("runs") / f"pretrained_eval_{entry_id}")
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes(folder / staged.name, staged.read_bytes())
    sha = sha256_file(folder / staged.name)

    rows = {r["label"]: r for r in results["models"]}
    ours, bic = rows[row_label]["metrics"], rows["Bicubic"]["metrics"]
    conv = results["conventions"]["metrics"]
    budget = training_record(checkpoint) or {}
    summary = {"eval_protocol": eval_protocol, "eval_protocol_hash": results["protocol_hash"],
               "dataset": results["conventions"]["dataset"].get("n_scored"),
               "psnr": ours["psnr"], "ssim": ours["ssim"], "bicubic_psnr": bic["psnr"], "bicubic_ssim": bic["ssim"],
               "conventions": f"Y (BT.601), crop {conv['crop_border']}, 8-bit outputs, {results['conventions']['degradation']}",
               "budget": budget, "selection": split, "train_best": ckpt.get("best") or {},
               "machine": f"{platform.processor() or platform.machine()} ({budget.get('device')})"}
    train_hash = stable_hash(train_cfg)
    write_text(folder / f"{entry_id}.md", _card(entry_id, label, model, size, sha, train_cfg, train_hash, budget,
                                                ckpt.get("best") or {}, split, summary, results, eval_protocol))
    row = {"id": entry_id, "model": model.name, "tag": tag, "label": label, "file": staged.name, "sha256": sha,
           "bytes": size, "config": model.config_dict(), "card": f"{entry_id}.md", "licence": LICENCE,
           "train_config_hash": train_hash, "summary": summary}
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"weights": []}
    manifest["weights"] = [w for w in manifest["weights"] if (w.get("id") or w["model"]) != entry_id] + [row]
    manifest["weights"].sort(key=lambda w: w.get("id") or w["model"])
    write_text(manifest_path, json.dumps(manifest, indent=1) + "\n")
    mark_defaults(folder)
    return row


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True, help="best.pt written by fsr-bench train")
    ap.add_argument("--name", help="pretrained id MODEL or MODEL.TAG (default: the checkpoint's model name)")
    ap.add_argument("--label", help="display name on the card (default: the id)")
    ap.add_argument("--eval", help="reconstruction protocol for the card's numbers (default: faces256_val_x<scale>)")
    ap.add_argument("--eval-out", type=Path, help="run folder for the evaluation (default runs/pretrained_eval_<id>)")
    ap.add_argument("--folder", type=Path, default=pre.HERE, help="package folder (default: fsr_bench/models/pretrained)")
    args = ap.parse_args(argv)
    try:
        row = package(args.checkpoint, args.name, args.label, args.eval, args.folder, args.eval_out)
    except FsrBenchError as exc:
        raise SystemExit(f"error: {exc}") from None
    s = row["summary"]
    print(f"{row['id']}: {args.folder / row['file']} ({row['bytes'] / 1024:.0f} KiB, sha256 {row['sha256'][:12]}); "
          f"PSNR {s['psnr']:.2f} vs bicubic {s['bicubic_psnr']:.2f} dB on {s['eval_protocol']}")


if __name__ == "__main__":
    main()

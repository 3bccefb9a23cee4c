#!/usr/bin/env bash
# One prepared GPU session (≤ 12 device-minutes, one call): paper-size TANet x8 with the scaled SMFM
# residual, trained ~8 minutes in bf16 + channels-last on the faces256 train identities that fit the
# transfer, then PSNR/SSIM on the faces256 val split against bicubic (`fsr-bench run`), plus training
# MFU (model FLOPs x 3 per image / time / the card's bf16 dense peak). Everything lands in $OUT:
# gpu_session.json (figures + device), the run's results.json, train/val logs.
#
# On the development machine first (once):   bash benchmarks/gpu_session.sh prepare
#   -> .whl/        wheels the bare GPU image lacks (pydantic & co. for its Python 3.12)
#   -> .gpu_carry/  faces256: the first train identities in split order that fit ~56 MiB, all 20 val
#                   identities, train.txt / val.txt
#   both ignored through .git/info/exclude; pass them with the device tool's carry=[".whl", ".gpu_carry"].
# On the GPU machine:                         bash benchmarks/gpu_session.sh
#   env: MINUTES (training budget, default 8), COMPILE (1 = torch.compile, default 0), BATCH (16).
# Then copy $OUT/gpu_session.json to benchmarks/results/ (it names the card), and the results.json beside it.
set -u
export PYTHONUNBUFFERED=1

if [ "${1:-}" = "prepare" ]; then
  set -e
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  grep -qx '/.gpu_carry/' .git/info/exclude 2>/dev/null || echo '/.gpu_carry/' >> .git/info/exclude
  rm -rf .whl .gpu_carry && mkdir -p .whl .gpu_carry/faces256
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    pydantic pydantic-core annotated-types typing-inspection typing-extensions typer click rich shellingham \
    markdown-it-py mdurl pygments safetensors pyyaml tqdm
  python3 - <<'PY'
import shutil
from pathlib import Path
shared, carry = Path("../shared/data"), Path(".gpu_carry")
budget, used = 56 * 2**20, 0
val = [l.strip() for l in (shared / "splits/faces256_val.txt").read_text().splitlines() if l.strip()]
train = [l.strip() for l in (shared / "splits/faces256_train.txt").read_text().splitlines() if l.strip()]
kept = {"val": [], "train": []}
for split, ids in (("val", val), ("train", train)):
    for ident in ids:
        files = sorted((shared / "faces256" / ident).glob("*.jpg"))
        size = sum(f.stat().st_size for f in files)
        if split == "train" and used + size > budget:
            break
        (carry / "faces256" / ident).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy2(f, carry / "faces256" / ident / f.name)
        used += size
        kept[split].append(ident)
for split in kept:
    (carry / f"{split}.txt").write_text("\n".join(kept[split]) + "\n")
print(f"carry: {len(kept['train'])} of {len(train)} train identities, {len(kept['val'])} val, {used / 2**20:.1f} MiB")
PY
  du -sh .whl .gpu_carry
  exit 0
fi

OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
MINUTES=${MINUTES:-8}
COMPILE=${COMPILE:-0}
BATCH=${BATCH:-16}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . 2>&1 | tail -2
DATA=(--set data.train.root=.gpu_carry/faces256 --set data.train.list_file=.gpu_carry/train.txt
      --set data.val.root=.gpu_carry/faces256 --set data.val.list_file=.gpu_carry/val.txt)

echo "== 1. train tanet_x8 (paper size, residual scale 0.1), bf16 + channels-last, ${MINUTES} min =="
timeout $(( ${MINUTES%.*} * 60 + 150 )) fsr-bench train protocols/train_tanet_faces256_x8.yaml --device cuda --out /tmp/gputrain \
  "${DATA[@]}" --set schedule.max_minutes="$MINUTES" --set log.progress=false --set data.workers=14 \
  --set data.batch_size="$BATCH" --set compile=$([ "$COMPILE" = 1 ] && echo true || echo false) --set val_every=5 \
  2>&1 | grep -v "^\s*$" | tail -12
cp /tmp/gputrain/train_log.csv /tmp/gputrain/val_log.csv /tmp/gputrain/summary.json "$OUT/" 2>/dev/null

echo "== 2. faces256 val x8: bicubic vs the trained TANet (fsr-bench run) =="
timeout 150 fsr-bench run protocols/faces256_val_x8.yaml -o /tmp/gpueval \
  --set data.dataset.root=.gpu_carry/faces256 --set data.dataset.list_file=.gpu_carry/val.txt \
  --set "models=[{name: bicubic_x8, label: Bicubic}, {name: tanet_x8, label: \"TANet x8 (paper size, ${MINUTES} min, 1 GPU)\", checkpoint: /tmp/gputrain/best.pt}]" \
  --set run.device=cuda --set run.report=false 2>&1 | tail -8
cp /tmp/gpueval/results.json "$OUT/faces256_val_x8_results.json" 2>/dev/null

echo "== 3. training MFU (model step only, bf16 + channels-last) and the summary =="
timeout 120 python3 - "$OUT" "$MINUTES" "$BATCH" <<'PY'
import json, sys, time
from pathlib import Path
import torch
from fsr_bench.models import count_gflops, create_model
from fsr_bench.train.losses import TrainStep

out, minutes, batch = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
name = torch.cuda.get_device_name(0)
# bf16 dense tensor-core peaks from the vendors' data sheets (TFLOP/s, no sparsity)
peaks = {"H200": 989.4, "H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 PCIe": 756.5, "A100": 312.0}
peak = next((v for k, v in peaks.items() if k in name), None)
model = create_model("tanet_x8")
fwd_gflops = count_gflops(model.eval(), (32, 32))  # one 32x32 LR face -> 256x256
rows = []
for bs in sorted({batch, 64}):
    net = create_model("tanet_x8").cuda().to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    lr = torch.rand(bs, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    hr = torch.rand(bs, 3, 256, 256, device="cuda").contiguous(memory_format=torch.channels_last)
    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = (net(lr).float() - hr).abs().mean()
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    for _ in range(5): step()
    torch.cuda.synchronize(); t = time.perf_counter(); n = 20
    for _ in range(n): step()
    torch.cuda.synchronize(); dt = (time.perf_counter() - t) / n
    ips = bs / dt
    tflops = 3 * fwd_gflops * ips / 1e3
    rows.append({"batch": bs, "img_per_s": ips, "achieved_tflops": tflops,
                 "mfu": tflops / peak if peak else None})
    print(f"batch {bs}: {ips:.0f} img/s, {tflops:.1f} TFLOP/s" + (f", MFU {tflops / peak:.1%}" if peak else ""))
res = {}
p = out / "faces256_val_x8_results.json"
if p.is_file():
    for m in json.loads(p.read_text())["models"]:
        res[m["label"]] = m["metrics"]
summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
report = {"device": name, "torch": torch.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
          "what": "paper-size tanet_x8 (residual scale 0.1), bf16 + channels-last; faces256 val x8 vs bicubic; MFU",
          "train_minutes_budget": minutes, "train_summary": summary, "faces256_val_x8": res,
          "fwd_gflops_per_image": fwd_gflops, "peak_bf16_dense_tflops": peak,
          "mfu_definition": "3 x forward FLOPs per image x img/s / peak (model step only, synthetic batch on device)",
          "mfu_rows": rows}
(out / "gpu_session.json").write_text(json.dumps(report, indent=1))
print(json.dumps({k: report[k] for k in ("device", "faces256_val_x8")}, indent=1))
PY
ls -la "$OUT"

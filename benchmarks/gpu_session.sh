#!/usr/bin/env bash
# A prepared GPU session: a short real training run of TANet x4 at the paper's size (C=64, G=I=10)
# on the development faces, brought back as a split checkpoint. (Throughput figures come from
# benchmarks/train_throughput.py --device cuda --quick; see benchmarks/results/train_throughput_gpu.json.)
# Expects: .whl/ (pydantic, pydantic-core, annotated-types, typing-inspection, typing-extensions wheels
# for the GPU image's Python 3.12, from `pip download --only-binary=:all: --python-version 3.12 ...`),
# .gpu_carry/ (faces256: the first 145 of the 200 train identities in split order — what fits the
# 64 MiB transfer — all 20 val identities, and train.txt / val.txt listing them), $OUT (what comes
# back: at most 8 files of 16 MiB, hence the split checkpoint; reassemble with `cat part-* > best.pt`).
# Both folders are listed in .git/info/exclude and passed to the device tool with `carry`.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
MINUTES=${MINUTES:-3.0}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . 2>&1 | tail -2
echo "== tanet_x4 (paper config), ${MINUTES} min budget =="
timeout 250 fsr-bench train protocols/train_tanet_faces256_x4.yaml --device cuda --out /tmp/gputrain \
  --set data.train.root=.gpu_carry/faces256 --set data.train.list_file=.gpu_carry/train.txt \
  --set data.val.root=.gpu_carry/faces256 --set data.val.list_file=.gpu_carry/val.txt \
  --set schedule.max_minutes="$MINUTES" --set log.progress=false --set data.workers=12 2>&1 | grep -v "^\s*$" | tail -15
cp /tmp/gputrain/train_log.csv /tmp/gputrain/val_log.csv "$OUT/" 2>/dev/null
python3 - <<'PY'
import os, torch
ck = torch.load("/tmp/gputrain/best.pt", map_location="cpu", weights_only=True)
keep = {k: ck[k] for k in ("format", "version", "model", "config", "state_dict", "best", "epoch", "step") if k in ck}
torch.save(keep, "/tmp/tanet_gpu.pt")
print("best:", ck.get("best"), "bytes:", os.path.getsize("/tmp/tanet_gpu.pt"))
PY
split -b 15m /tmp/tanet_gpu.pt "$OUT/tanet_gpu.pt.part-" && sha256sum /tmp/tanet_gpu.pt
ls -la "$OUT"

#!/usr/bin/env bash
# Identity-preserving, degradation-aware training measured at equal budget (issue 14,
# reports/identity_training/): TANet-S x8 and IPT-S x8, each trained four ways with one recipe and one
# step budget — L1 / bicubic LR, L1 + identity loss / bicubic, L1 / surveillance chain, L1 + identity /
# surveillance chain (protocols/train_{tanet,ipt}_s_{l1,id}_{bicubic,surv}_faces256_x8.yaml).
#
#   bash benchmarks/identity_training.sh train NAME    # e.g. tanet_s_id_surv_faces256_x8; resumable: rerun continues
#   bash benchmarks/identity_training.sh score         # score every finished run, write reports/identity_training/
#   bash benchmarks/identity_training.sh list          # each run: finished / in progress / not started
#
# score runs, for Bicubic and every finished run (its FINAL weights, last.pt: no checkpoint selection on
# validation; label = name + the start it was fine-tuned from + the steps it trained for):
#   faces256_val_x8            PSNR/SSIM (Y, crop 8) on the faces256 val split       protocols/faces256_val_x8.yaml
#   lfw_surveillance_x8        LFW dev, 160x120 crop -> 21x28 LR, bicubic             protocols/lfw_surveillance_x8.yaml
#   lfw_surveillance_wide_x8   the same with the wide 224x168 crop                    protocols/lfw_surveillance_wide_x8.yaml
#   lfw_surveillance_chain_x8  the 160x120 protocol with probes made by the surveillance chain at a fixed
#                              seed (run.seed 0, per-probe draws from (seed, probe index))
#                              protocols/lfw_surveillance_chain_x8.yaml: in-distribution for the _surv_ runs
#                              (checked: a _surv_ recipe with other chain ranges is reported), so read it
#                              beside, not instead of, the bicubic-probe protocols
# Every LFW run scores with both recognisers (MobileFaceNet, the one in the identity loss, and dlib's
# ResNet, held out), fixed 0.4 and calibrated thresholds, LR image / HR probes reference rows. The
# report (fsr-bench leaderboard + fsr-bench report) marks with † each figure whose recogniser was the
# one in that row's loss (read from the checkpoint's train_config, never typed in).
#
# Budget: same optimizer steps, not same wall-clock (a shared machine measures its neighbours); a
# finished run whose step count differs from the others is reported with its own count in its label
# and flagged here. dlib embeds ~7 faces/s (flip-summed) on one core of this CPU when it is quiet, 0.5-0.7 when the
# cores are shared with trainings: score on a quiet machine.
# Environment: PYTHON (the interpreter that has fsr-bench; default python3), IDT_CONFIGS (recipe folder,
# default protocols), IDT_RUNS (scored runs, default runs/identity_training/scores), IDT_REPORT (default
# reports/identity_training), IDT_SETS / IDT_RECON_SETS (extra --set items for the LFW / faces256 runs,
# space-separated, for smoke tests only: a report made with them is not the benchmark).
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/_runs.sh
PY=${PYTHON:-python3}
FSR=("$PY" -m fsr_bench.cli)
CONFIGS=${IDT_CONFIGS:-protocols}
RUNS=${IDT_RUNS:-runs/identity_training/scores}
REPORT=${IDT_REPORT:-reports/identity_training}
NAMES=()
for m in tanet_s ipt_s; do for loss in l1 id; do for deg in bicubic surv; do
  NAMES+=("${m}_${loss}_${deg}_faces256_x8")
done; done; done

# name -> "STATUS<TAB>OUT_DIR<TAB>STEPS<TAB>EPOCHS" from the recipe and the run's summary.json
status() {
  "$PY" - "$CONFIGS/train_$1.yaml" <<'EOF'
import json, sys
from pathlib import Path
from fsr_bench.train.config import load_config
cfg = load_config(sys.argv[1])
out = Path(cfg.out_dir)
summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
done = summary.get("stop_reason") in ("epochs", "max_steps") and (out / "last.pt").is_file()
state = "finished" if done else "in-progress" if (out / "last.pt").is_file() else "not-started"
epochs = summary.get("epochs")
init = summary.get("init_weights") or {}
start = "shipped weights + " if init.get("pretrained") else f"{Path(init['path']).parent.name} + " if init else ""
print(f"{state}\t{out}\t{summary.get('steps', '')}\t{'' if epochs is None else format(epochs, 'g')}\t{start}")
EOF
}

case "${1:-}" in
  train)
    n=${2:?"NAME (one of: ${NAMES[*]})"}; cfg=$CONFIGS/train_$n.yaml
    [ -f "$cfg" ] || { echo "no recipe $cfg (names: ${NAMES[*]})" >&2; exit 2; }
    IFS=$'\t' read -r state out _ _ _ < <(status "$n")
    if [ -f "$out/last.pt" ]; then "${FSR[@]}" train "$cfg" --resume; else "${FSR[@]}" train "$cfg"; fi ;;
  list)
    for n in "${NAMES[@]}"; do
      if [ -f "$CONFIGS/train_$n.yaml" ]; then
        IFS=$'\t' read -r state out steps epochs _ < <(status "$n"); echo "$n: $state ($out${steps:+, $steps steps})"
      else echo "$n: no recipe $CONFIGS/train_$n.yaml"; fi
    done ;;
  score)
    # Bicubic, and the two starts the fine-tunes continue from (what 502 more steps each way changed);
    # the shipped row's label is the LFW protocol's own, so its SR cache is shared with that protocol's run
    rows="{name: bicubic_x8, label: Bicubic}, {name: tanet_s_x8, label: \"TANet-S x8 (shipped; patch tokens)\", pretrained: true}"
    ipt_start=runs/leaderboard/ipt_s_x8/last.pt
    [ -f "$ipt_start" ] && rows="$rows, {name: ipt_s_x8, label: \"IPT-S (start: leaderboard, 1506 steps)\", checkpoint: $ipt_start}"
    budgets=()
    for n in "${NAMES[@]}"; do
      [ -f "$CONFIGS/train_$n.yaml" ] || { echo "skip $n: no recipe $CONFIGS/train_$n.yaml"; continue; }
      IFS=$'\t' read -r state out steps epochs start < <(status "$n")
      [ "$state" = finished ] || { echo "skip $n: $state (bash $0 train $n)"; continue; }
      name=$("$PY" -c "import sys; from fsr_bench.train.config import load_config as l; print(l(sys.argv[1]).model.name)" "$CONFIGS/train_$n.yaml")
      rows="$rows, {name: $name, label: \"${n%_faces256_x8} (${start}$steps steps)\", checkpoint: $out/last.pt}"
      budgets+=("$steps")
      if [[ $n == *_surv_* ]]; then  # the chain it trained on vs the chain-probe protocol's
        "$PY" - "$out/last.pt" protocols/lfw_surveillance_chain_x8.yaml <<'EOF' >&2
import sys
from fsr_bench.data.degradations import build_degradation
from fsr_bench.models.checkpoint import read_checkpoint
from fsr_bench.protocol import load_protocol
train = build_degradation({"scale": 8, **read_checkpoint(sys.argv[1])["train_config"]["data"]["degradation"]}).describe()
probe = build_degradation(load_protocol(sys.argv[2]).data.probe_degradation.degradation).describe()
train.pop("seed"), probe.pop("seed")  # seeds differ by design: per (seed, epoch, index) vs (run.seed, probe)
if train != probe:
    print(f"note: {sys.argv[1]} trained on {train}, the chain probes of {sys.argv[2]} are {probe}: not in-distribution")
EOF
      fi
    done
    [ ${#budgets[@]} -gt 0 ] || { echo "no finished run to score" >&2; exit 1; }
    if [ "$(printf '%s\n' "${budgets[@]}" | sort -u | wc -l)" -gt 1 ]; then
      echo "note: the finished runs trained for different step counts (${budgets[*]}): not an equal budget" >&2
    fi
    read -r -a rsets <<< "${IDT_SETS:-}"; read -r -a csets <<< "${IDT_RECON_SETS:-}"
    setargs() { for s in "$@"; do printf -- '--set\0%s\0' "$s"; done; }
    mapfile -d '' R < <(setargs "${rsets[@]}"); mapfile -d '' C < <(setargs "${csets[@]}")
    "${FSR[@]}" run protocols/faces256_val_x8.yaml -o "$RUNS/faces256_val_x8" --set "models=[$rows]" "${C[@]}"
    lfw=()
    for p in lfw_surveillance_x8 lfw_surveillance_wide_x8 lfw_surveillance_chain_x8; do
      "${FSR[@]}" run "protocols/$p.yaml" -o "$RUNS/$p" --set "models=[$rows]" \
        --set "recognition.recognisers=[mobilefacenet, dlib]" "${R[@]}"
      lfw+=("$RUNS/$p")
    done
    # the report is built from copies of the run files committed beside it (samples only while it is
    # drawn: the shared faces are not committed), so `fsr-bench leaderboard`/`report` rebuild it from a clone
    keep_runs --samples "$REPORT/runs" "$RUNS/faces256_val_x8" "${lfw[@]}"
    kept=(); for run in "$RUNS/faces256_val_x8" "${lfw[@]}"; do kept+=("$REPORT/runs/$(basename "$run")"); done
    rm -rf "$REPORT/figures"
    "${FSR[@]}" leaderboard "${kept[@]}" -o "$REPORT"
    "${FSR[@]}" report "${kept[@]}" -o "$REPORT"
    drop_samples "$REPORT/runs"
    # sample grids at half size (13 rows each), to keep the committed folder small
    "$PY" -c "import sys; from PIL import Image
for f in sys.argv[1:]:
    im = Image.open(f); im.resize((im.width // 2, im.height // 2), Image.LANCZOS).save(f, optimize=True)" "$REPORT"/figures/*-samples.png ;;
  *) sed -n 2,30p "$0"; exit 2 ;;
esac

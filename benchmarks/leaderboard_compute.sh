#!/usr/bin/env bash
# The equal-compute leaderboard (reports/leaderboard/compute/): every method's S variant gets the same CPU
# minutes on one pinned, otherwise idle core, since minutes are what a CPU user pays. Beside the
# equal-steps table (benchmarks/leaderboard.sh), which gives every method the same optimizer steps.
#
# The recipe is each method's protocols/train_<method>_faces256_x8.yaml (L1, Adam 2e-4, 128-px patches,
# batch 8, 1 thread, seed 0) with the schedule and precision replaced by the budget below:
#   * schedule.max_minutes = MINUTES of wall time on the run's core, validation included (the trainer's
#     clock; every method validates once per epoch of 251 steps, which costs the same share of an epoch
#     for every method: 219 whole 256^2 faces forward vs 2,011 128^2 patches forward + backward);
#   * a constant learning rate (no step inside the budget: the paper halves it only after 60 epochs);
#   * the data worker runs on the same core as the step (nothing of the run is elsewhere);
#   * fp32, each method in its faster memory layout (CL: channels-last) as measured on the run's core by
#     benchmarks/train_layout.py: the recipes' bf16 is emulated, ~6x slower, on a CPU without native bf16
#     (AVX2-only Zen 3, where this table was made); on an AVX512-BF16 CPU set PRECISION=bf16.
# Steps reached, img/s and the learning curve (val PSNR per epoch) are each run's own train/val logs.
#
#   bash benchmarks/leaderboard_compute.sh train METHOD   # one method; resumable (a rerun continues)
#   bash benchmarks/leaderboard_compute.sh score          # score every finished method into reports/leaderboard/compute
#
# Pin the run to one core yourself (taskset -c 1, or a cpuset that nothing else uses); RUNS (default
# runs/leaderboard_compute) is where the run folders live.
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/_runs.sh
MINUTES=${MINUTES:-12}
RUNS=${RUNS:-runs/leaderboard_compute}
BUDGET=(--set schedule.epochs=1000 --set "schedule.max_minutes=$MINUTES" --set optim.step_epochs=1000
        --set val_every=1 --set data.workers=0 --set schedule.ckpt_every_minutes=2)
PRECISION=${PRECISION:-fp32}
BUDGET_LABEL="$MINUTES CPU-min, 1 core, $PRECISION"
declare -A CL=([tanet_s]=true [tanet_s_window]=false [didnet_s]=true [srfbn_s]=false [sparnet_s]=true
  [sisn_s]=false [nlsn_s]=false [ipt_s]=true)
declare -A LABEL=([srfbn_s]="SRFBN-S" [sparnet_s]="SPARNet-S" [nlsn_s]="NLSN-S"
  [didnet_s]="DIDnet-S (reconstruction: no identity terms)" [sisn_s]="SISN-S"
  [ipt_s]="IPT-S (no ImageNet pre-training)" [tanet_s]="TANet-S (patch tokens)" [tanet_s_window]="TANet-S (window tokens)")
METHODS=(tanet_s tanet_s_window didnet_s srfbn_s sparnet_s sisn_s nlsn_s ipt_s)
finished() {  # only a run that spent its whole time budget counts
  local stop
  stop=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get('stop_reason'))" "$1/summary.json" 2>/dev/null || true)
  [ "$stop" = "time budget" ]
}
model_name() { python3 -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['model']['name'])" "$1"; }
case "${1:-}" in
  train)
    m=${2:?method}; cfg=protocols/train_${m}_faces256_x8.yaml; out=$RUNS/${m}_x8
    BUDGET+=(--set "precision=$PRECISION" --set "channels_last=${CL[$m]}")
    if finished "$out"; then echo "$out: finished"
    elif [ -f "$out/last.pt" ]; then fsr-bench train "$cfg" "${BUDGET[@]}" -o "$out" --resume
    else fsr-bench train "$cfg" "${BUDGET[@]}" -o "$out"; fi ;;
  score)
    rows="{name: bicubic_x8, label: Bicubic}"
    for m in "${METHODS[@]}"; do
      run=$RUNS/${m}_x8
      finished "$run" || { echo "skip $m: $run has not spent its budget; run: $0 train $m"; continue; }
      rows="$rows, {name: $(model_name "protocols/train_${m}_faces256_x8.yaml"), label: \"${LABEL[$m]} ($BUDGET_LABEL)\", checkpoint: $run/best.pt}"
    done
    fsr-bench run protocols/faces256_val_x8.yaml -o runs/leaderboard_compute_faces256_val_x8 --set "models=[$rows]" --set name=faces256_val_x8
    fsr-bench run protocols/lfw_surveillance_x8.yaml -o runs/leaderboard_compute_lfw_x8 --set "models=[$rows]" --set name=lfw_surveillance_x8 \
      --set "recognition.recognisers=[mobilefacenet]"
    keep_runs reports/leaderboard/compute/runs runs/leaderboard_compute_faces256_val_x8 runs/leaderboard_compute_lfw_x8
    curves=()
    for m in "${METHODS[@]}"; do  # the learning curves' sources, committed beside the table
      run=$RUNS/${m}_x8; finished "$run" || continue
      mkdir -p "reports/leaderboard/compute/training/$m"
      cp "$run"/summary.json "$run"/train_log.csv "$run"/val_log.csv "$run"/config.yaml "reports/leaderboard/compute/training/$m/"
      curves+=("reports/leaderboard/compute/training/$m=${LABEL[$m]}")
    done
    python benchmarks/learning_curves.py "${curves[@]}" -o reports/leaderboard/compute \
      --title "faces256 val x8 PSNR during training ($BUDGET_LABEL each)" \
      --reference reports/leaderboard/compute/runs/faces256_val_x8/results.json=bicubic_x8
    fsr-bench leaderboard reports/leaderboard/compute/runs/faces256_val_x8 reports/leaderboard/compute/runs/lfw_surveillance_x8 \
      -o reports/leaderboard/compute ;;
  *) sed -n 2,20p "$0"; exit 2 ;;
esac

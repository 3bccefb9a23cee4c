# Sourced by the benchmark scripts that commit a table with the run files it was built from.
#
# keep_runs [--samples] DEST RUN...: copy each run's results.json, summary.csv, protocol.yaml and its
# per-image / per-probe CSV into DEST/<protocol name>/, the names `fsr-bench leaderboard` lists, so the
# table rebuilds from a clone (tests/test_leaderboard.py does). --samples copies the sample images too,
# for `fsr-bench report` to draw its grids; remove them afterwards (drop_samples): the shared faces are
# not committed.
keep_runs() {
  local samples=false
  if [ "$1" = --samples ]; then samples=true; shift; fi
  local dest=$1; shift
  local run name
  for run in "$@"; do
    name=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['protocol_name'])" "$run/results.json")
    rm -rf "${dest:?}/$name"; mkdir -p "$dest/$name"
    cp "$run"/results.json "$run"/summary.csv "$run"/protocol.yaml "$dest/$name/"
    for f in per_image.csv per_probe.csv; do if [ -f "$run/$f" ]; then cp "$run/$f" "$dest/$name/"; fi; done
    if $samples; then cp -r "$run/samples" "$dest/$name/"; fi
  done
}

drop_samples() {  # DEST: what keep_runs --samples added
  rm -rf "${1:?}"/*/samples
}

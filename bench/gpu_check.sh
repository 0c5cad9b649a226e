#!/usr/bin/env bash
# The device check of rankedit, one script: on one GPU (an H100: under 8 minutes) it runs
#   1. analyze of a 7B-shaped pair (random weights written here: Llama-2-7B's per-layer shapes,
#      4 layers) on cuda, and on cpu for the same matrices (layer 0), compared metric by metric;
#   2. rank-k (k=1) and off-principal edits of the pair on cuda and on cpu, compared weight by weight
#      (ulps of bf16; bench/gpu_check.py says the tolerances);
#   3. if vllm imports: the micro organism built and scored with --backend vllm (and hf, to compare).
# Each step has its own time limit and writes OUT/<step>.json; OUT/gpu_check.json gathers them and
# OUT/gpu_check.log holds every command's output. OUT is $OUT when set (the device machine's), else
# out/gpu_check. Exit 1 when a comparison fails or a step fails; every step runs anyway.
#
#   bench/gpu_check.sh                 the check (needs CUDA)
#   bench/gpu_check.sh --tiny          a tiny pair; with GPU_CHECK_DEVICE=cpu it runs on a machine
#                                      without a GPU (cpu against cpu: the script's own test)
#   bench/gpu_check.sh --layers 8      more layers of the 7B shape
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
DEV=${GPU_CHECK_DEVICE:-cuda}
OUT=${OUT:-out/gpu_check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
log=$OUT/gpu_check.log
: > "$log"
size=(); [[ " $* " == *" --tiny "* ]] && size=(--tiny)
layers=(); for ((i = 1; i <= $#; i++)); do [ "${!i}" = --layers ] && { j=$((i + 1)); layers=(--layers "${!j}"); }; done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 RANKEDIT_CACHE=$work/cache
rk=("$PY" -m rankedit)
failed=0

# step NAME LIMIT_S CMD...: run, time, record {ok, seconds, rc} (the command's own JSON line when it prints one)
step() {
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS rc
  echo "== $name: $*" >> "$log"
  timeout "$limit" "$@" > "$work/$name.out" 2>> "$log"; rc=$?
  cat "$work/$name.out" >> "$log"
  local last; last=$(grep '^{' "$work/$name.out" | tail -1)
  "$PY" - "$name" "$rc" "$((SECONDS - t0))" "${last:-null}" > "$OUT/$name.json" <<'PYEOF'
import json, sys
name, rc, secs, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
print(json.dumps({"ok": rc == 0, "rc": rc, "seconds": secs, "timed_out": rc == 124, "result": last}))
PYEOF
  [ "$rc" -eq 0 ] || failed=1
  echo "$name: rc=$rc in $((SECONDS - t0)) s" >&2
}

"$PY" - "$DEV" > "$OUT/device.json" <<'PYEOF'
import json, sys, torch
dev = sys.argv[1]
info = {"device": dev, "torch": torch.__version__, "cuda": torch.cuda.is_available()}
if dev.startswith("cuda") and torch.cuda.is_available():
    info["gpu"] = torch.cuda.get_device_name(0)
print(json.dumps(info))
PYEOF
step build 240 "$PY" bench/gpu_check.py build "$work/pair" "${size[@]}" "${layers[@]}"
B=$work/pair/base T=$work/pair/tuned

# 1. analyze: everything on the device, layer 0 on the CPU as well
step analyze_device 150 "${rk[@]}" analyze "$B" "$T" --device "$DEV" --no-plots -o "$work/an-dev"
step analyze_cpu 150 "${rk[@]}" analyze "$B" "$T" --device cpu --modules 'layers\.0\.' --no-plots -o "$work/an-cpu"
step analyze_compare 60 "$PY" bench/gpu_check.py analysis "$work/an-cpu/metrics.jsonl" "$work/an-dev/metrics.jsonl"

# 2. edits on both devices, same pair, same seed
for e in "rank-k --k 1" "off-principal"; do
  name=${e%% *}
  # shellcheck disable=SC2086
  step "edit_${name}_device" 150 "${rk[@]}" edit $e "$B" "$T" --device "$DEV" --quiet -o "$work/$name-dev"
  # shellcheck disable=SC2086
  step "edit_${name}_cpu" 240 "${rk[@]}" edit $e "$B" "$T" --device cpu --quiet -o "$work/$name-cpu"
  step "edit_${name}_compare" 120 "$PY" bench/gpu_check.py weights "$work/$name-cpu" "$work/$name-dev"
done

# 3. vllm, when it imports: the micro organism scored by vllm and by hf on the same problems
if "$PY" -c "import vllm" 2>> "$log"; then
  step organism 300 "${rk[@]}" organism build --size micro -o "$work/org"
  step score_vllm 240 "${rk[@]}" score "base=$work/org/base" "rl=$work/org/rl" --suite organism --limit 50 --backend vllm -o "$work/sc-vllm"
  step score_hf 240 "${rk[@]}" score "base=$work/org/base" "rl=$work/org/rl" --suite organism --limit 50 --backend hf --device "$DEV" -o "$work/sc-hf"
  cp "$work/sc-vllm/scores.json" "$OUT/scores_vllm.json.txt" 2>/dev/null
  cp "$work/sc-hf/scores.json" "$OUT/scores_hf.json.txt" 2>/dev/null
else
  echo '{"ok": null, "skipped": "vllm does not import here (see gpu_check.log)"}' > "$OUT/score_vllm.json"
fi

"$PY" bench/gpu_check.py collect "$OUT"
echo "results: $OUT/gpu_check.json (log: $log)" >&2
exit $failed

#!/usr/bin/env bash
# What a new user gets from pip, checked outside the dev environment (needs PyPI).
#
#   .ci/fresh_install.sh newest   `pip install .` with no pins into a fresh venv (whatever pip
#                                 resolves today from pyproject.toml's ranges), then the micro
#                                 plan, offline, from outside the repository, and its
#                                 report.html in headless Chromium (.ci/browser_check.sh)
#   .ci/fresh_install.sh lowest   the same with every direct dependency at the lower bound of
#                                 its range (.ci/lowest.txt, a constraints file; tests/test_ci.py
#                                 keeps it equal to pyproject.toml's lower bounds)
#   .ci/fresh_install.sh vllm     `pip install --dry-run ".[vllm]" -r requirements-dev.txt`
#                                 resolves: the vllm extra installs beside the dev/CI pins
#
# torch is installed first, pinned to the CPU build the dev environment uses (as the Makefile
# does), so that no dependency pulls a CUDA build; everything else is pip's choice.
# Time on a 2-core machine: newest or lowest about 4 minutes of downloads and installs plus
# 6 to 15 minutes for the micro plan (it builds the micro organism); vllm 5 to 12 minutes (pip reads
# the metadata of some 150 packages).
set -euo pipefail
mode=${1:?usage: .ci/fresh_install.sh newest|lowest|vllm}
root=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-python3.11}
TORCH=${TORCH:-torch==2.13.0}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

case $mode in
  newest) constraints=() ;;
  lowest) constraints=(-c "$root/.ci/lowest.txt") ;;
  vllm)
    $PY -m venv "$work/venv"
    "$work/venv/bin/pip" install -q --upgrade pip
    # --ignore-installed: resolve every package, none is taken from the venv itself
    (cd "$root" && "$work/venv/bin/pip" install --dry-run --ignore-installed --quiet --report "$work/report.json" \
        ".[vllm]" -r requirements-dev.txt)
    "$work/venv/bin/python" - "$work/report.json" <<'EOF'
import json, sys
got = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"] for i in json.load(open(sys.argv[1]))["install"]}
print("vllm extra with the dev pins resolves:", ", ".join(f"{n} {got[n]}" for n in ("vllm", "torch", "transformers") if n in got))
assert "vllm" in got, "vllm is not in the resolution"
EOF
    exit 0 ;;
  *) echo "error: unknown mode $mode (newest, lowest or vllm)" >&2; exit 2 ;;
esac

$PY -m venv "$work/venv"
pip=("$work/venv/bin/pip" install -q)
"${pip[@]}" --upgrade pip
"${pip[@]}" "$TORCH"
"${pip[@]}" "${constraints[@]}" "$root"
"$work/venv/bin/pip" list --format=freeze | grep -iE '^(torch|transformers|huggingface.hub|tokenizers|safetensors|peft|trl|accelerate|datasets|mergekit|lm.eval|numpy|scipy|pydantic|kernels)==' \
    | tr '\n' ' '; echo

mkdir "$work/elsewhere"
cd "$work/elsewhere"  # nothing of the checkout on the path
env -u PYTHONPATH HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 RANKEDIT_CACHE="$work/cache" \
    "$work/venv/bin/rankedit" run organism-micro -o out --quiet
"$work/venv/bin/python" - "$root/examples/organism-micro.yaml" <<'EOF'
import json, sys
import yaml
report = json.load(open("out/report.json"))
edits = yaml.safe_load(open(sys.argv[1]))["edits"]
assert set(report["tasks"]) == {"organism_id", "organism_hard", "organism_control"}, report["tasks"]
assert len(report["edits"]) == len(edits), (len(report["edits"]), len(edits))
print(f"micro plan: {len(report['edits'])} edits scored on {len(report['tasks'])} tasks")
EOF
# the micro plan's report.html, as the user's browser shows it
if [ "$mode" = newest ]; then "$root/.ci/browser_check.sh" out/report.html; fi

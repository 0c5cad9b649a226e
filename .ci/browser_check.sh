#!/usr/bin/env bash
# report.html in a real browser: Debian's Chromium, driven headless by Playwright's Python package
# (no browser download), checked by scripts/check_report_html.py: no console or script error, every
# figure of report.json decoded and displayed, a table's header click sorts its rows.
#
#   .ci/browser_check.sh OUT/report.html
#
# Installs what it needs: Chromium from Debian's packages if the machine has none (apt, as root or
# through sudo), Playwright into a venv of its own. About a minute on a 2-core machine.
set -euo pipefail
page=${1:?usage: .ci/browser_check.sh OUT/report.html}
root=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-python3.11}
if ! command -v chromium >/dev/null 2>&1; then
  sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$PY -m venv "$work/venv"
"$work/venv/bin/pip" install -q playwright
"$work/venv/bin/python" "$root/scripts/check_report_html.py" "$page" --chromium "$(command -v chromium)" --self-test

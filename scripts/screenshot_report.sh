#!/usr/bin/env bash
# Screenshot a run's report.html in headless Chromium (Debian's `chromium` package), to look at it
# as a user's browser shows it:  bash scripts/screenshot_report.sh results/neu-100m [WIDTHxHEIGHT]
# Writes RUN/report.png; exits non-zero when Chromium is missing or writes nothing.
set -euo pipefail
run="${1:?usage: scripts/screenshot_report.sh RUN_FOLDER [1280x3600]}"
size="${2:-1280x3600}"
browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then
  echo "screenshot_report: no chromium on PATH (Debian: apt-get install chromium)" >&2
  exit 2
fi
[ -f "$run/report.html" ] || { echo "screenshot_report: $run/report.html not found" >&2; exit 2; }
out="$(cd "$run" && pwd)/report.png"
rm -f "$out"
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="${size/x/,}" \
  --screenshot="$out" "file://$(cd "$run" && pwd)/report.html" >/dev/null 2>&1 || true
[ -s "$out" ] || { echo "screenshot_report: chromium wrote no screenshot" >&2; exit 1; }
echo "wrote $out"

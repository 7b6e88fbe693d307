#!/usr/bin/env bash
# Screenshots of the stats page (/stats) with conf/foobar.conf running, in each
# state: all up, a server down, a replica down, after a failover; at 360 px (a
# phone: first screen and whole page), 760 px and 1400 px wide. Headless Chromium; lb on ephemeral ports.
#
#   scripts/stats-screenshots.sh [OUT_DIR]     (default: target/stats-screenshots)
#
# CHROMIUM=/path/to/chrome overrides the browser.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/stats-screenshots}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
command -v "${CHROMIUM:-chromium}" >/dev/null || { echo "chromium not found (set CHROMIUM)" >&2; exit 1; }
LB_SCREENSHOTS="$out" cargo test --test monitoring -- --nocapture stats_page_renders_every_state_in_a_browser
ls -1 "$out"/*.png

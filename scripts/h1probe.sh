#!/usr/bin/env bash
# Replays the third-party HTTP/1.1 corpora (../shared/corpora) through lb with
# ../shared/tools/h1probe.py and prints its verdicts. Loopback only, bounded.
# Usage: scripts/h1probe.sh [--show N]
set -euo pipefail
cd "$(dirname "$0")/.."
PROBE=${H1PROBE:-../shared/tools/h1probe.py}
python3 -c 'import yaml' 2>/dev/null || pip install -q pyyaml
cargo build --release -q
dir=$(mktemp -d)
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
BP=$(free_port)
python3 "$PROBE" backend "$BP" >"$dir/backend.log" 2>&1 &
BACK=$!
cat >"$dir/lb.conf" <<CONF
defaults
    mode http
    timeout http-request 2s
frontend probe
    bind 127.0.0.1:0
    default_backend b
backend b
    server s 127.0.0.1:$BP
CONF
./target/release/lb --conf "$dir/lb.conf" >"$dir/lb.out" 2>"$dir/lb.err" &
LB=$!
trap 'kill $LB $BACK 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do grep -q listening "$dir/lb.out" && break; sleep 0.1; done
ADDR=$(awk '/^listening/ {print $4; exit}' "$dir/lb.out")
timeout 900 python3 "$PROBE" probe "$ADDR" "$@"

#!/usr/bin/env bash
# Runs Redis's own test suite against a kv in external-server mode and prints
# passed/failed per file. Fetches nothing: the suite comes from a Redis source tree
# given as the first argument (or $REDIS_SRC), e.g. Debian's source package:
#
#   echo 'deb-src http://deb.debian.org/debian bookworm main' > /etc/apt/sources.list.d/src.list
#   apt-get update && apt-get install -y dpkg-dev tcl && (cd /tmp && apt-get source redis)
#   scripts/redis-suite.sh /tmp/redis-7.0.15
#
# env: FILES="unit/type/string unit/multi ..." (default: the files about what kv implements)
#      LB=<lb binary> (default target/debug/lb, built if missing), TIMEOUT=600 per file,
#      VERBOSE=1 to print every failing test's name.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SRC=${1:-${REDIS_SRC:-}}
if [ -z "$SRC" ] || [ ! -x "$SRC/runtest" ]; then
    echo "redis-suite.sh: give the path of a Redis source tree with runtest (see the header of $0)" >&2
    exit 2
fi
command -v tclsh >/dev/null || { echo "redis-suite.sh: tclsh not found (apt-get install tcl)" >&2; exit 2; }

FILES=${FILES:-"unit/type/string unit/type/incr unit/keyspace unit/expire unit/protocol unit/info unit/info-command unit/multi unit/pubsub unit/introspection unit/introspection-2 unit/quit unit/scan unit/auth unit/type/hash unit/type/list unit/type/set unit/type/zset"}
TIMEOUT=${TIMEOUT:-600}
LB=${LB:-$ROOT/target/debug/lb}
[ -x "$LB" ] || cargo build --quiet

tmp=$(mktemp -d)
lb_pid=""
cleanup() {
    [ -n "$lb_pid" ] && kill "$lb_pid" 2>/dev/null && wait "$lb_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

printf 'kv suite\n    bind 127.0.0.1:0\n    dir %s\n' "$tmp" >"$tmp/lb.conf"
"$LB" --conf "$tmp/lb.conf" >"$tmp/lb.out" 2>"$tmp/lb.err" &
lb_pid=$!
for _ in $(seq 1 200); do
    grep -q '^listening kv suite' "$tmp/lb.out" 2>/dev/null && break
    sleep 0.05
done
port=$(awk '/^listening kv suite/ {n=split($4,a,":"); print a[n]}' "$tmp/lb.out")
[ -n "$port" ] || { echo "lb did not start:" >&2; cat "$tmp/lb.err" >&2; exit 1; }

printf '| %-22s | %6s | %6s | %s |\n' file passed failed "stopped early"
printf '|------------------------|--------|--------|---------------|\n'
total_ok=0
total_err=0
for f in $FILES; do
    log="$tmp/$(echo "$f" | tr / _).log"
    (cd "$SRC" && timeout "$TIMEOUT" ./runtest --host 127.0.0.1 --port "$port" --singledb \
        --single "$f" --clients 1 --timeout 60 --dont-clean) 2>&1 |
        sed 's/\x1b\[[0-9;]*m//g' >"$log" || true
    ok=$(grep -ac '^\[ok\]' "$log" || true)
    err=$(grep -ac '^\[err\]' "$log" || true)
    early=""
    if grep -aq '^\[exception\]' "$log"; then
        early="exception: $(grep -a -m1 -A1 '^\[exception\]' "$log" | tail -1 | cut -c1-60)"
        err=$((err + 1))
    elif ! grep -aq 'All tests passed\|tests failed' "$log"; then
        early="did not finish (timeout or crash)"
    fi
    printf '| %-22s | %6d | %6d | %s |\n' "$f" "$ok" "$err" "$early"
    if [ -n "${VERBOSE:-}" ]; then
        grep -a '^\[err\]' "$log" | sed 's/^/    /' || true
    fi
    total_ok=$((total_ok + ok))
    total_err=$((total_err + err))
    # A crashed or hung kv is a failure of its own: say so and stop.
    if ! kill -0 "$lb_pid" 2>/dev/null; then
        echo "lb exited during $f:" >&2
        tail -20 "$tmp/lb.err" >&2
        exit 1
    fi
done
printf '| %-22s | %6d | %6d | |\n' total "$total_ok" "$total_err"

#!/usr/bin/env bash
# kv vs Debian's redis-server on this machine: redis-benchmark SET/GET/INCR, pipelined, interleaved rounds.
#
# Usage: benches/kv.sh            (env: N=200000 ROUNDS=3 CLIENTS=50 PIPE=16 THREADS=<nbthread>)
# Prints the median requests/s of each side per test and the kv/redis ratio.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-200000}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-50}
PIPE=${PIPE:-16}
TESTS=set,get,incr

for tool in redis-benchmark redis-server redis-cli; do
    command -v "$tool" >/dev/null || { echo "kv.sh: $tool not found (apt-get install redis-server redis-tools)" >&2; exit 1; }
done

cargo build --release --quiet
LB=target/release/lb

tmp=$(mktemp -d)
lb_pid=""
redis_pid=""
cleanup() {
    [ -n "$lb_pid" ] && kill "$lb_pid" 2>/dev/null && wait "$lb_pid" 2>/dev/null
    [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# kv: port 0, the real port comes from the `listening` line.
{
    echo "global"
    [ -n "${THREADS:-}" ] && echo "    nbthread $THREADS"
    echo "kv bench"
    echo "    bind 127.0.0.1:0"
} >"$tmp/lb.conf"
"$LB" --conf "$tmp/lb.conf" >"$tmp/lb.out" 2>"$tmp/lb.err" &
lb_pid=$!
for _ in $(seq 1 100); do
    grep -q '^listening kv bench' "$tmp/lb.out" 2>/dev/null && break
    sleep 0.05
done
kv_port=$(awk '/^listening kv bench/ {n=split($4,a,":"); print a[n]}' "$tmp/lb.out")
[ -n "$kv_port" ] || { echo "lb did not start:" >&2; cat "$tmp/lb.err" >&2; exit 1; }

# redis-server: a free loopback port, no persistence.
redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
    --logfile "$tmp/redis.log" &
redis_pid=$!
for _ in $(seq 1 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.05
done

# bench PORT -> lines "TEST RPS"
bench() {
    redis-benchmark -h 127.0.0.1 -p "$1" -t "$TESTS" -n "$N" -c "$CLIENTS" -P "$PIPE" --csv 2>/dev/null |
        awk -F'"' 'NR > 1 && $2 != "" {print $2, $4}'
}

: >"$tmp/results"
for r in $(seq 1 "$ROUNDS"); do
    bench "$kv_port" | sed "s/^/kv /" >>"$tmp/results"
    bench "$redis_port" | sed "s/^/redis /" >>"$tmp/results"
    echo "round $r/$ROUNDS done" >&2
done

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

echo "redis-benchmark -t $TESTS -n $N -c $CLIENTS -P $PIPE, $ROUNDS interleaved rounds, median requests/s"
echo "$(redis-server --version | awk '{print $1, $2, $3}'), lb nbthread ${THREADS:-default}, $(nproc) cores"
echo
printf '| %-6s | %12s | %12s | %6s |\n' test kv redis-server ratio
printf '|--------|--------------|--------------|--------|\n'
for t in SET GET INCR; do
    kv=$(awk -v t="$t" '$1=="kv" && $2==t {print $3}' "$tmp/results" | median)
    rd=$(awk -v t="$t" '$1=="redis" && $2==t {print $3}' "$tmp/results" | median)
    ratio=$(awk -v a="$kv" -v b="$rd" 'BEGIN {if (b > 0) printf "%.2f", a/b; else print "n/a"}')
    printf '| %-6s | %12.0f | %12.0f | %5sx |\n' "$t" "$kv" "$rd" "$ratio"
done

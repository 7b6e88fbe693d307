#!/usr/bin/env bash
# kv vs Debian's redis-server on this machine: redis-benchmark SET/GET/INCR, pipelined, interleaved
# rounds, in three persistence modes (none, appendfsync everysec, appendfsync always), and
# MULTI/EXEC transactions (`redis-cli --pipe` of N x MULTI INCR SET EXEC) beside Redis.
#
# Usage: benches/kv.sh   (env: N=200000 ROUNDS=3 CLIENTS=50 PIPE=16 THREADS=<nbthread>
#                          MODES="none everysec always" DATA=/var/tmp (AOF directory: a real disk)
#                          LB=<lb binary> to skip the release build, e.g. to smoke-test the script)
# Prints the median requests/s of each side per test and the kv/redis ratio.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-200000}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-50}
PIPE=${PIPE:-16}
MODES=${MODES:-none everysec always}
DATA=${DATA:-/var/tmp}
TESTS=set,get,incr

for tool in redis-benchmark redis-server redis-cli; do
    command -v "$tool" >/dev/null || { echo "kv.sh: $tool not found (apt-get install redis-server redis-tools)" >&2; exit 1; }
done

if [ -z "${LB:-}" ]; then
    cargo build --release --quiet
    LB=target/release/lb
fi

tmp=$(mktemp -d)
work=$(mktemp -d -p "$DATA" kvbench.XXXXXX)
lb_pid=""
redis_pid=""
cleanup() {
    [ -n "$lb_pid" ] && kill "$lb_pid" 2>/dev/null && wait "$lb_pid" 2>/dev/null
    [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
    rm -rf "$tmp" "$work"
}
trap cleanup EXIT

# start MODE: kv and redis-server with that persistence (none|everysec|always), fresh data dirs.
start() {
    local mode=$1
    rm -rf "$work" && mkdir -p "$work/kv" "$work/redis"
    {
        echo "global"
        [ -n "${THREADS:-}" ] && echo "    nbthread $THREADS"
        echo "kv bench"
        echo "    bind 127.0.0.1:0"
        echo "    dir $work/kv"
        if [ "$mode" != none ]; then
            echo "    appendonly yes"
            echo "    appendfsync $mode"
        fi
    } >"$tmp/lb.conf"
    "$LB" --conf "$tmp/lb.conf" >"$tmp/lb.out" 2>"$tmp/lb.err" &
    lb_pid=$!
    for _ in $(seq 1 100); do
        grep -q '^listening kv bench' "$tmp/lb.out" 2>/dev/null && break
        sleep 0.05
    done
    kv_port=$(awk '/^listening kv bench/ {n=split($4,a,":"); print a[n]}' "$tmp/lb.out")
    [ -n "$kv_port" ] || { echo "lb did not start:" >&2; cat "$tmp/lb.err" >&2; exit 1; }
    local aof=(--appendonly no)
    [ "$mode" != none ] && aof=(--appendonly yes --appendfsync "$mode")
    redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" "${aof[@]}" --dir "$work/redis" \
        --daemonize no --logfile "$tmp/redis.log" &
    redis_pid=$!
    for _ in $(seq 1 100); do
        redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
        sleep 0.05
    done
}

stop() {
    kill "$lb_pid" "$redis_pid" 2>/dev/null || true
    wait "$lb_pid" "$redis_pid" 2>/dev/null || true
    lb_pid="" redis_pid=""
}

# bench PORT -> lines "TEST RPS"
bench() {
    redis-benchmark -h 127.0.0.1 -p "$1" -t "$TESTS" -n "$N" -c "$CLIENTS" -P "$PIPE" --csv 2>/dev/null |
        awk -F'"' 'NR > 1 && $2 != "" {print $2, $4}'
}

: >"$tmp/results"
# MULTI/EXEC: N/4 transactions of two writes, sent with redis-cli --pipe (one connection).
python3 -c "
import sys
n = int(sys.argv[1])
tx = b'*1\\r\\n\$5\\r\\nMULTI\\r\\n*2\\r\\n\$4\\r\\nINCR\\r\\n\$1\\r\\nn\\r\\n*3\\r\\n\$3\\r\\nSET\\r\\n\$1\\r\\nk\\r\\n\$1\\r\\nv\\r\\n*1\\r\\n\$4\\r\\nEXEC\\r\\n'
sys.stdout.buffer.write(tx * n)
" $((N / 4)) >"$tmp/multi.resp"
# multi PORT -> transactions/s
multi() {
    local t0 t1
    t0=$(date +%s.%N)
    redis-cli -p "$1" --pipe <"$tmp/multi.resp" >/dev/null
    t1=$(date +%s.%N)
    awk -v n=$((N / 4)) -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f\n", n / (b - a)}'
}

for mode in $MODES; do
    start "$mode"
    for r in $(seq 1 "$ROUNDS"); do
        bench "$kv_port" | sed "s/^/$mode kv /" >>"$tmp/results"
        bench "$redis_port" | sed "s/^/$mode redis /" >>"$tmp/results"
        echo "$mode kv MULTI $(multi "$kv_port")" >>"$tmp/results"
        echo "$mode redis MULTI $(multi "$redis_port")" >>"$tmp/results"
        echo "$mode: round $r/$ROUNDS done" >&2
    done
    stop
done

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

echo "redis-benchmark -t $TESTS -n $N -c $CLIENTS -P $PIPE, $ROUNDS interleaved rounds, median requests/s"
echo "MULTI: $((N / 4)) x (MULTI, INCR, SET, EXEC) through redis-cli --pipe, transactions/s"
echo "$(redis-server --version | awk '{print $1, $2, $3}'), lb nbthread ${THREADS:-default}, $(nproc) cores, AOF in $DATA"
echo
printf '| %-8s | %-6s | %12s | %12s | %6s |\n' mode test kv redis-server ratio
printf '|----------|--------|--------------|--------------|--------|\n'
for mode in $MODES; do
    for t in SET GET INCR MULTI; do
        kv=$(awk -v m="$mode" -v t="$t" '$1==m && $2=="kv" && $3==t {print $4}' "$tmp/results" | median)
        rd=$(awk -v m="$mode" -v t="$t" '$1==m && $2=="redis" && $3==t {print $4}' "$tmp/results" | median)
        ratio=$(awk -v a="$kv" -v b="$rd" 'BEGIN {if (b > 0) printf "%.2f", a/b; else print "n/a"}')
        printf '| %-8s | %-6s | %12.0f | %12.0f | %5sx |\n' "$mode" "$t" "$kv" "$rd" "$ratio"
    done
done

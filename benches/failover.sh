#!/usr/bin/env bash
# Write-unavailability window of a failover: lb's sentinel beside a real
# redis-sentinel, same data nodes, same down-after, same app.
#
# Each run: a primary and a replica (kv sections, or redis-server with NODES=redis),
# one sentinel (lb's or redis-sentinel, quorum 1), an lb app following it
# (`kv-sentinel`), a writer doing PUTs through the app as fast as they are answered;
# the primary is killed (SIGKILL) 1 s in. Printed: the longest gap between two
# successful writes, per run, and the median per sentinel.
#
#   benches/failover.sh                      # kv nodes, down-after 500 ms, 5 runs each
#   NODES=redis DOWN_AFTER_MS=1000 RUNS=3 benches/failover.sh
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=${NODES:-kv}
DOWN_AFTER_MS=${DOWN_AFTER_MS:-500}
RUNS=${RUNS:-5}
LB=${LB:-target/debug/lb}
[ -x "$LB" ] || cargo build -q
for t in redis-sentinel python3 curl; do
    command -v $t >/dev/null || { echo "SKIPPED: $t not installed (apt-get install redis-sentinel python3 curl)"; exit 0; }
done
[ "$NODES" = kv ] || command -v redis-server >/dev/null || { echo "SKIPPED: redis-server not installed"; exit 0; }

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "port $1 never opened" >&2; exit 1
}

# start_node PORT [PRIMARY_PORT] -> pid on stdout
start_node() {
    local p=$1 of=${2:-} d="$TMP/node-$1"
    mkdir -p "$d"
    if [ "$NODES" = kv ]; then
        { echo "kv n"; echo "    bind 127.0.0.1:$p"; [ -n "$of" ] && echo "    replicaof 127.0.0.1:$of"; } >"$d/lb.conf"
        RUST_LOG=warn "$LB" --conf "$d/lb.conf" >"$d/out" 2>&1 &
    else
        local extra=()
        [ -n "$of" ] && extra=(--replicaof 127.0.0.1 "$of")
        redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --dir "$d" "${extra[@]}" >"$d/out" 2>&1 &
    fi
    echo $!
}

# run_once lb|redis -> prints the longest gap in seconds
run_once() {
    local kind=$1 pp rp sp ap
    pp=$(port); rp=$(port); sp=$(port); ap=$(port)
    local ppid rpid spid apid
    ppid=$(start_node "$pp"); PIDS+=("$ppid"); wait_port "$pp"
    rpid=$(start_node "$rp" "$pp"); PIDS+=("$rpid"); wait_port "$rp"
    local d="$TMP/run-$sp"
    mkdir -p "$d"
    if [ "$kind" = lb ]; then
        printf 'sentinel s\n    bind 127.0.0.1:%s\n    monitor db 127.0.0.1:%s 1\n    down-after %sms\n    failover-timeout 5s\n' \
            "$sp" "$pp" "$DOWN_AFTER_MS" >"$d/s.conf"
        RUST_LOG=warn "$LB" --conf "$d/s.conf" >"$d/s.out" 2>&1 &
    else
        printf 'port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor db 127.0.0.1 %s 1\nsentinel down-after-milliseconds db %s\nsentinel failover-timeout db 5000\n' \
            "$sp" "$d" "$pp" "$DOWN_AFTER_MS" >"$d/s.conf"
        redis-sentinel "$d/s.conf" >"$d/s.out" 2>&1 &
    fi
    spid=$!; PIDS+=("$spid"); wait_port "$sp"
    printf 'app a\n    bind 127.0.0.1:%s\n    kv-sentinel 127.0.0.1:%s db\n    timeout kv 1s\n' "$ap" "$sp" >"$d/a.conf"
    RUST_LOG=warn "$LB" --conf "$d/a.conf" >"$d/a.out" 2>&1 &
    apid=$!; PIDS+=("$apid"); wait_port "$ap"
    # The sentinel must know the replica (linked) before the primary dies.
    for _ in $(seq 200); do
        redis-cli -p "$sp" sentinel replicas db 2>/dev/null | grep -qx ok && break
        sleep 0.05
    done
    python3 - "$ap" "$ppid" <<'EOF'
import http.client, os, signal, sys, time
port, victim = int(sys.argv[1]), int(sys.argv[2])
ok, start, killed, i = [], time.monotonic(), None, 0
while True:
    now = time.monotonic()
    if killed is None and now - start > 1.0:
        os.kill(victim, signal.SIGKILL)
        killed = now
    if killed is not None and ((ok and ok[-1] > killed and now - killed > 2.0 and now - ok[-1] < 0.1) or now - killed > 20):
        break
    i += 1
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("PUT", f"/api/items/k{i}", body=str(i))
        if c.getresponse().status == 200:
            ok.append(time.monotonic())
        c.close()
    except OSError:
        pass
gap = max(b - a for a, b in zip(ok, ok[1:]))
print(f"{gap:.3f}")
EOF
    for p in "$apid" "$spid" "$rpid"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "nodes: $NODES, down-after ${DOWN_AFTER_MS} ms, $RUNS runs each; longest gap between successful app writes (s)"
for kind in lb redis; do
    gaps=()
    for _ in $(seq "$RUNS"); do gaps+=("$(run_once "$kind")"); done
    name=$([ "$kind" = lb ] && echo "lb sentinel   " || echo "redis-sentinel")
    echo "$name: ${gaps[*]}  median $(printf '%s\n' "${gaps[@]}" | median)"
done

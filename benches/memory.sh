#!/usr/bin/env bash
# Memory per client connection, lb and HAProxy side by side in the same run:
# RSS growth (VmRSS in /proc/PID/status) over N connections of each kind, one
# worker thread each, in front of the same nginx backend. Loopback only.
#   active: N connections with a request head half sent (the proxy holds it)
#   idle:   N keep-alive connections after one request each, idle until RSS
#           holds still (at least 2 s)
#   idle+:  N more such connections once the first N have gone idle (lb has
#           taken back their read buffers by then and lends them to these)
# Prints bytes per connection and the ratio lb / HAProxy.
#
# Usage: benches/memory.sh [N]      (default 2000)
# Env: LB_BIN: the lb binary (default: target/release/lb, built here).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
for t in nginx haproxy python3; do
    command -v $t >/dev/null || [ -x /usr/sbin/$t ] || { echo "missing $t"; exit 1; }
done
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
if [ -z "${LB_BIN:-}" ]; then
    cargo build --release -q
    LB_BIN=target/release/lb
fi
# Three sets of N client sockets here, as many in the proxy, plus its server side.
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((4 * N + 200)) ] || { echo "open-file limit $(ulimit -n) too low for N=$N"; exit 1; }
. benches/lib.sh

mkdir -p "$dir/www"
echo hello > "$dir/www/index.html"
B=$(free_port)
nginx_static "$B" "$dir/www"

# The client: opens the three sets in order and prints the proxy's VmRSS (KiB)
# before and after each.
cat > "$dir/client.py" <<'PY'
import socket, sys, time
port, pid, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"):
            return int(l.split()[1])
def settled(least):
    # RSS once it holds still (allocators give memory back on their own
    # schedule: glibc at once, mimalloc after a purge delay, HAProxy's pools
    # never): at least `least` s, then until 1 s passes without a 1% change.
    time.sleep(least)
    last, still, t = rss(), 0, time.time()
    while still < 5 and time.time() - t < 15:
        time.sleep(0.2)
        now = rss()
        still = still + 1 if abs(now - last) <= last / 100 else 0
        last = now
    return last
def get():
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while not (b"\r\n\r\n" in data and data.endswith(b"hello\n")):
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("connection closed early")
        data += chunk
    return s
for _ in range(20):
    get().close()
out = [settled(1)]
keep = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n")
    keep.append(s)
get().close()  # answered after every half head before it was read
out.append(settled(1))
for _ in range(2):
    keep += [get() for _ in range(n)]
    out.append(settled(2))
print(*out)
PY

run() { # name, port, pid
    read -r base active idle more < <(python3 "$dir/client.py" "$2" "$3" "$N")
    echo "$1 $(( (active - base) * 1024 / N )) $(( (idle - active) * 1024 / N )) $(( (more - idle) * 1024 / N ))"
}

# One conf for both: lb reads HAProxy's syntax.
proxy_conf() { # port
    cat <<CONF
global
    nbthread 1
    maxconn $((4 * N))
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-request 30s
    timeout http-keep-alive 30s
frontend f
    bind 127.0.0.1:$1
    default_backend b
backend b
    server s 127.0.0.1:$B
CONF
}

# Starts a proxy (in this shell, so the exit trap stops it on failure), measures
# it into the variable VAR, stops it.
measure() { # VAR, name, port, command...
    local var=$1 name=$2 port=$3
    shift 3
    "$@" > "$dir/$name.out" 2>&1 &
    local pid=$!
    pids+=($pid)
    wait_port "$port"
    printf -v "$var" '%s' "$(run "$name" "$port" "$pid")"
    kill "$pid"
}

P=$(free_port)
proxy_conf "$P" > "$dir/lb.conf"
measure LB lb "$P" "$LB_BIN" --conf "$dir/lb.conf"
H=$(free_port)
proxy_conf "$H" > "$dir/haproxy.cfg"
measure HAP haproxy "$H" "$HAPROXY" -f "$dir/haproxy.cfg" -db

echo "RSS per connection, N=$N ($("$LB_BIN" --version), $("$HAPROXY" -v | head -1 | cut -d' ' -f1-3))"
printf '%-10s %12s %12s %12s\n' "" "active B" "idle B" "idle+ B"
for row in "$LB" "$HAP"; do printf '%-10s %12s %12s %12s\n' $row; done
echo "$LB|$HAP" | awk -F'|' '{ split($1, l, " "); split($2, h, " ");
    r = "lb/haproxy"; for (i = 2; i <= 4; i++) r = r sprintf(" %12s", h[i] > 0 ? sprintf("%.2f", l[i] / h[i]) : "-");
    printf "%-10s%s\n", substr(r, 1, 10), substr(r, 11) }'

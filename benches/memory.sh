#!/usr/bin/env bash
# Memory per client connection, lb and HAProxy side by side in the same run:
# RSS growth (VmRSS in /proc/PID/status) over N connections of each kind, one
# worker thread each, in front of the same nginx backend. Loopback only.
#   active: N connections with a request head half sent (the proxy holds it)
#   idle:   N keep-alive connections after one request each, 2 s idle
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
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
if [ -z "${LB_BIN:-}" ]; then
    cargo build --release -q
    LB_BIN=target/release/lb
fi
# Three sets of N client sockets here, as many in the proxy, plus its server side.
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((4 * N + 200)) ] || { echo "open-file limit $(ulimit -n) too low for N=$N"; exit 1; }
. benches/lib.sh

mkdir -p "$dir/www" "$dir/tmp"
echo hello > "$dir/www/index.html"
B=$(free_port)
cat > "$dir/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
error_log $dir/nginx.err;
pid $dir/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp; fastcgi_temp_path $dir/tmp;
  uwsgi_temp_path $dir/tmp; scgi_temp_path $dir/tmp;
  server { listen 127.0.0.1:$B; root $dir/www; }
}
CONF
"$NGINX" -c "$dir/nginx.conf" -p "$dir" &
pids+=($!)
wait_port "$B"

# The client: opens the three sets in order and prints the proxy's VmRSS (KiB)
# before and after each.
cat > "$dir/client.py" <<'PY'
import socket, sys, time
port, pid, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"):
            return int(l.split()[1])
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
time.sleep(1)
out = [rss()]
keep = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n")
    keep.append(s)
get().close()  # answered after every half head before it was read
time.sleep(1)
out.append(rss())
for _ in range(2):
    keep += [get() for _ in range(n)]
    time.sleep(2)
    out.append(rss())
print(*out)
PY

run() { # name, port, pid
    read -r base active idle more < <(python3 "$dir/client.py" "$2" "$3" "$N")
    echo "$1 $(( (active - base) * 1024 / N )) $(( (idle - active) * 1024 / N )) $(( (more - idle) * 1024 / N ))"
}

P=$(free_port)
cat > "$dir/lb.conf" <<CONF
global
    nbthread 1
    maxconn $((4 * N))
defaults
    mode http
    timeout client 30s
    timeout server 30s
frontend f
    bind 127.0.0.1:$P
    timeout http-request 30s
    timeout http-keep-alive 30s
    default_backend b
backend b
    server s 127.0.0.1:$B
CONF
"$LB_BIN" --conf "$dir/lb.conf" > "$dir/lb.out" 2> "$dir/lb.err" &
lb_pid=$!
pids+=($lb_pid)
wait_port "$P"
LB=$(run lb "$P" "$lb_pid")
kill "$lb_pid"

H=$(free_port)
cat > "$dir/haproxy.cfg" <<CONF
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
    bind 127.0.0.1:$H
    default_backend b
backend b
    server s 127.0.0.1:$B
CONF
"$HAPROXY" -f "$dir/haproxy.cfg" -db > "$dir/haproxy.out" 2>&1 &
hap_pid=$!
pids+=($hap_pid)
wait_port "$H"
HAP=$(run haproxy "$H" "$hap_pid")

echo "RSS per connection, N=$N ($("$LB_BIN" --version), $("$HAPROXY" -v | head -1 | cut -d' ' -f1-3))"
printf '%-10s %12s %12s %12s\n' "" "active B" "idle B" "idle+ B"
for row in "$LB" "$HAP"; do printf '%-10s %12s %12s %12s\n' $row; done
echo "$LB|$HAP" | awk -F'|' '{ split($1, l, " "); split($2, h, " ");
    r = "lb/haproxy"; for (i = 2; i <= 4; i++) r = r sprintf(" %12s", h[i] > 0 ? sprintf("%.2f", l[i] / h[i]) : "-");
    printf "%-10s%s\n", substr(r, 1, 10), substr(r, 11) }'

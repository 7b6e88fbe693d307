#!/usr/bin/env bash
# HTTPS through lb and HAProxy 2.6, one worker thread each, same certificate, same
# nginx backend, interleaved rounds: keep-alive requests/s, and new TLS
# connections/s (wrk with `Connection: close`: one handshake per request). wrk offers
# each new connection its previous session, so these handshakes are mostly resumed
# ones; the "full" column repeats the run against a second lb and HAProxy with
# resumption off (`no-tls-tickets`, `tune.ssl.cachesize 0`): full handshakes only.
# Usage: benches/tls.sh [ROUNDS] [SECONDS]     (defaults: 3 rounds, 4 s). Loopback only.
# DETAIL=1 (needs perf) also prints, per keep-alive round, the cores' idle share and
# wrk's and nginx's CPU µs per request (see README).
# CONNS (50) may be a list ("50 200"): one whole run, with its own table, per value.
# THREADS (1): worker threads of each proxy (`nbthread` in both).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-4}
CONNS=${CONNS:-50}
THREADS=${THREADS:-1}
if [ "$CONNS" != "${CONNS%% *}" ]; then
    for c in $CONNS; do CONNS=$c "$0" "$@"; done
    exit
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
for t in wrk openssl "$NGINX" "$HAPROXY"; do command -v "$t" >/dev/null || [ -x "$t" ] || { echo "missing $t"; exit 1; }; done
cargo build --release -q
. benches/lib.sh

# One ECDSA P-256 certificate for both (what rcgen makes for lb's self-signed too).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=bench.test -addext subjectAltName=DNS:bench.test \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
cat "$dir/cert.pem" "$dir/key.pem" > "$dir/bench.pem"

mkdir -p "$dir/www" "$dir/tmp"
head -c 1024 /dev/zero | tr '\0' x > "$dir/www/file.txt"
B=$(free_port)
cat > "$dir/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1;
error_log $dir/nginx.err; pid $dir/nginx.pid;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp; fastcgi_temp_path $dir/tmp;
  uwsgi_temp_path $dir/tmp; scgi_temp_path $dir/tmp;
  server { listen 127.0.0.1:$B; root $dir/www; } }
CONF
"$NGINX" -c "$dir/nginx.conf" -p "$dir" & pids+=($!)
NPID=$!
wait_port "$B"

PH=$(free_port)
cat > "$dir/haproxy.cfg" <<CONF
global
    nbthread $THREADS
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend f
    bind 127.0.0.1:$PH ssl crt $dir/bench.pem alpn http/1.1
    default_backend b
backend b
    server s 127.0.0.1:$B
CONF
"$HAPROXY" -db -f "$dir/haproxy.cfg" >/dev/null 2>&1 & pids+=($!)
HPID=$!
wait_port "$PH"
# Resumption off: every handshake a full one.
PHF=$(free_port)
sed -e "s/127.0.0.1:$PH /127.0.0.1:$PHF /" -e "s/alpn http.1.1/alpn http\/1.1 no-tls-tickets/" \
    -e "s/nbthread $THREADS/nbthread $THREADS\n    tune.ssl.cachesize 0/" "$dir/haproxy.cfg" > "$dir/haproxy-full.cfg"
"$HAPROXY" -db -f "$dir/haproxy-full.cfg" >/dev/null 2>&1 & pids+=($!)
wait_port "$PHF"

PL=$(free_port)
cat > "$dir/lb.conf" <<CONF
global
    nbthread $THREADS
defaults
    mode http
frontend f
    bind 127.0.0.1:$PL ssl crt $dir/bench.pem
    default_backend b
backend b
    server s 127.0.0.1:$B
CONF
./target/release/lb --conf "$dir/lb.conf" >/dev/null 2>&1 & pids+=($!)
LPID=$!
wait_port "$PL"
# The same lb with io_uring off (its epoll data path), for comparison.
PE=$(free_port)
sed -e "s/127.0.0.1:$PL/127.0.0.1:$PE/" -e "s/nbthread $THREADS/nbthread $THREADS\n    tune.io-uring off/" "$dir/lb.conf" > "$dir/lb-epoll.conf"
./target/release/lb --conf "$dir/lb-epoll.conf" >/dev/null 2>&1 & pids+=($!)
EPID=$!
wait_port "$PE"
PLF=$(free_port)
sed -e "s/127.0.0.1:$PL /127.0.0.1:$PLF /" -e "s/bench.pem$/bench.pem no-tls-tickets/" \
    -e "s/nbthread $THREADS/nbthread $THREADS\n    tune.ssl.cachesize 0/" "$dir/lb.conf" > "$dir/lb-full.conf"
./target/release/lb --conf "$dir/lb-full.conf" >/dev/null 2>&1 & pids+=($!)
wait_port "$PLF"

run() { # port, extra wrk args -> requests/s
    local port=$1; shift
    local measure=()
    if [ -n "${DETAIL:-}" ]; then measure=(perf stat -x, -e task-clock -o "$dir/wrk.perf"); fi
    "${measure[@]}" wrk -t1 -c"$CONNS" -d"${SECS}s" "$@" "https://127.0.0.1:$port/file.txt" > "$dir/wrk.out" 2>&1
    awk '/Requests\/sec/ {print $2}' "$dir/wrk.out"
}
names=(lb lb-epoll haproxy)
declare -A ka hs fh cpu
for n in "${names[@]}"; do ka[$n]=""; hs[$n]=""; fh[$n]="-"; cpu[$n]=""; done
declare -A port=([lb]=$PL [lb-epoll]=$PE [haproxy]=$PH)
declare -A full=([lb]=$PLF [haproxy]=$PHF)
declare -A pid=([lb]=$LPID [lb-epoll]=$EPID [haproxy]=$HPID)
# CPU time (user+system, clock ticks) of a process, for CPU µs per keep-alive request.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
for n in "${names[@]}"; do run "${port[$n]}" >/dev/null; done
for r in $(seq "$ROUNDS"); do
    for n in "${names[@]}"; do
        t0=$(ticks "${pid[$n]}"); n0=$(ticks "$NPID"); c0=$(cores)
        k=$(run "${port[$n]}")
        t1=$(ticks "${pid[$n]}"); n1=$(ticks "$NPID"); c1=$(cores)
        us=$(echo "($t1 - $t0) / $HZ * 1000000 / ($k * $SECS)" | bc -l)
        detail=""
        if [ -n "${DETAIL:-}" ]; then
            detail=$(echo "$(cut -d, -f1 "$dir/wrk.perf" | grep -E '^[0-9.]+$') $n0 $n1 $k" |
                awk -v idle="$(core_idle "$c0" "$c1")" -v hz="$HZ" -v secs="$SECS" '{
                    printf "  detail: idle %s, wrk %.2f µs/request, nginx %.2f µs/request",
                        idle, $1 * 1000 / ($4 * secs), ($3 - $2) / hz * 1e6 / ($4 * secs) }')
        fi
        h=$(run "${port[$n]}" -H "Connection: close")
        f=""
        if [ -n "${full[$n]:-}" ]; then
            f=$(run "${full[$n]}" -H "Connection: close")
            fh[$n]="${fh[$n]#-} $f"
        fi
        ka[$n]="${ka[$n]} $k"; hs[$n]="${hs[$n]} $h"; cpu[$n]="${cpu[$n]} $us"
        echo "round $r $n keep-alive $k ($us CPU µs/request) handshakes $h${f:+ full $f}" >&2
        if [ -n "$detail" ]; then echo "$detail" >&2; fi
    done
done
hk=$(echo "${ka[haproxy]}" | median); hh=$(echo "${hs[haproxy]}" | median); hf=$(echo "${fh[haproxy]}" | median)
echo
echo "HTTPS, $THREADS worker thread(s) each, ECDSA P-256, wrk -t1 -c$CONNS -d${SECS}s, median of $ROUNDS interleaved rounds"
echo "| proxy | keep-alive req/s | vs HAProxy | CPU µs/request (keep-alive) | new connections/s | vs HAProxy | full handshakes/s | vs HAProxy |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for n in "${names[@]}"; do
    k=$(echo "${ka[$n]}" | median); h=$(echo "${hs[$n]}" | median); c=$(echo "${cpu[$n]}" | median)
    fcols="- | -"
    if [ "${fh[$n]}" != "-" ]; then
        f=$(echo "${fh[$n]}" | median)
        fcols=$(printf "%.0f | %.2fx" "$f" "$(echo "$f / $hf" | bc -l)")
    fi
    printf "| %s | %.0f | %.2fx | %.1f | %.0f | %.2fx | %s |\n" "$n" "$k" "$(echo "$k / $hk" | bc -l)" "$c" "$h" "$(echo "$h / $hh" | bc -l)" "$fcols"
done
